"""The rest of a repeated object: parts that lie at the same place beside the query and beside
every copy found (a drawing whose click selected one of its parts, a racket whose ball lies
beside it).

A one-click mask is often one part of an object drawn in several (a symbol and its letters, a
figure and its flags): select similar then finds the same part on every copy and nothing else
(docs/similar.md, nineteenth session: on the real-size split, 17 of the 27 scenes that find no copy). What
the click left out repeats with the copies: each copy is the query turned, scaled and re-lit, so
the neighbourhood of the query, mapped onto each copy by the pose that fits the two masks,
agrees with the copy's neighbourhood where the object goes on, and only by chance elsewhere. A
pixel beside the query is part of the object when most copies agree there and the same
comparison with each copy's neighbourhood turned wrong does not (the chance level: a plain wall
or a smooth gradient agrees whichever way it is turned, a part beside the object only one way).
The parts found so are then placed on each copy whose own neighbourhood agrees, and segmented
there by the one-click model (its clicks on the part) within the placed part.

Each part must also be an object to the one-click model (objects_only): a click inside it beside
the query selects about it, where a smooth background or a texture that agreed by chance selects
something else. Off by default (SimilarSettings.repeated_parts): on the real-size bench it
completes a few scenes' objects (+20 copies of 2,323) but adds background beside copies in others,
and on the standard split it takes background between copies that lie close together
(docs/similar.md, nineteenth session)."""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

import cv2
import numpy as np

from .shape_repair import interior_point
from .types import MaskPatch, Segment

MIN_COPIES = 4        # copies found (besides the query) before their neighbourhoods are compared
VOTERS = 10           # the best-scored copies that vote
REACH = 2.5           # the neighbourhood: the query's box grown by this × its long side on each side
WORK_SIDE = 320       # the neighbourhood's long side in working pixels
POSE_SIDE = 48        # canvas side for fitting a copy's pose to the query
ANGLE_STEP = 6        # degrees between the turns tried
REFINE_ANGLES = (-4, -2, 2, 4)         # then these turns (degrees) ...
REFINE_SCALES = (0.96, 1.04)           # ... and scales about the best
AGREE = 28.0          # RGB distance (0-441) under which two re-lit pixels agree
VOTE = 0.6            # share of the copies that must agree on a pixel of the object ...
OVER_CHANCE = 0.4     # ... and by this much more than when the copy's neighbourhood is turned wrong
CHANCE_TURNS = (90, 180, 270)   # the wrong turns (degrees)
GAP = 2               # agreeing pixels this close (working px) belong to one part
PART_MIN = 0.05       # a part is at least this share of the query's area
GROW_MAX = 6.0        # all parts together at most this × the query's area (else: not an object)
COPY_AGREE = 0.5      # a copy gets the parts where it agrees on at least this share of them
SEGMENT_AGREE = 0.5   # the one-click mask of a part is used when it overlaps the placed part this much (IoU) ...
MARGIN = 0.08         # ... within the placed part grown by this × the long side; else the placed part


class Pose(NamedTuple):
    """Where a copy is: image point p beside the query maps to c + s·R(angle)·(p − cq)."""
    cq: tuple[float, float]
    c: tuple[float, float]
    scale: float
    angle: float

    def matrix(self) -> np.ndarray:
        """2×3 affine map from image points beside the query to image points beside the copy."""
        rot = cv2.getRotationMatrix2D((0.0, 0.0), self.angle, self.scale)[:, :2]
        b = np.asarray(self.c) - rot @ np.asarray(self.cq)
        return np.hstack([rot, b[:, None]])


def centroid(p: MaskPatch) -> tuple[float, float]:
    ys, xs = np.nonzero(p.mask)
    return p.x + float(xs.mean()) + 0.5, p.y + float(ys.mean()) + 0.5


def _canvas(rgb: np.ndarray, p: MaskPatch, c: tuple[float, float], px_per: float) -> tuple[np.ndarray, np.ndarray]:
    """The patch's mask and the gray image under its box, around c, px_per canvas pixels per
    image pixel (POSE_SIDE square)."""
    h = POSE_SIDE / 2
    m = np.array([[px_per, 0, h - px_per * (c[0] - p.x)], [0, px_per, h - px_per * (c[1] - p.y)]], np.float32)
    gray = cv2.cvtColor(np.ascontiguousarray(p.region(rgb)), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if px_per < 0.5:
        gray = cv2.GaussianBlur(gray, (0, 0), 0.5 / px_per)
    mask = cv2.warpAffine(p.mask.astype(np.uint8), m, (POSE_SIDE, POSE_SIDE), flags=cv2.INTER_NEAREST) > 0
    return mask, cv2.warpAffine(gray, m, (POSE_SIDE, POSE_SIDE), flags=cv2.INTER_LINEAR)


def fit_pose(rgb: np.ndarray, query: MaskPatch, copy: MaskPatch) -> Pose:
    """The copy's pose: centroids, the square root of the area ratio, and the turn whose query
    mask best overlaps the copy's (ties broken by the masked gray correlation)."""
    cq, c = centroid(query), centroid(copy)
    s = float(np.clip(np.sqrt(copy.area / max(query.area, 1)), 0.5, 2.0))
    per = 0.9 * POSE_SIDE / (2 * max(query.mask.shape) + 1)
    qm, qi = _canvas(rgb, query, cq, per)
    km, ki = _canvas(rgb, copy, c, per / s)
    best, best_angle = -np.inf, 0.0
    centre = (POSE_SIDE / 2, POSE_SIDE / 2)
    for angle in range(-180, 180, ANGLE_STEP):
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rm = cv2.warpAffine(qm.astype(np.uint8), m, (POSE_SIDE, POSE_SIDE), flags=cv2.INTER_NEAREST) > 0
        union = rm | km
        if not union.any():
            continue
        iou = np.count_nonzero(rm & km) / np.count_nonzero(union)
        ri = cv2.warpAffine(qi, m, (POSE_SIDE, POSE_SIDE), flags=cv2.INTER_LINEAR)[union]
        a, b = ri - ri.mean(), ki[union] - ki[union].mean()
        ncc = float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))
        if iou + 0.25 * ncc > best:
            best, best_angle = iou + 0.25 * ncc, float(angle)
    return Pose(cq, c, s, best_angle)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return xx, yy


class Photo(NamedTuple):
    """The photo as the views read it: pixels at k × its size."""
    pixels: np.ndarray
    k: float


class Frame(NamedTuple):
    """The query's neighbourhood: image box (x0, y0) with working pixels per image pixel f."""
    x0: float
    y0: float
    f: float
    w: int
    h: int

    @classmethod
    def around(cls, query: MaskPatch) -> "Frame":
        long_side = max(query.mask.shape)
        x0, y0 = query.x - REACH * long_side, query.y - REACH * long_side
        x1, y1 = query.x + query.mask.shape[1] + REACH * long_side, query.y + query.mask.shape[0] + REACH * long_side
        f = WORK_SIDE / max(x1 - x0, y1 - y0)
        return cls(x0, y0, f, max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f)))

    def to_image(self, pose: Optional[Pose]) -> np.ndarray:
        """2×3 map from working pixels to image points (beside the copy at `pose`; None: the query)."""
        m = np.array([[1 / self.f, 0, self.x0], [0, 1 / self.f, self.y0], [0, 0, 1]])
        if pose is not None:
            m = np.vstack([pose.matrix(), [0, 0, 1]]) @ m
        return m[:2]

    def photo(self, rgb: np.ndarray) -> "Photo":
        """The photo at about the working scale (INTER_AREA: every view then reads its pixels)."""
        if self.f >= 1:
            return Photo(rgb, 1.0)
        H, W = rgb.shape[:2]
        w, h = max(1, round(W * self.f)), max(1, round(H * self.f))
        return Photo(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), w / W)

    def view(self, photo: "Photo", pose: Optional[Pose]) -> tuple[np.ndarray, np.ndarray]:
        """(the photo seen in working pixels from beside the query, or beside the copy at `pose`,
        as float32; where that lies on the photo)."""
        m = self.to_image(pose) * photo.k
        h, w = photo.pixels.shape[:2]
        out = cv2.warpAffine(photo.pixels, m.astype(np.float32), (self.w, self.h),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        xx, yy = _grid(self.h, self.w)
        px, py = m[0, 0] * xx + m[0, 1] * yy + m[0, 2], m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
        return out.astype(np.float32), (px >= 0) & (py >= 0) & (px < w) & (py < h)

    def mask_view(self, mask: MaskPatch) -> np.ndarray:
        """A patch beside the query seen in working pixels."""
        if not mask.mask.size:
            return np.zeros((self.h, self.w), bool)
        m = self.to_image(None)
        m[:, 2] -= (mask.x, mask.y)
        return cv2.warpAffine(mask.mask.astype(np.float32), m.astype(np.float32), (self.w, self.h),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0.5


class Neighbourhood(NamedTuple):
    """The query's neighbourhood as every step compares it: its frame, the photo at the working
    scale, the query's view and its mask there."""
    frame: Frame
    photo: Photo
    q: np.ndarray
    qm: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray, query: MaskPatch) -> "Neighbourhood":
        fr = Frame.around(query)
        photo = fr.photo(rgb)
        return cls(fr, photo, fr.view(photo, None)[0], fr.mask_view(query))


def relight(q: np.ndarray, view: tuple[np.ndarray, np.ndarray], inside: np.ndarray) -> Optional[np.ndarray]:
    """The per-channel gain that re-lights the copy's view to the query on the query's own
    pixels (inside; None when the view hardly covers them)."""
    v, ok = view
    both = inside & ok
    if np.count_nonzero(both) < 4:
        return None
    return np.clip(q[both].mean(0) / np.maximum(v[both].mean(0), 1.0), 0.6, 1.6).astype(np.float32)


def _agreement(q: np.ndarray, view: tuple[np.ndarray, np.ndarray], gain: Optional[np.ndarray],
               tight: bool = False) -> np.ndarray:
    """Where the copy's view, re-lit by `gain`, agrees with the query's q; pixels off the photo
    never agree. Within a working pixel of slack, or exactly and at half the distance when
    `tight`."""
    v, ok = view
    if gain is None:
        return np.zeros(ok.shape, bool)
    d = q - v * gain
    dist = np.einsum("ijk,ijk->ij", d, d)
    dist[~ok] = np.inf
    if tight:                          # for choosing a pose: chance agreement stays rare
        return dist < (0.5 * AGREE) ** 2
    return cv2.erode(dist, np.ones((3, 3), np.uint8)) < AGREE ** 2     # a working pixel of slack (pose error)


def agreement(q: np.ndarray, view: tuple[np.ndarray, np.ndarray], inside: np.ndarray) -> np.ndarray:
    """Where the copy's view, re-lit to the query on the query's own pixels, agrees with it."""
    return _agreement(q, view, relight(q, view, inside))


def refine(pose: Pose, fr: "Frame", photo: "Photo", q: np.ndarray, qm: np.ndarray) -> Pose:
    """The pose turned half round (an ellipse fits its mask both ways), then a few degrees
    (REFINE_ANGLES), then scaled a little (REFINE_SCALES), each where the copy's neighbourhood
    agrees with the query's most (tight agreement: chance agreement stays rare): a few degrees
    off move a part beside the object by pixels, and thin parts (a line drawing) agree only
    where they meet."""
    def agreeing(p: Pose) -> int:
        view = fr.view(photo, p)
        return int(np.count_nonzero(_agreement(q, view, relight(q, view, qm), tight=True)))
    best = agreeing(pose)
    for step in (lambda p: [p._replace(angle=p.angle + 180)],
                 lambda p: [p._replace(angle=p.angle + da) for da in REFINE_ANGLES],
                 lambda p: [p._replace(scale=p.scale * ds) for ds in REFINE_SCALES]):
        for p in step(pose):
            n = agreeing(p)
            if n > best:
                best, pose = n, p
    return pose


def grouped(parts: np.ndarray) -> np.ndarray:
    """The parts grown by GAP working pixels (uint8): agreeing pixels this close belong to one
    part (a line drawing's strokes)."""
    return cv2.dilate(parts.astype(np.uint8), np.ones((2 * GAP + 1,) * 2, np.uint8))


def find_parts(rgb: np.ndarray, query: MaskPatch, copies: list[MaskPatch], taken: np.ndarray
               ) -> tuple[Optional[np.ndarray], Optional[Neighbourhood], list[Pose]]:
    """(the parts beside the query in working pixels, or None; the neighbourhood, None with too
    few copies; each copy's pose)."""
    if len(copies) < MIN_COPIES:
        return None, None, []
    nb = Neighbourhood.of(rgb, query)
    fr, photo, q, qm = nb
    poses = [fit_pose(rgb, query, c) for c in copies]
    poses[:VOTERS] = [refine(p, fr, photo, q, qm) for p in poses[:VOTERS]]
    votes = np.zeros((fr.h, fr.w), np.float32)
    chance = np.zeros((fr.h, fr.w), np.float32)
    for pose in poses[:VOTERS]:
        view = fr.view(photo, pose)
        gain = relight(q, view, qm)
        votes += _agreement(q, view, gain)
        for turn in CHANCE_TURNS:              # the same neighbourhood, turned wrong (lit as the copy)
            chance += _agreement(q, fr.view(photo, pose._replace(angle=pose.angle + turn)), gain) / len(CHANCE_TURNS)
    n = min(len(poses), VOTERS)
    votes, chance = votes / n, chance / n
    known = fr.view(Photo(taken.view(np.uint8), 1.0), None)[0] > 0.5
    near = cv2.dilate(qm.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    parts = (votes >= VOTE) & (votes - chance >= OVER_CHANCE) & ~near & ~known
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped(parts), connectivity=8)
    area = np.bincount(labels[parts], minlength=count)
    qarea = max(np.count_nonzero(qm), 1)
    keep = np.zeros(count, bool)
    for i in range(1, count):
        x, y, w, h, _ = stats[i]
        inner = x > 0 and y > 0 and x + w < fr.w and y + h < fr.h    # an object ends inside the frame
        keep[i] = inner and area[i] >= PART_MIN * qarea
    out = keep[labels] & parts
    if not out.any() or np.count_nonzero(out) > GROW_MAX * qarea:
        return None, nb, poses
    poses[VOTERS:] = [refine(p, fr, photo, q, qm) for p in poses[VOTERS:]]
    return out, nb, poses


def place(parts: np.ndarray, fr: Frame, pose: Optional[Pose], height: int, width: int) -> MaskPatch:
    """The parts (working pixels) drawn beside the copy at `pose` (None: the query), as a patch."""
    m = fr.to_image(pose)
    corners = m @ np.array([[0, fr.w, 0, fr.w], [0, 0, fr.h, fr.h], [1, 1, 1, 1]], float)
    x0, y0 = max(0, int(np.floor(corners[0].min()))), max(0, int(np.floor(corners[1].min())))
    x1, y1 = min(width, int(np.ceil(corners[0].max()))), min(height, int(np.ceil(corners[1].max())))
    if x1 <= x0 or y1 <= y0:
        return MaskPatch(0, 0, np.zeros((0, 0), bool))
    m = m.copy()
    m[:, 2] -= (x0, y0)
    out = cv2.warpAffine(parts.astype(np.float32), m.astype(np.float32), (x1 - x0, y1 - y0),
                         flags=cv2.INTER_LINEAR) > 0.5
    return MaskPatch(x0, y0, out)


def segment_parts(placed: MaskPatch, taken: np.ndarray, segment: Optional[Segment], long_side: float) -> MaskPatch:
    """The placed parts as the one-click model segments them (a click on each part, kept within
    the placed part grown by MARGIN × the object's long side) where that mask overlaps them by
    SEGMENT_AGREE (else the placed parts themselves: a thin drawing's click may take what lies
    inside it), less known pixels."""
    H, W = taken.shape
    free = placed.mask & ~placed.region(taken)
    if segment is None or not free.any():
        return MaskPatch(placed.x, placed.y, free)
    count, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=8)
    clicks = [interior_point(MaskPatch(placed.x, placed.y, labels == i)) for i in range(1, count)]
    got = segment(clicks[0][0], clicks[0][1], placed, tuple(clicks[1:]))
    r = max(1, int(round(MARGIN * long_side)))
    x0, y0 = max(0, placed.x - r), max(0, placed.y - r)
    x1, y1 = min(W, placed.x + placed.mask.shape[1] + r), min(H, placed.y + placed.mask.shape[0] + r)
    box = MaskPatch(x0, y0, np.ones((y1 - y0, x1 - x0), bool))
    allowed = cv2.dilate(placed.seen_from(box).astype(np.uint8), np.ones((2 * r + 1,) * 2, np.uint8)) > 0
    seg = MaskPatch(x0, y0, allowed & got.seen_from(box) & ~box.region(taken))
    own = MaskPatch(placed.x, placed.y, free)
    return seg if seg.iou(own) >= SEGMENT_AGREE else own


def union(a: MaskPatch, b: MaskPatch) -> MaskPatch:
    """Two patches as one (their boxes' union)."""
    if not b.mask.any():
        return a
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1 = max(a.x + a.mask.shape[1], b.x + b.mask.shape[1])
    y1 = max(a.y + a.mask.shape[0], b.y + b.mask.shape[0])
    box = MaskPatch(x0, y0, np.ones((y1 - y0, x1 - x0), bool))
    return MaskPatch(x0, y0, a.seen_from(box) | b.seen_from(box))


def objects_only(parts: np.ndarray, fr: Frame, taken: np.ndarray, segment: Segment) -> Optional[np.ndarray]:
    """The parts that the one-click model takes for objects: a click inside each (beside the
    query) selects about that part (IoU >= SEGMENT_AGREE within the working frame); a smooth
    background or a texture that agreed by chance selects something else."""
    H, W = taken.shape
    known = fr.view(Photo(taken.view(np.uint8), 1.0), None)[0] > 0.5
    count, labels = cv2.connectedComponents(grouped(parts), connectivity=8)
    keep = np.zeros(parts.shape, bool)
    for i in range(1, count):
        part = parts & (labels == i)
        placed = place(part, fr, None, H, W)
        if not placed.mask.any():
            continue
        x, y = interior_point(placed)
        got = segment(x, y, placed)
        seen = fr.mask_view(got) & ~known
        region = labels == i
        inter = np.count_nonzero(seen & region)
        if inter / max(np.count_nonzero(seen | region), 1) >= SEGMENT_AGREE:
            keep |= region & (parts | seen)
    return keep if keep.any() else None


def complete_copies(rgb: np.ndarray, query: MaskPatch, copies: list[MaskPatch], taken: np.ndarray,
                    segment: Optional[Segment]) -> tuple[Optional[MaskPatch], list[MaskPatch]]:
    """(the parts the query's mask left out, or None; every copy with its parts added where its
    own neighbourhood agrees). copies: best first; taken: the query's and the copies' pixels."""
    H, W = taken.shape
    parts, nb, poses = find_parts(rgb, query, copies, taken)
    if parts is not None and segment is not None:
        parts = objects_only(parts, nb.frame, taken, segment)
    if parts is None:
        return None, copies
    fr, photo, q, qm = nb
    known = taken.copy()
    long_side = max(query.mask.shape)
    grown = []
    for c, pose in zip(copies, poses):
        if np.count_nonzero(agreement(q, fr.view(photo, pose), qm) & parts) < COPY_AGREE * np.count_nonzero(parts):
            grown.append(c)
            continue
        more = segment_parts(place(parts, fr, pose, H, W), known, segment, long_side * pose.scale)
        more.region(known)[more.mask] = True
        grown.append(union(c, more))
    own = segment_parts(place(parts, fr, None, H, W), known, segment, long_side)
    return (own if own.mask.any() else None), grown
