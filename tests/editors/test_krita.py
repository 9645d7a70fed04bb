"""SimpSON Erase in the real Krita 5.2 (trixie root, Xvfb): one Krita start, many checks.

The plug-in is installed as install.py does into a test profile inside the root; a real daemon
runs on the host on a free loopback port (SIMPSON_ENDPOINT). krita_driver.py runs inside Krita:
it clicks a disc with the one-click tool on a zoomed, rotated, mirrored view (and with Shift and
Alt), runs Select Similar, undo/redo, Erase, the tool's shortcut and Esc, a 16-bit document whose
layer is moved, and a greyscale document; these tests check what it wrote.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import krita_harness  # noqa: E402

from backend import device  # noqa: E402
from tests.conftest import Daemon, disc_centres, free_port, scene  # noqa: E402

pytestmark = [pytest.mark.editors, pytest.mark.slow,
              pytest.mark.skipif(krita_harness.unavailable_reason() is not None,
                                 reason=str(krita_harness.unavailable_reason()))]

W, H, R = 320, 240, 18
OFFSET = (12, 8)                       # the 16-bit document's layer is moved by this much (driver)
RED_DISC = (220, 40, 40)


def disc(cx: int, cy: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx - dx) ** 2 + (yy - cy - dy) ** 2 <= R * R


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


@pytest.fixture(scope="module")
def krita(tmp_path_factory):
    """Runs Krita once; -> (out dir, report dict, original RGBA)."""
    import cv2
    tmp = tmp_path_factory.mktemp("krita")
    rgba = scene(W, H)
    image = tmp / "scene.png"
    assert cv2.imwrite(str(image), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    daemon = Daemon(tmp / "simpson-home")
    try:
        krita_harness.install_plugin(tmp / "install-home")
        env = {"SIMPSON_TEST_DISCS": json.dumps(disc_centres(W, H)), "QT_SCALE_FACTOR": "1.5"}   # HiDPI, fractional
        binds = krita_harness.autostart_binds()
        if binds is not None:                     # last step: the plug-in starts its own daemon from config.json
            krita_harness.write_autostart_config(free_port())
            env["SIMPSON_TEST_AUTOSTART"] = "1"
        out = tmp / "out"
        res = krita_harness.run_krita(image, out, daemon.endpoint, extra_env=env, binds=binds or [])
    finally:
        daemon.stop()
    status = (out / "krita-status.txt").read_text() if (out / "krita-status.txt").exists() else "no status file"
    log = (res.stdout + res.stderr)[-4000:]
    assert status.startswith("OK"), f"driver: {status}\nkrita exit {res.returncode}:\n{log}"
    report = json.loads((out / "report.json").read_text())
    return out, report, rgba


def selection(out: Path, name: str) -> np.ndarray:
    return np.fromfile(out / f"sel-{name}.u8", np.uint8).reshape(H, W) > 127


def test_plugin_loads_with_menus_shortcuts_docker(krita):
    _, report, _ = krita
    assert report["docker"], "the SimpSON Erase docker is missing"
    assert report["backend"].startswith("Backend: ready"), report["backend"]
    # the device the test daemon's info reports (backend/device.py), as simpson_client.status words it
    assert report["backend"].startswith(f"Backend: ready on {device.choose('auto').device} ("), report["backend"]
    assert report["menus"] == {"simpson_erase_tool": ["Select", "Ctrl+Alt+O"],
                               "simpson_erase_similar": ["Select", "Ctrl+Alt+M"],
                               "simpson_erase_erase": ["Layer", "Ctrl+Alt+E"]}
    assert report["tool_after_shortcut"] is True and report["tool_after_shortcut_esc"] is False
    assert report["tool_after_esc"] is False


def test_click_maps_to_the_right_pixel_on_a_rotated_mirrored_zoomed_view(krita):
    out, report, _ = krita
    assert report["view"]["rotation"] != 0 and report["view"]["mirror"] and report["view"]["zoom"] != 1
    (c0, c1) = disc_centres(W, H)[:2]
    assert iou(selection(out, "wand"), disc(*c0)) > 0.9      # the click recipe itself, with Krita's own tool
    assert iou(selection(out, "click"), disc(*c0)) > 0.9
    assert iou(selection(out, "shift"), disc(*c0) | disc(*c1)) > 0.9
    assert iou(selection(out, "alt"), disc(*c0)) > 0.9
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["click"]["message"].startswith("Selected the object at"), steps["click"]
    for name in ("shift", "alt"):   # the tool's own selection: sent with its clicks, refined by the backend
        assert steps[name]["message"].startswith("Refined the selection at"), steps[name]


def test_select_similar_and_undo_redo(krita):
    out, report, _ = krita
    discs = np.zeros((H, W), bool)
    for c in disc_centres(W, H):
        discs |= disc(*c)
    similar = selection(out, "similar")
    assert iou(similar, discs) > 0.9
    square = np.zeros((H, W), bool)
    square[int(H * 0.75):int(H * 0.75) + 30, int(W * 0.45):int(W * 0.45) + 30] = True
    assert (similar & square).sum() < 0.01 * square.sum(), "the blue square was selected"
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["similar"]["undo"] == "Undo Select Opaque"   # one undo step, no temporary layers in the history
    assert iou(selection(out, "undo"), disc(*disc_centres(W, H)[0])) > 0.9
    assert iou(selection(out, "redo"), discs) > 0.9
    assert report["layers_after_clicks"] == ["Background", "Selection Mask"]


def test_likeness_option_reaches_select_similar(krita):
    out, report, _ = krita
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["similar_strict"]["message"].startswith("Selected 1 matching object "), steps["similar_strict"]
    assert iou(selection(out, "similar_strict"), disc(*disc_centres(W, H)[0])) > 0.9


def test_erase_makes_a_layer_above_with_the_discs_gone(krita):
    out, report, rgba = krita
    assert report["active_before_erase"] == "Background"
    assert [n for n in report["layers"] if n != "Selection Mask"] == ["Background", "SimpSON Erase", "Top"]
    assert report["active_after_erase"] == "SimpSON Erase"
    erased = np.fromfile(out / "erased.bgra", np.uint8).reshape(H, W, 4)[..., [2, 1, 0, 3]]
    _check_erased(erased.astype(np.int32), rgba.astype(np.int32), (0, 0), scale=1)


def test_16_bit_document_with_a_moved_layer(krita):
    out, report, rgba = krita
    assert report["layer16"]["depth"] == "U16" and report["layer16"]["position"] == list(OFFSET)
    c2 = disc_centres(W, H)[2]
    assert iou(selection(out, "click16"), disc(*c2, *OFFSET)) > 0.9
    assert report["layers16"] == ["Background", "SimpSON Erase", "Selection Mask"]
    assert report["erased16_depth"] == "U16"
    erased = np.fromfile(out / "erased16.bgra", "<u2").reshape(H, W, 4)[..., [2, 1, 0, 3]].astype(np.int32)
    shifted = np.full(rgba.shape, 65535, np.int32)     # the layer's default pixel (white) shows where it moved away
    shifted[OFFSET[1]:, OFFSET[0]:] = rgba[:H - OFFSET[1], :W - OFFSET[0]].astype(np.int32) * 257
    _check_erased(erased, shifted, OFFSET, scale=257, only=[2])


def test_the_click_tool_reads_an_unchanged_layer_once(krita):
    """The Shift-click gets the first click's pixels back (no second hash); Esc lets them go. The layer
    travels as Krita's BGRA bytes, unswapped (the erase tests check the colours that come back)."""
    _, report, _ = krita
    assert report["tool_layer"] == {"kept": True, "reused": True, "hashed": True, "format": "bgra8", "as_read": True,
                                    "after_esc": True}, report["tool_layer"]


def test_requests_run_off_the_gui_thread_with_progress_and_cancel(krita):
    _, report, _ = krita
    r = report["responsive"]
    assert r["busy"] and r["cancel_enabled"] and r["progress"] > 0, r
    assert r["ticks_in_1.5s"] > 30, f"the GUI thread was blocked: {r}"
    c = report["cancel"]
    assert c == {"outcome": ["Cancelled."], "cancel_enabled": False, "busy": False}, c


def test_the_plugin_starts_the_daemon_on_demand(krita):
    out, report, _ = krita
    if "autostart" not in report:
        pytest.skip("this interpreter is the system Python: it cannot run the backend inside the editors root")
    a = report["autostart"]
    assert a["endpoint_env"] is None and a["config_endpoint"] != a["test_daemon"]
    assert a["message"].startswith("Selected the object"), a
    assert a["backend"].startswith("Backend: ready"), a
    c3 = disc_centres(W, H)[3]
    assert iou(selection(out, "autostart"), disc(*c3, *OFFSET)) > 0.9


def test_other_colour_spaces_get_a_clear_message(krita):
    _, report, _ = krita
    assert "8- and 16-bit" in report["grey_message"] and "GRAYA" in report["grey_message"]
    assert report["grey_layers"] == ["Background"]


def _check_erased(erased: np.ndarray, original: np.ndarray, offset: tuple[int, int], scale: int,
                  only: list[int] | None = None) -> None:
    """Selected discs hold no red any more; pixels well away from every disc are unchanged."""
    near = np.zeros((H, W), bool)
    for i, c in enumerate(disc_centres(W, H)):
        yy, xx = np.mgrid[:H, :W]
        near |= (xx - c[0] - offset[0]) ** 2 + (yy - c[1] - offset[1]) ** 2 <= (R + 45) ** 2
        if only is None or i in only:
            inside = disc(*c, *offset)
            red = (erased[..., 0] > 150 * scale) & (erased[..., 1] < 100 * scale) & inside
            assert red.sum() < 0.02 * inside.sum(), f"disc {i} is still red ({red.sum()} px)"
    far = ~near
    assert np.array_equal(erased[far], original[far]), "pixels away from the discs changed"
