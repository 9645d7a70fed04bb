"""Run one backend request on a thread while the main thread keeps GIMP and GTK going.

libgimp's wire and GTK are not thread-safe, so the worker only stores progress; the main
thread polls it (wait_with_progress for procedures, a GLib timeout in the dialog).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from simpson_client.client import Client, Progress  # noqa: E402


class Task:
    """fn(progress) runs on a daemon thread; poll done/progress from the main thread."""

    def __init__(self, client: Client, fn: Callable[[Progress], Any]):
        self.client = client
        self._lock = threading.Lock()
        self._progress: tuple[float, str] | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Progress], Any]) -> None:
        try:
            self._result = fn(self._report)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread as is
            self._error = e
        finally:
            self._done.set()

    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self._progress = (fraction, message)

    def take_progress(self) -> tuple[float, str] | None:
        """The latest progress report since the last call, if any."""
        with self._lock:
            p, self._progress = self._progress, None
        return p

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self.client.cancel()

    def result(self) -> Any:
        """The call's return value; re-raises its exception. Only once done."""
        if self._error is not None:
            raise self._error
        return self._result


def run_with_progress(client: Client, fn: Callable[[Progress], Any], text: str,
                      start: float = 0.0, end: float = 1.0) -> Any:
    """Run fn on a thread, feeding GIMP's progress bar (update, or pulse while nothing is reported).

    The fraction reported by the backend is mapped into [start, end] so steps can share one bar.
    Cancelling the progress in GIMP ends this plug-in process, before anything was changed."""
    Gimp.progress_set_text(text)
    task = Task(client, fn)
    last = time.monotonic()
    while not task.wait(0.1):
        p = task.take_progress()
        if p is not None:
            fraction, message = p
            Gimp.progress_update(start + (end - start) * min(1.0, max(0.0, fraction)))
            if message:
                Gimp.progress_set_text(message)
            last = time.monotonic()
        elif time.monotonic() - last > 0.5:
            Gimp.progress_pulse()
    return task.result()
