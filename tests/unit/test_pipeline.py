"""Pipeline shapes and invariants with the classic engine (no weights needed)."""
import numpy as np
import pytest

from backend import images
from backend.cache import ImageCache, ImageEntry
from backend.erase_maths import blend, context_regions, grow_hole
from backend.pipeline import Pipeline
from simpson_client.protocol import ProtocolError
from tests.conftest import disc_centres, scene


def test_grow_hole_auto_and_fixed():
    hole = np.zeros((100, 100), bool)
    hole[40:60, 40:60] = True
    auto = grow_hole(hole, None)
    assert auto[hole].all() and auto.sum() > hole.sum()
    assert not auto[:30].any()
    assert (grow_hole(hole, 0) == hole).all()
    fixed = grow_hole(hole, 5)
    assert fixed[40, 35] and not fixed[40, 33]


def test_context_regions_merge_and_clip():
    hole = np.zeros((1000, 1000), bool)
    hole[100:110, 100:110] = True
    hole[150:160, 150:160] = True          # close: merged with the first
    hole[800:810, 800:810] = True          # far: its own region
    regions = sorted(context_regions(hole, 1000, 1000))
    assert len(regions) == 2
    assert regions[0][0] == 36 and regions[0][3] <= 1000
    assert all(0 <= r[0] < r[2] <= 1000 and 0 <= r[1] < r[3] <= 1000 for r in regions)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_blend_changes_only_the_hole(dtype):
    top = np.iinfo(dtype).max
    orig = np.full((20, 20, 4), top // 3, dtype)
    orig[..., 3] = top // 2
    hole = np.zeros((20, 20), bool)
    hole[5:15, 5:15] = True
    out = blend(orig, np.full((20, 20, 3), 255, np.uint8), hole)
    assert out.dtype == dtype
    assert (out[~hole] == orig[~hole]).all()
    assert (out[10, 10, :3] == top).all()           # centre fully filled
    assert (out[..., 3] == orig[..., 3]).all()      # alpha kept
    assert orig[5, 10, 0] < out[5, 10, 0] < top     # feathered edge


def test_pipeline_select_similar_erase_shapes():
    px = scene(seed=4)
    p = Pipeline()
    entry = p.entry(px)
    x, y = disc_centres(320, 240)[0]
    mask, name = p.select(entry, [(x, y, True)])
    assert mask.shape == (240, 320) and mask.dtype == np.uint8 and name
    assert set(np.unique(mask)) <= {0, 255}
    union, found, _ = p.similar(entry, [], mask)
    assert found[0].score == 1.0 and len(found) >= 4
    box, patch, _ = p.erase(entry, union)
    assert patch.shape == (box[3], box[2], 4) and patch.dtype == np.uint8


def test_pipeline_16_bit_erase_keeps_depth():
    px8 = scene(seed=6)
    px = px8.astype(np.uint16) * 257
    p = Pipeline()
    entry = p.entry(px)
    mask = np.zeros((240, 320), np.uint8)
    x, y = disc_centres(320, 240)[1]
    mask[y - 20:y + 20, x - 20:x + 20] = 255
    box, patch, _ = p.erase(entry, mask)
    assert patch.dtype == np.uint16
    bx, by, bw, bh = box
    assert patch[y - by, x - bx, 0] < 200 * 257      # the red disc is gone


def test_pipeline_rejects_bad_requests():
    p = Pipeline()
    entry = p.entry(scene(seed=7))
    with pytest.raises(ProtocolError):
        p.select(entry, [])
    with pytest.raises(ProtocolError):
        p.erase(entry, np.zeros((240, 320), np.uint8))
    with pytest.raises(ProtocolError):
        p.similar(entry, [], np.zeros((240, 320), np.uint8))


def test_cache_evicts_oldest():
    cache = ImageCache(max_entries=2)
    for k in "abc":
        cache.put(ImageEntry(k, np.zeros((2, 2, 4), np.uint8), np.zeros((2, 2, 3), np.uint8)))
    assert cache.get("a") is None and cache.get("c") is not None
    e = cache.get("b")
    assert e.derive("x", lambda: 41) == 41 and e.derive("x", lambda: 42) == 41


def test_cache_entry_makes_rgb_on_first_use():
    px16 = np.zeros((2, 3, 4), np.uint16)
    px16[0, 0] = (65535, 32768, 0, 65535)
    entry = ImageEntry("k16", px16)
    assert entry._rgb is None and entry.nbytes() == px16.nbytes + 2 * 3 * 3
    assert entry.rgb.dtype == np.uint8 and tuple(entry.rgb[0, 0]) == (255, 128, 0)
    assert entry.rgb is entry.rgb


def test_load_image_kinds(tmp_path):
    import cv2
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    rgba = images.load_image(tmp_path / "g.png")
    assert rgba.shape == (6, 8, 4) and (rgba[..., 0] == grey).all() and (rgba[..., 3] == 255).all()
    deep = (np.arange(6 * 8 * 3, dtype=np.uint16).reshape(6, 8, 3) * 300)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    d = images.load_image(tmp_path / "d.png")
    assert d.dtype == np.uint16 and (d[..., 0] == deep[..., 2]).all() and (d[..., 3] == 65535).all()
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200
    bgra[..., 3] = 100
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    a = images.load_image(tmp_path / "a.png")
    assert (a[0, 0] == [200, 0, 0, 100]).all()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError):
        images.load_image(tmp_path / "bad.png")


def test_blend_fills_the_middle_of_thin_holes():
    """The feather is narrower where the hole is thin: a 4-px wire is fully replaced in its
    middle, and a wide hole still fades in over FEATHER_PX."""
    from backend.erase_maths import FEATHER_PX
    orig = np.zeros((60, 60, 4), np.uint8)
    orig[..., 3] = 255
    hole = np.zeros((60, 60), bool)
    hole[10:14, 5:55] = True                         # a wire, 4 px thick
    hole[25:55, 10:50] = True                        # a wide hole
    out = blend(orig, np.full((60, 60, 3), 200, np.uint8), hole)
    assert (out[11:13, 10:50, :3] == 200).all()      # the wire's middle
    assert (out[40, 30, :3] == 200).all()            # the wide hole's middle
    edge = out[25, 30, 0]
    assert 0 < edge < 200 * 2 / FEATHER_PX           # the wide hole's edge row fades in
