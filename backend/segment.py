"""One-click segmentation API for the daemon: encode once per image, decode per click.

Scale selection from one click: a coarse pass on the whole image (long side 512) finds the
clicked object's extent; a square window where the object fills ~30 % is then encoded at
320 px (cached per window) and decoded; its logits are upsampled to the window's size in
full-resolution pixels, so edges stay sharp on big photos.
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
from .masks import mask_box
from .models.window import Window, covers_image, crop_resize, fit_window
from .weights import load as load_weights

log = logging.getLogger(__name__)

COARSE_SIDE = 512  # long side of the whole-image pass
CROP = 320  # network input of the zoom-in pass
TARGET_FILL = 0.3  # object box / window area
MIN_WINDOW = CROP // 4  # never upsample a window more than 4x
CROP_CACHE = 8  # zoom-in encodings kept per image
PROBE_FRACTION = 0.15  # first window (of the long side) when the coarse pass finds no small object
GROW = 2.0  # window growth when the mask runs into its edge
# A photo whose long side is over SMALL_PROBE_ABOVE shrinks a small object to a few coarse pixels
# (a 60-px bottle cap on a 4000-px photo is 8), and the coarse pass takes what it lies on. There
# the first click also decodes a window of SMALL_PROBE × the long side around it; an object that
# lies inside that window (it touches no edge) and is at most SMALL_SHARE of the coarse box is the
# one clicked (docs/models.md, issue 23).
SMALL_PROBE_ABOVE = 2 * COARSE_SIDE
SMALL_PROBE = 0.1
SMALL_SHARE = 0.25
MAX_WINDOWS = 4  # zoom-in encodings per first click at most


@dataclass(frozen=True)
class SegmentSettings:
    """The one-click segmenter's switches: all on in the product; benchmarks pass their own
    (`dataclasses.replace(SegmentSettings(), zoom=False)`) to measure what each one gives."""
    zoom: bool = True           # False: decode the whole-image encoding only
    use_prev: bool = True       # feed the previous mask to the decoder
    refine_edges: bool = True   # guided-filter edges where logits are upsampled > 2x
    small_probe: bool = True    # big photos: look for a small object under the first click (issue 23)


@dataclass
class Embedding:
    """Opaque per-image state: the image, its coarse encoding and cached zoom-in encodings."""
    rgb: np.ndarray
    scale: float  # coarse pixels per image pixel
    coarse: Feats
    crops: OrderedDict = field(default_factory=OrderedDict)  # Window -> Feats
    windows: dict = field(default_factory=dict)  # positive clicks -> chosen Window (or None)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return self.rgb.shape[1], self.rgb.shape[0]


class ClickSegmenter:
    def __init__(self, weights: Path | None = None, device: str | torch.device | None = None,
                 settings: SegmentSettings = SegmentSettings()):
        """weights: a file of the model's weights (default: the shipped ones; see backend/weights.py);
        device: where it runs (default: backend/device.py's choice; the CPU when it does not fit);
        settings: its switches (default: the product's)."""
        self.model = place(load_weights("dsn", weights), "The one-click model",
                           None if device is None else torch.device(device))
        self.device = device_of(self.model)
        self.settings = settings

    def with_settings(self, settings: SegmentSettings) -> "ClickSegmenter":
        """This segmenter's model (shared, not copied) with other switches."""
        twin = copy.copy(self)
        twin.settings = settings
        return twin

    def on_cpu(self) -> "ClickSegmenter":
        """This segmenter with a CPU copy of its model (the same settings); itself on the CPU.
        Its embeddings are its own: those made on another device do not mix with it."""
        if self.device.type == "cpu":
            return self
        twin = copy.copy(self)
        twin.model, twin.device = cpu_copy(self.model), torch.device("cpu")
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
        scale = COARSE_SIDE / max(h, w)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(rgb, (cw, ch), interpolation=interp)
        padded = np.zeros((-(-ch // 32) * 32, -(-cw // 32) * 32, 3), np.uint8)
        padded[:ch, :cw] = small
        return Embedding(rgb=rgb, scale=scale, coarse=self._encode(padded))

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
        ph, pw = (t * 2 for t in emb.coarse["s2"].shape[-2:])
        ch, cw = max(1, round(h * s)), max(1, round(w * s))
        pts = [(x * s, y * s, p) for x, y, p in points]
        prev_c = None
        if prev is not None:
            prev_c = np.zeros((ph, pw), np.float32)
            prev_c[:ch, :cw] = cv2.resize((prev > 127).astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
        logits = self._decode(emb.coarse, pts, prev_c, ph, pw)
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

    @staticmethod
    def _window_for(box: tuple[float, float, float, float], positives: list[tuple[float, float]],
                    w: int, h: int) -> Window | None:
        """Window where `box` fills TARGET_FILL, or None if that is (nearly) the whole image."""
        x0, y0, x1, y1 = box
        for x, y in positives:  # positive clicks belong to the object
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + 1), max(y1, y + 1)
        bw, bh = x1 - x0, y1 - y0
        side = max(np.sqrt(bw * bh / TARGET_FILL), 1.25 * max(bw, bh), MIN_WINDOW)
        if covers_image(side, w, h):
            return None
        side = int(np.ceil(side / 16) * 16)  # quantised for the encoding cache
        return fit_window(round((x0 + x1) / 16) * 8, round((y0 + y1) / 16) * 8, side, w, h)

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
        out = np.zeros((h, w), np.uint8)

        key = (tuple(positives), size)
        if not self.settings.zoom:
            win = None
        elif key in emb.windows:
            win = emb.windows[key]
        elif prev is not None and (box := mask_box(prev > 127)) is not None:
            win = self._window_for(box, positives, w, h)  # refining: the scale of the selection
        elif size is not None:
            (x, y), (bw, bh) = positives[0], size
            win = self._window_for((x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2), positives, w, h)
        else:
            box = self._object_box(emb, positives)
            win = self._window_for(box, positives, w, h)
            if self.settings.small_probe and max(w, h) > SMALL_PROBE_ABOVE:
                win = self._small_object(emb, pts, box, w, h) or win
            if win is None:  # the coarse pass found a huge object: check from a small window up
                side = max(MIN_WINDOW, PROBE_FRACTION * max(w, h))
                win = fit_window(positives[0][0], positives[0][1], int(np.ceil(side / 16) * 16), w, h)
        settled = key in emb.windows
        for attempt in range(MAX_WINDOWS):
            if win is None or covers_image(win.side, w, h):  # the whole image is the right scale
                win = None
                break
            feats = self._crop_feats(emb, win)
            wpts = [(*win.to_window(x, y, CROP), p) for x, y, p in pts]
            prev_w = None if prev is None else crop_resize((prev > 127).astype(np.float32), win, CROP)
            logits = self._decode(feats, wpts, prev_w, CROP, CROP)
            better = None if settled or attempt == MAX_WINDOWS - 1 else self._rescaled_window(logits, win, positives, w, h)
            if better is None:
                break
            win = better
        if self.settings.zoom:
            emb.windows[key] = win
        if win is None:
            logits = self._coarse_logits(emb, pts, prev)
            up = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
            out[:] = (up[0, 0] > 0).cpu().numpy().astype(np.uint8) * 255
            return out
        return self._paste(logits, win, out, emb.rgb)

    def _small_object(self, emb: Embedding, pts: list[Point], box: tuple[float, float, float, float],
                      w: int, h: int) -> Window | None:
        """The window for a small object under the first click, when a probe window around it
        holds one that touches none of its edges and is much smaller than the coarse pass's
        object `box`; else None."""
        x, y = next((px, py) for px, py, p in pts if p)
        side = int(np.ceil(max(MIN_WINDOW, SMALL_PROBE * max(w, h)) / 16) * 16)
        probe = fit_window(round(x / 8) * 8, round(y / 8) * 8, side, w, h)
        if covers_image(probe.side, w, h):
            return None
        feats = self._crop_feats(emb, probe)
        logits = self._decode(feats, [(*probe.to_window(px, py, CROP), p) for px, py, p in pts], None, CROP, CROP)
        m = (logits[0, 0] > 0).cpu().numpy()
        n = m.shape[0]
        s = probe.side / n
        _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        lab = labels[min(max(int((y - probe.y0) / s), 0), n - 1), min(max(int((x - probe.x0) / s), 0), n - 1)]
        if lab == 0:
            return None
        ys, xs = np.nonzero(labels == lab)
        if ((ys.min() <= 1 and probe.y0 > 0) or (xs.min() <= 1 and probe.x0 > 0)
                or (ys.max() >= n - 2 and probe.y0 + probe.side < h) or (xs.max() >= n - 2 and probe.x0 + probe.side < w)):
            return None   # it runs out of the probe (inside the photo): not a small object
        small = (probe.x0 + xs.min() * s, probe.y0 + ys.min() * s, probe.x0 + (xs.max() + 1) * s,
                 probe.y0 + (ys.max() + 1) * s)
        area = (small[2] - small[0]) * (small[3] - small[1])
        if area > SMALL_SHARE * (box[2] - box[0]) * (box[3] - box[1]):
            return None   # about what the coarse pass found
        return self._window_for(small, [(px, py) for px, py, p in pts if p], w, h)

    def _rescaled_window(self, logits: torch.Tensor, win: Window, positives: list[tuple[float, float]],
                         w: int, h: int) -> Window | None:
        """A better window when the zoomed-in mask runs into a window edge inside the image
        (grow) or fills much less of the window than intended (zoom in)."""
        m = (logits[0, 0] > 0).cpu().numpy()
        n = m.shape[0]
        s = win.side / n
        edges = [(m[:, 0], win.x0 > 0), (m[:, -1], win.x0 + win.side < w),
                 (m[0, :], win.y0 > 0), (m[-1, :], win.y0 + win.side < h)]
        if any(inside and e.mean() > 0.05 for e, inside in edges):
            x0, y0, x1, y1 = mask_box(m)
            cx, cy = win.x0 + (x0 + x1) / 2 * s, win.y0 + (y0 + y1) / 2 * s
            side = min(int(np.ceil(win.side * GROW / 16) * 16), max(w, h))
            return fit_window(round(cx / 8) * 8, round(cy / 8) * 8, side, w, h)
        _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        keep = {int(labels[min(max(int((y - win.y0) / s), 0), n - 1), min(max(int((x - win.x0) / s), 0), n - 1)])
                for x, y in positives} - {0}
        if not keep:
            return None
        x0, y0, x1, y1 = mask_box(np.isin(labels, list(keep)))
        box = (win.x0 + x0 * s, win.y0 + y0 * s, win.x0 + x1 * s, win.y0 + y1 * s)
        fill = (box[2] - box[0]) * (box[3] - box[1]) / win.side ** 2
        if fill >= TARGET_FILL / 4 or win.side <= 1.5 * MIN_WINDOW:
            return None
        return self._window_for(box, positives, w, h)

    def _paste(self, logits: torch.Tensor, win: Window, out: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """Upsample the window's logits to its size in image pixels and write the visible part;
        where that is more than 2× upsampling, edges follow the image (guided filter)."""
        h, w = out.shape
        x0, y0 = max(win.x0, 0), max(win.y0, 0)
        x1, y1 = min(win.x0 + win.side, w), min(win.y0 + win.side, h)
        up = F.interpolate(logits.float(), size=(win.side, win.side), mode="bilinear", align_corners=False)
        part = up[0, 0, y0 - win.y0:y1 - win.y0, x0 - win.x0:x1 - win.x0]
        factor = win.side / logits.shape[-1]
        if self.settings.refine_edges and factor > 2:
            prob = torch.sigmoid(part).cpu().numpy()
            guide = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
            mask = guided_filter(guide, prob, radius=int(round(factor)), eps=1e-3) > 0.5
        else:
            mask = (part > 0).cpu().numpy()
        out[y0:y1, x0:x1] = mask.astype(np.uint8) * 255
        return out


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
