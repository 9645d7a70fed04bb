"""The built-in erase engine and the pipeline's erase invariants with it."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("patchmatch", reason="PyPatchMatch is not installed")

from backend import engines  # noqa: E402
from backend.engines.builtin import BuiltinEngine  # noqa: E402
from backend.erase_maths import grow_hole  # noqa: E402
from backend.pipeline import Pipeline, hole_to_fill  # noqa: E402


def no_progress(f: float, m: str) -> None:
    pass


def stripes(h: int = 160, w: int = 200) -> np.ndarray:
    """Vertical stripes 8 px wide in two colours plus a gentle gradient: easy to continue."""
    x = np.arange(w)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.where((x // 8) % 2 == 0, 200, 60)[None, :]
    rgb[..., 1] = np.linspace(40, 120, h, dtype=np.uint8)[:, None]
    rgb[..., 2] = 90
    return rgb


def magenta_box(rgb: np.ndarray, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """A rectangular hole and the photo with it painted magenta (what a fill must not keep)."""
    hole = np.zeros(rgb.shape[:2], bool)
    hole[rows, cols] = True
    damaged = rgb.copy()
    damaged[hole] = (255, 0, 255)
    return hole, damaged


def test_status_and_default():
    assert BuiltinEngine().status() == "ready"
    chosen = engines.choose("erase", None)
    assert chosen.name in ("builtin", "lama")     # lama only where its weights are installed
    assert engines.choose("erase", "builtin").name == "builtin"


def test_fills_only_the_hole_and_continues_texture():
    rgb = stripes()
    hole, damaged = magenta_box(rgb, slice(60, 100), slice(80, 130))
    out = BuiltinEngine().erase(damaged, hole, no_progress)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], damaged[~hole])
    err = np.abs(out[hole].astype(int) - rgb[hole]).mean()
    assert err < 25          # the magenta is gone and the stripes and gradient go on
    assert not (out[hole] == (255, 0, 255)).all(-1).any()


@pytest.mark.parametrize("shape", [(5, 7), (12, 9), (40, 40)])
def test_degenerate_crops(shape):
    rgb = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    engine = BuiltinEngine()
    full = np.ones(shape, bool)
    assert engine.erase(rgb, full, no_progress).shape == rgb.shape
    empty = np.zeros(shape, bool)
    assert np.array_equal(engine.erase(rgb, empty, no_progress), rgb)
    one = np.zeros(shape, bool)
    one[shape[0] // 2, shape[1] // 2] = True
    out = engine.erase(rgb, one, no_progress)
    assert np.array_equal(out[~one], rgb[~one])


def test_same_fill_whatever_runs_beside_it():
    """Passes run on threads; the native random generator is per thread, so concurrent fills
    (two requests at once) give exactly what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor
    rgb = stripes()
    holes = [np.zeros(rgb.shape[:2], bool) for _ in range(2)]
    holes[0][60:100, 80:130] = True
    holes[1][20:70, 30:60] = True
    engine = BuiltinEngine()
    alone = [engine.erase(rgb, h, no_progress) for h in holes]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda h: engine.erase(rgb, h, no_progress), holes * 2))
    assert all(np.array_equal(t, alone[i % 2]) for i, t in enumerate(together))


def test_cancel_between_passes():
    class Stop(Exception):
        pass

    def progress(f: float, m: str) -> None:
        raise Stop

    hole = np.zeros((64, 64), bool)
    hole[20:40, 20:40] = True
    with pytest.raises(Stop):
        BuiltinEngine().erase(stripes(64, 64), hole, progress)


def test_crops_of_one_erase_filled_together_as_one_by_one():
    """The built-in engine fills the crops of one request at the same time: the same pixels as
    one by one, progress only on the caller's thread, and a cancel there stops the request."""
    import threading
    from backend.engines import Engine
    rgb = stripes()
    holes = [np.zeros(rgb.shape[:2], bool) for _ in range(3)]
    holes[0][60:100, 80:130] = True
    holes[1][20:70, 30:60] = True
    holes[2][10:30, 150:190] = True
    crops = [(rgb, h) for h in holes]
    engine = BuiltinEngine()
    caller, threads = threading.get_ident(), set()

    def progress(f: float, m: str) -> None:
        threads.add(threading.get_ident())
    together = engine.erase_many(crops, progress)
    one_by_one = Engine.erase_many(engine, crops, no_progress)
    assert len(together) == 3 and all(np.array_equal(a, b) for a, b in zip(together, one_by_one))
    assert threads == {caller}

    class Stop(Exception):
        pass

    def cancel(f: float, m: str) -> None:
        raise Stop
    with pytest.raises(Stop):
        engine.erase_many(crops, cancel)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_pipeline_changes_only_the_grown_hole(dtype):
    top = np.iinfo(dtype).max
    rgb = stripes(300, 400)
    pixels = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]).astype(dtype) * (top // 255)
    pixels[..., 3] = top // 2
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[100:140, 150:200] = 255
    mask[250:270, 30:50] = 255                       # a second, far hole: its own region
    pipe = Pipeline()
    (x, y, w, h), patch, name = pipe.erase(pipe.entry(pixels), mask, "builtin")
    assert name == "builtin" and patch.dtype == dtype
    out = pixels.copy()
    out[y:y + h, x:x + w] = patch
    grown = hole_to_fill(rgb, mask > 127, None)
    assert np.array_equal(out[~grown], pixels[~grown])
    assert np.array_equal(out[..., 3], pixels[..., 3])
    assert not np.array_equal(out[grown], pixels[grown])


def test_soft_edges_go_with_auto_dilation():
    """A soft halo one pixel outside the mask is inside the grown hole and gets replaced."""
    rgb = stripes(200, 200)
    mask = np.zeros((200, 200), bool)
    mask[80:120, 80:120] = True
    halo = grow_hole(mask, 2) & ~mask
    photo = rgb.copy()
    photo[mask] = (0, 0, 0)
    photo[halo] = (128, 0, 128)
    pixels = np.dstack([photo, np.full((200, 200), 255, np.uint8)])
    pipe = Pipeline()
    (x, y, w, h), patch, _ = pipe.erase(pipe.entry(pixels), mask.view(np.uint8) * 255, "builtin")
    out = photo.copy()
    out[y:y + h, x:x + w] = patch[..., :3]
    assert np.abs(out[halo].astype(int) - rgb[halo]).mean() < 30


def grain(h: int = 200, w: int = 240) -> np.ndarray:
    """Fine texture (gravel-like noise over a soft gradient): what a smear would lose."""
    rng = np.random.default_rng(3)
    base = np.linspace(70, 150, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    noise = rng.normal(0, 28, (h, w, 1)).astype(np.float32)
    return np.clip(base + noise * np.array([1.0, 0.9, 0.8], np.float32), 0, 255).astype(np.uint8)


def laplacian_energy(rgb: np.ndarray, where: np.ndarray) -> float:
    import cv2
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[where].mean())


def test_fill_keeps_fine_texture_and_the_light():
    """The fill copies texture (no smear: fine detail within 0.7-1.4 of the truth's) and its
    colour follows the background's gradient (the low-frequency correction)."""
    rgb = grain()
    hole, damaged = magenta_box(rgb, slice(60, 140), slice(80, 170))
    out = BuiltinEngine().erase(damaged, hole, no_progress)
    inner = np.zeros_like(hole)
    inner[64:136, 84:166] = True            # away from the edge's known pixels
    ratio = laplacian_energy(out, inner) / laplacian_energy(rgb, inner)
    assert 0.7 <= ratio <= 1.4, ratio
    # column means follow the gradient: the fill's brightness is the background's, not a copy's
    cols = out[60:140, 80:170].astype(np.float32).mean((0, 2))
    truth = rgb[60:140, 80:170].astype(np.float32).mean((0, 2))
    assert np.abs(cols - truth).mean() < 12


def test_corrected_moves_only_low_frequencies_inside_the_hole():
    from backend.engines.builtin import corrected
    rng = np.random.default_rng(0)
    hole = np.zeros((60, 80), bool)
    hole[20:40, 25:55] = True
    hole[20:24, 25:30] = False              # not the whole box: the box's other pixels do not count
    box = (slice(20, 40), slice(25, 55))
    texture = rng.integers(0, 256, (20, 30, 3)).astype(np.float32)     # over the hole's box
    guide = np.full((20, 30, 3), 128, np.uint8)
    guide[~hole[box]] = 0
    out = corrected(texture, guide, hole, 2.0)
    assert out.shape == (int(hole.sum()), 3) and out.dtype == np.uint8
    # high frequencies kept: the result minus the texture is smooth
    delta = out.astype(np.float32) - texture[hole[box]]
    assert np.abs(delta).mean() < np.abs(texture[hole[box]] - 128).mean()
    full = np.zeros((60, 80, 3), np.uint8)
    full[hole] = out
    assert np.abs(full[25:35, 30:50].astype(np.float32).mean() - 128) < \
        np.abs(texture[5:15, 5:25].mean() - 128) + 1
    # without blur the fill is the guide exactly
    assert np.array_equal(corrected(texture, guide, hole, 0.0), guide[hole[box]])


def test_warm_up_turns_to_the_builtin_engine_when_lama_does_not_load(tmp_path, monkeypatch):
    """A big-lama.pt that does not load (damaged, or traced by another torch) fails at the
    daemon's warm-up, not on the user's first erase: erase then uses the built-in engine."""
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "big-lama.pt").write_bytes(b"not a TorchScript file")
    monkeypatch.setenv("SIMPSON_HOME", str(tmp_path))
    monkeypatch.setattr(engines, "_built", {})                   # engines as a fresh daemon builds them
    assert engines.choose("erase", None).name == "lama"          # the file is there: lama looks ready
    Pipeline().warm_up()
    assert engines.choose("erase", None).name == "builtin"
    assert "could not be loaded" in engines.get("lama").status()


def test_parts_labelled_in_the_box_are_the_whole_masks_parts():
    """masks.Parts labels a mask within its bounding box (cheap on a big photo with small holes):
    the same parts, boxes, areas and order as labelling the whole mask, and each part's window
    is exactly its pixels, also where the window reaches past the box or the photo."""
    import cv2  # noqa: PLC0415

    from backend.masks import Parts  # noqa: PLC0415
    rng = np.random.default_rng(3)
    mask = np.zeros((300, 400), bool)
    for _ in range(12):
        x, y = rng.integers(40, 360), rng.integers(40, 260)
        mask[y:y + rng.integers(2, 30), x:x + rng.integers(2, 30)] = True
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    parts = Parts(mask)
    assert parts.count == n - 1 > 3
    for i in range(1, n):
        assert parts.box(i) == tuple(int(v) for v in stats[i, :4]) and parts.area(i) == stats[i, 4]
        x, y, w, h = parts.box(i)
        for x0, y0, x1, y1 in ((x, y, x + w, y + h), (max(0, x - 50), max(0, y - 50), min(400, x + w + 50), 300)):
            assert np.array_equal(parts.window(i, x0, y0, x1, y1), labels[y0:y1, x0:x1] == i)
    assert parts.largest(2) == sorted(range(1, n), key=lambda i: -stats[i, 4])[:2]
    assert Parts(np.zeros((5, 5), bool)).count == 0
