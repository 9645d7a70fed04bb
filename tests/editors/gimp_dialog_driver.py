"""The GIMP dialog's test driver: runs INSIDE the plug-in process, never installed for users.

test_gimp.py copies this file into the test profile's installed plug-in as
simpson_erase_test_hook.py; the "Select Object" dialog (plugin_gimp/simpson-erase/dialog.py,
ObjectDialog.run) imports a module of that name when it exists and calls attach(dialog). When
$SIMPSON_GIMP_DIALOG_TEST names a JSON file (written by gimp_batch_gui.py before each call),
the Autopilot clicks, waits for each mask, takes a screenshot and answers the dialog.
"""
from __future__ import annotations

import json
import os

import gi
gi.require_version("Gdk", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402

SCRIPT_ENV = "SIMPSON_GIMP_DIALOG_TEST"   # a JSON file: clicks to make, screenshot path, answer


def attach(dlg) -> None:
    """Called by ObjectDialog.run once the dialog is shown."""
    path = os.environ.get(SCRIPT_ENV)
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            GLib.timeout_add(300, Autopilot(dlg, json.load(f)).step)


class Autopilot:
    """Script (the JSON file $SIMPSON_GIMP_DIALOG_TEST names): click in image pixels, wait for
    each mask (mode new | add | subtract, or undo = the Undo click button), save a screenshot of
    the dialog, then answer. Optional: "stop_after_ticks": N
    presses Stop after N ticks of a running request; "report": a JSON file for what was seen.
    Example: {"clicks": [[64, 60, "new"]], "screenshot": "/tmp/dialog.png", "answer": "ok"}"""

    def __init__(self, dlg, script: dict):
        self.dlg, self.script = dlg, script
        self.clicks = list(script.get("clicks", []))
        self.settle = 0
        self.busy_ticks = 0
        self.messages: set[str] = set()

    def step(self) -> bool:
        d = self.dlg
        if d.task is not None or d.pending:              # a request is running: the loop still ticks
            self.busy_ticks += 1
            self.messages.add(d.status.get_text())
            if self.busy_ticks == self.script.get("stop_after_ticks"):
                d.stop.clicked()
            return True
        if self.clicks:
            x, y, mode = self.clicks.pop(0)
            if mode == "undo":
                d.undo.clicked()
            else:
                self.press((x - d.px.x) * d.scale, (y - d.px.y) * d.scale, mode)
            return True
        self.settle += 1
        if self.settle < 3:                              # let the last mask get drawn
            return True
        if self.script.get("screenshot"):
            win = d.dialog.get_window()
            shot = Gdk.pixbuf_get_from_window(win, 0, 0, win.get_width(), win.get_height())
            shot.savev(self.script["screenshot"], "png", [], [])
        if self.script.get("report"):
            with open(self.script["report"], "w", encoding="utf-8") as f:
                json.dump({"busy_ticks": self.busy_ticks, "messages": sorted(self.messages),
                           "status": d.status.get_text(), "has_mask": d.mask is not None}, f)
        d.dialog.response(Gtk.ResponseType.OK if self.script.get("answer", "ok") == "ok" else Gtk.ResponseType.CANCEL)
        return False


    def press(self, x: float, y: float, mode: str) -> None:
        """A real button-press event on the preview (x, y in preview pixels), with the modifier
        for mode, delivered through GTK like a mouse click."""
        event = Gdk.Event.new(Gdk.EventType.BUTTON_PRESS)
        event.button.button = 1
        event.button.x, event.button.y = x, y
        event.button.state = {"add": Gdk.ModifierType.SHIFT_MASK,
                              "subtract": Gdk.ModifierType.CONTROL_MASK}.get(mode, Gdk.ModifierType(0))
        event.button.window = self.dlg.area.get_window()
        event.button.time = Gdk.CURRENT_TIME
        event.set_device(self.dlg.area.get_display().get_default_seat().get_pointer())
        self.dlg.area.event(event)
