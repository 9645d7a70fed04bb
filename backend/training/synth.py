"""Deterministic DistractorSyn-style scene generator.

A scene = a background photo crop + 1-10 copies of one object (group 0) placed spread out
at distance-map maxima of a region, + 1-3 other objects (groups 1..) as negatives, some
of them look-alikes (same object recoloured, or another object in the same colour).
Objects are openclipart PNG cut-outs (alpha = exact mask), blob-shaped cut-outs of other
photos, or procedural shapes. Without the Debian image packages everything falls back to
procedural backgrounds and objects, so tests always run.

Sources are split into train/val by a stable hash of the file (or wallpaper) name:
validation backgrounds and objects are never trained on.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# Where the sources are: /usr/share, or SIMPSON_SOURCE_ROOT, a folder laid out like it (a pack
# written by `python -m backend.training.pack_sources`, for a machine without the Debian packages,
# e.g. a GPU machine that trains or benchmarks). Set it before this module is imported.
SOURCE_ROOT = Path(os.environ.get("SIMPSON_SOURCE_ROOT") or "/usr/share")
# The packages named in docs/models.md, not every package that installs into /usr/share/backgrounds:
# photos from other packages (mate-backgrounds: bench/select.py --photos) stay unseen.
BG_ROOTS = [SOURCE_ROOT / "backgrounds/gnome", SOURCE_ROOT / "wallpapers", SOURCE_ROOT / "desktop-base"]
CLIPART_ROOT = SOURCE_ROOT / "openclipart/png"
BG_EXTS = {".jpg", ".jpeg", ".png", ".webp"}
BG_MIN_BYTES = 100_000
BG_SKIP = re.compile(r"screenshot|grub|/emerald-theme/|/softwaves-theme/", re.I)
CLIP_SKIP = re.compile(r"/(special|gradients|patterns|borders|frames|geography)/", re.I)
VAL_PERCENT = 20
BG_MAX_SIDE = 1600
OBJ_MAX_SIDE = 320


@dataclass
class Scene:
    """image: H×W×3 uint8 RGB; masks: visible part of each instance, H×W bool;
    groups: group id per instance (0 = the repeated object, >0 = other objects)."""
    image: np.ndarray
    masks: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)   # real-size scenes: copy / lookalike / other / host


def split_of(name: str) -> str:
    """Stable train/val split of a source name (wallpaper or object base name)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def _bg_name(p: Path) -> str:
    parts = p.parts
    if "wallpapers" in parts:  # /usr/share/wallpapers/<Name>/contents/images/WxH.ext
        return parts[parts.index("wallpapers") + 1]
    return re.sub(r"-[dl]$", "", p.stem)  # gnome light/dark variants stay together


def _obj_name(p: Path) -> str:
    return re.sub(r"([_\-]?\d+)?_?[a-z]?$", "", p.stem.lower()) or p.stem.lower()


@lru_cache(maxsize=None)
def list_backgrounds(split: str) -> tuple[Path, ...]:
    """Largest raster file of each wallpaper in the split (SVG and small files skipped)."""
    best: dict[str, Path] = {}
    for root in BG_ROOTS:
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in BG_EXTS or BG_SKIP.search(str(p)) or p.stat().st_size < BG_MIN_BYTES:
                continue
            name = _bg_name(p)
            if split_of("bg:" + name) == split and (name not in best or p.stat().st_size > best[name].stat().st_size):
                best[name] = p
    return tuple(best[k] for k in sorted(best))


@lru_cache(maxsize=None)
def list_objects(split: str) -> tuple[Path, ...]:
    if not CLIPART_ROOT.is_dir():
        return ()
    return tuple(p for p in sorted(CLIPART_ROOT.rglob("*.png"))
                 if not CLIP_SKIP.search(str(p)) and split_of("obj:" + _obj_name(p)) == split)


@lru_cache(maxsize=64)
def load_background(path: Path) -> np.ndarray:
    return read_rgb(path, BG_MAX_SIDE)


def read_rgb(path: Path, max_side: int) -> np.ndarray:
    """A background photo as RGB, shrunk (INTER_AREA) to at most `max_side` on its long side."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read background {path}")
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=4096)
def load_clipart(path: Path) -> np.ndarray | None:
    """RGBA cropped to the alpha box, long side <= OBJ_MAX_SIDE; None if unusable."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4 or min(img.shape[:2]) < 24:
        return None
    a = img[:, :, 3]
    ys, xs = np.nonzero(a > 127)
    if len(ys) < 400:
        return None
    img = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    fill = (img[:, :, 3] > 127).mean()
    h, w = img.shape[:2]
    if fill < 0.08 or fill > 0.97 or max(h, w) > 8 * min(h, w):
        return None
    s = OBJ_MAX_SIDE / max(h, w)
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


# ---------------------------------------------------------------- procedural material

def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """H×W float32 in ~[0, 1], smooth random field with about `cells` cells per side."""
    small = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(30, 225, 3)
    img = np.zeros((h, w, 3), np.float32) + base
    for cells, amp in ((2, 70), (6, 35), (24, 15)):
        img += (smooth_noise(rng, h, w, cells)[..., None] - 0.5) * amp * rng.uniform(0.5, 1.5, 3)
    for _ in range(rng.integers(0, 6)):  # a few lines / edges
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(img, p1, p2, tuple(float(c) for c in rng.uniform(0, 255, 3)), int(rng.integers(1, 6)))
    return img.clip(0, 255).astype(np.uint8)


def random_blob(rng: np.random.Generator, h: int, w: int, irregular: float = 0.35) -> np.ndarray:
    """H×W uint8 0/255: a smooth random star-shaped blob filling most of the box."""
    n = 24
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1 + irregular * (rng.random(n) - 0.5) * 2
    r = np.convolve(np.concatenate([r[-2:], r, r[:2]]), np.ones(5) / 5, "valid")
    pts = np.stack([(0.5 + 0.48 * r * np.cos(ang)) * w, (0.5 + 0.48 * r * np.sin(ang)) * h], 1)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [pts.astype(np.int32)], 255)
    return m


def procedural_object(rng: np.random.Generator, size: int) -> np.ndarray:
    """RGBA procedural object: a blob (sometimes with holes/parts) with 1-3 colour parts."""
    h = int(size * rng.uniform(0.5, 1.0))
    w = size
    if rng.random() < 0.5:
        h, w = w, h
    a = random_blob(rng, h, w, rng.uniform(0.1, 0.6))
    if rng.random() < 0.3:  # a hole
        hh, hw = max(h // 4, 2), max(w // 4, 2)
        y, x = h // 2 - hh // 2, w // 2 - hw // 2
        a[y:y + hh, x:x + hw] &= 255 - random_blob(rng, hh, hw)
    rgb = np.zeros((h, w, 3), np.float32) + rng.uniform(0, 255, 3)
    for _ in range(rng.integers(0, 3)):  # extra colour parts
        part = random_blob(rng, h, w, 0.8)
        shift = rng.integers(-w // 3, w // 3 + 1)
        part = np.roll(part, shift, axis=1) > 0
        rgb[part] = rng.uniform(0, 255, 3)
    rgb *= (0.75 + 0.5 * smooth_noise(rng, h, w, 3))[..., None]
    edge = cv2.morphologyEx(a, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    if rng.random() < 0.5:
        rgb[edge] = rgb[edge] * 0.3
    return np.dstack([rgb.clip(0, 255).astype(np.uint8), a])


def photo_cutout(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """RGBA blob-shaped cut-out of a photo (textured object such as a puddle or a stone)."""
    h = int(size * rng.uniform(0.5, 1.0))
    w = size
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.3, 1.0)
    ch, cw = max(int(min(ph, h / scale)), 8), max(int(min(pw, w / scale)), 8)
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    rgb = cv2.resize(photo[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    return np.dstack([rgb, random_blob(rng, h, w, rng.uniform(0.2, 0.8))])


# ---------------------------------------------------------------- appearance changes

def recolour(rgba: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Hue shift (strength 0..1 of a full turn), saturation and brightness jitter."""
    hsv = cv2.cvtColor(rgba[:, :, :3], cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + strength * 180 * rng.uniform(-1, 1)) % 180
    hsv[..., 1] *= rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    hsv[..., 2] *= rng.uniform(1 - 0.25 * strength, 1 + 0.15 * strength)
    rgb = cv2.cvtColor(hsv.clip(0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return np.dstack([rgb, rgba[:, :, 3]])


def tint_to(rgba: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Shift an object's mean colour to `colour` (different object, same colour)."""
    a = rgba[:, :, 3] > 127
    rgb = rgba[:, :, :3].astype(np.float32)
    mean = rgb[a].mean(0) if a.any() else rgb.reshape(-1, 3).mean(0)
    rgb = rgb * 0.5 + (rgb - mean + colour) * 0.5 + (colour - mean) * 0.25
    return np.dstack([rgb.clip(0, 255).astype(np.uint8), rgba[:, :, 3]])


LOOKALIKE_MIN_DELTA = 25.0   # mean CIELAB difference that makes a recoloured copy another kind


def colour_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIELAB ΔE (CIE76) between two RGBA versions of one object, over its opaque pixels."""
    m = a[:, :, 3] > 127
    if not m.any():
        return 0.0
    la = cv2.cvtColor(a[:, :, :3].astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[m]
    lb = cv2.cvtColor(b[:, :, :3].astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[m]
    return float(np.linalg.norm(la - lb, axis=1).mean())


def distinct_recolour(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same object in a clearly different colour: a look-alike of another kind. A hue turn
    leaves black, white and grey objects (and small turns leave any object) as they were; such a
    "negative" looks exactly like a copy, so then the object is tinted to a far colour instead."""
    out = recolour(rgba, rng, rng.uniform(0.3, 0.6))
    if colour_delta(rgba, out) >= LOOKALIKE_MIN_DELTA:
        return out
    for _ in range(20):
        out = tint_to(rgba, rng.uniform(0, 255, 3))
        if colour_delta(rgba, out) >= LOOKALIKE_MIN_DELTA:
            break
    return out


def transform(rgba: np.ndarray, long_side: float, angle: float, flip: bool) -> np.ndarray:
    h, w = rgba.shape[:2]
    s = long_side / max(h, w)
    out = cv2.resize(rgba, (max(int(w * s), 3), max(int(h * s), 3)),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if flip:
        out = out[:, ::-1]
    if abs(angle) > 0.5:
        h, w = out.shape[:2]
        d = int(np.ceil(np.hypot(h, w)))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[:, 2] += [(d - w) / 2, (d - h) / 2]
        out = cv2.warpAffine(out, m, (d, d), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        ys, xs = np.nonzero(out[:, :, 3] > 0)
        if len(ys):
            out = out[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------- generator

class SceneGenerator:
    """scene(seed) is a pure function of (split, seed, available sources, procedural)."""

    def __init__(self, split: str = "train", procedural: bool | None = None,
                 size: tuple[int, int] = (448, 768)):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {split!r}")
        self.split = split
        self.size = size
        self.backgrounds = list_backgrounds(split)
        self.objects = list_objects(split)
        if procedural is None:
            procedural = not self.backgrounds or not self.objects
        self.procedural = procedural

    # -- sources
    def _background(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        if self.procedural or rng.random() < 0.12:
            return procedural_background(rng, h, w)
        photo = load_background(self.backgrounds[rng.integers(len(self.backgrounds))])
        ph, pw = photo.shape[:2]
        s = rng.uniform(max(h / ph, w / pw), 1.6 * max(h / ph, w / pw) + 0.5)
        ch, cw = min(ph, int(h / s) + 1), min(pw, int(w / s) + 1)
        y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        crop = photo[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)

    def _object(self, rng: np.random.Generator) -> np.ndarray:
        r = rng.random()
        if self.procedural or r < 0.12:
            return procedural_object(rng, int(rng.integers(96, 256)))
        if r < 0.25 and self.backgrounds:
            photo = load_background(self.backgrounds[rng.integers(len(self.backgrounds))])
            return photo_cutout(rng, photo, int(rng.integers(96, 256)))
        for _ in range(20):
            obj = load_clipart(self.objects[rng.integers(len(self.objects))])
            if obj is not None:
                return obj
        return procedural_object(rng, 160)

    # -- placement
    @staticmethod
    def _place(rng: np.random.Generator, free: np.ndarray, oh: int, ow: int) -> tuple[int, int]:
        """Top-left corner near a maximum of the distance map of `free` (uint8 0/1)."""
        h, w = free.shape
        dist = cv2.distanceTransform(free, cv2.DIST_L2, 5)
        dist[: oh // 2] = 0
        dist[h - (oh - oh // 2):] = 0
        dist[:, : ow // 2] = 0
        dist[:, w - (ow - ow // 2):] = 0
        if dist.max() <= 0:
            cy, cx = rng.integers(oh // 2, max(h - oh // 2, oh // 2 + 1)), rng.integers(ow // 2, max(w - ow // 2, ow // 2 + 1))
        else:
            cand = np.argwhere(dist >= 0.85 * dist.max())
            cy, cx = cand[rng.integers(len(cand))]
        return int(cy - oh // 2), int(cx - ow // 2)

    def scene(self, seed: int) -> Scene:
        rng = np.random.default_rng([seed, 0 if self.split == "train" else 1])
        lo, hi = self.size
        h, w = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        img = self._background(rng, h, w).astype(np.float32)

        region = np.ones((h, w), np.uint8)
        if rng.random() < 0.6:
            rh, rw = int(h * rng.uniform(0.5, 1)), int(w * rng.uniform(0.5, 1))
            y, x = rng.integers(0, h - rh + 1), rng.integers(0, w - rw + 1)
            region[:] = 0
            region[y:y + rh, x:x + rw] = random_blob(rng, rh, rw, 0.5) > 0
        main = self._object(rng)
        side = min(h, w) * np.exp(rng.uniform(np.log(0.06), np.log(0.4)))
        n_copies = int(rng.integers(1, 11))
        area_ratio = region.sum() / (side * side * 1.5)
        n_copies = max(1, min(n_copies, int(area_ratio)))
        main = recolour(main, rng, 0.05)

        items: list[tuple[np.ndarray, int, np.ndarray | None]] = []  # (rgba, group, region)
        base_angle, flip = rng.uniform(-15, 15), rng.random() < 0.2
        for _ in range(n_copies):
            o = transform(main, side * rng.uniform(0.85, 1.15), base_angle + rng.uniform(-10, 10), flip)
            items.append((recolour(o, rng, 0.03), 0, region))
        n_neg = int(rng.integers(1, 4))
        mean_col = main[main[:, :, 3] > 127][:, :3].mean(0) if (main[:, :, 3] > 127).any() else np.full(3, 128.0)
        for g in range(1, n_neg + 1):
            r = rng.random()
            if r < 0.2:  # look-alike: same object, visibly recoloured
                o = distinct_recolour(main, rng)
            elif r < 0.4:  # look-alike: another object, same colour
                o = tint_to(self._object(rng), mean_col)
            else:
                o = self._object(rng)
            o = transform(o, side * np.exp(rng.uniform(-0.6, 0.6)), rng.uniform(-30, 30), rng.random() < 0.5)
            items.append((o, g, None))
        order = rng.permutation(len(items))

        free = np.ones((h, w), np.uint8)
        full_masks: list[np.ndarray] = []
        groups: list[int] = []
        blur_obj = rng.random() < 0.3
        for i in order:
            rgba, g, reg = items[i]
            oh, ow = min(rgba.shape[0], h), min(rgba.shape[1], w)
            rgba = rgba[:oh, :ow]
            avail = (free & reg) if reg is not None else free
            if avail.sum() < 0.02 * h * w:
                avail = free
            y, x = self._place(rng, avail, oh, ow)
            alpha = rgba[:, :, 3].astype(np.float32) / 255
            if rng.random() < 0.25:  # soft edges
                alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.6, 1.8))
            col = rgba[:, :, :3].astype(np.float32)
            if blur_obj:
                col = cv2.GaussianBlur(col, (0, 0), rng.uniform(0.5, 1.2))
            sl = (slice(y, y + oh), slice(x, x + ow))
            if rng.random() < 0.3:  # drop shadow
                dy, dx = int(rng.integers(2, 8)), int(rng.integers(-6, 7))
                sh = cv2.GaussianBlur(alpha, (0, 0), 3) * rng.uniform(0.3, 0.6)
                M = np.float32([[1, 0, dx], [0, 1, dy]])
                sh = cv2.warpAffine(sh, M, (ow, oh))
                img[sl] *= (1 - sh)[..., None]
            img[sl] = img[sl] * (1 - alpha[..., None]) + col * alpha[..., None]
            m = np.zeros((h, w), bool)
            m[sl] = alpha > 0.5
            for prev in full_masks:  # later pastes occlude earlier ones
                prev &= ~m
            full_masks.append(m)
            groups.append(g)
            free[sl][cv2.dilate(m[sl].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 0

        # global photometric match: same blur / noise / gain over the whole composite
        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0))
        img *= rng.uniform(0.85, 1.15)
        img += rng.normal(0, rng.uniform(0, 6), img.shape).astype(np.float32)
        image = img.clip(0, 255).astype(np.uint8)

        keep = [i for i, m in enumerate(full_masks) if np.count_nonzero(m) >= 30]
        # report instances in a stable order: group 0 first
        keep.sort(key=lambda i: (groups[i], i))
        return Scene(image, [full_masks[i] for i in keep], [groups[i] for i in keep])


def contact_sheet(scenes: list[Scene], cols: int = 4, cell: int = 320) -> np.ndarray:
    """RGB grid; group 0 outlined green, other objects outlined red."""
    rows = (len(scenes) + cols - 1) // cols
    sheet = np.full((rows * cell, cols * cell, 3), 255, np.uint8)
    for k, sc in enumerate(scenes):
        img = sc.image.copy()
        for m, g in zip(sc.masks, sc.groups):
            cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, cnts, -1, (0, 255, 0) if g == 0 else (255, 0, 0), 2)
        s = cell / max(img.shape[:2])
        img = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        sheet[r * cell:r * cell + img.shape[0], c * cell:c * cell + img.shape[1]] = img
    return sheet


# ---------------------------------------------------------------- real-size scenes (issue 23)

REAL_SIZES = ((4000, 3000), (4032, 3024), (4240, 2832), (3000, 4000))   # 12-MP photos (w, h)
REAL_BG_MAX_SIDE = 4240
AREA_RANGE = (0.0002, 0.01)      # an object's mask area / the photo's area


@lru_cache(maxsize=2)
def load_background_full(path: Path) -> np.ndarray:
    """The wallpaper at up to REAL_BG_MAX_SIDE (real-size scenes need its native detail)."""
    return read_rgb(path, REAL_BG_MAX_SIDE)


def _family(p: Path) -> str:
    """An object's family: its clipart folder (food/fruit, animals/birds, recreation/sports ...)."""
    try:
        return str(p.parent.relative_to(CLIPART_ROOT))
    except ValueError:
        return ""


def relight(rgba: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Light ± amount: a gain over the whole object times a linear shading across it."""
    h, w = rgba.shape[:2]
    gain = rng.uniform(1 - amount, 1 + amount)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ramp = ((xx / max(w - 1, 1) - 0.5) * np.cos(ang) + (yy / max(h - 1, 1) - 0.5) * np.sin(ang))
    shade = gain * (1 + ramp * rng.uniform(0, amount))
    rgb = (rgba[:, :, :3].astype(np.float32) * shade[..., None]).clip(0, 255).astype(np.uint8)
    return np.dstack([rgb, rgba[:, :, 3]])


def mask_area(rgba: np.ndarray) -> int:
    return int((rgba[:, :, 3] > 127).sum())


def scale_to_area(rgba: np.ndarray, area: float, angle: float, flip: bool) -> np.ndarray:
    """The object rotated by `angle` and scaled so its opaque area is about `area` px."""
    s = np.sqrt(area / max(mask_area(rgba), 1))
    return transform(rgba, max(rgba.shape[:2]) * s, angle, flip)


def two_pieces(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An object in two pieces (a racket and its ball): b, smaller, beside a with a gap."""
    ha, wa = a.shape[:2]
    b = transform(b, max(ha, wa) * rng.uniform(0.3, 0.6), 0.0, False)
    hb, wb = b.shape[:2]
    gap = int(max(3, max(ha, wa) * rng.uniform(0.05, 0.2)))
    side = int(rng.integers(4))
    if side < 2:   # right / left
        H, W = max(ha, hb), wa + gap + wb
        ya, yb = (H - ha) // 2, int(rng.integers(0, H - hb + 1))
        xa, xb = (0, wa + gap) if side == 0 else (wb + gap, 0)
    else:          # below / above
        H, W = ha + gap + hb, max(wa, wb)
        xa, xb = (W - wa) // 2, int(rng.integers(0, W - wb + 1))
        ya, yb = (0, ha + gap) if side == 2 else (hb + gap, 0)
    out = np.zeros((H, W, 4), np.uint8)
    out[ya:ya + ha, xa:xa + wa] = a
    sub = out[yb:yb + hb, xb:xb + wb]
    keep = b[:, :, 3:4] > sub[:, :, 3:4]
    sub[:] = np.where(keep, b, sub)
    return out


class RealSizeGenerator(SceneGenerator):
    """Issue 23's scenes: a 12-MP photo (scale < 1 shrinks everything alike, for cheaper
    training) with 3-15 copies of one small object (0.02-1 % of the photo's area; each copy
    ±30 % in size, ±45° rotated, ±25 % in light, some partly hidden by clutter or cut by the
    frame, some casting a soft shadow), 2-4 look-alikes of its family (another object of the
    same clipart folder tinted towards its colour, another object of about its shape in its
    colour, or the object itself in another colour), 0-2 unrelated objects, and sometimes a
    large object (an animal, a vehicle) that some copies lie on. A quarter of the repeated
    objects come in two pieces. Groups: 0 = the copies, 1.. = everything else; `roles` names
    each instance "copy", "lookalike", "other" or "host".

    scene(seed) is a pure function of (split, seed, scale, sources); its random stream is
    disjoint from SceneGenerator's for the same seed."""

    def __init__(self, split: str = "train", procedural: bool | None = None, scale: float = 1.0):
        super().__init__(split, procedural)
        self.scale = scale
        fam: dict[str, list[int]] = {}
        for i, p in enumerate(self.objects):
            fam.setdefault(_family(p), []).append(i)
        self.families = fam

    def _clip(self, rng: np.random.Generator, pool: "list[int] | None" = None) -> tuple[np.ndarray, int]:
        """(RGBA, index into self.objects or -1) of a usable clipart, from `pool` when given."""
        for _ in range(30):
            i = int(rng.choice(pool)) if pool else int(rng.integers(len(self.objects)))
            obj = load_clipart(self.objects[i])
            if obj is not None:
                return obj, i
        return procedural_object(rng, 160), -1

    def _main(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        r = rng.random()
        if self.procedural or not self.objects or r < 0.1:
            return procedural_object(rng, int(rng.integers(96, 256))), -1
        if r < 0.2 and self.backgrounds:
            photo = load_background(self.backgrounds[rng.integers(len(self.backgrounds))])
            return photo_cutout(rng, photo, int(rng.integers(96, 256))), -1
        return self._clip(rng)

    def _lookalike(self, rng: np.random.Generator, main: np.ndarray, idx: int, colour: np.ndarray) -> np.ndarray:
        r = rng.random()
        if idx >= 0 and r < 0.45:   # same family (clipart folder), pulled towards the copies' colour
            pool = [i for i in self.families.get(_family(self.objects[idx]), []) if i != idx]
            if len(pool) >= 1:
                o, _ = self._clip(rng, pool)
                return tint_to(o, colour) if rng.random() < 0.6 else o
        if r < 0.8 and self.objects and not self.procedural:   # about its shape, in its colour
            asp = np.log(main.shape[1] / main.shape[0])
            cands = [self._clip(rng)[0] for _ in range(6)]
            o = min(cands, key=lambda c: abs(np.log(c.shape[1] / c.shape[0]) - asp))
            return tint_to(o, colour)
        if r < 0.8:
            return tint_to(procedural_object(rng, int(rng.integers(96, 256))), colour)
        return distinct_recolour(main, rng)   # the object itself, in another colour

    def _real_background(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        if self.procedural or rng.random() < 0.1:
            small = procedural_background(rng, max(h // 4, 8), max(w // 4, 8))
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        photo = load_background_full(self.backgrounds[rng.integers(len(self.backgrounds))])
        ph, pw = photo.shape[:2]
        s = rng.uniform(1.0, 1.4) * max(h / ph, w / pw)
        ch, cw = min(ph, int(h / s) + 1), min(pw, int(w / s) + 1)
        y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        crop = photo[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

    def scene(self, seed: int) -> Scene:
        rng = np.random.default_rng([seed, 0 if self.split == "train" else 1, 23])
        w, h = REAL_SIZES[int(rng.integers(len(REAL_SIZES)))]
        w, h = max(64, round(w * self.scale)), max(64, round(h * self.scale))
        img = self._real_background(rng, h, w).astype(np.float32)
        total = float(h * w)

        main, idx = self._main(rng)
        if rng.random() < 0.25:   # in two pieces
            main = two_pieces(main, self._main(rng)[0], rng)
        main = recolour(main, rng, 0.05)
        opaque = main[:, :, 3] > 127
        colour = main[opaque][:, :3].mean(0) if opaque.any() else np.full(3, 128.0)
        lo, hi = AREA_RANGE
        base = np.exp(rng.uniform(np.log(lo / 0.49), np.log(hi / 1.69)))    # ±30 % stays in range
        base_angle, flip = rng.uniform(-180, 180), rng.random() < 0.2
        shadow_dir = rng.uniform(0, 2 * np.pi)
        shadows = rng.random() < 0.6
        items: list[tuple[np.ndarray, int, str]] = []
        for _ in range(int(rng.integers(3, 16))):
            k = rng.uniform(0.7, 1.3)
            area = float(np.clip(base * k * k, lo, hi)) * total
            o = scale_to_area(main, area, base_angle + rng.uniform(-45, 45), flip)
            items.append((relight(recolour(o, rng, 0.03), rng, 0.25), 0, "copy"))
        n_look = int(rng.integers(2, 5))
        kinds = [self._lookalike(rng, main, idx, colour) for _ in range(int(rng.integers(1, 3)))]
        for j in range(n_look):
            o = kinds[j % len(kinds)]
            area = float(np.clip(base * np.exp(rng.uniform(-0.5, 0.5)), lo, hi)) * total
            o = scale_to_area(o, area, rng.uniform(-180, 180), rng.random() < 0.5)
            items.append((relight(o, rng, 0.25), 1 + j % len(kinds), "lookalike"))
        g = 1 + len(kinds)
        for _ in range(int(rng.integers(0, 3))):
            o = self._object(rng)
            area = float(np.exp(rng.uniform(np.log(lo), np.log(0.03)))) * total
            items.append((scale_to_area(o, area, rng.uniform(-30, 30), rng.random() < 0.5), g, "other"))
            g += 1

        free = np.ones((-(-h // 8), -(-w // 8)), np.uint8)   # placement grid, 8 px cells
        masks: list[np.ndarray] = []
        groups: list[int] = []
        roles: list[str] = []
        host = None
        if rng.random() < 0.35:   # a large object some copies lie on
            o = self._object(rng) if rng.random() < 0.5 or not self.objects else self._clip(rng)[0]
            o = scale_to_area(o, rng.uniform(0.04, 0.15) * total, rng.uniform(-20, 20), rng.random() < 0.5)
            o = o[:h, :w]
            y, x = self._place(rng, free, -(-o.shape[0] // 8), -(-o.shape[1] // 8))
            m = self._paste(img, o, x * 8, y * 8, rng, False, shadow_dir, blur=False)
            masks.append(m); groups.append(g); roles.append("host")
            host = m[::8, ::8][:free.shape[0], :free.shape[1]]
            free[cv2.dilate(host.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0
        order = rng.permutation(len(items))
        on_host = 0
        blur_obj = rng.random() < 0.3
        for i in order:
            rgba, grp, role = items[i]
            oh, ow = rgba.shape[:2]
            ch, cw = -(-oh // 8), -(-ow // 8)
            if host is not None and role == "copy" and on_host < 2 and rng.random() < 0.5:
                inner = cv2.erode(host.astype(np.uint8), np.ones((3, 3), np.uint8))
                y, x = self._place(rng, inner, ch, cw)
                on_host += 1
            else:
                y, x = self._place(rng, free, ch, cw)
            y, x = y * 8, x * 8
            if role == "copy" and rng.random() < 0.1:   # cut by the frame: 20-40 % outside
                cut = rng.uniform(0.2, 0.4)
                side = int(rng.integers(4))
                if side == 0:
                    x = -int(ow * cut)
                elif side == 1:
                    x = w - int(ow * (1 - cut))
                elif side == 2:
                    y = -int(oh * cut)
                else:
                    y = h - int(oh * (1 - cut))
            m = self._paste(img, rgba, x, y, rng, shadows and rng.random() < 0.7, shadow_dir, blur_obj)
            box = (slice(max(y, 0), max(min(y + oh, h), 0)), slice(max(x, 0), max(min(x + ow, w), 0)))
            for prev in masks:   # later pastes occlude earlier ones
                prev[box] &= ~m[box]
            if role == "copy" and rng.random() < 0.15:   # partly hidden by clutter (a leaf, grass)
                m &= ~self._occlude(img, rng, m)
            masks.append(m); groups.append(grp); roles.append(role)
            gy0, gx0 = box[0].start // 8, box[1].start // 8
            gy1, gx1 = -(-box[0].stop // 8), -(-box[1].stop // 8)
            if gy1 > gy0 and gx1 > gx0:
                sub = np.zeros((gy1 * 8 - gy0 * 8, gx1 * 8 - gx0 * 8), np.uint8)
                part = m[gy0 * 8:gy1 * 8, gx0 * 8:gx1 * 8]
                sub[:part.shape[0], :part.shape[1]] = part
                cells = sub.reshape(gy1 - gy0, 8, gx1 - gx0, 8).any((1, 3))
                g0y, g0x = max(gy0 - 1, 0), max(gx0 - 1, 0)
                grown = np.zeros((gy1 + 1 - g0y, gx1 + 1 - g0x), np.uint8)
                grown[gy0 - g0y:gy0 - g0y + cells.shape[0], gx0 - g0x:gx0 - g0x + cells.shape[1]] = cells
                grown = cv2.dilate(grown, np.ones((3, 3), np.uint8)) > 0
                fr = free[g0y:gy1 + 1, g0x:gx1 + 1]
                fr[grown[:fr.shape[0], :fr.shape[1]]] = 0

        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0))
        img *= rng.uniform(0.85, 1.15)
        noise = rng.uniform(0, 5)
        if noise > 0.5:
            img += rng.standard_normal(img.shape, dtype=np.float32) * noise
        image = img.clip(0, 255).astype(np.uint8)
        keep = [i for i, m in enumerate(masks) if np.count_nonzero(m) >= 30]
        keep.sort(key=lambda i: (groups[i], i))
        return Scene(image, [masks[i] for i in keep], [groups[i] for i in keep], [roles[i] for i in keep])

    @staticmethod
    def _paste(img: np.ndarray, rgba: np.ndarray, x: int, y: int, rng: np.random.Generator,
               shadow: bool, shadow_dir: float, blur: bool) -> np.ndarray:
        """Composites rgba at (x, y) (may reach past the frame); returns its H×W bool mask."""
        H, W = img.shape[:2]
        oh, ow = rgba.shape[:2]
        alpha = rgba[:, :, 3].astype(np.float32) / 255
        if rng.random() < 0.25:
            alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.6, 1.5))
        col = rgba[:, :, :3].astype(np.float32)
        if blur:
            col = cv2.GaussianBlur(col, (0, 0), rng.uniform(0.5, 1.2))
        size = max(oh, ow)
        if shadow:   # a soft shadow, offset away from the light
            off = size * rng.uniform(0.04, 0.12)
            dx, dy = off * np.cos(shadow_dir), off * np.sin(shadow_dir)
            pad = int(off + 3 * size * 0.08) + 2
            sh = np.zeros((oh + 2 * pad, ow + 2 * pad), np.float32)
            sh[pad:pad + oh, pad:pad + ow] = alpha
            sh = cv2.warpAffine(sh, np.float32([[1, 0, dx], [0, 1, dy]]), sh.shape[::-1])
            sh = cv2.GaussianBlur(sh, (0, 0), max(1.0, size * rng.uniform(0.03, 0.08))) * rng.uniform(0.25, 0.5)
            _blend(img, None, sh, x - pad, y - pad)
        _blend(img, col, alpha, x, y)
        m = np.zeros((H, W), bool)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + oh, H), min(x + ow, W)
        if y1 > y0 and x1 > x0:
            m[y0:y1, x0:x1] = alpha[y0 - y:y1 - y, x0 - x:x1 - x] > 0.5
        return m

    def _occlude(self, img: np.ndarray, rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
        """Covers 20-45 % of an object with a blob of texture from elsewhere; returns the blob's mask."""
        H, W = img.shape[:2]
        ys, xs = np.nonzero(m)
        if len(ys) < 50:
            return np.zeros_like(m)
        y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        bh, bw = y1 - y0, x1 - x0
        f = rng.uniform(0.45, 0.7)
        oh, ow = max(int(bh * f), 4), max(int(bw * f), 4)
        cy = int(y0 + rng.choice([0.0, 1.0]) * bh) if rng.random() < 0.5 else int(rng.integers(y0, y1))
        cx = int(rng.integers(x0, x1)) if rng.random() < 0.5 else int(x0 + rng.choice([0.0, 1.0]) * bw)
        sy, sx = int(rng.integers(0, max(H - oh, 1))), int(rng.integers(0, max(W - ow, 1)))
        tex = img[sy:sy + oh, sx:sx + ow].copy()
        if tex.shape[:2] != (oh, ow):
            return np.zeros_like(m)
        blob = random_blob(rng, oh, ow, 0.6).astype(np.float32) / 255
        for _ in range(10):
            out = np.zeros_like(m)
            ty, tx = cy - oh // 2, cx - ow // 2
            yy0, xx0, yy1, xx1 = max(ty, 0), max(tx, 0), min(ty + oh, H), min(tx + ow, W)
            out[yy0:yy1, xx0:xx1] = blob[yy0 - ty:yy1 - ty, xx0 - tx:xx1 - tx] > 0.5
            share = np.count_nonzero(out & m) / max(np.count_nonzero(m), 1)
            if 0.15 <= share <= 0.45:
                _blend(img, tex, cv2.GaussianBlur(blob, (0, 0), 1.0), tx, ty)
                return out
            cy, cx = (cy + (y0 + y1) // 2) // 2, (cx + (x0 + x1) // 2) // 2
            if share > 0.45:
                cy, cx = int(rng.integers(y0, y1)), int(rng.choice([x0, x1]))
        return np.zeros_like(m)


def _blend(img: np.ndarray, col: "np.ndarray | None", alpha: np.ndarray, x: int, y: int) -> None:
    """img[y:, x:] = mix towards col by alpha (col None: darken by alpha, a shadow); clipped to the frame."""
    H, W = img.shape[:2]
    oh, ow = alpha.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + oh, H), min(x + ow, W)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    sl = img[y0:y1, x0:x1]
    if col is None:
        sl *= 1 - a
    else:
        sl[:] = sl * (1 - a) + col[y0 - y:y1 - y, x0 - x:x1 - x] * a
