# gimp_batch.py - python-fu-eval code run inside gimp-console-3.0 by tests/editors/test_gimp.py.
# Drives the SimpSON Erase procedures through the PDB, like a user's batch script would, and
# writes what came out to $SIMPSON_OUT: PNG exports, raw layer dumps and results.json.
# $SIMPSON_CASES = "ok" (a daemon is running) or "errors" (none is reachable).
import json
import os
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

IN, OUT = os.environ["SIMPSON_IN"], os.environ["SIMPSON_OUT"]
PDB = Gimp.get_pdb()
results = {}


def load(name):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(f"{IN}/{name}"))
    if image is None:
        raise RuntimeError(f"cannot load {name}")
    return image


def run(name, image, layer, **props):
    proc = PDB.lookup_procedure(name)
    if proc is None:
        raise RuntimeError(f"{name} is not registered (plug-in not installed?)")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in props.items():
        config.set_property(key.replace("_", "-"), value)
    result = proc.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    return {"status": status.value_nick, "message": message or ""}


def export(image, drawable_bytes, w, h, fmt, itype, path):
    """Raw bytes -> a one-layer image of the same kind -> PNG through GIMP's exporter."""
    base = Gimp.ImageBaseType.GRAY if itype == Gimp.ImageType.GRAY_IMAGE else Gimp.ImageBaseType.RGB
    img = Gimp.Image.new(w, h, base)
    lay = Gimp.Layer.new(img, "out", w, h, itype, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(lay, None, 0)
    buf = lay.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), fmt, drawable_bytes)
    buf.flush()
    ok = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
    img.delete()
    if not ok:
        raise RuntimeError(f"export of {path} failed")


def export_selection(image, name):
    w, h = image.get_width(), image.get_height()
    sel = image.get_selection().get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
    export(image, sel, w, h, "Y u8", Gimp.ImageType.GRAY_IMAGE, f"{OUT}/{name}.png")


def dump_layer(layer, name, fmt="R'G'B'A u8"):
    """The layer's pixels (raw, fmt) to OUT/name.raw; its geometry goes into the results."""
    w, h = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE)
    with open(f"{OUT}/{name}.raw", "wb") as f:
        f.write(bytes(data))
    _, x, y = layer.get_offsets()
    return {"width": w, "height": h, "x": x, "y": y, "name": layer.get_name(), "alpha": layer.has_alpha()}


def layers(image):
    return [lay.get_name() for lay in image.get_layers()]


def case(fn):
    """Run one case; an exception becomes {"error": traceback} so later cases still run."""
    try:
        results[fn.__name__] = fn()
    except Exception:  # noqa: BLE001
        results[fn.__name__] = {"error": traceback.format_exc()}
    return fn


def ok_cases():
    centres = json.load(open(f"{IN}/scene.json"))["centres"]

    @case
    def eight_bit():
        """Sample point -> Select Object at Points -> Select Similar -> Erase Selection (8-bit, no alpha)."""
        image = load("scene.png")
        layer = image.get_layers()[0]
        image.add_sample_point(*centres[0])
        r = {"precision": image.get_precision().value_nick, "before": layers(image)}
        r["menus"] = {name: [PDB.lookup_procedure(name).get_menu_label(), PDB.lookup_procedure(name).get_menu_paths()]
                      for name in ("python-fu-simpson-select-object", "python-fu-simpson-select-at-points",
                                   "python-fu-simpson-select-similar", "python-fu-simpson-erase-selection",
                                   "python-fu-simpson-erase-object")}
        r["select"] = run("python-fu-simpson-select-at-points", image, layer)
        export_selection(image, "sel8")
        r["similar"] = run("python-fu-simpson-select-similar", image, layer)
        export_selection(image, "similar8")
        r["subtract"] = run("python-fu-simpson-select-object", image, layer, points="%d,%d" % tuple(centres[1]),
                            operation="subtract")
        export_selection(image, "subtract8")
        Gimp.Selection.none(image)
        image.select_ellipse(Gimp.ChannelOps.REPLACE, centres[0][0] - 21, centres[0][1] - 21, 42, 42)
        image.clean_all()
        r["erase"] = run("python-fu-simpson-erase-selection", image, layer)
        r["after"] = layers(image)
        r["dirty"] = image.is_dirty()
        new = image.get_layers()[0]
        r["result"] = dump_layer(new, "erase8")
        r["original"] = dump_layer(image.get_layers()[1], "orig8")
        r["active"] = [lay.get_name() for lay in image.get_selected_layers()]
        w, h = new.get_width(), new.get_height()
        export(image, new.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE),
               w, h, "R'G'B'A u8", Gimp.ImageType.RGBA_IMAGE, f"{OUT}/erase8.png")
        image.delete()
        return r

    @case
    def offsets():
        """A layer with alpha at an offset, partly off the canvas; the click is a path anchor; Erase Object."""
        image = Gimp.Image.new(400, 300, Gimp.ImageBaseType.RGB)
        bg = Gimp.Layer.new(image, "Background", 400, 300, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(bg, None, 0)
        bg.fill(Gimp.FillType.WHITE)
        layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(f"{IN}/scene.png"))
        image.insert_layer(layer, None, 0)
        layer.add_alpha()
        layer.set_offsets(-25, 21)
        path = Gimp.Path.new(image, "clicks")
        image.insert_path(path, None, 0)
        cx, cy = centres[1]
        path.bezier_stroke_new_moveto(cx - 25, cy + 21)
        image.set_selected_paths([path])
        image.set_selected_layers([layer])
        r = {"before": layers(image)}
        r["erase"] = run("python-fu-simpson-erase-object", image, layer)
        r["after"] = layers(image)
        export_selection(image, "sel_offsets")
        r["result"] = dump_layer(image.get_layers()[0], "erase_offsets")
        r["original"] = dump_layer(image.get_layers()[1], "orig_offsets")
        image.delete()
        return r

    @case
    def sixteen_bit():
        """A 16-bit RGBA image; Erase Object with points as arguments (one positive, one negative)."""
        image = load("scene16.png")
        layer = image.get_layers()[0]
        cx, cy = centres[2]
        r = {"precision": image.get_precision().value_nick, "before": layers(image)}
        r["erase"] = run("python-fu-simpson-erase-object", image, layer, points=f"{cx},{cy}",
                         negative_points="5,5", dilation=4)
        r["after"] = layers(image)
        export_selection(image, "sel16")
        r["result"] = dump_layer(image.get_layers()[0], "erase16", "R'G'B'A u16")
        r["original"] = dump_layer(image.get_layers()[1], "orig16", "R'G'B'A u16")
        image.delete()
        return r

    @case
    def similar_strict():
        """Select Similar with min-score 1: no other object scores that high, the clicked disc stays alone."""
        image = load("scene.png")
        r = run("python-fu-simpson-select-similar", image, image.get_layers()[0], points="%d,%d" % tuple(centres[2]),
                min_score=1.0)
        export_selection(image, "similar_strict")
        image.delete()
        return r

    @case
    def similar_from_points():
        """Select Similar with nothing selected starts from the points argument."""
        image = load("scene.png")
        r = run("python-fu-simpson-select-similar", image, image.get_layers()[0], points="%d,%d" % tuple(centres[2]))
        export_selection(image, "similar_points")
        image.delete()
        return r

    @case
    def float_linear():
        """32-bit float linear precision: travels as rgba16; untouched pixels stay bit-exact floats."""
        image = load("scene.png")
        image.convert_precision(Gimp.Precision.FLOAT_LINEAR)
        layer = image.get_layers()[0]
        cx, cy = centres[3]
        r = {"precision": image.get_precision().value_nick}
        r["erase"] = run("python-fu-simpson-erase-object", image, layer, points=f"{cx},{cy}")
        r["after"] = layers(image)
        r["result"] = dump_layer(image.get_layers()[0], "erase_float", "RGBA float")
        r["original"] = dump_layer(image.get_layers()[1], "orig_float", "RGBA float")
        image.delete()
        return r

    @case
    def gray():
        """A greyscale image with an alpha channel."""
        image = load("scene.png")
        image.convert_grayscale()
        layer = image.get_layers()[0]
        layer.add_alpha()
        cx, cy = centres[0]
        r = {"base": image.get_base_type().value_nick}
        r["erase"] = run("python-fu-simpson-erase-object", image, layer, points=f"{cx},{cy}")
        r["after"] = layers(image)
        export_selection(image, "sel_gray")
        r["result"] = dump_layer(image.get_layers()[0], "erase_gray", "Y'A u8")
        r["original"] = dump_layer(image.get_layers()[1], "orig_gray", "Y'A u8")
        image.delete()
        return r


def error_cases():
    centres = json.load(open(f"{IN}/scene.json"))["centres"]

    def unchanged(image, name, **props):
        layer = image.get_layers()[0]
        before = (layers(image), Gimp.Selection.bounds(image)[1:])
        image.clean_all()
        r = run(name, image, layer, **props)
        r["unchanged"] = (layers(image), Gimp.Selection.bounds(image)[1:]) == before and not image.is_dirty()
        return r

    @case
    def no_daemon():
        image = load("scene.png")
        r = {"select": unchanged(image, "python-fu-simpson-select-at-points", points="%d,%d" % tuple(centres[0]))}
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 30, 30)
        r["erase"] = unchanged(image, "python-fu-simpson-erase-selection")
        image.delete()
        return r

    @case
    def too_large():
        image = Gimp.Image.new(6600, 6200, Gimp.ImageBaseType.RGB)
        layer = Gimp.Layer.new(image, "big", 6600, 6200, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        r = unchanged(image, "python-fu-simpson-select-at-points", points="100,100")
        image.delete()
        return r

    @case
    def no_points():
        image = load("scene.png")
        r = unchanged(image, "python-fu-simpson-erase-object")
        image.delete()
        return r


{"ok": ok_cases, "errors": error_cases}[os.environ["SIMPSON_CASES"]]()
with open(f"{OUT}/results.json", "w") as f:
    json.dump(results, f, indent=1)
print("simpson-batch: wrote", f"{OUT}/results.json", flush=True)
