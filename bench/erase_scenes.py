"""Scenes with a known clean photo for the erase benchmark.

Clip-art objects (with alpha, soft edges and a soft contact shadow) are pasted onto wallpaper
photos. The mask handed to the pipeline is what a segmenter would give: alpha >= 0.5, so the
soft edge and the shadow are outside it and only mask dilation can remove them.
"""
from __future__ import annotations

import glob
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

WALLPAPERS = Path("/usr/share/wallpapers")
CLIPART = Path("/usr/share/openclipart/png")
VAL_PHOTOS = ["EveningGlow", "BytheWater", "FallenLeaf", "OneStandsOut", "DarkestHour", "ColorfulCups"]
TEST_PHOTOS = ["Path", "ColdRipple", "Kite", "summer_1am", "Volna", "Grey"]

VISIBLE = 4             # grey levels: the footprint is where the photo visibly changed


class Scene(NamedTuple):
    name: str
    clean: np.ndarray       # H×W×3 uint8
    photo: np.ndarray       # the clean photo with the objects and their shadows
    mask: np.ndarray        # H×W bool: alpha >= 0.5 (a segmenter's mask)
    footprint: np.ndarray   # H×W bool: pixels the objects or shadows changed visibly (>= VISIBLE levels)


@lru_cache(maxsize=None)
def photo(name: str, long_side: int = 1280) -> np.ndarray:
    files = glob.glob(str(WALLPAPERS / name / "contents/images/*.jpg"))
    if not files:
        raise FileNotFoundError(f"no wallpaper {name} in {WALLPAPERS}")
    sizes = {f: tuple(int(v) for v in Path(f).stem.split("x")) for f in files}
    pick = min(files, key=lambda f: (max(sizes[f]) < long_side, abs(max(sizes[f]) - long_side)))
    rgb = cv2.cvtColor(cv2.imread(pick, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    s = long_side / max(rgb.shape[:2])
    if s != 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return rgb


@lru_cache(maxsize=1)
def clipart_files() -> list[str]:
    """Object-like clip art: RGBA, filling 25–85 % of its box, big enough to scale down."""
    out = []
    for f in sorted(glob.glob(str(CLIPART / "**/*.png"), recursive=True))[::7]:
        im = cv2.imread(f, cv2.IMREAD_UNCHANGED)
        if im is None or im.ndim != 3 or im.shape[2] != 4 or min(im.shape[:2]) < 120:
            continue
        a = im[..., 3] > 127
        if not a.any():
            continue
        ys, xs = np.nonzero(a)
        box = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        if 0.25 <= box.mean() <= 0.85 and min(box.shape) > 0.3 * max(box.shape):
            out.append(f)
    return out


def _object(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    files = clipart_files()
    im = cv2.imread(files[rng.integers(len(files))], cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero(im[..., 3] > 0)
    im = im[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    s = side / max(im.shape[:2])
    size = (max(2, round(im.shape[1] * s)), max(2, round(im.shape[0] * s)))
    im = cv2.resize(im, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(im[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = im[..., 3].astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.4 + 0.004 * side)   # a soft edge (defocus, resampling)
    return rgb, alpha


def make_scene(name: str, seed: int, n_objects: int = 2, size: tuple[float, float] = (0.08, 0.2),
               long_side: int = 1280) -> Scene:
    """size: object side as fractions of the photo's long side."""
    rng = np.random.default_rng(seed)
    clean = photo(name, long_side)
    h, w = clean.shape[:2]
    img = clean.astype(np.float32)
    mask = np.zeros((h, w), bool)
    for _ in range(n_objects):
        side = int(rng.uniform(*size) * max(h, w))
        rgb, alpha = _object(rng, side)
        oh, ow = alpha.shape
        x, y = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
        # contact shadow: the alpha shifted down-right, blurred, darkening the ground
        shadow = np.zeros((h, w), np.float32)
        dx, dy = int(0.06 * ow), int(0.05 * oh)
        shadow[min(h, y + dy):min(h, y + dy + oh), min(w, x + dx):min(w, x + dx + ow)] = \
            alpha[:max(0, min(oh, h - y - dy)), :max(0, min(ow, w - x - dx))]
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.03 * side + 1) * 0.45
        img *= (1 - shadow)[..., None]
        region = img[y:y + oh, x:x + ow]
        region[:] = region * (1 - alpha[..., None]) + rgb * alpha[..., None]
        mask[y:y + oh, x:x + ow] |= alpha >= 0.5
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    foot = np.abs(out.astype(np.int16) - clean).max(-1) >= VISIBLE
    return Scene(f"{name}#{seed}", clean, out, mask, foot)


def scenes(split: str, per_photo: int = 2, **kw) -> list[Scene]:
    names = VAL_PHOTOS if split == "val" else TEST_PHOTOS
    return [make_scene(n, 1000 * i + j + (0 if split == "val" else 500), **kw)
            for i, n in enumerate(names) for j in range(per_photo)]
