"""One-click segmentation API for the daemon: encode once per image, decode per click.

Scale selection from one click: a coarse pass on the whole image (long side 512) finds the
clicked object's extent; a square window where the object fills ~30 % is then encoded at
320 px (cached per window) and decoded; its logits are upsampled to the window's size in
full-resolution pixels, so edges stay sharp on big photos. Which window a click gets (the
coarse box -> window rule, the small-object probe, grow and zoom-in) is backend/windows.py's;
this module runs the network where it says.
"""
from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from simpson_client.protocol import Point

from .device import cpu_copy, device_of, place
from .models.dsn import Feats, click_maps
from .models.folding import fold_batchnorm
from .masks import mask255, mask_box
from .models.window import Window, covers_image, crop_resize, window_part
from . import windows
from .colour_edges import follow_colours, sigmoid
from .pieces import APART_MAX_SHARE, GLANCE_SIDE, PIECES_ABOVE, PIECES_GROW, may_hold_pieces, pieces_to_add
from .windows import COARSE_SIDE, CROP, MAX_WINDOWS
from .weights import load as load_weights, path as weights_path

log = logging.getLogger(__name__)

CROP_CACHE = 8  # zoom-in encodings kept per image


@dataclass(frozen=True)
class SegmentSettings:
    """The one-click segmenter's switches, all on in the product; benchmarks pass their own
    (`dataclasses.replace(SegmentSettings(), zoom=False)`) to measure what each one gives."""
    zoom: bool = True           # False: decode the whole-image encoding only
    use_prev: bool = True       # feed the previous mask to the decoder
    refine_edges: bool = True   # guided-filter edges where logits are upsampled > 2x
    colour_edges: bool = True   # pixels follow the object's and its surroundings' colours (backend/colour_edges.py)
    small_probe: bool = True    # big photos: look for a small object under the first click (issue 23)
    pieces: bool = True         # a first click also looks 2x wider for the object's other pieces, not its copies
                                # (backend/pieces.py; docs/models.md, "Thirty-first session")
    pieces_apart: bool = True   # ... and takes a piece bigger than the clicked one when it lies apart from it
                                # (backend/pieces.py APART_*; docs/models.md, "Thirty-third session")
    pieces_unsure_apart: bool = True  # ... and one lying apart at a lower mean logit when the model is sure of
                                      # some of it (APART_MIN_LOGIT, APART_PEAK_LOGIT; "Thirty-fourth session")


@dataclass
class Embedding:
    """Opaque per-image state: the image, its coarse encoding (made when first needed) and cached
    zoom-in encodings; `first`: the first-click model's own (see ClickSegmenter)."""
    rgb: np.ndarray
    scale: float  # coarse pixels per image pixel
    coarse: Feats | None = None
    crops: OrderedDict = field(default_factory=OrderedDict)  # Window -> Feats
    windows: dict = field(default_factory=dict)  # positive clicks -> chosen Window (or None)
    probe: tuple | None = None  # the small-object probe's last decode: (clicks, Window, logits)
    first: "Embedding | None" = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return self.rgb.shape[1], self.rgb.shape[0]


class ClickSegmenter:
    def __init__(self, weights: Path | None = None, device: str | torch.device | None = None,
                 settings: SegmentSettings = SegmentSettings(), first: Path | bool | None = None):
        """weights: a file of the model's weights (default: the shipped ones; see backend/weights.py);
        device: where it runs (default: backend/device.py's choice; the CPU when it does not fit);
        settings: its switches (default: the product's); first: the weights of the model that
        segments a click without a previous mask (a first click, a click that adds an object,
        select similar's proposals): True = the shipped "dsn-first" weights when that file is
        there, False = `weights` for every click, or a file; None (default): True with the
        shipped `weights`, False with a file of them (the model asked for, for every click).

        Two models because they win in different places (docs/models.md, versions 7 to 10): the one
        trained with real-size crops finds small objects in big photos after one click, the
        other corrects a selection better from its previous mask."""
        where = None if device is None else torch.device(device)
        self.model = place(fold_batchnorm(load_weights("dsn", weights)), "The one-click model", where)
        self.device = device_of(self.model)
        self.settings = settings
        if first is None:
            first = weights is None
        file = weights_path("dsn-first") if first is True else first
        self.first: ClickSegmenter | None = None
        if file is not False and (first is not True or file.exists()):
            self.first = ClickSegmenter(file, self.device, settings, first=False)

    def with_settings(self, settings: SegmentSettings) -> "ClickSegmenter":
        """This segmenter's model (shared, not copied) with other switches."""
        twin = copy.copy(self)
        twin.settings = settings
        twin.first = None if self.first is None else self.first.with_settings(settings)
        return twin

    def on_cpu(self) -> "ClickSegmenter":
        """This segmenter with a CPU copy of its model (the same settings); itself on the CPU.
        Its embeddings are its own: those made on another device do not mix with it."""
        if self.device.type == "cpu":
            return self
        twin = copy.copy(self)
        twin.model, twin.device = cpu_copy(self.model), torch.device("cpu")
        twin.first = None if self.first is None else self.first.on_cpu()
        return twin

    # ------------------------------------------------------------------ encoding
    def _encode(self, rgb: np.ndarray) -> Feats:
        """rgb h×w×3 uint8 (h, w multiples of 32 not required) → features."""
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None].to(self.device)
        with torch.inference_mode():
            return self.model.encode(x)

    def set_image(self, rgb: np.ndarray) -> Embedding:
        """rgb: H×W×3 uint8. Runs the whole-image (coarse) encoder."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("image must be an H×W×3 uint8 RGB array")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1:
            raise ValueError("image is empty")
        emb = Embedding(rgb=rgb, scale=COARSE_SIDE / max(h, w))
        if self.first is not None:      # the first click's model encodes now, this one when a click needs it
            emb.first = self.first.set_image(rgb)
        else:
            self._coarse(emb)
        return emb

    def _coarse(self, emb: Embedding) -> Feats:
        """The whole-image encoding (long side COARSE_SIDE), made once."""
        if emb.coarse is None:
            h, w = emb.rgb.shape[:2]
            ch, cw = max(1, round(h * emb.scale)), max(1, round(w * emb.scale))
            interp = cv2.INTER_AREA if emb.scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(emb.rgb, (cw, ch), interpolation=interp)
            padded = np.zeros((-(-ch // 32) * 32, -(-cw // 32) * 32, 3), np.uint8)
            padded[:ch, :cw] = small
            emb.coarse = self._encode(padded)
        return emb.coarse

    def _crop_feats(self, emb: Embedding, win: Window) -> Feats:
        if win in emb.crops:
            emb.crops.move_to_end(win)
            return emb.crops[win]
        feats = self._encode(crop_resize(emb.rgb, win, CROP))
        emb.crops[win] = feats
        while len(emb.crops) > CROP_CACHE:
            emb.crops.popitem(last=False)
        return feats

    # ------------------------------------------------------------------ decoding
    def _decode(self, feats: Feats, points: list[Point], prev: np.ndarray | None,
                height: int, width: int) -> torch.Tensor:
        """Logits 1×1×(height/2)×(width/2); points and prev in input pixels."""
        pos, neg = click_maps(points, height, width)
        prev_t = None
        if prev is not None:
            prev_t = torch.from_numpy(prev.astype(np.float32))[None, None].to(self.device)
        with torch.inference_mode():
            logits, _ = self.model.decode(feats, pos[None].to(self.device), neg[None].to(self.device), prev_t)
        return logits

    def _coarse_logits(self, emb: Embedding, points: list[Point], prev: np.ndarray | None) -> torch.Tensor:
        """Logits 1×1×ch×cw at coarse resolution (padding removed)."""
        w, h = emb.size
        s = emb.scale
        coarse = self._coarse(emb)
        ph, pw = (t * 2 for t in coarse["s2"].shape[-2:])
        ch, cw = max(1, round(h * s)), max(1, round(w * s))
        pts = [(x * s, y * s, p) for x, y, p in points]
        prev_c = None
        if prev is not None:
            prev_c = np.zeros((ph, pw), np.float32)
            prev_c[:ch, :cw] = cv2.resize((prev > 127).astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
        logits = self._decode(coarse, pts, prev_c, ph, pw)
        logits = F.interpolate(logits, size=(ph, pw), mode="bilinear", align_corners=False)
        return logits[:, :, :ch, :cw]

    def _object_box(self, emb: Embedding, positives: list[tuple[float, float]]) -> tuple[float, float, float, float]:
        """Box (x0, y0, x1, y1) in image pixels of the coarse mask's component(s) under the clicks."""
        s = emb.scale
        m = (self._coarse_logits(emb, [(x, y, True) for x, y in positives], None)[0, 0] > 0).cpu().numpy()
        _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        keep = set()
        for x, y in positives:  # the component under each click, or the nearest within 6 px
            cx, cy = min(int(x * s), m.shape[1] - 1), min(int(y * s), m.shape[0] - 1)
            near = labels[max(cy - 6, 0):cy + 7, max(cx - 6, 0):cx + 7]
            if labels[cy, cx]:
                keep.add(int(labels[cy, cx]))
            elif near.any():
                vals, counts = np.unique(near[near > 0], return_counts=True)
                keep.add(int(vals[np.argmax(counts)]))
        box = mask_box(np.isin(labels, list(keep))) if keep else None
        if box is not None:
            x0, y0, x1, y1 = box
            return x0 / s, y0 / s, x1 / s, y1 / s
        r = 24 / s  # nothing found: a small box around the clicks
        return (min(x for x, _ in positives) - r, min(y for _, y in positives) - r,
                max(x for x, _ in positives) + r, max(y for _, y in positives) + r)

    def predict(self, embedding: Embedding, points: list[Point],
                prev_mask: np.ndarray | None = None, size: tuple[float, float] | None = None) -> np.ndarray:
        """points: (x, y, positive) in image pixels; prev_mask: H×W uint8 (255 = selected);
        size: the (width, height) the object is expected to have (select similar knows it from
        the query): the zoom-in window is chosen for an object of that size at the first
        positive click instead of from the coarse pass.

        Returns the H×W uint8 mask, 255 = selected, at full resolution. The zoom-in window
        depends only on the positive clicks, so negative clicks refine inside the same
        (cached) window.
        """
        emb = embedding
        w, h = emb.size
        if not points:
            raise ValueError("at least one click is needed")
        for x, y, _ in points:
            if not (0 <= x < w and 0 <= y < h):
                raise ValueError(f"click ({x:g}, {y:g}) is outside the {w}×{h} image")
        if not any(p for _, _, p in points):
            raise ValueError("at least one positive click is needed")
        if prev_mask is not None and prev_mask.shape != (h, w):
            raise ValueError(f"previous mask is {prev_mask.shape[1]}×{prev_mask.shape[0]}, image is {w}×{h}")
        pts = [(float(x), float(y), bool(p)) for x, y, p in points]
        positives = [(x, y) for x, y, p in pts if p]
        prev = prev_mask if self.settings.use_prev else None
        key = (tuple(positives), size)
        if self.first is not None and prev_mask is None and len(pts) == 1:
            if emb.first is None:
                emb.first = self.first.set_image(emb.rgb)
            out = self.first.predict(emb.first, points, None, size)
            if key in emb.first.windows:    # a later click on this object refines in the same window
                emb.windows.setdefault(key, emb.first.windows[key])
            return out
        out = np.zeros((h, w), np.uint8)
        # the clicks that correct a selection decide the colours under them (colour_edges); a first
        # click, or select similar's proposals, leave them to the colour models
        refining = pts if prev_mask is not None else []

        if not self.settings.zoom:
            win = None
        elif key in emb.windows:
            win = emb.windows[key]
        else:
            probe = None
            if self.settings.small_probe:
                probe = lambda win: self._window_mask(emb, pts, win)  # noqa: E731
            win = windows.first_window(positives, w, h, prev=prev, size=size,
                                       coarse_box=lambda: self._object_box(emb, positives), probe=probe)
        settled = key in emb.windows
        for attempt in range(MAX_WINDOWS):
            if win is None or covers_image(win.side, w, h):  # the whole image is the right scale
                win = None
                break
            feats = self._crop_feats(emb, win)
            wpts = [(*win.to_window(x, y, CROP), p) for x, y, p in pts]
            prev_w = None
            if prev is not None:     # only the window's pixels of the (12-MP) previous mask are converted
                part, at = window_part(prev, win)
                prev_w = crop_resize((part > 127).astype(np.float32), at, CROP)
            logits = self._decode(feats, wpts, prev_w, CROP, CROP)
            if settled or attempt == MAX_WINDOWS - 1:
                break
            better = windows.better_window((logits[0, 0] > 0).cpu().numpy(), win, positives, w, h)
            if better is None:
                break
            win = better
        if self.settings.zoom:
            emb.windows[key] = win
        if win is None:
            logits = self._coarse_logits(emb, pts, prev)
            up = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
            out[:] = mask255(up > 0)
            box = mask_box(out)
            if self.settings.colour_edges and box is not None:   # around the object: its size again each side
                x0, y0, x1, y1 = box
                x0, y0, x1, y1 = max(2 * x0 - x1, 0), max(2 * y0 - y1, 0), min(2 * x1 - x0, w), min(2 * y1 - y0, h)
                part = follow_colours(up[y0:y1, x0:x1], emb.rgb[y0:y1, x0:x1], shifted(refining, x0, y0))
                out[y0:y1, x0:x1] = mask255(part > 0)
            return out
        out = self._paste(logits, win, out, emb.rgb, refining)
        if self.settings.pieces and prev_mask is None and size is None and len(pts) == 1 and max(w, h) > PIECES_ABOVE:
            self._add_pieces(emb, pts, win, out)
        return out

    def _look(self, emb: Embedding, pts: list[Point], win: Window, side: int = CROP) -> torch.Tensor:
        """The clicks decoded in `win` without a previous mask: logits 1×1×(side/2)×(side/2). At
        CROP the window's encoding is cached (zoom-in encodings); at another side it is not."""
        feats = self._crop_feats(emb, win) if side == CROP else self._encode(crop_resize(emb.rgb, win, side))
        return self._decode(feats, [(*win.to_window(x, y, side), p) for x, y, p in pts], None, side, side)

    def _window_mask(self, emb: Embedding, pts: list[Point], win: Window) -> np.ndarray:
        """The clicks decoded in `win` without a previous mask: CROP/2 × CROP/2 bool (the small-object probe)."""
        logits = self._look(emb, pts, win)
        emb.probe = (tuple(pts), win, logits)   # the wider look for other pieces may reuse it
        return (logits[0, 0] > 0).cpu().numpy()

    def _upsampled(self, logits: torch.Tensor, win: Window, h: int, w: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The window's logits upsampled to its size in image pixels, over the part of it inside
        the h×w image, and that part's box (x0, y0, x1, y1)."""
        x0, y0 = max(win.x0, 0), max(win.y0, 0)
        x1, y1 = min(win.x0 + win.side, w), min(win.y0 + win.side, h)
        up = F.interpolate(logits.float(), size=(win.side, win.side), mode="bilinear", align_corners=False)
        return up[0, 0, y0 - win.y0:y1 - win.y0, x0 - win.x0:x1 - win.x0].cpu().numpy(), (x0, y0, x1, y1)

    def _full_mask(self, part: np.ndarray, rgb: np.ndarray, clicks: list[Point], factor: float) -> np.ndarray:
        """The bool mask of upsampled logits `part` over the crop `rgb`: pixels follow the object's
        colours (colour_edges; the colours under `clicks` are theirs), and where the logits were
        upsampled more than 2× (`factor`), edges follow the image (guided filter)."""
        if self.settings.colour_edges:
            part = follow_colours(part, rgb, clicks)
        if self.settings.refine_edges and factor > 2:
            prob = sigmoid(part).astype(np.float32)
            guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
            return guided_filter(guide, prob, radius=int(round(factor)), eps=1e-3) > 0.5
        return part > 0

    def _paste(self, logits: torch.Tensor, win: Window, out: np.ndarray, rgb: np.ndarray,
               clicks: list[Point] = ()) -> np.ndarray:
        """Write the window's mask (`_full_mask` of its upsampled logits) into the visible part of `out`."""
        part, (x0, y0, x1, y1) = self._upsampled(logits, win, *out.shape)
        mask = self._full_mask(part, rgb[y0:y1, x0:x1], shifted(clicks, x0, y0), win.side / logits.shape[-1])
        out[y0:y1, x0:x1] = mask255(mask)
        return out

    def _add_pieces(self, emb: Embedding, pts: list[Point], win: Window, out: np.ndarray) -> None:
        """A first click decoded in `win`: decode it again in a window PIECES_GROW× wider (the
        small-object probe's when that is at least as wide: no second decode; else only when a glance
        at that window, encoded at GLANCE_SIDE, shows something like a piece) and add to `out` the
        other pieces of the object the model is sure of there (backend/pieces.py)."""
        h, w = out.shape
        apart = APART_MAX_SHARE if self.settings.pieces_apart else None
        if emb.probe is not None and emb.probe[0] == tuple(pts) and emb.probe[1].side >= PIECES_GROW * win.side:
            _, wide, logits = emb.probe
        else:
            wide = windows.wider_window(win, PIECES_GROW, w, h)
            if wide is None:
                return
            part, (x0, y0, x1, y1) = self._upsampled(self._look(emb, pts, wide, GLANCE_SIDE), wide, h, w)
            if not may_hold_pieces(out[y0:y1, x0:x1] > 0, part, (int(pts[0][0]) - x0, int(pts[0][1]) - y0), apart):
                return   # nothing like a piece at a glance (most clicks): no full look
            logits = self._look(emb, pts, wide)
        part, (x0, y0, x1, y1) = self._upsampled(logits, wide, h, w)
        base = out[y0:y1, x0:x1] > 0
        click = (int(pts[0][0]) - x0, int(pts[0][1]) - y0)
        rgb = emb.rgb[y0:y1, x0:x1]
        # every full look gets the colour step: the raw mask's components differ from the ones whose edges
        # follow the colours (a piece the raw mask joins to the clicked one; docs/models.md, "Thirty-fourth session")
        wider = self._full_mask(part, rgb, [], wide.side / logits.shape[-1])
        out[y0:y1, x0:x1][pieces_to_add(base, wider, part, click, rgb, apart, self.settings.pieces_unsure_apart)] = 255


def shifted(points: list[Point], x0: int, y0: int) -> list[Point]:
    """The clicks in the coordinates of a crop whose corner is (x0, y0)."""
    return [(x - x0, y - y0, p) for x, y, p in points]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), float32 H×W arrays."""
    k = (2 * radius + 1, 2 * radius + 1)
    mean_i = cv2.boxFilter(guide, -1, k)
    mean_p = cv2.boxFilter(src, -1, k)
    cov_ip = cv2.boxFilter(guide * src, -1, k) - mean_i * mean_p
    var_i = cv2.boxFilter(guide * guide, -1, k) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return cv2.boxFilter(a, -1, k) * guide + cv2.boxFilter(b, -1, k)
