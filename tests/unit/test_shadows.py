"""Cast shadows beside a selected object go with it (backend/shadows.py, issue 22 point 4)."""
from __future__ import annotations

import cv2
import numpy as np

from backend.erase_maths import grow_hole
from backend.pipeline import Pipeline
from backend.shadows import cast_shadows

H, W = 240, 320


def gravel(seed: int = 5) -> np.ndarray:
    """Fine texture over a soft gradient (pebbles-like): what a shadow detector must not mistake."""
    rng = np.random.default_rng(seed)
    base = np.linspace(90, 170, W, dtype=np.float32)[None, :, None].repeat(H, 0).repeat(3, 2)
    noise = cv2.GaussianBlur(rng.normal(0, 30, (H, W)).astype(np.float32), (0, 0), 1.2)[..., None]
    return np.clip(base + noise * np.array([1.0, 0.95, 0.85], np.float32), 0, 255).astype(np.uint8)


def can(shadow: float, background: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (photo, the object's mask, how much the shadow darkens each pixel 0..1)."""
    obj = np.zeros((H, W), np.uint8)
    cv2.ellipse(obj, (150, 115), (26, 44), 20, 0, 360, 1, -1)
    move = np.float32([[1, 0, 11], [0, 1, 8]])                # the light from the upper left
    dark = shadow * cv2.GaussianBlur(cv2.warpAffine(obj.astype(np.float32), move, (W, H)), (0, 0), 3.5)
    photo = background.astype(np.float32) * (1 - dark[..., None])
    photo[obj > 0] = (200, 30, 30)
    return np.clip(photo + 0.5, 0, 255).astype(np.uint8), obj > 0, dark


def erased(photo: np.ndarray, mask: np.ndarray, dilation: int | None = None) -> np.ndarray:
    """The photo (as opaque RGBA) after Pipeline.erase with the built-in engine, the patch pasted back."""
    pipe = Pipeline()
    pixels = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    (x, y, w, h), patch, _ = pipe.erase(pipe.entry(pixels), mask.view(np.uint8) * 255, "builtin", dilation)
    out = pixels.copy()
    out[y:y + h, x:x + w] = patch
    return out


def test_a_soft_cast_shadow_goes_with_its_object():
    photo, mask, dark = can(0.5, gravel())
    grown = grow_hole(mask, None)
    extra = cast_shadows(photo, mask, grown)
    shadow_left = (dark >= 0.1) & ~grown
    assert shadow_left.sum() > 300                              # the growth alone leaves a shadow
    assert (extra & shadow_left).sum() >= 0.8 * shadow_left.sum()
    # and eats little of the lit ground beyond the paste's fade (FEATHER_PX past the shadow, on purpose)
    near = cv2.dilate((dark >= 0.03).astype(np.uint8), np.ones((2 * 8 + 1,) * 2, np.uint8)) > 0
    assert (extra & ~near).sum() <= 0.05 * extra.sum()

    out = erased(photo, mask)[..., :3]
    clean = gravel()
    light = clean[shadow_left].astype(float).mean()
    before = light - photo[shadow_left].astype(float).mean()   # how much darker the shadow left it
    after = abs(light - out[shadow_left].astype(float).mean())
    assert before > 20 and after < 0.3 * before                 # the ground's light is back there


def test_no_shadow_nothing_added():
    photo, mask, _ = can(0.0, gravel())
    assert not cast_shadows(photo, mask, grow_hole(mask, None)).any()


def test_dark_ground_beside_the_object_is_not_its_shadow():
    """Dark patches of the photo itself next to the object (not shaped like it) stay."""
    ground = gravel(7).astype(np.float32)
    rng = np.random.default_rng(1)
    for _ in range(25):
        cx, cy = int(rng.integers(60, 260)), int(rng.integers(30, 210))
        cv2.circle(ground, (cx, cy), int(rng.integers(6, 16)), (40, 40, 35), -1)
    ground[:, 175:] *= 0.55                                     # and a darker half beside it
    photo, mask, _ = can(0.0, np.clip(ground, 0, 255).astype(np.uint8))
    extra = cast_shadows(photo, mask, grow_hole(mask, None))
    assert extra.sum() <= 0.02 * mask.sum()


def test_an_exact_dilation_takes_no_shadow():
    """dilation=N is the user's exact hole: only that changes, shadow or not."""
    photo, mask, _ = can(0.5, gravel())
    out = erased(photo, mask, 4)
    grown = grow_hole(mask, 4)
    pixels = np.dstack([photo, np.full((H, W), 255, np.uint8)])
    assert np.array_equal(out[~grown], pixels[~grown])
