"""SimpSON Erase client: the one protocol client both plug-ins use (stdlib only; pyzmq if present).

    from simpson_client import Client, Image
    with Client() as c:
        mask = c.select(Image(w, h, rgba_bytes), [(x, y, True)])
"""
from .client import Client, Image, Instance, Mask, Patch, Similar
from .errors import (BackendNotInstalled, BackendStopped, BackendTimeout, BackendUnavailable, Cancelled,
                     ProtocolMismatch, RequestRejected, SimpsonError)
from .settings import Settings

__all__ = ["Client", "Image", "Instance", "Mask", "Patch", "Similar", "Settings", "SimpsonError",
           "BackendNotInstalled", "BackendStopped", "BackendTimeout", "BackendUnavailable", "Cancelled",
           "ProtocolMismatch", "RequestRejected"]
