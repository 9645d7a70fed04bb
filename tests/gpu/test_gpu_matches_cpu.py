"""On a CUDA GPU the engines give the CPU's results (issue 24): one-click masks and select-similar
masks with IoU >= 0.99 against the CPU's on the bench scenes, LaMa's erase within 1 grey level;
a GPU without the memory for a request falls back to the CPU and still answers. Skipped, with
the reason, where CUDA is not usable.

    python3 -m pytest tests/gpu -q -rs
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from backend import device, weights

CUDA_OK, CUDA_WHY = device.probe_cuda()
pytestmark = [pytest.mark.skipif(not CUDA_OK, reason=f"needs a CUDA GPU ({CUDA_WHY})"),
              pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")]

N_SELECT = 30         # bench/select.py's held-out scenes, from its seed
N_SIMILAR = 20        # bench/similar.py's validation scenes 0..N-1
CLICKS = 3
MIN_IOU = 0.99
NOP = lambda f, m: None   # noqa: E731


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def rgba(rgb: np.ndarray) -> np.ndarray:
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


@pytest.fixture(scope="module")
def dsn_pair():
    from backend.engines.dsn import DsnEngine
    from backend.segment import ClickSegmenter
    cpu, gpu = ClickSegmenter(device="cpu"), ClickSegmenter(device="cuda")
    assert gpu.device.type == "cuda", "the one-click model did not fit on the GPU"
    return DsnEngine(cpu), DsnEngine(gpu)


def test_one_click_masks_match_the_cpu(dsn_pair):
    from backend.cache import ImageEntry
    from bench.select import BENCH_SEED, interior_point, load_scenes, next_click
    cpu, gpu = dsn_pair
    worst = []
    for i, (img, gt) in enumerate(load_scenes(N_SELECT, 1.0, BENCH_SEED)):
        x, y, _ = interior_point(gt)
        points = [(x, y, True)]
        for _ in range(CLICKS):   # the CPU's mistakes choose the next click; both get the same clicks
            a = cpu.select(ImageEntry(f"c{i}", rgba(img)), points, None, NOP)
            b = gpu.select(ImageEntry(f"g{i}", rgba(img)), points, None, NOP)
            worst.append(iou(a, b))
            click = next_click(gt, a)
            if click is None:
                break
            points.append(click)
    print(f"one-click masks, GPU against CPU over {N_SELECT} scenes: min IoU {min(worst):.4f}, "
          f"mean {np.mean(worst):.5f} ({len(worst)} masks)")
    assert min(worst) >= MIN_IOU


def test_select_similar_matches_the_cpu(dsn_pair):
    from backend.cache import ImageEntry
    from backend.engines.similar_pvm import PvmEngine
    from backend.training.synth import SceneGenerator
    from backend.training.queries import query_index
    cpu_dsn, gpu_dsn = dsn_pair
    weights.forget_shared()        # the CPN is loaded again, on the GPU
    try:
        device.set_preference("cuda")
        gpu = PvmEngine(segmenter=gpu_dsn)
        gpu.backbone(), gpu.cpn()                 # loaded now: on the GPU
        device.set_preference("cpu")
        cpu = PvmEngine(segmenter=cpu_dsn)
        cpu.backbone()
    finally:
        device.set_preference(None)
    assert gpu.device() == "cuda" and cpu.device() == "cpu"
    gen, scores = SceneGenerator("val"), []
    for seed in range(N_SIMILAR):
        scene = gen.scene(seed)
        if not any(g == 0 for g in scene.groups):
            continue
        query = scene.masks[query_index(scene)]
        masks = []
        for engine, tag in ((cpu, "c"), (gpu, "g")):
            union = query.copy()
            for f in engine.similar(ImageEntry(f"{tag}{seed}", rgba(scene.image)), query, NOP):
                x, y, w, h = f.box
                union[y:y + h, x:x + w] |= f.mask
            masks.append(union)
        scores.append(iou(*masks))
    print(f"select similar (pvm), GPU against CPU over {len(scores)} scenes: min IoU {min(scores):.4f}, "
          f"mean {np.mean(scores):.5f}")
    assert min(scores) >= MIN_IOU


def test_lama_erase_within_one_grey_level():
    import cv2

    from backend import weights
    from backend.engines.lama import LamaEngine, find_weights
    from bench.select import BENCH_SEED, load_scenes
    if find_weights() is None:
        pytest.skip(f"no LaMa weights in {weights.home_dir()} (python3 install.py downloads them)")
    try:
        device.set_preference("cpu")
        cpu = LamaEngine()
        cpu._model()
        device.set_preference("cuda")
        gpu = LamaEngine()
        gpu._model()
    finally:
        device.set_preference(None)
    assert cpu.device() == "cpu" and gpu.device() == "cuda"
    diffs = []
    for img, gt in load_scenes(10, 2.0, BENCH_SEED):     # up to ~1000-px crops, as the pipeline sends
        hole = cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        a = cpu.erase(img, hole, NOP).astype(int)
        b = gpu.erase(img, hole, NOP).astype(int)
        diffs.append(int(np.abs(a - b).max()))
    print(f"LaMa erase, GPU against CPU over {len(diffs)} scenes: largest difference per scene {diffs} grey levels")
    assert max(diffs) <= 1


def test_too_little_gpu_memory_falls_back_to_the_cpu(dsn_pair, caplog):
    from backend.cache import ImageEntry
    from bench.select import BENCH_SEED, interior_point, load_scenes
    cpu, gpu = dsn_pair
    img, gt = load_scenes(1, 4.0, BENCH_SEED)[0]   # a big photo: the coarse pass needs fresh memory
    x, y, _ = interior_point(gt)
    expected = cpu.select(ImageEntry("c-big", rgba(img)), [(x, y, True)], None, NOP)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(max(torch.cuda.memory_allocated() / total, 1e-6))   # full
    try:
        with caplog.at_level(logging.WARNING, "simpson.device"):
            got = gpu.select(ImageEntry("g-big", rgba(img)), [(x, y, True)], None, NOP)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert len(caplog.records) == 1 and "failed on cuda" in caplog.records[0].getMessage(), caplog.text
    assert np.array_equal(got, expected)
    # and the GPU serves the next request again
    again = gpu.select(ImageEntry("g-big2", rgba(img)), [(x, y, True)], None, NOP)
    assert iou(again, expected) >= MIN_IOU
