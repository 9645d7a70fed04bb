"""The Krita Extension: actions and menus, and the three operations (click select, similar, erase).

Each operation reads pixels on the main thread, sends the request through worker.py, and
applies the result on the main thread when it comes back. Errors become one sentence in the
docker's status line and a floating message on the canvas (no modal dialogs).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from krita import Extension, Krita
from PyQt5.QtCore import pyqtSignal, QTimer
from PyQt5.QtGui import QIcon
from PyQt5.QtWidgets import QAction, QWidget

from . import krita_io
from .click_tool import ClickTool
from .krita_io import SelectionOp, Unsupported
from .simpson_client import Client, Mask
from .simpson_client.status import backend_line
from .worker import Job, Worker

log = logging.getLogger("simpson_erase")

SETTINGS_GROUP = "simpson_erase"
TOOL, SIMILAR, ERASE = "simpson_erase_tool", "simpson_erase_similar", "simpson_erase_erase"
ACTIONS = {   # id: (text, menu, default shortcut)
    TOOL: ("SimpSON One-Click Select", "select", "Ctrl+Alt+O"),
    SIMILAR: ("SimpSON Select Similar", "select", "Ctrl+Alt+M"),
    ERASE: ("SimpSON Erase Selection", "layer", "Ctrl+Alt+E"),
}
_instance: Optional["SimpsonErase"] = None


def instance() -> Optional["SimpsonErase"]:
    """The extension (the docker finds it here)."""
    return _instance


@dataclass
class Options:
    engine: str = ""          # "" = the backend's default for each operation
    dilation: int = -1        # -1 = automatic (about 3 % of each object's size, and its cast shadow)
    min_score: float = -1.0   # Select Similar's likeness, 0..1; -1 = the engine's own threshold

    @classmethod
    def load(cls, app: Krita) -> "Options":
        opts = cls(engine=app.readSetting(SETTINGS_GROUP, "engine", ""))
        try:
            opts.dilation = int(app.readSetting(SETTINGS_GROUP, "dilation", "-1"))
        except ValueError:
            log.warning("SimpSON Erase: bad dilation setting, using automatic")
        try:
            opts.min_score = float(app.readSetting(SETTINGS_GROUP, "min_score", "-1"))
        except ValueError:
            log.warning("SimpSON Erase: bad likeness setting, using automatic")
        return opts

    def save(self, app: Krita) -> None:
        app.writeSetting(SETTINGS_GROUP, "engine", self.engine)
        app.writeSetting(SETTINGS_GROUP, "dilation", str(self.dilation))
        app.writeSetting(SETTINGS_GROUP, "min_score", str(self.min_score))


class SimpsonErase(Extension):
    message = pyqtSignal(str)            # a sentence for the status line
    backend_changed = pyqtSignal(str, list)   # status sentence, engine names

    def __init__(self, parent: Krita):
        super().__init__(parent)
        global _instance
        _instance = self
        self.app = parent
        self.options = Options.load(parent)
        self.engines: dict[str, Any] = {}
        self.backend_status = "Backend: not checked yet"
        self.last_message = ""
        self.worker = Worker(parent=self)
        self.tool = ClickTool(self.select_at, self._view_for, parent=self)
        self.tool.toggled.connect(self._sync_tool_actions)
        self.tool.toggled.connect(lambda on: self.say("One-click select: click an object (Shift adds, Alt subtracts, "
                                                      "Esc leaves)." if on else "One-click select off.", show=on))
        self._tool_actions: list[QAction] = []
        # the one-click tool's clicks since its last plain click: (document, layer rect, points)
        self._clicks: Optional[tuple[Any, Any, list]] = None
        # the layer the tool's last click read, given back by the next read while its pixels are the same
        # (krita_io.read_layer's reuse); let go when the tool is turned off (a layer's pixels twice over)
        self._tool_layer = None
        self.tool.toggled.connect(self._forget_tool_layer)

    # ---- Krita hooks ----
    def setup(self) -> None:
        QTimer.singleShot(2000, self.check_backend)

    def createActions(self, window) -> None:  # noqa: N802 - Krita's name
        handlers: dict[str, Callable[..., Any]] = {SIMILAR: self.select_similar, ERASE: self.erase}
        for action_id, (text, menu, shortcut) in ACTIONS.items():
            # Default shortcuts come from simpson_erase.action (Krita clears shortcuts set here whenever
            # it re-applies its shortcut scheme); `shortcut` only shows in the tooltips.
            action = window.createAction(action_id, text, menu)
            action.setToolTip(f"{text} ({shortcut})")
            if action_id == TOOL:
                action.setCheckable(True)
                action.setChecked(self.tool.active)
                action.toggled.connect(self.tool.set_active)
                self._tool_actions.append(action)
            else:
                action.triggered.connect(lambda _=False, f=handlers[action_id]: f())

    # ---- operations (main thread) ----
    def select_at(self, view, x: int, y: int, op: SelectionOp = SelectionOp.replace) -> None:
        """Select the object under image pixel (x, y) of the active layer; op combines it with the selection.

        Shift/Alt clicks on a selection this tool made send it with the tool's earlier clicks, so
        the backend refines the clicked object (a missed part, a bit too much); on any other
        selection they add / subtract the object under the click."""
        if self._busy_applying(lambda: self.select_at(view, x, y, op)):
            return
        layer = self._read_active_layer(self._tool_layer)
        if layer is None:
            return
        doc, node, px = layer
        self._tool_layer = px if self.tool.active else None
        rx, ry = x - px.rect.x(), y - px.rect.y()
        if not (0 <= rx < px.rect.width() and 0 <= ry < px.rect.height()):
            return self.say("Click inside the image.", error=True)
        engine = self._engine_for("select")
        click = (rx, ry, op is not SelectionOp.subtract)
        history = self._clicks
        previous = None
        if op is not SelectionOp.replace and history is not None and history[0] == doc and history[1] == px.rect:
            previous = krita_io.read_selection(doc, px.rect)
        points = history[2] + [click] if previous is not None else [(rx, ry, True)]

        def task(client: Client, progress) -> Any:
            return client.select(px.image, points, previous=previous, engine=engine, progress=progress)

        def done(mask) -> None:
            if previous is not None:
                self._clicks = (doc, px.rect, points)
                self._apply_selection(doc, px.rect, mask, SelectionOp.replace,
                                      f"Refined the selection at ({x}, {y}) [{mask.engine}].")
                return
            self._clicks = (doc, px.rect, points) if op is SelectionOp.replace else None
            self._apply_selection(doc, px.rect, mask, op, f"Selected the object at ({x}, {y}) "
                                                          f"[{mask.engine}].")
        self._submit("Selecting", task, done)

    def _read_active_layer(self, reuse=None):
        """(document, node, pixels) of the active layer, or None after telling the user why not; reuse: an
        earlier read, given back when the layer is the same (krita_io.read_layer)."""
        try:
            doc, node = krita_io.active(self.app)
            return doc, node, krita_io.read_layer(doc, node, reuse)
        except Unsupported as e:
            self.say(str(e), error=True)
            return None

    def select_similar(self) -> None:
        """Grow the selection to every object that looks like the selected one."""
        if self._busy_applying(self.select_similar):
            return
        layer = self._read_active_layer()
        if layer is None:
            return
        doc, node, px = layer
        seed = krita_io.read_selection(doc, px.rect)
        if seed is None:
            return self.say("Select an object first (SimpSON One-Click Select or any selection tool).", error=True)
        engine = self._engine_for("similar")
        min_score = None if self.options.min_score < 0 else min(self.options.min_score, 1.0)

        def task(client: Client, progress) -> Any:
            return client.similar(px.image, mask=seed, engine=engine, progress=progress, min_score=min_score)

        def done(similar) -> None:
            n = len(similar.instances)
            self._apply_selection(doc, px.rect, similar.mask, SelectionOp.replace,
                                  f"Selected {n} matching object{'s' if n != 1 else ''} [{similar.mask.engine}].")
        self._submit("Finding similar objects", task, done)

    def erase(self) -> None:
        """Fill the selected pixels of the active layer; the result is a new layer just above it."""
        if self._busy_applying(self.erase):
            return
        layer = self._read_active_layer()
        if layer is None:
            return
        doc, node, px = layer
        mask = krita_io.read_selection(doc, px.rect)
        if mask is None:
            return self.say("Select what to erase first.", error=True)
        engine = self._engine_for("erase")
        dilation = None if self.options.dilation < 0 else self.options.dilation

        def task(client: Client, progress) -> Any:
            return client.erase(px.image, mask, engine=engine, dilation=dilation, progress=progress)

        def done(patch) -> None:
            if self.app.activeDocument() != doc:
                return self.say("The image changed while SimpSON Erase was working; try again.", error=True)
            layer = krita_io.add_result_layer(doc, node, px, patch.box, patch.data)
            QTimer.singleShot(krita_io.STEP_MS, lambda: doc.setActiveNode(layer))   # after Krita has seen it
            self.say(f"Erased into the new layer {krita_io.RESULT_LAYER!r} [{patch.engine}].")
        self._submit("Erasing", task, done)

    def cancel(self) -> None:
        self.worker.cancel()

    def check_backend(self) -> None:
        """Ask the daemon how it is, without starting it (quiet: no busy state)."""
        def task(client: Client, progress) -> Any:
            client.settings.autostart = False
            return client.info(timeout=5.0)

        def done(info: dict) -> None:
            self.engines = dict(info.get("engines") or {})
            self._backend(backend_line(info))   # the device info reports, and engines that run elsewhere

        def failed(text: str) -> None:
            self._backend("Backend: not running; it starts on first use." if "not running" in text
                          else f"Backend: {text}")
        self.worker.submit(Job("Checking the backend", task, done, failed, quiet=True))

    # ---- helpers ----
    def say(self, text: str, error: bool = False, show: bool = False) -> None:
        """text in the docker's status line; errors (and show=True) also float over the canvas."""
        self.last_message = text
        (log.warning if error else log.info)("SimpSON Erase: %s", text)
        self.message.emit(text)
        if error or show:
            win = self.app.activeWindow()
            view = win.activeView() if win is not None else None
            if view is not None:
                view.showFloatingMessage(text, QIcon(), 5000, 1)

    def _submit(self, label: str, task, done: Callable[[Any], None]) -> None:
        def ok(result: Any) -> None:
            if not self.backend_status.startswith("Backend: ready"):
                self.check_backend()          # it may just have been started on demand
            done(result)

        def failed(text: str) -> None:
            self.say(text, error=text != "Cancelled.")
            if "backend" in text.lower():
                self.check_backend()
        self.worker.submit(Job(label, task, ok, failed))

    def _busy_applying(self, again: Callable[[], None]) -> bool:
        """While a selection is being put in (a few timer ticks), run `again` a little later instead."""
        if self.worker.hold <= 0:
            return False
        QTimer.singleShot(krita_io.STEP_MS * 2, again)
        return True

    def _apply_selection(self, doc, rect, mask: Mask, op: SelectionOp, success: str) -> None:
        self.worker.hold += 1                 # next results wait until this one is in

        def then(error: Optional[str]) -> None:
            self.worker.hold -= 1
            self.say(error or success, error=error is not None)
        try:
            krita_io.apply_selection(self.app, doc, rect, mask, op, then)
        except Unsupported as e:
            then(str(e))

    def _engine_for(self, op: str) -> Optional[str]:
        info = self.engines.get(self.options.engine) if self.options.engine else None
        return self.options.engine if isinstance(info, dict) and op in info.get("ops", ()) else None

    def _backend(self, text: str) -> None:
        self.backend_status = text
        self.backend_changed.emit(text, sorted(self.engines))

    def _forget_tool_layer(self, on: bool) -> None:
        if not on:
            self._tool_layer = None

    def _sync_tool_actions(self, on: bool) -> None:
        for action in list(self._tool_actions):
            try:
                if action.isChecked() != on:
                    action.blockSignals(True)
                    action.setChecked(on)
                    action.blockSignals(False)
            except RuntimeError:              # its window was closed
                self._tool_actions.remove(action)

    def _view_for(self, canvas: QWidget):
        for win in self.app.windows():
            if win.qwindow() is not None and win.qwindow().isAncestorOf(canvas):
                return win.activeView()
        return None
