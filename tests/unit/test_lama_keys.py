"""Our LaMa generator against the recorded key names and shapes of the released big-lama
checkpoint (tests/data/big_lama_keys.json), so that a refactor cannot silently stop the real
weights from loading. Everything is built on the meta device: no memory, no weights, no download."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend import weights

RECORD = Path(__file__).resolve().parents[1] / "data" / "big_lama_keys.json"


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(RECORD.read_text())


def meta_checkpoint(keys: dict[str, list[int]], prefix: str) -> dict[str, torch.Tensor]:
    """A Lightning-style state dict with the recorded names and shapes, holding no data."""
    sd = {prefix + k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    sd["discriminator.model0.0.weight"] = torch.empty(64, 3, 4, 4, device="meta")   # not the generator's
    return sd


def test_the_record_is_big_lama(record):
    keys = record["keys"]
    assert len(keys) == record["count"] == 989 and record["prefix"] == "generator."
    # facts from the authors' code and checkpoint (shared docs/lama.md)
    assert keys["model.1.ffc.convl2l.weight"] == [64, 4, 7, 7]                 # 4 inputs: image ⊕ mask
    assert keys["model.5.conv1.ffc.convg2g.fu.conv_layer.weight"] == [384, 384, 1, 1]
    assert keys["model.34.weight"] == [3, 64, 7, 7] and "model.23.weight" not in keys
    assert weights.generator_config(keys_as_shapes(keys)) == {"ngf": 64, "n_downsampling": 3, "n_blocks": 18}


def keys_as_shapes(keys: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in keys.items()}


def test_our_generator_has_exactly_the_recorded_keys_and_shapes(record):
    """Built as loading builds it: the configuration read off the checkpoint's keys."""
    keys = record["keys"]
    with torch.device("meta"):
        generator = weights.MODELS["lama-ckpt"].build(keys_as_shapes(keys))
    ours = {k: list(v.shape) for k, v in generator.state_dict().items()}
    missing = sorted(set(keys) - set(ours))
    unexpected = sorted(set(ours) - set(keys))
    assert not missing, f"{len(missing)} big-lama keys our generator lacks, e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} keys big-lama lacks, e.g. {unexpected[:5]}"
    shapes = [(k, keys[k], ours[k]) for k in keys if keys[k] != ours[k]]
    assert not shapes, f"{len(shapes)} shapes differ (key, big-lama, ours), e.g. {shapes[:5]}"
    assert list(ours) == list(keys)          # the same order too: the layer indices did not move
    assert sum(p.numel() for p in generator.parameters()) == record["parameters"]


def test_the_recorded_checkpoint_loads_strictly_through_the_loader(record):
    sd = meta_checkpoint(record["keys"], record["prefix"])
    with torch.device("meta"):
        generator = weights.build("lama-ckpt", sd)          # strict: a missing or extra key raises
    assert len(generator.state_dict()) == 989 and not generator.training
    del sd["generator.model.22.conv2.bn_g.running_var"]
    with torch.device("meta"), pytest.raises(weights.WeightsError, match="do not fit"):
        weights.build("lama-ckpt", sd)
