"""Start the backend daemon on demand with the interpreter install.py recorded (stdlib only)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import BackendNotInstalled, BackendUnavailable
from .settings import Settings, is_loopback, parse_endpoint

# Known start-up failures, as they appear in the daemon's output -> what to tell the user.
_STARTUP_FAILURES = (
    ("Address already in use", "Port {port} is used by another program. Set another endpoint in {config} "
                               "or stop that program."),
    ("No module named 'torch'", "The backend environment is incomplete. Run `python3 install.py` again."),
    ("No module named", "The backend environment is incomplete. Run `python3 install.py` again."),
    ("weights", "The model weights are missing or damaged. Run `python3 install.py` again."),
    ("MemoryError", "The backend ran out of memory while starting. Close other programs and try again."),
    ("out of memory", "The backend ran out of memory while starting. Close other programs and try again."),
    ("refuses to listen", "The daemon refuses to listen on {endpoint} without authentication keys."),
)


def explain_startup_failure(output: str, settings: Settings) -> str:
    """Daemon start-up output -> one sentence for the user."""
    try:
        port = parse_endpoint(settings.endpoint)[1]
    except ValueError:
        port = "?"
    for needle, sentence in _STARTUP_FAILURES:
        if needle in output:
            return sentence.format(port=port, endpoint=settings.endpoint,
                                   config=Path(settings.home) / "config.json")
    return f"The SimpSON backend failed to start; see {settings.log_path}."


def start(settings: Settings, is_ready: Callable[[], bool], progress: Callable[[str], None] | None = None) -> None:
    """Launch `python -m backend serve` detached and wait until is_ready() is true."""
    if not settings.python or not Path(settings.python).exists() or not settings.app_dir:
        raise BackendNotInstalled("The SimpSON backend is not installed. Run `python3 install.py` "
                                  "from the SimpSON Erase folder, then try again.")
    host, _ = parse_endpoint(settings.endpoint)
    if not is_loopback(host):
        raise BackendUnavailable(f"The SimpSON backend at {settings.endpoint} is not reachable. "
                                 "Start it on that machine.")
    logs = Path(settings.home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_path = logs / "daemon-start.log"
    cmd = [settings.python, "-m", "backend", "serve", "--endpoint", settings.endpoint, "--idle-exit", "1800"]
    kwargs: dict = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    env = dict(os.environ, SIMPSON_HOME=settings.home, PYTHONUNBUFFERED="1", OMP_WAIT_POLICY="PASSIVE")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=settings.app_dir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, **kwargs)
    deadline = time.monotonic() + settings.start_timeout
    while time.monotonic() < deadline:
        if progress:
            progress("Starting the SimpSON backend…")
        if is_ready():
            return
        code = proc.poll()
        if code is not None:
            if is_ready():  # another client started it first; ours lost the port race
                return
            text = out_path.read_text(encoding="utf-8", errors="replace")[-4000:]
            raise BackendUnavailable(explain_startup_failure(text, settings))
        time.sleep(0.25)
    raise BackendUnavailable(f"The SimpSON backend did not start within {settings.start_timeout:.0f} s; "
                             f"see {settings.log_path}.")
