"""Where SimpSON Erase lives on this machine and how to reach its daemon (stdlib only).

One JSON file, SIMPSON_HOME/config.json, written by install.py and read by both plug-ins and
the client. Each key is defined once, in Settings; a bad value falls back to the default.
Environment variables override the file: SIMPSON_HOME, SIMPSON_ENDPOINT, SIMPSON_TRANSPORT.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("simpson_client")

CONFIG_NAME = "config.json"
DEFAULT_PORT = 5557


def default_home() -> Path:
    """SIMPSON_HOME, else the OS's per-user data folder."""
    env = os.environ.get("SIMPSON_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "SimpSON Erase"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "SimpSON Erase"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "simpson-erase"


@dataclasses.dataclass
class Settings:
    endpoint: str = f"tcp://127.0.0.1:{DEFAULT_PORT}"
    python: str = ""              # interpreter of the backend environment (install.py records it)
    app_dir: str = ""             # folder holding the backend package (cwd for `python -m backend`)
    autostart: bool = True        # start the daemon on demand (loopback endpoints only)
    transport: str = "auto"       # auto | pyzmq | stdlib
    start_timeout: float = 120.0  # seconds to wait for a starting daemon
    idle_timeout: float = 60.0    # seconds without any message from a working daemon
    curve_server_public: str = "" # Z85 keys, for a remote (authenticated) daemon; pyzmq only
    curve_client_public: str = ""
    curve_client_secret: str = ""
    device: str = "auto"          # where the daemon's models run: auto | cpu | cuda | cuda:N | mps
    home: str = ""                # filled in on load

    @property
    def log_path(self) -> Path:
        return Path(self.home) / "logs" / "daemon.log"


def load(home: Path | None = None) -> Settings:
    home = home or default_home()
    settings = Settings(home=str(home))
    path = home / CONFIG_NAME
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            log.warning("ignoring %s: %s", path, e)
            data = {}
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.name == "home" or f.name not in data:
            continue
        value, default = data[f.name], getattr(defaults, f.name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            log.warning("config %s: bad value for %r, using %r", path, f.name, default)
            continue
        setattr(settings, f.name, value)
    if os.environ.get("SIMPSON_ENDPOINT"):
        settings.endpoint = os.environ["SIMPSON_ENDPOINT"]
    if os.environ.get("SIMPSON_TRANSPORT"):
        settings.transport = os.environ["SIMPSON_TRANSPORT"]
    return settings


def save(settings: Settings) -> Path:
    path = Path(settings.home) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in dataclasses.asdict(settings).items() if k != "home"}
    tmp = path.with_suffix(".tmp")
    # a client's CURVE secret key is the owner's only, like the key files keygen writes
    mode = 0o600 if settings.curve_client_secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    if os.name == "posix":
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """'tcp://HOST:PORT' -> (host, port). Raises ValueError with a clear message."""
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"Endpoint {endpoint!r} must look like tcp://127.0.0.1:{DEFAULT_PORT}.")
    host, sep, port = endpoint[6:].rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Endpoint {endpoint!r} has no valid port.")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
