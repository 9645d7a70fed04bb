"""The GIMP 3 plug-in in the real GIMP 3.0 (in the editors root).

One gimp-console start runs every procedure against a real daemon on the host (gimp_batch.py,
cases "ok"); a second runs the failure cases with no daemon reachable; a third, the GIMP GUI
under xvfb-run, drives the interactive dialogs through gimp_dialog_driver.py (copied into the
test profile's plug-in as its test hook) and takes screenshots (gimp_batch_gui.py). Outputs are
PNG exports, raw dumps and results.json, checked with numpy.
SIMPSON_DOCS_SCREENSHOTS=1 also copies the screenshots to docs/gimp-dialog.png, docs/gimp-window.png
and docs/gimp-error.png.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, disc_centres, free_port, scene

ROOT = Path(os.environ.get("EDITORS_ROOT", Path.home() / ".cache/simpson-editors/root"))
TOOLS = REPO / "tools" / "editors"
BATCH = Path(__file__).with_name("gimp_batch.py")
BATCH_GUI = Path(__file__).with_name("gimp_batch_gui.py")
DIALOG_DRIVER = Path(__file__).with_name("gimp_dialog_driver.py")
SAMPLE = REPO / "samples" / "beach.jpg"
W, H, R = 320, 240, 18          # scene size and disc radius

pytestmark = [
    pytest.mark.editors,
    pytest.mark.skipif(not (ROOT / ".simpson-editors-ok").exists() or os.geteuid() != 0,
                       reason=f"no GIMP 3 editors root at {ROOT} (or not root): run tools/editors/build-root.sh"),
]


def gimp_home() -> str:
    """HOME inside the root, one per xdist worker (GIMP profiles must not be shared)."""
    return f"/home/pytest-gimp-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory) -> str:
    """Install the plug-in into the test profile exactly as users get it: install.py --plugins-only."""
    home = gimp_home()
    plugins = ROOT / home.lstrip("/") / ".config/GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SIMPSON_HOME=str(tmp_path_factory.mktemp("install-home")))
    r = subprocess.run([sys.executable, "install.py", "--plugins-only", "--gimp-dir", str(plugins), "--no-krita"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    main = plugins / "simpson-erase" / "simpson-erase.py"
    assert os.access(main, os.X_OK) and (plugins / "simpson-erase/simpson_client/client.py").exists()
    # the dialog's test driver, which users never get: the dialog imports it by this name when present
    shutil.copy(DIALOG_DRIVER, plugins / "simpson-erase" / "simpson_erase_test_hook.py")
    return home


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """scene.png (8-bit RGB), scene16.png (16-bit RGBA with odd low bits and some alpha), scene.json."""
    import cv2
    d = tmp_path_factory.mktemp("gimp-in")
    px = scene()
    assert cv2.imwrite(str(d / "scene.png"), cv2.cvtColor(px, cv2.COLOR_RGBA2BGR))
    assert cv2.imwrite(str(d / "scene16.png"), cv2.cvtColor(scene16(px), cv2.COLOR_RGBA2BGRA))
    (d / "scene.json").write_text(json.dumps({"centres": disc_centres(W, H)}))
    return d


def scene16(px: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(3)
    p16 = (px.astype(np.uint16) * 257) ^ rng.integers(0, 64, px.shape).astype(np.uint16)
    p16[..., 3] = 65535
    p16[:20, :20, 3] = 30000
    return p16


def run_gimp(cases: str, inputs: Path, out: Path, home: str, **env: str) -> tuple[dict, str]:
    """cases "ok"/"errors": gimp-console + gimp_batch.py; "gui": gimp-3.0 under xvfb-run + gimp_batch_gui.py."""
    out.mkdir(parents=True, exist_ok=True)
    host = {k: v for k, v in os.environ.items() if not k.startswith("SIMPSON_")}   # only what we pass below
    env = dict(host, SIMPSON_IN=str(inputs), SIMPSON_OUT=str(out), SIMPSON_CASES=cases, EDITORS_HOME=home,
               EDITORS_BINDS=f"{inputs} {out} {BATCH.parent} {SAMPLE.parent if SAMPLE.exists() else ''}",
               SIMPSON_GIMP_DIALOG_TEST=str(out / "dialog.json"), SIMPSON_SAMPLE=str(SAMPLE),
               IN_ROOT_ENV="SIMPSON_IN SIMPSON_OUT SIMPSON_CASES SIMPSON_ENDPOINT SIMPSON_HOME "
                           "SIMPSON_GIMP_DIALOG_TEST SIMPSON_SAMPLE SIMPSON_SLOW_ENDPOINT", **env)
    if cases == "gui":
        batch = BATCH_GUI
        profile = ROOT / home.lstrip("/") / ".config/GIMP/3.0"
        (profile / "gimprc").write_text("(show-welcome-dialog no)\n")
        gimp = ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", "gimp-3.0", "--no-splash"]
    else:
        batch = BATCH
        gimp = ["gimp-console-3.0", "-i", "--no-data", "--no-fonts"]
    cmd = [str(TOOLS / "in-root.sh"), *gimp, "--batch-interpreter", "python-fu-eval",
           "-b", f"exec(open({str(batch)!r}).read())", "--quit"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace", timeout=300)
    log = r.stdout + r.stderr
    assert r.returncode == 0 and (out / "results.json").exists(), log[-5000:]
    results = json.loads((out / "results.json").read_text())
    for name, res in results.items():
        assert "error" not in res, f"{name}:\n{res['error']}\n{log[-3000:]}"
    return results, log


@pytest.fixture(scope="module")
def ok_run(daemon, inputs, plugin_installed, tmp_path_factory):
    out = tmp_path_factory.mktemp("gimp-out")
    results, log = run_gimp("ok", inputs, out, plugin_installed, SIMPSON_ENDPOINT=daemon.endpoint,
                            SIMPSON_HOME=str(daemon.home))
    return results, out, log


@pytest.fixture(scope="module")
def error_run(inputs, plugin_installed, tmp_path_factory):
    """No daemon on the endpoint and no backend recorded by install.py: autostart is impossible."""
    out = tmp_path_factory.mktemp("gimp-err")
    results, log = run_gimp("errors", inputs, out, plugin_installed, SIMPSON_ENDPOINT=f"tcp://127.0.0.1:{free_port()}",
                            SIMPSON_HOME=str(tmp_path_factory.mktemp("empty-home")))
    return results, out, log


@pytest.fixture(scope="module")
def slow_daemon():
    pytest.importorskip("zmq", reason="the slow fake daemon needs pyzmq on the host")
    from gimp_slow_daemon import SlowDaemon
    d = SlowDaemon(free_port())
    yield d
    d.stop()


@pytest.fixture(scope="module")
def gui_run(daemon, slow_daemon, inputs, plugin_installed, tmp_path_factory):
    """The GUI run switches daemons through SIMPSON_HOME/config.json (no SIMPSON_ENDPOINT here)."""
    out = tmp_path_factory.mktemp("gimp-gui")
    home = tmp_path_factory.mktemp("gui-home")
    (home / "config.json").write_text(json.dumps({"endpoint": daemon.endpoint, "autostart": False}))
    results, log = run_gimp("gui", inputs, out, plugin_installed, SIMPSON_HOME=str(home),
                            SIMPSON_SLOW_ENDPOINT=slow_daemon.endpoint)
    if os.environ.get("SIMPSON_DOCS_SCREENSHOTS") == "1" and (out / "gimp-dialog.png").exists():
        for name, colours in (("gimp-dialog.png", 0), ("gimp-window.png", 256), ("gimp-error.png", 256)):
            docs_png(out / name, REPO / "docs" / name, colours)
    return results, out, log


def docs_png(src: Path, dst: Path, colours: int) -> None:
    """A screenshot for the docs: without the empty (black) rest of the Xvfb screen; colours > 0 quantizes."""
    from PIL import Image as PILImage
    img = png(src)[..., 2::-1]
    ys, xs = np.nonzero(img.max(axis=2) > 0)
    crop = PILImage.fromarray(np.ascontiguousarray(img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
    (crop.quantize(colours, method=PILImage.Quantize.FASTOCTREE) if colours else crop).save(dst, optimize=True)


# ---------- helpers ----------

def png(path: Path) -> np.ndarray:
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def raw(out: Path, name: str, info: dict, dtype=np.uint8, channels: int = 4) -> np.ndarray:
    return np.fromfile(out / f"{name}.raw", dtype).reshape(info["height"], info["width"], channels)


def disc(cx: float, cy: float, w: int = W, h: int = H, r: float = R) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


def looks_erased(px: np.ndarray, region: np.ndarray) -> None:
    """No red disc left: the region is now greenish like the background."""
    r, g = px[..., 0][region].astype(float).mean(), px[..., 1][region].astype(float).mean()
    assert g > r, (r, g)


# ---------- tests ----------

def test_menu_entries(ok_run):
    menus = ok_run[0]["eight_bit"]["menus"]
    assert {label for label, _ in menus.values()} == {
        "Select _Object...", "Select Object at _Points", "Select _Similar", "_Erase Selection", "Erase O_bject..."}
    assert all(paths == ["<Image>/Filters/SimpSON Erase"] for _, paths in menus.values()), menus


def test_select_at_sample_point(ok_run):
    results, out, _ = ok_run
    assert results["eight_bit"]["select"]["status"] == "success", results["eight_bit"]
    sel = png(out / "sel8.png") > 127
    assert iou(sel, disc(*disc_centres(W, H)[0])) > 0.8


def test_select_similar_grows_to_every_disc(ok_run):
    results, out, _ = ok_run
    assert results["eight_bit"]["similar"]["status"] == "success"
    sel = png(out / "similar8.png") > 127
    discs = np.zeros((H, W), bool)
    for c in disc_centres(W, H):
        assert (sel & disc(*c)).sum() > 0.8 * disc(*c).sum(), c
        discs |= disc(*c, r=R + 3)
    assert (sel & ~discs).sum() < 0.02 * sel.sum()       # the blue square and the grass stay out


def test_select_similar_from_points(ok_run):
    results, out, _ = ok_run
    assert results["similar_from_points"]["status"] == "success", results["similar_from_points"]
    sel = png(out / "similar_points.png") > 127
    for c in disc_centres(W, H):
        assert (sel & disc(*c)).sum() > 0.8 * disc(*c).sum(), c


def test_select_similar_likeness_argument(ok_run):
    results, out, _ = ok_run
    assert results["similar_strict"]["status"] == "success", results["similar_strict"]
    sel = png(out / "similar_strict.png") > 127
    c = disc_centres(W, H)
    assert (sel & disc(*c[2])).sum() > 0.8 * disc(*c[2]).sum()
    for k in (0, 1, 3):
        assert (sel & disc(*c[k])).sum() < 0.05 * disc(*c[k]).sum(), k


def test_select_object_with_points_and_operation(ok_run):
    results, out, _ = ok_run
    assert results["eight_bit"]["subtract"]["status"] == "success"
    sel = png(out / "subtract8.png") > 127
    c = disc_centres(W, H)
    assert (sel & disc(*c[1])).sum() < 0.1 * disc(*c[1]).sum()        # subtracted from Select Similar's
    for k in (0, 2, 3):
        assert (sel & disc(*c[k])).sum() > 0.8 * disc(*c[k]).sum()


def test_erase_selection_new_layer_above(ok_run, inputs):
    results, out, _ = ok_run
    r = results["eight_bit"]
    assert r["erase"]["status"] == "success"
    assert r["after"] == ["Background (erased)", "Background"] and r["dirty"]
    src = png(inputs / "scene.png")[..., ::-1]                     # RGB
    orig = raw(out, "orig8", r["original"])
    new = raw(out, "erase8", r["result"])
    assert np.array_equal(orig[..., :3], src)                      # the active layer is untouched
    cx, cy = disc_centres(W, H)[0]
    hole = disc(cx, cy, r=21 + 11)                                 # the 42-px ellipse, grown by the auto rule (3 % + 8 px)
    assert np.array_equal(new[~hole], orig[~hole])                 # every other pixel exactly as before
    looks_erased(new, disc(cx, cy))
    exported = png(out / "erase8.png")                             # GIMP's PNG export of the new layer
    assert np.array_equal(exported[..., 2::-1], new[..., :3])


def test_layer_offsets_and_path_anchor(ok_run):
    results, out, _ = ok_run
    r = results["offsets"]
    assert r["erase"]["status"] == "success", r
    assert r["after"] == ["scene.png (erased)", "scene.png", "Background"]
    assert (r["result"]["x"], r["result"]["y"]) == (-25, 21) and r["result"]["alpha"]
    cx, cy = disc_centres(W, H)[1]
    sel = png(out / "sel_offsets.png") > 127                        # selection is in image pixels
    assert sel.shape == (300, 400)
    assert iou(sel, disc(cx - 25, cy + 21, 400, 300)) > 0.8
    assert not sel[:, 295:].any()                                  # nothing beyond the layer's right edge
    orig, new = raw(out, "orig_offsets", r["original"]), raw(out, "erase_offsets", r["result"])
    hole = disc(cx, cy, r=R + 12)
    assert np.array_equal(new[~hole], orig[~hole])
    looks_erased(new, disc(cx, cy))


def test_sixteen_bit_points_argument(ok_run, inputs):
    results, out, _ = ok_run
    r = results["sixteen_bit"]
    assert r["precision"] == "u16-non-linear" and r["erase"]["status"] == "success", r
    cx, cy = disc_centres(W, H)[2]
    sel = png(out / "sel16.png") > 127
    assert iou(sel, disc(cx, cy)) > 0.8
    orig, new = raw(out, "orig16", r["original"], "<u2"), raw(out, "erase16", r["result"], "<u2")
    assert np.array_equal(orig, scene16(scene()))                   # 16 bits in, all 16 bits kept
    hole = disc(cx, cy, r=R + 4 + 4)                                # dilation=4 was passed
    assert np.array_equal(new[~hole], orig[~hole])
    assert np.array_equal(new[..., 3], orig[..., 3])                # alpha kept
    looks_erased(new, disc(cx, cy))


def test_float_linear_precision(ok_run):
    results, out, _ = ok_run
    r = results["float_linear"]
    assert r["precision"] == "float-linear" and r["erase"]["status"] == "success", r
    orig, new = raw(out, "orig_float", r["original"], "<f4"), raw(out, "erase_float", r["result"], "<f4")
    cx, cy = disc_centres(W, H)[3]
    hole = disc(cx, cy, r=R + 12)
    assert np.array_equal(new[~hole], orig[~hole])                   # bit-exact floats outside
    looks_erased(new, disc(cx, cy))


def test_grey_image_with_alpha(ok_run):
    results, out, _ = ok_run
    r = results["gray"]
    assert r["base"] == "gray" and r["erase"]["status"] == "success", r
    cx, cy = disc_centres(W, H)[0]
    assert iou(png(out / "sel_gray.png") > 127, disc(cx, cy)) > 0.8
    orig, new = raw(out, "orig_gray", r["original"], channels=2), raw(out, "erase_gray", r["result"], channels=2)
    hole = disc(cx, cy, r=R + 12)
    assert np.array_equal(new[~hole], orig[~hole])
    inside, ring = new[..., 0][disc(cx, cy)].mean(), orig[..., 0][disc(cx, cy, r=R + 20) & ~hole].mean()
    assert abs(inside - ring) < 12, (inside, ring)                   # filled like the grass around


def test_one_undo_group_per_action(ok_run):
    _, _, log = ok_run
    # GIMP closes undo groups a plug-in left open and says so; it also warns about stray images.
    assert "inconsistent state" not in log and "stray image" not in log, log[-3000:]


def test_no_daemon_fails_with_one_sentence_and_changes_nothing(error_run):
    results, _, log = error_run
    for key in ("select", "erase"):
        r = results["no_daemon"][key]
        assert r["status"] == "execution-error", r
        assert r["message"].startswith("The SimpSON backend is not installed."), r
        assert r["message"].count(". ") <= 1 and "\n" not in r["message"]
        assert r["unchanged"], r


def test_too_large_and_no_points_are_explained(error_run):
    results, _, _ = error_run
    big = results["too_large"]
    assert big["status"] == "execution-error" and "megapixels" in big["message"] and big["unchanged"], big
    nopts = results["no_points"]
    assert nopts["status"] == "execution-error" and "sample point" in nopts["message"] and nopts["unchanged"], nopts


def test_dialog_clicks_set_the_selection(gui_run):
    results, out, _ = gui_run
    r = results["select_dialog"]
    assert r["status"] == "success" and r["layers"] == ["Background"], r
    sel = np.fromfile(out / "gui_select.raw", np.uint8).reshape(H, W) > 127
    c = disc_centres(W, H)
    assert iou(sel, disc(*c[0]) | disc(*c[3])) > 0.8          # click + shift-click: two discs
    shot = png(out / "dialog-scene.png")
    assert shot.shape[0] > H and shot.shape[1] > W and shot.std() > 10   # the dialog, drawn


def test_dialog_cancel_changes_nothing(gui_run):
    results, out, _ = gui_run
    assert results["select_dialog"]["cancel"]["status"] == "cancel"
    before = np.fromfile(out / "gui_select.raw", np.uint8)
    assert np.array_equal(np.fromfile(out / "gui_after_cancel.raw", np.uint8), before)


def test_erase_object_dialog(gui_run, inputs):
    results, out, _ = gui_run
    r = results["erase_dialog"]
    assert r["status"] == "success" and r["layers"] == ["Background (erased)", "Background"], r
    new = np.fromfile(out / "gui_erase.raw", np.uint8).reshape(H, W, 4)
    src = png(inputs / "scene.png")[..., ::-1]
    cx, cy = disc_centres(W, H)[1]
    hole = disc(cx, cy, r=R + 10)
    assert np.array_equal(new[..., :3][~hole], src[~hole])
    looks_erased(new, disc(cx, cy))
    sel = np.fromfile(out / "gui_erase_sel.raw", np.uint8).reshape(H, W) > 127
    assert iou(sel, disc(cx, cy)) > 0.8


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"no sample photo at {SAMPLE}")
def test_dialog_on_the_sample_photo(gui_run):
    results, out, _ = gui_run
    r = results["docs_screenshots"]
    assert all(v["status"] == "success" for v in r.values()), r
    assert png(out / "gimp-dialog.png").std() > 20 and png(out / "gimp-window.png").std() > 20


def test_dialog_stays_responsive_and_stop_cancels(gui_run, slow_daemon):
    results, _, _ = gui_run
    r = results["slow_backend"]
    assert r["dialog"]["status"] == "cancel", r
    report = r["report"]
    assert report["busy_ticks"] >= 5                     # the dialog's main loop ran while it waited
    assert "Thinking slowly" in report["messages"]       # the backend's progress reached the dialog
    assert report["status"].startswith("Stopped") and not report["has_mask"], report
    assert slow_daemon.cancelled.is_set()                # Stop sent a cancel to the backend


def test_timeout_is_one_sentence_and_changes_nothing(gui_run):
    results, _, _ = gui_run
    r = results["slow_backend"]["timeout"]
    assert r["status"] == "execution-error" and "did not answer within 2 s" in r["message"], r
    assert r["layers"] == ["Background"] and not r["dirty"]


def test_interactive_error_is_one_sentence(gui_run):
    r = gui_run[0]["error_message"]
    assert r == {"status": "execution-error",
                 "message": "Nothing is selected on the active layer: select what to erase first."}
