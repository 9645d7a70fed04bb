"""Requests to the backend run here, off Krita's GUI thread.

One background thread takes jobs in order; each job gets a fresh Client (settings are re-read,
so a changed config.json or a restarted daemon is simply picked up). Results, errors and
progress come back through a queue that a QTimer drains on the main thread, so every callback
(and every Krita API call it makes) runs on the main thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, NamedTuple, Optional

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from .simpson_client import Cancelled, Client, SimpsonError

log = logging.getLogger("simpson_erase")

POLL_MS = 40
Task = Callable[[Client, Callable[[float, str], bool]], Any]   # (client, progress) -> result, on the thread


class Job(NamedTuple):
    label: str                                  # shown while it runs: "Selecting"
    task: Task
    done: Callable[[Any], None]                 # main thread, with the task's result
    failed: Callable[[str], None]               # main thread, with one sentence
    quiet: bool = False                         # background checks: no busy state, no progress


class Worker(QObject):
    """Runs jobs one at a time on a thread; cancel() stops the running one and drops the queued ones."""

    progress = pyqtSignal(float, str)   # fraction 0..1, message
    busy_changed = pyqtSignal(bool)

    def __init__(self, client_factory: Callable[[], Client] = Client, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._client_factory = client_factory
        self._jobs: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._events: "queue.Queue[tuple[str, Any]]" = queue.Queue()
        self._pending = 0                      # user jobs queued or running (main-thread counter)
        self._outstanding = 0                  # all jobs whose result has not been handled yet
        self._cancel = threading.Event()
        self._client: Optional[Client] = None  # the running job's client, for cancel()
        self._client_lock = threading.Lock()
        self.hold = 0                          # > 0: results wait (the main thread is applying one)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)
        self._thread = threading.Thread(target=self._run, name="simpson-erase-worker", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def submit(self, job: Job) -> None:
        self._outstanding += 1
        if not job.quiet:
            self._pending += 1
            if self._pending == 1:
                self._cancel.clear()
                self.busy_changed.emit(True)
            self.progress.emit(0.0, job.label + "…")
        self._jobs.put(job)
        self._timer.start()

    def cancel(self) -> None:
        """Stop the running request and forget the queued ones (main thread)."""
        if not self.busy:
            return
        self._cancel.set()
        with self._client_lock:
            if self._client is not None:
                self._client.cancel()

    def stop(self) -> None:
        self.cancel()
        self._jobs.put(None)

    # ---- the thread ----
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._cancel.is_set() and not job.quiet:
                self._events.put(("failed", (job, "Cancelled.", True)))
                continue
            try:
                client = self._client_factory()
                with self._client_lock:
                    self._client = client

                def progress(fraction: float, message: str) -> bool:
                    if not job.quiet:
                        self._events.put(("progress", (fraction, message)))
                    return job.quiet or not self._cancel.is_set()

                result = job.task(client, progress)
                self._events.put(("done", (job, result)))
            except Cancelled:
                self._events.put(("failed", (job, "Cancelled.", True)))
            except SimpsonError as e:
                self._events.put(("failed", (job, e.user_message, False)))
            except Exception as e:   # a bug here must not kill the thread
                log.exception("SimpSON Erase request failed")
                self._events.put(("failed", (job, f"Unexpected error: {e!r}", False)))
            finally:
                with self._client_lock:
                    self._client = None

    # ---- the main thread ----
    def _drain(self) -> None:
        while self.hold <= 0:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                self.progress.emit(*payload)
                continue
            job = payload[0]
            try:
                if kind == "done":
                    job.done(payload[1])
                else:
                    job.failed(payload[1])
            except Exception as e:             # e.g. the layer went away meanwhile
                log.exception("SimpSON Erase: applying a result failed")
                if kind == "done":
                    try:
                        job.failed(f"Could not apply the result: {e}")
                    except Exception:
                        log.exception("SimpSON Erase: reporting a failure failed")
            finally:
                self._outstanding -= 1
                if not job.quiet:
                    self._finished_one()
        if self._outstanding == 0 and self.hold <= 0:
            self._timer.stop()

    def _finished_one(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.progress.emit(1.0, "")
            self.busy_changed.emit(False)
