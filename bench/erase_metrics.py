"""What a viewer sees in an erased region, measured against the clean photo (bench/erase.py).

- PSNR and SSIM inside the true hole. PSNR rewards blur: read it beside the next three.
- texture kept: mean |Laplacian| of the result over that of the clean photo inside the hole
  (1 = as much fine detail as the truth; a smear tends to 0; a fill noisier than the truth > 1).
- object shows through: share of the object's pixels (where it differs visibly from the
  background) at which the result is closer to the object than to the clean photo.
- seam: gradient added at the edge of what the method changed: mean of max(0, |∇result| −
  |∇clean|) in grey levels over the 2-px band on each side of the changed region's outline.
"""
from __future__ import annotations

import cv2
import numpy as np

GHOST_MIN_DIFF = 30.0   # RGB distance: object pixels closer to the background than this are not counted


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    d = a[where].astype(np.float64) - b[where]
    return float(10 * np.log10(255.0 ** 2 / max(1e-10, (d ** 2).mean())))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean SSIM (grey, Gaussian σ 1.5) over the pixels in `where`."""
    x, y = _grey(a).astype(np.float64), _grey(b).astype(np.float64)
    g = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(m[where].mean())


def texture_kept(result: np.ndarray, clean: np.ndarray, where: np.ndarray) -> float:
    lr = np.abs(cv2.Laplacian(_grey(result), cv2.CV_32F))[where].mean()
    lc = np.abs(cv2.Laplacian(_grey(clean), cv2.CV_32F))[where].mean()
    return float(lr / max(lc, 1e-6))


def shows_through(result: np.ndarray, clean: np.ndarray, photo: np.ndarray, obj: np.ndarray) -> float:
    """Share of the object's visible pixels where the result is closer to the object than to the
    clean background (0 when no object pixel differs visibly from the background)."""
    r, c, p = (z.astype(np.float32) for z in (result, clean, photo))
    visible = obj & (np.linalg.norm(p - c, axis=-1) >= GHOST_MIN_DIFF)
    if not visible.any():
        return 0.0
    to_obj = np.linalg.norm(r - p, axis=-1)[visible]
    to_bg = np.linalg.norm(r - c, axis=-1)[visible]
    return float((to_obj < to_bg).mean())


def seam(result: np.ndarray, clean: np.ndarray, photo: np.ndarray) -> float:
    changed = np.abs(result.astype(np.int16) - photo).max(-1) > 0
    if not changed.any():
        return 0.0
    k = np.ones((5, 5), np.uint8)
    ch = changed.astype(np.uint8)
    band = (cv2.dilate(ch, k) > 0) & (cv2.erode(ch, k) == 0)

    def grad(z: np.ndarray) -> np.ndarray:
        g = _grey(z)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8

    return float(np.maximum(0.0, grad(result) - grad(clean))[band].mean())


def measure(result: np.ndarray, clean: np.ndarray, photo: np.ndarray, hole: np.ndarray, obj: np.ndarray,
            footprint: np.ndarray | None = None) -> dict[str, float]:
    """hole: where PSNR/SSIM/texture are measured (the true hole); obj: the objects' pixels;
    footprint: object + shadow (PSNR over it as `psnr_shadow` when given)."""
    out = {"psnr": psnr(result, clean, hole), "ssim": ssim(result, clean, hole),
           "texture": texture_kept(result, clean, hole), "ghost": shows_through(result, clean, photo, obj),
           "seam": seam(result, clean, photo)}
    if footprint is not None:
        out["psnr_shadow"] = psnr(result, clean, footprint)
    return out
