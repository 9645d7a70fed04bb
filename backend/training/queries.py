"""Which copy a scene is queried with, and how: one owner for the benchmarks (bench/similar.py,
bench/select.py, bench/similar_misses.py) and the training data that must see the engine as those
benchmarks run it (backend/training/engine_pairs.py)."""
from __future__ import annotations

import numpy as np

from ..cache import ImageEntry
from ..engines import choose
from .samples import click_inside
from .synth import Scene


def rgba(rgb: np.ndarray) -> np.ndarray:
    """An RGB image as the opaque RGBA pixels an ImageEntry holds."""
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def query_index(scene: Scene) -> int:
    """The largest copy of group 0 (stable choice)."""
    idx = [i for i, g in enumerate(scene.groups) if g == 0]
    return max(idx, key=lambda i: int(scene.masks[i].sum()))


def realsize_query(scene: Scene, seed: int) -> int:
    """The copy a user clicks in a real-size scene (issue 23): a random copy among those at least
    60 % of the largest copy's area (a sliver cut by the frame is not what one clicks first)."""
    copies = [i for i, g in enumerate(scene.groups) if g == 0]
    big = max(int(scene.masks[i].sum()) for i in copies)
    ok = [i for i in copies if scene.masks[i].sum() >= 0.6 * big]
    return ok[int(np.random.default_rng([seed, 23]).integers(len(ok)))]


def query_of(scene: Scene, s: int, split: str, seed_kind: str, select_engine: str | None) -> tuple[int, np.ndarray]:
    """The queried copy and the query mask: the copy itself (seed_kind "gt") or what one click on
    it selects ("click"; the copy itself when that selects nothing)."""
    qi = realsize_query(scene, s) if split == "realsize" else query_index(scene)
    seed = scene.masks[qi] if seed_kind == "gt" else click_seed(scene, qi, select_engine)
    return qi, seed if seed.any() else scene.masks[qi]


def click_seed(scene: Scene, qi: int, select_engine: str | None) -> np.ndarray:
    """The query as a user gets it: one click inside the copy, selected by the select engine
    (default: the daemon's default, the one-click model where its weights are present)."""
    rng = np.random.default_rng(qi)
    x, y = click_inside(scene.masks[qi], rng, central=True)
    entry = ImageEntry("q", rgba(scene.image), scene.image)
    return choose("select", select_engine).select(entry, [(x, y, True)], None, lambda f, m: None)
