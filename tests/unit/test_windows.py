"""backend/windows.py: the one-click window policy, without the network."""
import numpy as np

from backend import windows
from backend.models.window import Window


def test_window_for_fills_target_and_snaps_to_the_grid():
    win = windows.window_for((440.0, 355.0, 560.0, 445.0), [(500.0, 400.0)], 1000, 800)
    assert win == Window(400, 304, 192)          # sqrt(120 * 90 / 0.3) = 190 -> 192; centre (496, 400) on 8 px
    assert windows.window_for((0.0, 0.0, 950.0, 780.0), [], 1000, 800) is None   # about the whole image


def test_first_window_prefers_the_previous_mask_then_the_size_then_the_coarse_pass():
    prev = np.zeros((800, 1000), np.uint8)
    prev[100:200, 100:200] = 255
    calls = []
    coarse = lambda: calls.append("coarse") or (0.0, 0.0, 999.0, 799.0)   # noqa: E731
    win = windows.first_window([(150.0, 150.0)], 1000, 800, prev=prev, size=None, coarse_box=coarse, probe=None)
    assert win.x0 <= 100 and win.x0 + win.side >= 200 and not calls
    win = windows.first_window([(150.0, 150.0)], 1000, 800, prev=None, size=(120, 90), coarse_box=coarse, probe=None)
    assert win.side == 192 and not calls
    win = windows.first_window([(150.0, 150.0)], 1000, 800, prev=None, size=None, coarse_box=coarse, probe=None)
    assert calls == ["coarse"] and win.side == 160   # huge object: the 15 % probe window (150 -> 160)


def test_better_window_grows_on_an_inside_edge_and_zooms_in_on_a_small_fill():
    win = Window(400, 300, 320)
    m = np.zeros((160, 160), bool)
    m[40:120, 0:80] = True                       # runs into the left edge, inside the image
    assert windows.better_window(m, win, [(450.0, 450.0)], 2000, 1500).side == 640
    m[:] = False
    m[78:82, 78:82] = True                       # fills far less than TARGET_FILL / 4
    small = windows.better_window(m, win, [(560.0, 460.0)], 2000, 1500)
    assert small.side == windows.MIN_WINDOW and small.x0 <= 560 < small.x0 + small.side
    m[40:120, 40:120] = True                     # fills enough: keep the window
    assert windows.better_window(m, win, [(560.0, 460.0)], 2000, 1500) is None


def test_a_wider_window_keeps_the_centre_and_falls_back_to_the_whole_image():
    from backend.models.window import Window
    from backend.windows import wider_window
    wide = wider_window(Window(496, 496, 96), 2.0, 4000, 3000)
    assert wide == Window(448, 448, 192)
    assert wider_window(Window(0, 0, 2000), 2.0, 4000, 3000) is None
