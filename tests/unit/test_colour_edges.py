"""backend/colour_edges.py: masks that follow the object's colours at full resolution."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.colour_edges import follow_colours

BACKGROUND = (60, 30, 120)
OBJECT = (230, 170, 0)


def _image(shape=(200, 200), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, 3), np.int16)
    img[:] = BACKGROUND
    return np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_background_between_thin_parts_leaves_the_mask():
    """A comb of 4-px teeth 6 px apart, and logits as blurred as a model's upsampled from a
    window 3-4x coarser: they cover the gaps too."""
    img = _image()
    teeth = np.zeros(img.shape[:2], bool)
    for x in range(50, 150, 10):
        teeth[50:150, x:x + 4] = True
    img[teeth] = OBJECT
    logits = 10 * (cv2.GaussianBlur(teeth.astype(np.float32), (0, 0), 3) - 0.3)
    before = _iou(logits > 0, teeth)
    after = _iou(follow_colours(logits, img) > 0, teeth)
    assert before < 0.5 and after > 0.95


def test_a_thin_part_of_the_object_s_colour_joins_it():
    """A disc the model found and a 2-px handle it missed (weakly negative logits there)."""
    img = _image()
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 100) ** 2 + (xx - 80) ** 2 < 30 ** 2
    handle = (np.abs(yy - 100) <= 1) & (xx >= 110) & (xx < 170)
    img[disc | handle] = OBJECT
    logits = np.where(disc, 4.0, -4.0).astype(np.float32)
    logits[96:105, 105:175] = -1.0
    out = follow_colours(logits, img) > 0
    assert out[handle].mean() > 0.95
    assert not out[~(disc | handle)].any()


def test_where_both_sides_share_the_colour_the_model_decides():
    img = np.full((64, 80, 3), 90, np.uint8)
    logits = np.random.default_rng(1).normal(0, 3, (64, 80)).astype(np.float32)
    assert np.abs(follow_colours(logits, img) - logits).max() < 0.1


def test_the_colour_under_a_click_is_the_click_s():
    """A water drop's dark rim has the leaf's colour: the colour models take it out of the mask,
    unless a positive click lies on it (and a negative click's colour never joins the object)."""
    img = _image()
    yy, xx = np.mgrid[:200, :200]
    d = np.hypot(yy - 100, xx - 100)
    img[d < 34] = (200, 220, 200)                   # the drop's light middle
    rim = (d >= 34) & (d < 40)
    img[rim] = BACKGROUND                           # its rim: the leaf's colour
    logits = np.where(d < 40, 3.0, -3.0).astype(np.float32)
    assert not (follow_colours(logits, img) > 0)[rim].any()
    kept = follow_colours(logits, img, [(137.0, 100.0, True)]) > 0
    assert kept[rim].all() and not kept[d > 41].any()
    # a negative click on the middle's colour: its pixels can only lose the model's support
    out = follow_colours(logits, img, [(100.0, 100.0, False)])
    assert (out[d < 34] <= logits[d < 34]).all()


def test_logits_and_image_must_match():
    with pytest.raises(ValueError, match="logits are"):
        follow_colours(np.zeros((10, 12), np.float32), np.zeros((12, 10, 3), np.uint8))


def test_the_segmenter_s_window_masks_follow_colours():
    """ClickSegmenter._paste (the window's logits, 4x coarser than the photo, written at full
    resolution) with SegmentSettings.colour_edges on and off, on an object as light as its
    background (green on purple), which the guided filter's grey guide cannot tell apart."""
    import torch
    from backend.models.window import Window
    from backend.segment import ClickSegmenter, SegmentSettings
    img = _image((400, 400))
    teeth = np.zeros(img.shape[:2], bool)
    for x in range(100, 300, 20):   # 8-px teeth 12 px apart: gaps of 3 logit pixels, half resolved
        teeth[100:300, x:x + 8] = True
    img[teeth] = (10, 66, 30)
    coarse = cv2.GaussianBlur(cv2.resize(teeth.astype(np.float32), (100, 100), interpolation=cv2.INTER_AREA),
                              (0, 0), 1.0)
    logits = torch.from_numpy(10 * (coarse - 0.3))[None, None]
    ious = {}
    for on in (False, True):
        me = ClickSegmenter.__new__(ClickSegmenter)   # its window-to-photo code only: no model
        me.settings = SegmentSettings(colour_edges=on)
        out = me._paste(logits, Window(0, 0, 400), np.zeros((400, 400), np.uint8), img)
        ious[on] = _iou(out > 127, teeth)
    assert ious[False] < 0.6 and ious[True] > 0.9
