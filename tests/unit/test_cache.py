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


def test_cached_8_bit_entries_keep_rgb_and_alpha_only():
    """A cached 12-MP layer costs its RGB copy (+ alpha unless opaque), not RGBA + RGB as well;
    the pixels read back the same, crops built alone."""
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (60, 80, 4), np.uint8)
    entry = ImageCache().put(ImageEntry("t", px.copy()))
    assert entry._pixels is None and entry.nbytes() == 60 * 80 * 3 + 60 * 80
    assert np.array_equal(entry.pixels[5:20, 7:30], px[5:20, 7:30])
    assert np.array_equal(np.asarray(entry.pixels), px) and entry.pixels.shape == px.shape
    assert np.array_equal(entry.pixels[..., 3], px[..., 3]) and entry.pixels.dtype == np.uint8
    px[..., 3] = 255
    opaque = ImageCache().put(ImageEntry("o", px.copy()))
    assert opaque.nbytes() == 60 * 80 * 3 and np.array_equal(opaque.pixels[1:3, 2:9], px[1:3, 2:9])
    deep = ImageCache().put(ImageEntry("d", px.astype(np.uint16) * 257))
    assert deep.pixels.dtype == np.uint16 and deep._pixels is not None      # 16-bit entries stay as they are


def test_erase_on_a_compacted_entry_is_the_same():
    from backend.pipeline import Pipeline
    rng = np.random.default_rng(1)
    px = rng.integers(0, 256, (64, 64, 4), np.uint8)
    px[..., 3] = rng.integers(100, 256, (64, 64))
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 25:40] = 255
    pipeline = Pipeline()
    plain = pipeline.erase(ImageEntry("p", px.copy()), mask, "classic", 4)
    compact = pipeline.erase(pipeline.entry(px.copy()), mask, "classic", 4)
    assert plain[0] == compact[0] and np.array_equal(plain[1], compact[1])
