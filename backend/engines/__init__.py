"""Engines: named implementations of select / similar / erase behind one small interface.

Engines are built lazily (models load on first use) and know nothing of sockets.
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

import numpy as np

from ..cache import ImageEntry

from simpson_client.protocol import Point

Progress = Callable[[float, str], None]   # raises simpson_client.Cancelled when the request was cancelled


class Found(NamedTuple):
    """One instance found by `similar`: box (x, y, w, h), mask: h×w bool inside the box, score 0..1.
    of_seed: not another object but parts of the clicked one that the seed left out (select
    similar found them beside every copy: backend/similar/repeated_parts.py); they join the seed."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    score: float
    of_seed: bool = False


class EngineUnavailable(Exception):
    """The engine cannot run here (e.g. its weights are missing). str() is for the user."""


class Engine:
    name = ""
    ops: frozenset[str] = frozenset()

    def status(self) -> str:
        """'ready', or one sentence saying why the engine cannot run."""
        return "ready"

    def device(self) -> str:
        """Where its models run ("cuda", "mps", "cpu"): where they are once loaded, before that
        where they will be put (backend/device.py). Engines without a model run on the CPU."""
        return "cpu"

    def select(self, entry: ImageEntry, points: list[Point], previous: np.ndarray | None,
               progress: Progress) -> np.ndarray:
        """H×W bool mask of the object at the points (True = add, False = subtract)."""
        raise NotImplementedError

    def similar(self, entry: ImageEntry, seed: np.ndarray, progress: Progress,
                min_score: float | None = None) -> list[Found]:
        """Other instances of the object in the H×W bool seed mask (the seed itself excluded).
        min_score: accept candidates scoring at least this (0..1) instead of the engine's own
        threshold; lower finds more, and more that are not alike."""
        raise NotImplementedError

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        """rgb: h×w×3 uint8 crop, hole: h×w bool -> h×w×3 uint8 with the hole filled."""
        raise NotImplementedError

    def erase_many(self, crops: list[tuple[np.ndarray, np.ndarray]], progress: Progress) -> list[np.ndarray]:
        """erase() of each (rgb, hole) crop of one request, in order; an engine may fill them at
        the same time. progress is called on the caller's thread only (it may raise Cancelled)."""
        out = []
        for i, (rgb, hole) in enumerate(crops):
            progress(0.05 + 0.9 * i / len(crops), f"Filling region {i + 1} of {len(crops)}")
            out.append(self.erase(rgb, hole, progress))
        return out


# name -> "module:Class", imported on first use so that start-up stays fast.
REGISTRY = {
    "classic": "backend.engines.classic:ClassicEngine",
    "dsn": "backend.engines.dsn:DsnEngine",
    "builtin": "backend.engines.builtin:BuiltinEngine",
    "lama": "backend.engines.lama:LamaEngine",
    "features": "backend.engines.similar_features:FeaturesEngine",
    "pvm": "backend.engines.similar_pvm:PvmEngine",
}

# Preferred engines per op, best first; the first one whose status() is "ready" is the default.
PREFERENCE = {
    "select": ["dsn", "classic"],
    "similar": ["pvm", "features", "classic"],
    "erase": ["lama", "builtin", "classic"],
}

_built: dict[str, Engine] = {}


def get(name: str) -> Engine:
    if name not in REGISTRY:
        raise EngineUnavailable(f"There is no engine called {name!r}; known: {', '.join(sorted(REGISTRY))}.")
    if name not in _built:
        module, cls = REGISTRY[name].split(":")
        try:
            _built[name] = getattr(importlib.import_module(module), cls)()
        except (ImportError, AttributeError, OSError) as e:
            raise EngineUnavailable(f"The {name} engine cannot be loaded ({e}).") from None
    return _built[name]


def choose(op: str, name: str | None) -> Engine:
    """The engine to run op with: the named one (checked), else the best ready one."""
    if name:
        engine = get(name)
        if op not in engine.ops:
            able = [n for n, d in describe().items() if op in d["ops"]]
            raise EngineUnavailable(f"Engine {name!r} cannot {op}; engines that can: {', '.join(able)}.")
        status = engine.status()
        if status != "ready":
            raise EngineUnavailable(status)
        return engine
    for candidate in PREFERENCE[op]:
        try:
            engine = get(candidate)
        except EngineUnavailable:
            continue
        if op in engine.ops and engine.status() == "ready":
            return engine
    raise EngineUnavailable(f"No engine can {op} on this machine.")


def describe() -> dict[str, dict[str, object]]:
    """name -> {ops, status, device} for doctor/info."""
    out: dict[str, dict[str, object]] = {}
    for name in sorted(REGISTRY):
        try:
            engine = get(name)
            out[name] = {"ops": sorted(engine.ops), "status": engine.status(), "device": engine.device()}
        except EngineUnavailable as e:
            out[name] = {"ops": [], "status": str(e), "device": "cpu"}
    return out
