"""Held-out scenes with a known clean photo for the erase benchmark (bench/erase.py).

A scene is a crop of a real photo at (near) its native resolution, so the background keeps its
real fine texture (grass, rock, bark, water, wood, sand, foliage) and structure (horizons, planks,
edges), with 1–4 clip-art objects pasted on it: soft edges, and for about half of them a soft cast
shadow. The mask a user's selection gives is the objects' alpha >= 0.5; their soft edge and shadow
lie outside it.

Sources training and tuning never read:
- photos from `lomiri-wallpapers-16.04` and `mate-backgrounds` (nature); the segmentation
  training reads only gnome-backgrounds, plasma-workspace-wallpapers and desktop-base
  (backend/training/synth.py), and the old erase tuning read plasma wallpapers;
- objects from openclipart's validation split (backend/training/synth.py split_of), which the
  segmentation training never reads.
Photos are assigned to val (tune on it) or test (report it) by name, balanced by hand between
busy texture, structure and smooth/defocused backgrounds; objects by a hash of their name.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

BACKGROUNDS = Path("/usr/share/backgrounds")
# file stems (lomiri-wallpapers-16.04: "<name>_by_<author>.jpg"; mate-backgrounds: nature/<name>.jpg)
VAL_PHOTOS = ["Dragonfly", "life", "GreenMeadow", "Wood", "Bridge", "picosdeeuropa", "friends",
              "Picture_0B", "Garden", "Aqua", "sunset", "Blinds", "Wine"]
TEST_PHOTOS = ["Kleiber", "seeding", "Dune", "analogpattern", "Picture_1A", "LadyBird", "RainDrops",
               "aitzgorri", "Storm", "greentock", "free", "TwoWings", "FreshFlower", "YellowFlower"]
PACKAGES = "lomiri-wallpapers-16.04 mate-backgrounds openclipart-png"

SCENE_SIZE = (960, 640)     # w, h of a scene
VISIBLE = 4                 # grey levels: the footprint is where the photo visibly changed
TRUE_GROWTH = 7             # px: the true hole is the objects (alpha > 0) grown by this much


class Scene(NamedTuple):
    name: str
    clean: np.ndarray       # H×W×3 uint8
    photo: np.ndarray       # the clean photo with the objects and their shadows
    mask: np.ndarray        # H×W bool: alpha >= 0.5 (a segmenter's mask)
    objects: np.ndarray     # H×W bool: alpha > 0.02 (every pixel the objects cover)
    footprint: np.ndarray   # H×W bool: pixels the objects or shadows changed visibly
    shadowed: bool          # at least one object casts a soft shadow
    busy: float             # mean |Laplacian| of the clean photo around the objects (texture)


def photo_path(stem: str) -> Path:
    hits = sorted(BACKGROUNDS.glob(f"{stem}_by_*.jpg")) + sorted(BACKGROUNDS.glob(f"mate/*/{stem}.jpg"))
    if not hits:
        raise FileNotFoundError(f"photo {stem} not found under {BACKGROUNDS}: "
                                f"apt-get install {PACKAGES}")
    return hits[0]


@lru_cache(maxsize=2)
def photo(stem: str) -> np.ndarray:
    bgr = cv2.imread(str(photo_path(stem)), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {photo_path(stem)}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _object_split(path: Path) -> str:
    return "val" if int(hashlib.sha1(path.stem.encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


@lru_cache(maxsize=2)
def clipart_files(split: str) -> tuple[Path, ...]:
    """Object-like clip art from openclipart's held-out (validation) split: RGBA, filling 25–85 %
    of its box, not too thin, big enough to scale."""
    from backend.training.synth import list_objects   # noqa: PLC0415 - the training split's owner
    out = []
    for p in list_objects("val")[::3]:
        if _object_split(p) != split:
            continue
        im = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if im is None or im.ndim != 3 or im.shape[2] != 4 or min(im.shape[:2]) < 100:
            continue
        a = im[..., 3] > 127
        if not a.any():
            continue
        ys, xs = np.nonzero(a)
        box = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        if 0.25 <= box.mean() <= 0.85 and min(box.shape) > 0.3 * max(box.shape):
            out.append(p)
    if not out:
        raise FileNotFoundError(f"no openclipart objects: apt-get install {PACKAGES}")
    return tuple(out)


def _object(rng: np.random.Generator, split: str, area: float) -> tuple[np.ndarray, np.ndarray]:
    """An object whose alpha covers about `area` px: (rgb float32, alpha float32 with a soft edge)."""
    files = clipart_files(split)
    im = cv2.imread(str(files[rng.integers(len(files))]), cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero(im[..., 3] > 0)
    im = im[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    if rng.random() < 0.5:
        im = im[:, ::-1]
    fill = max(0.05, float((im[..., 3] > 127).mean()))
    s = (area / (fill * im.shape[0] * im.shape[1])) ** 0.5
    size = (max(4, round(im.shape[1] * s)), max(4, round(im.shape[0] * s)))
    im = cv2.resize(np.ascontiguousarray(im), size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(im[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = im[..., 3].astype(np.float32) / 255.0
    side = max(size)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.4 + rng.uniform(0.002, 0.008) * side)  # soft edge
    return rgb, alpha


def _crop(rng: np.random.Generator, stem: str, busy: bool) -> np.ndarray:
    """A SCENE_SIZE crop of the photo at 0.5–1× its native scale; busy: the most textured of 4."""
    full = photo(stem)
    w, h = SCENE_SIZE
    s = max(float(np.exp(rng.uniform(np.log(0.5), 0.0))), w / full.shape[1], h / full.shape[0])
    img = full if s >= 0.999 else cv2.resize(full, (round(full.shape[1] * s), round(full.shape[0] * s)),
                                             interpolation=cv2.INTER_AREA)
    best, best_score = None, -1.0
    for _ in range(4 if busy else 1):
        x, y = int(rng.integers(0, img.shape[1] - w + 1)), int(rng.integers(0, img.shape[0] - h + 1))
        crop = img[y:y + h, x:x + w]
        score = float(np.abs(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean())
        if score > best_score:
            best, best_score = crop, score
    return np.ascontiguousarray(best)


def make_scene(stem: str, seed: int, split: str) -> Scene:
    rng = np.random.default_rng(seed)
    clean = _crop(rng, stem, busy=rng.random() < 0.5)
    h, w = clean.shape[:2]
    img = clean.astype(np.float32)
    n = int(rng.integers(1, 5))
    total = float(np.exp(rng.uniform(np.log(0.005), np.log(0.15)))) * w * h   # all objects: 0.5–15 %
    shares = rng.dirichlet(np.full(n, 2.0))
    light = rng.uniform(0, 2 * np.pi)
    mask = np.zeros((h, w), bool)
    objects = np.zeros((h, w), bool)
    shadowed = False
    for share in shares:
        rgb, alpha = _object(rng, split, max(150.0, share * total))
        oh, ow = alpha.shape
        if oh >= h - 4 or ow >= w - 4:
            continue
        x, y = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
        if rng.random() < 0.5:   # a soft cast shadow, away from a light shared by the scene
            shadowed = True
            side = max(oh, ow)
            d = rng.uniform(0.06, 0.2) * side
            dx, dy = int(round(d * np.cos(light))), int(round(d * np.sin(light)))
            shadow = np.zeros((h, w), np.float32)
            sy0, sx0 = y + dy, x + dx
            ay0, ax0 = max(0, -sy0), max(0, -sx0)
            ay1, ax1 = min(oh, h - sy0), min(ow, w - sx0)
            if ay1 > ay0 and ax1 > ax0:
                shadow[sy0 + ay0:sy0 + ay1, sx0 + ax0:sx0 + ax1] = alpha[ay0:ay1, ax0:ax1]
            shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(0.03, 0.08) * side + 1)
            img *= (1 - rng.uniform(0.3, 0.6) * shadow)[..., None]
        region = img[y:y + oh, x:x + ow]
        region[:] = region * (1 - alpha[..., None]) + rgb * alpha[..., None]
        mask[y:y + oh, x:x + ow] |= alpha >= 0.5
        objects[y:y + oh, x:x + ow] |= alpha > 0.02
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    foot = np.abs(out.astype(np.int16) - clean).max(-1) >= VISIBLE
    ring = cv2.dilate(objects.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY), cv2.CV_32F))
    return Scene(f"{stem}#{seed}", clean, out, mask, objects, foot | objects, shadowed,
                 float(lap[ring].mean()) if ring.any() else 0.0)


def true_hole(scene: Scene) -> np.ndarray:
    """Every pixel the objects touch, grown by TRUE_GROWTH px (covers their soft edges)."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * TRUE_GROWTH + 1, 2 * TRUE_GROWTH + 1))
    return cv2.dilate(scene.objects.astype(np.uint8), k) > 0


def scene_ids(split: str, per_photo: int = 9) -> list[tuple[str, int]]:
    """(photo, seed) of each scene; test seeds are disjoint from val seeds."""
    names = VAL_PHOTOS if split == "val" else TEST_PHOTOS
    base = 0 if split == "val" else 50_000
    return [(n, base + 100 * i + j) for i, n in enumerate(names) for j in range(per_photo)]


def scenes(split: str, per_photo: int = 9, limit: int | None = None) -> list[Scene]:
    """The split's scenes in a fixed order (grouped by photo: each photo is decoded once)."""
    ids = scene_ids(split, per_photo)
    if limit is not None:       # spread over the photos: every k-th scene
        ids = ids[::max(1, len(ids) // limit)][:limit]
    return [make_scene(stem, seed, split) for stem, seed in ids]
