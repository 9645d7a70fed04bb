"""The "pvm" engine: feature-matching proposals, one-click masks, the learned PVM accepts.

Weights: backend/weights/similar-lite0.pt (ImageNet Lite0 backbone "backbone.*" + PVM "pvm.*",
with its acceptance threshold) and its .sha256; optional backend/weights/similar-big-lite0.pt
(the big-photo verifier, "pvm.*" with its threshold: a small query on a photo over 1024 px, issue 23);
see docs/similar.md.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import torch

from .. import device, similar as sim
from .. import weights
from ..models.folding import fold_batchnorm
from ..models.pvm import PairVerifier
from . import EngineUnavailable
from .similar_features import FeaturesEngine

log = logging.getLogger("simpson.similar")


class PvmEngine(FeaturesEngine):
    """Like "features", but a trained verifier decides which proposals are the same kind: the
    shipped PVM, or for a small query on a photo over 1024 px (sim.small_on_big) the big-photo PVM."""

    name = "pvm"

    def __init__(self, backbone: Optional[torch.nn.Module] = None, model: Optional[PairVerifier] = None,
                 segmenter: Any = "auto", settings: Optional[sim.SimilarSettings] = None,
                 big_model: Any = "auto"):
        """big_model: the big-photo verifier; "auto" = weights "pvm-big" when usable (read on the
        first big photo), None = none (the shipped PVM decides everywhere)."""
        super().__init__(backbone, segmenter, settings)
        self._model = model
        self._big = big_model

    def status(self) -> str:
        if self._model is not None and self._backbone is not None:
            return "ready"
        file = weights.path("pvm")
        if not file.is_file():
            return f"The verifier's weights are missing ({file}); reinstall SimpSON Erase."
        return "ready"

    def _load(self) -> None:
        with self._lock:
            if self._model is not None and self._backbone is not None:
                return
            file = weights.path("pvm")
            if not weights.usable(file):
                raise EngineUnavailable(f"The verifier's weights are missing or damaged ({file}); "
                                        "reinstall SimpSON Erase.")
            sd = weights.read(file, checked=False)   # checked just above; one file holds both models
            if self._backbone is None:
                self._backbone = device.place(fold_batchnorm(weights.build("similar-backbone", sd)),
                                              "The select-similar backbone")
                self._source = file.name
            if self._model is None:
                self._model = device.place(weights.build("pvm", sd), "The verifier")

    def big_model(self) -> Optional[PairVerifier]:
        """The big-photo verifier, loaded once (None when its file is absent or unusable: then the
        shipped PVM decides on big photos too)."""
        with self._lock:
            if isinstance(self._big, str):
                self._big = None
                file = weights.path("pvm-big")
                if weights.usable(file):
                    try:
                        self._big = device.place(weights.load("pvm-big", file), "The big-photo verifier")
                    except weights.WeightsError as e:
                        log.warning("similar: %s; the shipped verifier decides on big photos too", e)
                else:
                    log.info("similar: no usable %s; the shipped verifier decides on big photos too", file.name)
            return self._big

    def backbone(self, cpu: bool = False) -> torch.nn.Module:
        self._load()
        return self._on_cpu("backbone", self._backbone) if cpu else self._backbone  # type: ignore[return-value]

    def verifier(self, cpu: bool = False, big_photo: bool = False) -> sim.Verifier:
        """The shipped PVM; for a small query on a big photo (sim.small_on_big) with settings.big_photo_verifier, the
        big-photo PVM, gated to big_photo_min_ratio..big_photo_max_ratio of the query's area, its
        scores on the shipped PVM's scale (sim.onto_scale: a min_score means the same for both)."""
        self._load()
        main = sim.LearnedVerifier(self._on_cpu("pvm", self._model) if cpu else self._model,  # type: ignore[arg-type]
                                   settings=self.settings)
        s = self.settings
        if not self._big_decides(big_photo):
            return main
        model = self.big_model()
        return sim.LearnedVerifier(self._on_cpu("pvm-big", model) if cpu else model,
                                   gate=(s.big_photo_min_ratio, s.big_photo_max_ratio), onto=main.threshold)

    def by_copies(self, big_photo: bool) -> bool:
        """With the big-photo PVM deciding (a small query on a big photo), a candidate it rejects
        against the query may be accepted against a copy it accepted (settings.by_copies)."""
        return self.settings.by_copies and self._big_decides(big_photo)

    def by_group(self, big_photo: bool) -> bool:
        """With the big-photo PVM deciding, rejected candidates that accept one another in a group may be
        accepted (settings.by_group)."""
        return self.settings.by_group and self._big_decides(big_photo)

    def _big_decides(self, big_photo: bool) -> bool:
        """Whether the big-photo PVM decides: a small query on a big photo, switched on, its file usable."""
        return big_photo and self.settings.big_photo_verifier and self.big_model() is not None

    def similar(self, entry, seed: np.ndarray, progress, min_score=None):  # type: ignore[override]
        self._load()
        return super().similar(entry, seed, progress, min_score)
