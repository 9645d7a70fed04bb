"""Cast shadows beside a selected object, so that erase takes them with it (issue 22, point 4).

A user clicks the object, not its shadow. A soft cast shadow on the ground is modelled as the
object's silhouette moved a little away from the light and blurred. Across such a shadow's soft
edge the light falls towards the inside, all along the edge; texture beside an object (dark
pebbles, foliage, a boundary in the photo) darkens in some places and lightens in others. So for
each object (a part of the grown hole) the step tries moves (DIRECTIONS × SHIFTS) and blurs of
the selection's silhouette and keeps the one along whose visible edge the light falls inwards
most consistently. It is a shadow when that consistency reaches MIN_CONSISTENCY and its inside
is at least MIN_DARKENING darker both than just outside its edge and than a plane through the
lit ground around the object; where that ground is no plane (MAX_GROUND_SPREAD: the photo's own
light and dark parts meet beside the object) nothing is taken. The pixels the shadow darkens by
VISIBLE_DARKENING or more, and the paste's fade width beyond them, join the hole. Everything is
measured on a small copy (the object's long side WORK_SIDE px).

The numbers were chosen on bench/erase.py's val scenes (docs/erase.md, "Cast shadows"). Plain
arrays in and out; the pipeline calls it with the automatic growth only (an explicit dilation is
the user's exact hole)."""
from __future__ import annotations

import cv2
import numpy as np

from .erase_maths import FEATHER_PX
from .masks import Parts, mask_box

WORK_SIDE = 64                      # px: an object's long side where the shadow is looked for
SHIFTS = (0.04, 0.07, 0.1, 0.14)    # the shadow's move away from the object, × its long side
DIRECTIONS = 16                     # directions of that move
BLURS = (0.03, 0.06)                # the shadow's softness (Gaussian σ), × the long side (+ 0.7 px)
LIGHT_BLUR = 2.0                    # px (working scale): the light is smoothed so before its slope is read
BAND = 0.3                          # looked for within this share of the long side around the hole
MIN_EDGE_PX = 40                    # px (working scale) of visible shadow edge needed to judge it
FULL_EDGE_PX = 150                  # px of visible edge at which a candidate counts in full
MIN_CONSISTENCY = 0.97              # share of the visible edge where the light falls inwards
INNER = 0.3                         # the shadow's inside: where its strength is at least this
MIN_DARKENING = 0.1                 # the shadow's core at least this much darker (0.1 = 10 %)
VISIBLE_DARKENING = 0.06            # pixels darkened at least this much join the hole
TIE = 0.02                          # candidates this close to the most consistent one are near-ties
TIES = 12                           # ... of which at most this many are weighed by their darkening
MAX_GROUND_SPREAD = 0.35            # log light: the lit ground around the object must fit a plane this well
MIN_OBJECT_PX = 16                  # px: smaller parts of the hole cast no shadow worth finding
MAX_OBJECTS = 64                    # the largest parts only (bounds the cost of a speckled mask)


def _edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)


def _moves(size: float) -> list[tuple[int, int]]:
    out = []
    for r in SHIFTS:
        for k in range(DIRECTIONS):
            t = 2 * np.pi * k / DIRECTIONS
            move = (int(round(r * size * np.cos(t))), int(round(r * size * np.sin(t))))
            if move not in out:
                out.append(move)
    return out


def _below_lit_ground(light: np.ndarray, inner: np.ndarray, lit: np.ndarray) -> float | None:
    """Median of the log light inside the candidate shadow minus a plane fitted to the lit ground
    around the object; None when that ground is no plane (the photo's own light and dark parts
    meet beside the object, where a shadow cannot be told from them)."""
    ys, xs = np.nonzero(lit)
    if len(ys) < 10:
        return None
    ground = np.stack([np.ones(len(xs)), xs, ys], 1)
    plane, *_ = np.linalg.lstsq(ground, light[ys, xs], rcond=None)
    if float(np.std(light[ys, xs] - ground @ plane)) > MAX_GROUND_SPREAD:
        return None
    yi, xi = np.nonzero(inner)
    return float(np.median(light[yi, xi] - np.stack([np.ones(len(xi)), xi, yi], 1) @ plane))


def _shadow(light: np.ndarray, silhouette: np.ndarray, usable: np.ndarray, size: float
            ) -> tuple[float, np.ndarray] | None:
    """On the working grid: log light, the object's silhouette (0..1), where the shadow can be seen.
    -> (darkening, shadow strength 0..1) of the best candidate when it is a shadow, else None."""
    lx, ly = _edges(cv2.GaussianBlur(light, (0, 0), LIGHT_BLUR))
    h, w = light.shape
    moves = _moves(size)
    pad = 1 + max(max(abs(dx), abs(dy)) for dx, dy in moves)
    scored: list[tuple[float, float, int, int, float]] = []     # key, consistency, dx, dy, blur
    padded_soft: dict[float, np.ndarray] = {}

    def moved(a: np.ndarray, dx: int, dy: int) -> np.ndarray:     # a padded map, moved by (dx, dy)
        return a[pad - dy:pad - dy + h, pad - dx:pad - dx + w]

    for blur in BLURS:
        soft = cv2.GaussianBlur(silhouette, (0, 0), blur * size + 0.7)
        padded = [np.pad(a, pad) for a in (soft, *_edges(soft))]
        padded_soft[blur] = padded[0]
        for dx, dy in moves:
            s, gx, gy = (moved(a, dx, dy) for a in padded)
            mag = np.hypot(gx, gy)
            ring = usable & (s > 0.1) & (s < 0.9) & (mag > 0.02)
            n = int(ring.sum())
            if n < MIN_EDGE_PX:
                continue
            consistency = float((-(lx[ring] * gx[ring] + ly[ring] * gy[ring]) > 0).mean())
            scored.append((consistency * min(1.0, n / FULL_EDGE_PX), consistency, dx, dy, blur))
    if not scored:
        return None
    top = max(c[0] for c in scored)
    best: tuple[float, np.ndarray] | None = None
    # near-ties (a clear shadow's edge is consistent for several moves): the darkest one
    for key, consistency, dx, dy, blur in sorted(scored, reverse=True)[:TIES]:
        if consistency < MIN_CONSISTENCY or key < top - TIE:
            break
        s = moved(padded_soft[blur], dx, dy)
        inner = usable & (s >= INNER)
        outer = usable & (s < 0.1) & (cv2.dilate((s >= 0.1).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        if inner.sum() < 10 or outer.sum() < 10:
            continue
        # darker than just outside its edge, and than the ground all around the object predicts
        # there (a plane through the lit ground: a photo's own dark ground on one side is no shadow)
        below = _below_lit_ground(light, inner, usable & (s < 0.05))
        if below is None:
            continue
        step = light[inner].mean() - light[outer].mean()
        darkening = 1.0 - float(np.exp(min(0.0, max(step, below) / max(0.5, float(s[inner].mean())))))
        if best is None or darkening > best[0]:
            best = (darkening, s)
    return best if best is not None and best[0] >= MIN_DARKENING else None


def cast_shadows(rgb: np.ndarray, selection: np.ndarray, grown: np.ndarray) -> np.ndarray:
    """The pixels outside `grown` that the selected objects' cast shadows visibly darken (bool).

    rgb: the photo (H×W×3 uint8); selection: what the user selected; grown: the hole as grown."""
    height, width = grown.shape
    extra = np.zeros((height, width), bool)
    parts = Parts(grown)
    for i in parts.largest(MAX_OBJECTS):
        x, y, bw, bh = parts.box(i)
        size = max(bw, bh)
        if size < MIN_OBJECT_PX:
            continue
        m = int(BAND * size) + 4
        x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(width, x + bw + m), min(height, y + bh + m)
        f = min(1.0, WORK_SIDE / size)
        ww, hh = max(8, round((x1 - x0) * f)), max(8, round((y1 - y0) * f))

        def small(a: np.ndarray) -> np.ndarray:
            return cv2.resize(a.astype(np.float32), (ww, hh), interpolation=cv2.INTER_AREA)

        light = np.log(small(rgb[y0:y1, x0:x1].sum(-1, dtype=np.uint16)) / 3 + 8)
        part = parts.window(i, x0, y0, x1, y1)
        silhouette = small(part & selection[y0:y1, x0:x1])
        blocked = cv2.dilate((small(grown[y0:y1, x0:x1]) > 0.01).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        dist = cv2.distanceTransform((~blocked).astype(np.uint8), cv2.DIST_L2, 3)
        usable = ~blocked & (dist >= 1) & (dist <= BAND * size * f + 1)
        if usable.sum() < 100:
            continue
        found = _shadow(light, silhouette, usable, size * f)
        if found is None:
            continue
        darkening, s = found
        add = (1.0 - (1.0 - darkening) ** s) >= VISIBLE_DARKENING
        extra[y0:y1, x0:x1] |= cv2.resize(add.astype(np.uint8), (x1 - x0, y1 - y0),
                                          interpolation=cv2.INTER_NEAREST) > 0
    box = mask_box(extra)
    if box is not None:     # the paste fades in over FEATHER_PX inside the hole's edge: reach that far past the shadow
        r = int(np.ceil(FEATHER_PX))
        x0, y0, x1, y1 = max(0, box[0] - r), max(0, box[1] - r), min(width, box[2] + r), min(height, box[3] + r)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        extra[y0:y1, x0:x1] = cv2.dilate(extra[y0:y1, x0:x1].astype(np.uint8), disc) > 0
        extra[y0:y1, x0:x1] &= ~grown[y0:y1, x0:x1]
    return extra
