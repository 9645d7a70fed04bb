"""The "Select Object" dialog: the layer, clicks on it, the mask over it as you click.

Click = a new object, Shift-click = add a point on the object, Ctrl-click (or right-click) =
a point outside it. Each change sends all points to the backend on a worker thread (task.Task);
a GLib timeout polls it, so the dialog keeps drawing and answering while the backend works.
"""
from __future__ import annotations

import importlib
import operator
from typing import Optional

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import Gdk, GdkPixbuf, GimpUi, GLib, Gtk  # noqa: E402

import gimp_io  # noqa: E402
from simpson_client import Cancelled, Client, Mask, SimpsonError  # noqa: E402
from simpson_client.status import backend_line  # noqa: E402
from task import Task  # noqa: E402

PREVIEW_SIZE = (720, 540)               # largest preview, in screen pixels
TINT = (40, 130, 255, 120)              # selected pixels: this colour over the image
OUTLINE = (120, 220, 255, 255)          # and their outline
# per channel: overlay level (0 outside, 1 inside, 2 outline) -> byte value
OVERLAY_TABLES = [bytes([0, TINT[i], OUTLINE[i]]) + bytes(253) for i in range(4)]
HINT = "Click the object. Shift-click adds to it, Ctrl-click removes."
TEST_HOOK = "simpson_erase_test_hook"   # see ObjectDialog.run


class ObjectDialog:
    def __init__(self, client: Client, px: gimp_io.LayerPixels, title: str, ok_label: str = "_OK"):
        self.client, self.px = client, px
        w, h = px.image.width, px.image.height
        self.scale = min(1.0, PREVIEW_SIZE[0] / w, PREVIEW_SIZE[1] / h)
        pw, ph, data = gimp_io.read_preview(px.layer, self.scale)
        self.base = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, True, 8,
                                                    pw, ph, pw * 4)
        self.overlay: Optional[GdkPixbuf.Pixbuf] = None
        self.points: list[gimp_io.Point] = []        # layer pixels
        self.mask: Optional[Mask] = None
        self.task: Optional[Task] = None
        self.pending = False                         # points changed while a request was running
        self.masks: dict[tuple, Mask] = {}           # recent results by their points (for Undo click)
        self.backend = ""                            # info's line ("Backend: ready on cuda (…)"), once known
        self._build(title, ok_label, pw, ph)

    # ---- widgets ----
    def _build(self, title: str, ok_label: str, pw: int, ph: int) -> None:
        self.dialog = GimpUi.Dialog(title=f"SimpSON Erase - {title}", role="simpson-erase", use_header_bar=False)
        self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.ok = self.dialog.add_button(ok_label, Gtk.ResponseType.OK)
        self.ok.set_sensitive(False)
        self.dialog.set_default_response(Gtk.ResponseType.OK)
        box = self.dialog.get_content_area()
        box.set_spacing(6)
        box.set_border_width(8)
        self.picture = Gtk.Image()
        self.area = Gtk.EventBox()              # exactly the preview's size: event x, y = preview pixels
        self.area.set_halign(Gtk.Align.CENTER)
        self.area.set_valign(Gtk.Align.CENTER)
        self.area.add(self.picture)
        self.area.connect("button-press-event", self._on_press)
        box.pack_start(self.area, True, True, 0)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.status = Gtk.Label(label=HINT, xalign=0.0)
        self.status.set_line_wrap(True)
        self.progress = Gtk.ProgressBar()
        self.progress.set_size_request(120, -1)
        self.progress.set_valign(Gtk.Align.CENTER)
        self.undo = Gtk.Button.new_with_mnemonic("_Undo click")
        self.undo.connect("clicked", lambda *_: self._undo())
        self.clear = Gtk.Button.new_with_mnemonic("C_lear")
        self.clear.connect("clicked", lambda *_: self._clear())
        self.stop = Gtk.Button.new_with_mnemonic("_Stop")
        self.stop.connect("clicked", lambda *_: self._stop())
        row.pack_start(self.status, True, True, 0)
        for widget in (self.progress, self.stop, self.undo, self.clear):
            row.pack_start(widget, False, False, 0)
        box.pack_start(row, False, False, 0)
        self._sync()
        self._redraw()

    def run(self) -> Optional[bytes]:
        """Show the dialog; the mask (layer pixels, 255 = selected) on OK, None on Cancel."""
        self.dialog.show_all()
        self.stop.hide()
        GLib.timeout_add(100, self._poll)
        # Test seam: the end-to-end tests copy a module of this name (tests/editors/gimp_dialog_driver.py)
        # next to this file; its attach(dialog) drives the dialog. Installs have no such module.
        try:
            hook = importlib.import_module(TEST_HOOK)
        except ModuleNotFoundError as e:
            if e.name != TEST_HOOK:
                raise
            hook = None
        if hook is not None:
            hook.attach(self)
        answer = self.dialog.run()
        if self.task is not None and not self.task.done:
            self.task.cancel()
        self.dialog.destroy()
        return self.mask if answer == Gtk.ResponseType.OK and self.mask is not None else None

    # ---- clicks ----
    def _on_press(self, _widget, event) -> bool:
        if event.type != Gdk.EventType.BUTTON_PRESS or event.button not in (1, 3):
            return False
        x, y = event.x / self.scale, event.y / self.scale
        if event.button == 3 or event.state & Gdk.ModifierType.CONTROL_MASK:
            mode = "subtract"
        elif event.state & Gdk.ModifierType.SHIFT_MASK:
            mode = "add"
        else:
            mode = "new"
        self.click(x, y, mode)
        return True

    def click(self, x: float, y: float, mode: str) -> None:
        """x, y in layer pixels; mode: new | add | subtract."""
        if not (0 <= x < self.px.image.width and 0 <= y < self.px.image.height):
            return
        if mode == "new":
            self.points = [(x, y, True)]
        else:
            self.points.append((x, y, mode == "add"))
        self._request()

    def _undo(self) -> None:
        if self.points:
            self.points.pop()
        known = self.masks.get(tuple(self.points))
        if known is not None and (self.task is None or self.task.done):
            self._show_mask(known)                   # the mask before that click, no request needed
            self._sync()
        else:
            self._request()

    def _stop(self) -> None:
        self.pending = False
        if self.task is not None:
            self.task.cancel()

    def _clear(self) -> None:
        self.points = []
        self._request()

    # ---- backend ----
    def _request(self) -> None:
        self._redraw()
        if not any(p for _, _, p in self.points):
            self._show_mask(None)
            self.status.set_text(HINT)
            return
        if self.task is not None and not self.task.done:
            self.pending = True
            return
        points = list(self.points)
        before = self.masks.get(tuple(points[:-1]), self.mask) if len(points) > 1 else None
        previous = before   # a Mask travels as its box and crop, not as a full-size mask
        self.pending = False
        ask_info = not self.backend    # the first answer also asks where the backend runs (info)

        def work(p):
            mask = self.client.select(self.px.image, points, previous=previous, progress=p)
            info = None
            if ask_info:
                try:
                    info = self.client.info(timeout=5.0)
                except SimpsonError:     # the mask is what was asked for; the line can wait
                    pass
            return points, mask, info
        self.task = Task(self.client, work)
        self.status.set_text("Selecting…")
        self._sync()

    def _poll(self) -> bool:
        task = self.task
        if task is None:
            return True
        if not task.done:
            p = task.take_progress()
            if p is not None:
                self.progress.set_fraction(max(0.0, min(1.0, p[0])))
                if p[1]:
                    self.status.set_text(p[1])
            else:
                self.progress.pulse()
            return True
        self.task = None
        try:
            points, mask, info = task.result()
            if info is not None:
                self.backend = backend_line(info)
            self.masks[tuple(points)] = mask
            while len(self.masks) > 8:               # masks are layer-sized: keep a few
                del self.masks[next(iter(self.masks))]
            if points == self.points:                # else the clicks changed meanwhile
                self._show_mask(mask)
            self.status.set_text(f"{HINT}\n{self.backend}" if self.backend else HINT)
        except Cancelled:
            self.status.set_text("Stopped. " + HINT)
        except SimpsonError as e:
            self.status.set_markup(f"<span foreground='#d33'>{GLib.markup_escape_text(e.user_message)}</span>")
        except Exception as e:  # noqa: BLE001 - show it, keep the dialog alive
            self.status.set_text(f"SimpSON Erase failed unexpectedly ({type(e).__name__}: {e}).")
        self.progress.set_fraction(0.0)
        if self.pending:
            self._request()
        self._sync()
        return True

    def _sync(self) -> None:
        busy = self.task is not None
        self.ok.set_sensitive(self.mask is not None and not busy)
        self.stop.set_visible(busy)
        self.undo.set_sensitive(bool(self.points))
        self.clear.set_sensitive(bool(self.points))

    # ---- drawing ----
    def _show_mask(self, mask: Optional[Mask]) -> None:
        self.mask = mask if mask is not None and mask.box[2] > 0 else None
        self.overlay = None if self.mask is None else self._overlay(self.mask.data)
        self._redraw()

    def _overlay(self, mask: bytes) -> GdkPixbuf.Pixbuf:
        """The mask, sampled down to the preview: a tint inside and a solid outline."""
        pw, ph = self.base.get_width(), self.base.get_height()
        w, h = self.px.image.width, self.px.image.height
        cols = [min(w - 1, int((c + 0.5) / self.scale)) for c in range(pw)]
        pick = operator.itemgetter(*cols) if pw > 1 else (lambda row: (row[cols[0]],))
        small = bytearray()
        for r in range(ph):
            y = min(h - 1, int((r + 0.5) / self.scale))
            small += bytes(pick(mask[y * w:(y + 1) * w]))
        inside = bytes(small).translate(bytes(1 if v > 127 else 0 for v in range(256)))
        levels = inside_or_edge(inside, pw, ph)
        n = pw * ph
        rgba = bytearray(4 * n)
        for i, table in enumerate(OVERLAY_TABLES):
            rgba[i::4] = levels.translate(table)
        return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(bytes(rgba)), GdkPixbuf.Colorspace.RGB, True, 8,
                                               pw, ph, pw * 4)

    def _redraw(self) -> None:
        """Preview = layer over a checkerboard + tinted mask + click markers (GdkPixbuf only, no cairo)."""
        pw, ph = self.base.get_width(), self.base.get_height()
        shown = self.base.composite_color_simple(pw, ph, GdkPixbuf.InterpType.NEAREST, 255, 8, 0x999999, 0x666666)
        if self.overlay is not None:
            self.overlay.composite(shown, 0, 0, pw, ph, 0, 0, 1, 1, GdkPixbuf.InterpType.NEAREST, 255)
        for x, y, positive in self.points:
            mark = MARKS[positive]
            r = mark.get_width() // 2
            x0, y0 = int(x * self.scale) - r, int(y * self.scale) - r
            cx0, cy0 = max(0, x0), max(0, y0)
            cx1, cy1 = min(pw, x0 + 2 * r + 1), min(ph, y0 + 2 * r + 1)
            if cx1 > cx0 and cy1 > cy0:
                mark.composite(shown, cx0, cy0, cx1 - cx0, cy1 - cy0, x0, y0, 1, 1, GdkPixbuf.InterpType.NEAREST, 255)
        self.picture.set_from_pixbuf(shown)


def inside_or_edge(inside: bytes, width: int, height: int) -> bytes:
    """Per pixel (0/1 in): 0 outside, 1 inside, 2 inside but next to an outside pixel.

    Done on big integers (one byte per pixel): shifts by 8 bits are left/right neighbours,
    by 8*width bits the rows above and below; all in C, no per-pixel Python loop."""
    n = width * height
    a = int.from_bytes(inside, "big")
    ones = int.from_bytes(b"\x01" * n, "big")
    neighbours = a >> 8 & a << 8 & a >> (8 * width) & a << (8 * width) & ones
    edge = a & ~neighbours & ones
    return (a + edge).to_bytes(n, "big")


def _marker(ring: tuple[int, int, int], radius: int = 6) -> GdkPixbuf.Pixbuf:
    """A click marker: a white dot in a coloured ring, (2r+1)² RGBA."""
    size = 2 * radius + 1
    data = bytearray(4 * size * size)
    for y in range(size):
        for x in range(size):
            d = ((x - radius) ** 2 + (y - radius) ** 2) ** 0.5
            colour = (255, 255, 255) if d <= radius - 2.5 else ring if d <= radius + 0.3 else None
            if colour:
                data[4 * (y * size + x):4 * (y * size + x) + 4] = bytes(colour + (255,))
    return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(bytes(data)), GdkPixbuf.Colorspace.RGB, True, 8,
                                           size, size, 4 * size)


MARKS = {True: _marker((30, 170, 60)), False: _marker((220, 40, 40))}


def select_object(client: Client, px: gimp_io.LayerPixels, title: str, ok_label: str = "_OK") -> Optional[Mask]:
    """Run the dialog; the chosen mask in layer pixels, or None if cancelled."""
    GimpUi.init("simpson-erase")
    return ObjectDialog(client, px, title, ok_label).run()
