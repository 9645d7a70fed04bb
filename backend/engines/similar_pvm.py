"""The "pvm" engine: feature-matching proposals, one-click masks, the learned PVM accepts.

Weights: backend/weights/similar-lite0.pt (ImageNet Lite0 backbone "backbone.*" + PVM "pvm.*",
with its acceptance threshold) and its .sha256; see docs/similar.md.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from .. import device, similar as sim
from .. import weights
from ..models.pvm import PairVerifier
from . import EngineUnavailable
from .similar_features import FeaturesEngine


class PvmEngine(FeaturesEngine):
    """Like "features", but a trained verifier decides which proposals are the same kind."""

    name = "pvm"

    def __init__(self, backbone: Optional[torch.nn.Module] = None, model: Optional[PairVerifier] = None,
                 segmenter: Any = "auto", settings: Optional[sim.SimilarSettings] = None):
        super().__init__(backbone, segmenter, settings)
        self._model = model

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
                self._backbone = device.place(weights.build("similar-backbone", sd), "The select-similar backbone")
                self._source = file.name
            if self._model is None:
                self._model = device.place(weights.build("pvm", sd), "The verifier")

    def backbone(self, cpu: bool = False) -> torch.nn.Module:
        self._load()
        return self._on_cpu("backbone", self._backbone) if cpu else self._backbone  # type: ignore[return-value]

    def verifier(self, cpu: bool = False) -> sim.Verifier:
        self._load()
        return sim.LearnedVerifier(self._on_cpu("pvm", self._model) if cpu else self._model,  # type: ignore[arg-type]
                                  settings=self.settings)

    def similar(self, entry, seed: np.ndarray, progress, min_score=None):  # type: ignore[override]
        self._load()
        return super().similar(entry, seed, progress, min_score)
