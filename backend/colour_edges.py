"""Mask edges that follow colours (issue 23): the one-click model's logits, upsampled from a
window 2-4x coarser than the photo, fill the background between an object's thin parts (valves,
branches, line art) and cut off its thinnest parts. At full resolution, each pixel's logit gets
the log ratio of how common its colour is in the object and in its surroundings (colour
histograms weighted by the model's own probabilities, as GrabCut's colour models, without its
graph cut), so a background-coloured gap the model is unsure of leaves the mask and an
object-coloured thin part it nearly took joins it, while pixels whose colour both sides share
keep the model's answer. A pixel changes side only where its weighted colour term outweighs
the model's logit; and where the gaps are most of what it selected, their colour is the
object's to the histograms, so line art whose mask is mostly background between the lines stays as it was.
The colours under a click that corrects a selection are that click's (segment.py passes those
clicks): a transparent object's rim shows what lies behind it, and a click on the rim must keep it.

Measured in docs/models.md ("Twenty-ninth session"); the numbers below were chosen there on
real-size validation scenes (seeds 7000-7199) that no bench uses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ADD_WEIGHT = 1.0      # the colour term's weight against the model's logit where it says "object" ...
REMOVE_WEIGHT = 2.0   # ... and where it says "surroundings": a rim of soft edge or shadow the object's
                      # dark outline colours would take joins at half the weight a gap leaves with
ROUNDS = 2     # colour models estimated from the model's probabilities, then once more from the fused ones
BITS = 4       # histogram bins per channel: 2**BITS (16 x 16 x 16)
PRIOR = 1.0    # pseudo-count per bin (an unseen colour is neither side's)
CLIP = 6.0     # largest colour term, in logits
CLICK_RADIUS = 2       # px: the colours around a click that the click decides ...
CLICK_TOLERANCE = 24   # ... those within this of the clicked pixel's (each channel, of 255)
HIST_PIXELS = 1_000_000   # the histograms' sample: a grid this size on bigger regions (speed)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function of float logits, without overflow warnings."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def _smooth(h: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 blur along each colour axis of a B×B×B histogram (edges repeated)."""
    for axis in range(3):
        p = np.pad(h, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        lo = np.take(p, range(0, h.shape[axis]), axis=axis)
        hi = np.take(p, range(2, h.shape[axis] + 2), axis=axis)
        h = 0.5 * h + 0.25 * (lo + hi)
    return h


def colour_bins(rgb: np.ndarray) -> np.ndarray:
    """…×3 uint8 RGB (an image or a list of pixels) → each pixel's flat histogram bin, int32."""
    q = (rgb >> (8 - BITS)).astype(np.int32)
    b = 1 << BITS
    return ((q[..., 0] * b + q[..., 1]) * b + q[..., 2]).ravel()


def colour_table(bins: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per histogram bin, log P(colour | object) - log P(colour | surroundings), float32 clipped
    to ±CLIP; the histograms are the pixels (bins) weighted by prob and by 1 - prob."""
    n = 1 << (3 * BITS)
    fg = np.bincount(bins, weights=prob, minlength=n)
    bg = np.bincount(bins, minlength=n) - fg
    shape = (1 << BITS,) * 3
    fg, bg = _smooth(fg.reshape(shape)).ravel(), _smooth(np.maximum(bg, 0).reshape(shape)).ravel()
    ratio = np.log((fg + PRIOR) / (fg.sum() + PRIOR * n)) - np.log((bg + PRIOR) / (bg.sum() + PRIOR * n))
    return np.clip(ratio, -CLIP, CLIP).astype(np.float32)


def _clicked_bins(rgb: np.ndarray, clicks: Sequence[tuple[float, float, bool]], positive: bool) -> np.ndarray:
    """The histogram bins of the pixels within CLICK_RADIUS of the positive (or negative) clicks
    that lie in rgb (clicks in its pixel coordinates)."""
    h, w = rgb.shape[:2]
    r = CLICK_RADIUS
    got = []
    for x, y, p in clicks:
        if p != positive or not (0 <= x < w and 0 <= y < h):
            continue
        patch = rgb[max(int(y) - r, 0):int(y) + r + 1, max(int(x) - r, 0):int(x) + r + 1].reshape(-1, 3)
        near = np.abs(patch.astype(np.int16) - rgb[int(y), int(x)].astype(np.int16)).max(axis=1) <= CLICK_TOLERANCE
        got.append(colour_bins(patch[near]))
    return np.unique(np.concatenate(got)) if got else np.zeros(0, np.int64)


def follow_colours(logits: np.ndarray, rgb: np.ndarray,
                   clicks: Sequence[tuple[float, float, bool]] = ()) -> np.ndarray:
    """logits: h×w float32, the model's upsampled to rgb's pixels (h×w×3 uint8, the window or the
    image they cover). Returns h×w float32 logits with the colour term added (see the module
    docstring) where it can change a pixel's side (-ADD_WEIGHT × CLIP < logit < REMOVE_WEIGHT × CLIP);
    > 0 = selected.
    The histograms come from a regular grid of at most about HIST_PIXELS pixels. clicks: (x, y,
    positive) in rgb's pixels: the colours under a positive click never count against the
    object, those under a negative one never for it (the user's click wins over the colour models)."""
    if logits.shape != rgb.shape[:2]:
        raise ValueError(f"logits are {logits.shape}, the image {rgb.shape[:2]}")
    h, w = logits.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / HIST_PIXELS))))
    grid_bins = colour_bins(rgb[::step, ::step])
    grid = logits[::step, ::step].ravel().astype(np.float32)
    out = np.array(logits, dtype=np.float32)          # a contiguous copy: flat indices below
    unsure = np.flatnonzero((out > -ADD_WEIGHT * CLIP) & (out < REMOVE_WEIGHT * CLIP))
    unsure_bins = colour_bins(rgb.reshape(-1, 3).take(unsure, axis=0))   # faster than a boolean mask
    base = out.ravel().take(unsure)
    on, off = _clicked_bins(rgb, clicks, True), _clicked_bins(rgb, clicks, False)
    fused_grid, fused = grid, base
    for _ in range(ROUNDS):
        table = colour_table(grid_bins, sigmoid(fused_grid))
        table *= np.where(table > 0, ADD_WEIGHT, REMOVE_WEIGHT).astype(np.float32)
        table[on] = np.maximum(table[on], 0)
        table[off] = np.minimum(table[off], 0)
        fused_grid, fused = grid + table[grid_bins], base + table[unsure_bins]
    out.ravel()[unsure] = fused
    return out
