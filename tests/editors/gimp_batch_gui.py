# gimp_batch_gui.py - python-fu-eval code run by the GIMP 3 GUI (gimp-3.0 under xvfb-run) for
# tests/editors/test_gimp.py: opens the interactive "Select Object..." / "Erase Object..." dialogs,
# lets the dialog's test hook click ($SIMPSON_GIMP_DIALOG_TEST names the script file written here
# before each call), and writes screenshots, selection exports and results.json to $SIMPSON_OUT.
import json
import os
import time
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, Gegl, Gimp, GimpUi, Gio  # noqa: E402

IN, OUT = os.environ["SIMPSON_IN"], os.environ["SIMPSON_OUT"]
SCRIPT = os.environ["SIMPSON_GIMP_DIALOG_TEST"]
PDB = Gimp.get_pdb()
results = {}


def open_image(path):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    if image is None:
        raise RuntimeError(f"cannot load {path}")
    display = Gimp.Display.new(image)
    return image, display


def run(name, image, run_mode=Gimp.RunMode.INTERACTIVE, **props):
    proc = PDB.lookup_procedure(name)
    config = proc.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [image.get_selected_layers()[0]])
    for key, value in props.items():
        config.set_property(key, value)
    result = proc.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    return {"status": status.value_nick, "message": message or ""}


def dialog_script(clicks, answer="ok", screenshot="", **more):
    with open(SCRIPT, "w") as f:
        json.dump(dict(more, clicks=clicks, answer=answer, screenshot=screenshot), f)


def use_daemon(endpoint, **settings):
    """Point the plug-in at another daemon: it reads SIMPSON_HOME/config.json on every run."""
    with open(os.path.join(os.environ["SIMPSON_HOME"], "config.json"), "w") as f:
        json.dump(dict(settings, endpoint=endpoint, autostart=False), f)


def save_selection(image, name):
    w, h = image.get_width(), image.get_height()
    sel = image.get_selection().get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
    with open(f"{OUT}/{name}.raw", "wb") as f:
        f.write(bytes(sel))


def screen_shot(path):
    """The whole X screen (GIMP's window with the image), after GIMP has drawn it."""
    Gimp.displays_flush()
    time.sleep(1.5)
    GimpUi.init("simpson-test")
    root = Gdk.get_default_root_window()
    shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
    shot.savev(path, "png", [], [])


def case(fn):
    try:
        results[fn.__name__] = fn()
    except Exception:  # noqa: BLE001
        results[fn.__name__] = {"error": traceback.format_exc()}
    return fn


def close(image, display):
    image.clean_all()
    display.delete()


centres = json.load(open(f"{IN}/scene.json"))["centres"]


@case
def select_dialog():
    image, display = open_image(f"{IN}/scene.png")
    (x, y), (x2, y2) = centres[0], centres[3]
    (x3, y3) = centres[2]
    dialog_script([[x, y, "new"], [x2, y2, "add"], [x3, y3, "add"], [0, 0, "undo"], [x2 + 6, y2 + 25, "subtract"]],
                  screenshot=f"{OUT}/dialog-scene.png")
    r = run("python-fu-simpson-select-object", image)
    save_selection(image, "gui_select")
    r["layers"] = [lay.get_name() for lay in image.get_layers()]
    dialog_script([[x2, y2, "new"]], answer="cancel")
    r["cancel"] = run("python-fu-simpson-select-object", image)
    save_selection(image, "gui_after_cancel")
    close(image, display)
    return r


@case
def erase_dialog():
    image, display = open_image(f"{IN}/scene.png")
    x, y = centres[1]
    dialog_script([[x, y, "new"]])
    r = run("python-fu-simpson-erase-object", image)
    r["layers"] = [lay.get_name() for lay in image.get_layers()]
    layer = image.get_layers()[0]
    w, h = layer.get_width(), layer.get_height()
    with open(f"{OUT}/gui_erase.raw", "wb") as f:
        f.write(bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8",
                                             Gegl.AbyssPolicy.NONE)))
    save_selection(image, "gui_erase_sel")
    close(image, display)
    return r


@case
def docs_screenshots():
    """The README pictures: the dialog on the sample photo (two cans), then GIMP after Erase Selection."""
    beach = os.environ.get("SIMPSON_SAMPLE", "")
    if not beach or not os.path.exists(beach):
        return {"skipped": "no sample photo"}
    image, display = open_image(beach)
    dialog_script([[1104, 726, "new"], [1449, 689, "add"], [1150, 760, "subtract"]],
                  screenshot=f"{OUT}/gimp-dialog.png")
    r = {"select": run("python-fu-simpson-select-object", image)}
    r["erase"] = run("python-fu-simpson-erase-selection", image, Gimp.RunMode.NONINTERACTIVE)
    screen_shot(f"{OUT}/gimp-window.png")
    close(image, display)
    return r


@case
def error_message():
    """How a failure looks to a user: run interactively with nothing selected."""
    image, display = open_image(f"{IN}/scene.png")
    r = run("python-fu-simpson-erase-selection", image)
    screen_shot(f"{OUT}/gimp-error.png")
    close(image, display)
    return r


@case
def slow_backend():
    """A slow fake daemon: the dialog keeps ticking while it works, Stop cancels the request;
    a daemon that never answers ends a procedure with the timeout sentence."""
    use_daemon(os.environ["SIMPSON_SLOW_ENDPOINT"], idle_timeout=2.0)
    image, display = open_image(f"{IN}/scene.png")
    x, y = centres[0]
    dialog_script([[x, y, "new"]], answer="cancel", stop_after_ticks=5, report=f"{OUT}/stop.json")
    r = {"dialog": run("python-fu-simpson-select-object", image)}
    r["report"] = json.load(open(f"{OUT}/stop.json"))
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 30, 30)
    image.clean_all()
    r["timeout"] = run("python-fu-simpson-erase-selection", image, Gimp.RunMode.NONINTERACTIVE)
    r["timeout"]["layers"] = [lay.get_name() for lay in image.get_layers()]
    r["timeout"]["dirty"] = image.is_dirty()
    close(image, display)
    return r


with open(f"{OUT}/results.json", "w") as f:
    json.dump(results, f, indent=1)
print("simpson-batch-gui: wrote", f"{OUT}/results.json", flush=True)
