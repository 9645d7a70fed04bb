#!/usr/bin/env python3
"""SimpSON Erase for GIMP 3: select objects by clicking, select similar ones, erase them.

Filters > SimpSON Erase > Select Object... | Select Object at Points | Select Similar |
Erase Selection | Erase Object...  Each action computes everything with the backend first and
then changes the image in one undo group, so a failure or a cancel leaves the image untouched.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

import gimp_io  # noqa: E402
from simpson_client import Cancelled, Client, Mask, Patch, SimpsonError  # noqa: E402
from simpson_client.protocol import MAX_DILATION  # noqa: E402
from task import run_with_progress  # noqa: E402

SELECT_OBJECT = "python-fu-simpson-select-object"
SELECT_AT_POINTS = "python-fu-simpson-select-at-points"
SELECT_SIMILAR = "python-fu-simpson-select-similar"
ERASE_SELECTION = "python-fu-simpson-erase-selection"
ERASE_OBJECT = "python-fu-simpson-erase-object"
MENU = "<Image>/Filters/SimpSON Erase"
RW = GObject.ParamFlags.READWRITE
OPERATIONS = {"replace": Gimp.ChannelOps.REPLACE, "add": Gimp.ChannelOps.ADD,
              "subtract": Gimp.ChannelOps.SUBTRACT, "intersect": Gimp.ChannelOps.INTERSECT}
NO_POINTS = ("Mark the object first: add a sample point on it (drag from a ruler with Ctrl) "
             "or draw a path through it, or pass points.")

Apply = Callable[[], None]   # changes the image; runs inside the undo group


# ---------- what each action computes (nothing here changes the image) ----------

def clicks(image: Gimp.Image, config: Gimp.ProcedureConfig) -> list[gimp_io.Point]:
    """The points arguments (x, y pairs in image pixels), else the path anchors or sample points."""
    pos, neg = _pairs(config.get_property("points")), _pairs(config.get_property("negative-points"))
    if not pos and not neg:
        pos = gimp_io.marked_points(image)
    return [(x, y, True) for x, y in pos] + [(x, y, False) for x, y in neg]


def _pairs(text: Optional[str]) -> list[tuple[float, float]]:
    """'x,y x,y ...' (image pixels; spaces or semicolons between points) -> [(x, y), ...]."""
    pairs = []
    for item in (text or "").replace(";", " ").split():
        try:
            x, y = (float(v) for v in item.split(","))
        except ValueError:
            raise SimpsonError(f"The point {item!r} is not X,Y (for example 120,45).") from None
        pairs.append((x, y))
    return pairs


def layer_clicks(points: list[gimp_io.Point], px: gimp_io.LayerPixels) -> list[gimp_io.Point]:
    """Image-space clicks -> layer-space clicks, or a sentence saying what is missing."""
    if not points:
        raise SimpsonError(NO_POINTS)
    inside = gimp_io.to_layer(points, px)
    if not any(p for _, _, p in inside):
        raise SimpsonError("The points lie outside the active layer: mark the object on this layer.")
    return inside


def compute_select(client: Client, image: Gimp.Image, px: gimp_io.LayerPixels, config: Gimp.ProcedureConfig,
                   end: float = 1.0) -> Mask:
    """The object mask (layer pixels) for the clicks in the arguments or marked in the image."""
    points = layer_clicks(clicks(image, config), px)
    return run_with_progress(client, lambda p: client.select(px.image, points, progress=p),
                             "SimpSON Erase: selecting the object", 0.0, end)


def compute_erase(client: Client, px: gimp_io.LayerPixels, mask: bytes, config: Gimp.ProcedureConfig,
                  start: float = 0.0) -> Patch:
    """The filled patch for the mask (layer pixels), with the dilation and engine arguments."""
    dilation = config.get_property("dilation")
    engine = config.get_property("engine") or None
    return run_with_progress(
        client, lambda p: client.erase(px.image, mask, engine=engine, dilation=None if dilation < 0 else dilation,
                                       progress=p), "SimpSON Erase: erasing", start, 1.0)


def select_object(client: Client, image: Gimp.Image, layer: Gimp.Layer, config: Gimp.ProcedureConfig,
                  run_mode: Gimp.RunMode) -> Optional[Apply]:
    px = gimp_io.read_layer(image, layer)
    op = OPERATIONS[config.get_property("operation")]
    if run_mode == Gimp.RunMode.INTERACTIVE:
        import dialog  # noqa: PLC0415 - GTK only when a dialog is shown
        mask = dialog.select_object(client, px, "Select Object")
        if mask is None:
            return None
    else:
        mask = compute_select(client, image, px, config)
    return lambda: gimp_io.set_selection(image, mask, px, op)


def select_at_points(client: Client, image: Gimp.Image, layer: Gimp.Layer, config: Gimp.ProcedureConfig,
                     run_mode: Gimp.RunMode) -> Apply:
    px = gimp_io.read_layer(image, layer)
    op = OPERATIONS[config.get_property("operation")]
    mask = compute_select(client, image, px, config)
    return lambda: gimp_io.set_selection(image, mask, px, op)


def select_similar(client: Client, image: Gimp.Image, layer: Gimp.Layer, config: Gimp.ProcedureConfig,
                   run_mode: Gimp.RunMode) -> Apply:
    px = gimp_io.read_layer(image, layer)
    seed = gimp_io.selection_mask(image, px)
    points = [] if seed is not None else layer_clicks(clicks(image, config), px)
    likeness = config.get_property("min-score")
    min_score = None if likeness < 0 else likeness
    found = run_with_progress(client, lambda p: client.similar(px.image, points, mask=seed, progress=p,
                                                               min_score=min_score),
                              "SimpSON Erase: looking for similar objects")
    Gimp.progress_set_text(f"SimpSON Erase: {len(found.instances)} objects")
    return lambda: gimp_io.set_selection(image, found.mask, px, Gimp.ChannelOps.ADD)


def erase_selection(client: Client, image: Gimp.Image, layer: Gimp.Layer, config: Gimp.ProcedureConfig,
                    run_mode: Gimp.RunMode) -> Apply:
    px = gimp_io.read_layer(image, layer)
    mask = gimp_io.selection_mask(image, px)
    if mask is None:
        raise SimpsonError("Nothing is selected on the active layer: select what to erase first.")
    patch = compute_erase(client, px, mask, config)
    return lambda: gimp_io.add_result_layer(image, px, patch.box, patch.data)


def erase_object(client: Client, image: Gimp.Image, layer: Gimp.Layer, config: Gimp.ProcedureConfig,
                 run_mode: Gimp.RunMode) -> Optional[Apply]:
    px = gimp_io.read_layer(image, layer)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        import dialog  # noqa: PLC0415
        mask = dialog.select_object(client, px, "Erase Object", "_Erase")
        if mask is None:
            return None
        Gimp.progress_init("SimpSON Erase")
        patch = compute_erase(client, px, mask.data, config)
    else:
        mask = compute_select(client, image, px, config, end=0.5)
        patch = compute_erase(client, px, mask.data, config, start=0.5)

    def apply() -> None:
        gimp_io.set_selection(image, mask, px)
        gimp_io.add_result_layer(image, px, patch.box, patch.data)
    return apply


# ---------- GIMP glue ----------

ACTIONS = {
    SELECT_OBJECT: (select_object, "Select _Object...", "Select an object by clicking it",
                    "Click the object in the preview (Shift-click adds, Ctrl-click removes); OK sets the "
                    "selection. Non-interactively it uses the points arguments, else the active path's "
                    "anchors or the image's sample points."),
    SELECT_AT_POINTS: (select_at_points, "Select Object at _Points", "Select the object under the marked points",
                       "Selects the object under the points arguments (image pixels), else under the active "
                       "path's anchors or the image's sample points. The scriptable form of Select Object."),
    SELECT_SIMILAR: (select_similar, "Select _Similar", "Grow the selection to every similar object",
                     "Adds every object similar to the selected one (or to the one under the marked points) "
                     "to the selection."),
    ERASE_SELECTION: (erase_selection, "_Erase Selection", "Fill the selection from its surroundings",
                      "Fills the selected part of the active layer and puts the result in a new layer "
                      "above it; the active layer is not changed."),
    ERASE_OBJECT: (erase_object, "Erase O_bject...", "Select an object by clicking it and erase it",
                   "Select Object, then Erase Selection, in one step. Non-interactively it uses the points "
                   "arguments, else the active path's anchors or the image's sample points."),
}
SELECTS = (SELECT_OBJECT, SELECT_AT_POINTS, SELECT_SIMILAR, ERASE_OBJECT)
ERASES = (ERASE_SELECTION, ERASE_OBJECT)


class SimpsonErase(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(ACTIONS)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        _, label, blurb, help_text = ACTIONS[name]
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label(label)
        proc.add_menu_path(MENU)
        proc.set_documentation(blurb, help_text, name)
        proc.set_attribution("SimpSON Erase", "SimpSON Erase contributors", "2026")
        if name in SELECTS:
            proc.add_string_argument("points", "Points", "Clicks on the object, 'x,y x,y ...' in image pixels "
                                     "(empty: the active path's anchors or the sample points)", "", RW)
            proc.add_string_argument("negative-points", "Negative points",
                                     "Clicks outside the object, 'x,y x,y ...' in image pixels", "", RW)
        if name in (SELECT_OBJECT, SELECT_AT_POINTS):
            ops = Gimp.Choice.new()
            for i, (nick, label_) in enumerate((("replace", "Replace the selection"), ("add", "Add to the selection"),
                                                ("subtract", "Subtract from the selection"),
                                                ("intersect", "Intersect with the selection"))):
                ops.add(nick, i, label_, "")
            proc.add_choice_argument("operation", "Operation", "How the object combines with the selection",
                                     ops, "replace", RW)
        if name == SELECT_SIMILAR:
            proc.add_double_argument("min-score", "Likeness",
                                     "Score (0..1) a similar object needs; lower finds more (-1: the engine's own)",
                                     -1.0, 1.0, -1.0, RW)
        if name in ERASES:
            proc.add_int_argument("dilation", "Grow by", "Grow the hole by this many pixels (-1: automatic)",
                                  -1, MAX_DILATION, -1, RW)
            proc.add_string_argument("engine", "Engine", "Backend engine (empty: the default)", "", RW)
        return proc

    def run(self, procedure, run_mode, image, drawables, config, data):
        action = ACTIONS[procedure.get_name()][0]
        if len(drawables) != 1:
            return _error(procedure, "Select exactly one layer and try again.")
        Gimp.progress_init("SimpSON Erase")
        client = Client()
        try:
            layer = gimp_io.check_layer(drawables[0])
            apply = action(client, image, layer, config, run_mode)   # everything computed here
            if apply is None:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            image.undo_group_start()
            try:
                apply()
            finally:
                image.undo_group_end()
        except Cancelled:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        except SimpsonError as e:
            return _error(procedure, e.user_message)
        except Exception as e:  # noqa: BLE001 - report, never crash silently
            traceback.print_exc()
            return _error(procedure, f"SimpSON Erase failed unexpectedly ({type(e).__name__}: {e}).")
        finally:
            Gimp.progress_end()
        Gimp.displays_flush()
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _error(procedure: Gimp.Procedure, message: str) -> Gimp.ValueArray:
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


if __name__ == "__main__":
    Gimp.main(SimpsonErase.__gtype__, sys.argv)
