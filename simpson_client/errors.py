"""Errors a plug-in can show: each carries one sentence a user can act on (user_message)."""
from __future__ import annotations


class SimpsonError(Exception):
    """Base class. str(e) and e.user_message are the sentence to show."""

    def __init__(self, user_message: str, code: str = "error"):
        super().__init__(user_message)
        self.user_message = user_message
        self.code = code


class BackendNotInstalled(SimpsonError):
    """install.py has not been run (no recorded backend interpreter)."""


class BackendUnavailable(SimpsonError):
    """The daemon is not reachable and could not be started."""


class BackendStopped(SimpsonError):
    """The daemon went away while it was working on our request."""


class BackendTimeout(SimpsonError):
    """The daemon did not answer in time."""


class ProtocolMismatch(SimpsonError):
    """Plug-in and daemon speak different protocol versions."""


class RequestRejected(SimpsonError):
    """The daemon refused or failed the request; code is the protocol error code."""


class Cancelled(SimpsonError):
    """The user cancelled the request."""
