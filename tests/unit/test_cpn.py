"""CPN (learned click proposals): model shapes, loss, a few training steps, peak picking, the
weights loader and its checksum, and find_similar with and without CPN weights."""
from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend import similar as sim
from backend import weights
from backend.models.cpn import CPN, K, focal_loss, grid_pool, n_params, pick_peaks
from backend.training import cpn_data, train_cpn
from backend.training.synth import SceneGenerator


class ColourBackbone(torch.nn.Module):
    """s8/s16 features = pooled one-hot colour codes (as in test_similar)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        idx = ((r > 128).long() * 4 + (g > 128).long() * 2 + (b > 128).long())
        onehot = F.one_hot(idx, 8).permute(0, 3, 1, 2).float()
        return {"s8": F.avg_pool2d(onehot, 8).repeat(1, 5, 1, 1) + 0.01,
                "s16": F.avg_pool2d(onehot, 16).repeat(1, 14, 1, 1) + 0.01}


RED = [(40, 40), (160, 50), (270, 60), (80, 180)]
BLUE = [(220, 180)]


def disc_image(h: int = 240, w: int = 320, r: int = 14):
    img = np.full((h, w, 3), (60, 140, 60), np.uint8)
    masks = []
    for (cx, cy), col in [(c, (230, 30, 30)) for c in RED] + [(c, (30, 30, 230)) for c in BLUE]:
        cv2.circle(img, (cx, cy), r, col, -1)
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (cx, cy), r, 1, -1)
        masks.append(m > 0)
    return img, masks[:len(RED)], masks[len(RED):]


def grabcut(img):
    return lambda x, y, t: sim.template_grabcut(img, x, y, t)


def test_shapes_and_size(one_thread):
    torch.manual_seed(0)
    model = CPN().eval()
    assert n_params(model) < 1_000_000
    feats = {"s8": F.normalize(torch.randn(2, 40, 20, 24), dim=1), "s16": F.normalize(torch.randn(2, 112, 20, 24), dim=1)}
    q = torch.zeros(2, 1, 20, 24)
    q[0, 0, 3:8, 4:10] = 1.0
    q[1, 0, 12:14, 2:3] = 0.5
    with torch.no_grad():
        out = model(feats, q)
        again = model(feats, q[:, 0], model.project(feats))
    assert out.shape == (2, 1, 20, 24) and torch.isfinite(out).all()
    assert torch.allclose(out, again, atol=1e-5)
    # query vectors: a 3x3 split of the box, zero (and flagged) where the mask has no weight
    w = torch.zeros(9, 9)
    w[0:3, 0:9] = 1.0                                    # only the top third of its own box...
    w[8, 0] = 1.0                                        # ... and one cell at the bottom left
    vecs, empty = grid_pool(torch.ones(5, 9, 9), w)
    assert vecs.shape == (K * K, 5)
    assert empty.tolist() == [False, False, False, True, True, True, False, True, True]
    assert (vecs[empty] == 0).all() and torch.allclose(vecs[~empty], torch.ones(4, 5))


def test_focal_loss_prefers_the_target_and_ignores():
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 4, 4] = 1.0
    target[0, 0, 4, 5] = 0.6
    good = torch.full_like(target, -6.0)
    good[0, 0, 4, 4] = 6.0
    bad = torch.full_like(target, -6.0)
    bad[0, 0, 1, 1] = 6.0
    assert focal_loss(good, target) < 0.05 < focal_loss(bad, target)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[0, 0, 1, 1] = True
    assert focal_loss(bad, target, ignore) < focal_loss(bad, target)


@pytest.fixture
def one_thread():
    """Tiny ops: one thread is faster, and far faster on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_a_few_steps_on_one_generated_scene_reduce_the_loss(tmp_path: Path, one_thread):
    torch.manual_seed(0)
    gen = SceneGenerator("train", procedural=True, size=(256, 320))
    scene = gen.scene(4)                                 # 9 copies, encoded at long side 640
    assert sum(g == 0 for g in scene.groups) >= 3
    rec = cpn_data.scene_record(scene, ColourBackbone(), 0)   # cheap stand-in for Lite0
    np.savez(tmp_path / "s.npz", **rec)
    c = cpn_data.load(tmp_path / "s.npz")
    assert c is not None and c.labels.shape == c.feats["s8"].shape[-2:]
    target = cpn_data.heatmap_target(c, 0)
    copies = [i for i, g in enumerate(c.groups) if g == 0 and i != 0]
    assert float(target.max()) == 1.0
    for i in copies:                                     # a 1 at each other copy's centre cell
        cx, cy = int(c.centres[i, 0]), int(c.centres[i, 1])
        assert target[min(cy, target.shape[0] - 1), min(cx, target.shape[1] - 1)] == 1.0
    ys, xs = train_cpn.crop(c, 0, random.Random(0), 36)   # a window around the query, as in training
    feats = {k: v[None, :, ys, xs].float() for k, v in c.feats.items()}
    q = c.weights[0][ys, xs][None]
    t, ign = target[ys, xs][None, None], (q > 0)[:, None]
    assert float(t.max()) == 1.0 and float(q.sum()) > 0
    model = CPN()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(15):
        loss = focal_loss(model(feats, q), t, ign)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-5:]) < 0.7 * losses[0] and np.mean(losses[-3:]) < losses[0], losses


def test_pick_peaks_nms_threshold_blocking_and_order():
    yy, xx = np.mgrid[0:30, 0:40]
    heat = np.zeros((30, 40), np.float32)
    for (x, y, a) in [(5, 5, 0.9), (30, 20, 0.6), (20, 10, 0.15)]:
        heat = np.maximum(heat, a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0))
    heat[5, 7] = 0.85                                    # inside the first bump's window: suppressed
    h = torch.from_numpy(heat)
    assert [(x, y) for x, y, _ in pick_peaks(h, 5, 0.2, 10)] == [(5, 5), (30, 20)]
    assert [(x, y) for x, y, _ in pick_peaks(h, 5, 0.1, 10)] == [(5, 5), (30, 20), (20, 10)]
    assert [(x, y) for x, y, _ in pick_peaks(h, 5, 0.1, 1)] == [(5, 5)]
    blocked = torch.zeros(30, 40, dtype=torch.bool)
    blocked[4:7, 4:7] = True
    got = pick_peaks(h, 5, 0.2, 10, blocked)
    assert [(x, y) for x, y, _ in got] == [(30, 20)]   # blocked peak dropped, its window still suppressed
    assert abs(got[0][2] - 0.6) < 1e-6
    # find_similar's wrapper: kernel from the query's size in cells
    got = sim.peaks(heat, (8.0, 8.0), np.zeros((30, 40), bool), 0.2, 10)
    assert [(x, y) for x, y, _ in got] == [(5, 5), (30, 20)]


def test_loader_checks_the_checksum(tmp_path: Path):
    torch.manual_seed(1)
    model = CPN().eval()
    path = tmp_path / "cpn-lite0.pt"
    train_cpn.export(model, 0.3, path)
    loaded = weights.load("cpn", path)
    assert abs(float(loaded.threshold) - 0.3) < 1e-6
    for k, v in model.state_dict().items():
        if k != "threshold":
            assert torch.equal(v, loaded.state_dict()[k])
    good = path.with_suffix(".sha256").read_text()
    path.with_suffix(".sha256").write_text("0" * 64 + "  cpn-lite0.pt\n")
    with pytest.raises(weights.WeightsError, match="Checksum mismatch"):
        weights.load("cpn", path)
    path.with_suffix(".sha256").unlink()
    with pytest.raises(weights.WeightsError, match="Checksum file not found"):
        weights.load("cpn", path)
    path.with_suffix(".sha256").write_text(good)
    sd = torch.load(path, weights_only=True)            # strict: an unknown key is refused
    sd["extra"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    import hashlib
    bad.with_suffix(".sha256").write_text(hashlib.sha256(bad.read_bytes()).hexdigest() + "\n")
    with pytest.raises(weights.WeightsError, match="do not fit"):
        weights.load("cpn", bad)


def test_default_cpn_missing_or_damaged_means_none(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    assert sim.default_cpn() is None
    train_cpn.export(CPN(), 0.2, tmp_path / "cpn-lite0.pt")
    assert isinstance(sim.default_cpn(), CPN)
    (tmp_path / "cpn-lite0.sha256").write_text("f" * 64 + "\n")
    import os
    os.utime(tmp_path / "cpn-lite0.pt", ns=(1, 1))       # a new file version: loaded again
    assert sim.default_cpn() is None


def test_find_similar_without_cpn_weights_is_unchanged(tmp_path: Path, monkeypatch, one_thread):
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)   # no cpn-lite0.pt there
    img, reds, blues = disc_image()
    mm = sim.encode(ColourBackbone(), img, 320)
    settings = sim.SimilarSettings()
    res = sim.find_similar(img, reds[0], mm, grabcut(img), sim.CosineVerifier(settings), settings)
    ref = sim.find_similar(img, reds[0], mm, grabcut(img), sim.CosineVerifier(settings), settings, cpn=None)
    assert len(res.accepted) == 3 and res.proposals == ref.proposals and res.rounds == ref.rounds
    for a, b in zip(res.accepted, ref.accepted):
        assert a.patch.box == b.patch.box and (a.patch.mask == b.patch.mask).all()
    for m in (c.patch.full(*img.shape[:2]) for c in res.accepted):
        assert not (m & blues[0]).any()


class StubCPN(torch.nn.Module):
    """Heatmap with bumps at given grid cells, whatever the query: shows where proposals come from."""

    def __init__(self, cells: list[tuple[int, int]], grid: tuple[int, int]):
        super().__init__()
        heat = torch.full(grid, 0.01)
        for x, y in cells:
            heat[y, x] = 0.9
        self.register_buffer("logits", torch.logit(heat))
        self.register_buffer("threshold", torch.tensor(0.2))
        self.calls = 0

    def project(self, feats):
        return feats

    def forward(self, feats, query, projected=None):
        self.calls += 1
        return self.logits[None, None].expand(query.shape[0], 1, -1, -1)


def test_find_similar_takes_proposals_from_the_cpn(one_thread):
    img, reds, blues = disc_image()
    mm = sim.encode(ColourBackbone(), img, 320)
    cell = sim.STRIDE / mm.scale
    settings = sim.SimilarSettings(cosine_too=False)    # proposals from the CPN only
    # bumps on two of the three other red discs and on the blue one; none on the fourth red
    cells = [(int(x // cell), int(y // cell)) for x, y in (RED[1], RED[2], BLUE[0])]
    stub = StubCPN(cells, mm.grid)
    res = sim.find_similar(img, reds[0], mm, grabcut(img), sim.CosineVerifier(settings), settings, cpn=stub)
    masks = [c.patch.full(*img.shape[:2]) for c in res.accepted]
    assert len(masks) == 2 and stub.calls >= 2          # accepted instances became queries (IDS)
    for other in reds[1:3]:
        assert any((m & other).sum() > 0.8 * other.sum() for m in masks)
    assert not any((m & reds[3]).any() or (m & blues[0]).any() for m in masks)
    assert len(res.rejected) == 1 and abs(res.rejected[0].peak - 0.9) < 1e-5   # the blue one, verified away
