"""The image cache's budget counts what the models derived, not only the pixels (issue 26.11)."""
import numpy as np
import torch

from backend.cache import ImageCache, ImageEntry, held_bytes


def _entry(key: str, side: int = 100) -> ImageEntry:
    return ImageEntry(key, np.zeros((side, side, 4), np.uint8))


def test_entry_size_counts_derived_arrays_and_tensors_once():
    e = _entry("a")
    base = e.nbytes()
    assert base == 100 * 100 * 4 + 100 * 100 * 3
    feats = torch.zeros(10, 1000)                                 # 40,000 bytes
    e.derive("model", lambda: {"rgb": e.rgb, "coarse": {"s2": feats, "again": feats[:5]},
                               "crops": [np.zeros(1000, np.float32)]})
    assert e.nbytes() == base + 40_000 + 4_000                    # rgb (already counted) and views once


def test_derived_data_push_older_images_out():
    """Four images fit by their pixels alone; once one has a large encoding, the oldest goes."""
    per = _entry("x").nbytes()
    cache = ImageCache(max_entries=4, max_bytes=4 * per + 10_000)
    entries = [cache.put(_entry(k)) for k in "abcd"]
    assert cache.stats()["images"] == 4
    entries[-1].derive("model", lambda: torch.zeros(50_000))     # 200 KB of encoding
    assert cache.stats()["images"] < 4 and cache.get("a") is None and cache.get("d") is entries[-1]
    assert cache.stats()["bytes"] <= cache.max_bytes


def test_models_are_not_counted():
    model = torch.nn.Linear(1000, 1000)
    assert held_bytes({"m": model, "t": torch.zeros(10)}, set()) == 40


def test_warm_up_loads_the_similar_engines_models(monkeypatch):
    """Issue 26.11: the first select similar of a daemon does not load its models (10.6 s)."""
    from backend import engines
    from backend.pipeline import Pipeline
    monkeypatch.setattr(engines, "_built", {})                   # a fresh process's engines
    Pipeline().warm_up()
    name = engines.choose("similar", None).name
    engine = engines._built[name]
    assert name != "pvm" or (engine._model is not None and engine._backbone is not None)
    assert name != "features" or engine._backbone is not None
