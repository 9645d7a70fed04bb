"""The one-click selection tool: an event filter on Krita's canvas widget, and canvas <-> image maths.

While the tool is on, a left click (or pen tap) on the canvas is taken away from Krita's own
tool and reported as an image pixel with a selection operation: plain = replace, Shift = add,
Alt = subtract. Esc (or the toggle action) turns the tool off. Other buttons (pan, pop-up
palette) and plain mouse moves still reach Krita.

Coordinates: the canvas widget works in logical (device-independent) pixels; Krita's view
gives flake -> widget (flakeToCanvasTransform, which holds zoom, rotation, mirroring, scrolling
and the HiDPI scale) and flake -> image pixels (flakeToImageTransform). A click is mapped back
through the inverse of the first and then the second.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from PyQt5.QtCore import QEvent, QObject, QPointF, Qt, pyqtSignal
from PyQt5.QtWidgets import QApplication, QWidget

from .krita_io import SelectionOp

CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
Clicked = Callable[[object, int, int, SelectionOp], None]   # (view, x, y in image pixels, op)

_SWALLOW = {QEvent.MouseButtonPress, QEvent.MouseButtonRelease, QEvent.MouseButtonDblClick, QEvent.MouseMove,
            QEvent.TabletPress, QEvent.TabletRelease, QEvent.TabletMove}


def widget_to_image(view, pos: QPointF) -> QPointF:
    """Canvas-widget position (logical pixels) -> image position (pixel (i, j) spans [i, i+1) x [j, j+1))."""
    to_flake, ok = view.flakeToCanvasTransform().inverted()
    if not ok:
        raise ValueError("the canvas transform cannot be inverted")
    return view.flakeToImageTransform().map(to_flake.map(QPointF(pos)))


def pixel_at(view, pos: QPointF) -> tuple[int, int]:
    p = widget_to_image(view, pos)
    return math.floor(p.x()), math.floor(p.y())


def op_for(modifiers) -> SelectionOp:
    if modifiers & Qt.AltModifier:
        return SelectionOp.subtract
    if modifiers & Qt.ShiftModifier:
        return SelectionOp.add
    return SelectionOp.replace


def is_canvas(obj: QObject) -> bool:
    return isinstance(obj, QWidget) and obj.metaObject().className() in CANVAS_CLASSES


class ClickTool(QObject):
    """Application-wide event filter, installed only while the tool is on."""

    toggled = pyqtSignal(bool)

    def __init__(self, clicked: Clicked, view_for: Callable[[QWidget], object], parent: Optional[QObject] = None):
        super().__init__(parent)
        self._clicked = clicked
        self._view_for = view_for      # canvas widget -> Krita View (or None)
        self._on = False

    @property
    def active(self) -> bool:
        return self._on

    def set_active(self, on: bool) -> None:
        on = bool(on)
        if on == self._on:
            return
        self._on = on
        app = QApplication.instance()
        if on:
            app.installEventFilter(self)
        else:
            app.removeEventFilter(self)
        self.toggled.emit(on)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        t = event.type()
        if t in (QEvent.KeyPress, QEvent.ShortcutOverride):
            if event.key() == Qt.Key_Escape and isinstance(obj, QWidget) and self._in_main_window(obj):
                self.set_active(False)
                event.accept()
                return t == QEvent.KeyPress
            return False
        if t not in _SWALLOW or not is_canvas(obj):
            return False
        if t in (QEvent.MouseMove, QEvent.TabletMove):
            return bool(event.buttons() & Qt.LeftButton)       # no drag strokes; hover still reaches Krita
        if event.button() != Qt.LeftButton:
            return False
        event.accept()                                         # accepted tablet events make no mouse twin
        if t in (QEvent.MouseButtonPress, QEvent.TabletPress):
            view = self._view_for(obj)
            if view is None:
                return True
            try:
                x, y = pixel_at(view, event.posF() if t == QEvent.TabletPress else event.localPos())
            except ValueError:                                 # a degenerate view transform
                return True
            self._clicked(view, x, y, op_for(event.modifiers()))
        return True

    @staticmethod
    def _in_main_window(obj: QWidget) -> bool:
        win = obj.window()
        return win is not None and win.metaObject().className() == "KisMainWindow"
