"""The PVM's own-frame pair features (issue 23, sixteenth session: copies turned up to ±45° and re-lit
±25 %): what they keep when a copy is turned or re-lit, and that the verifiers that read the older
10 or 13 features score exactly as before."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend import weights
from backend.models.pvm import (C8, C16, HIST, N_SCALARS, N_SCALARS_V1, N_SCALARS_V3, PARTS, ROW, SHAPE,
                                PairVerifier, pair_scalars, split_row)
from backend.similar.types import as_patch
from backend.similar.verification import colour_hist
from backend.training import train_pvm

OWN = {"hist_v": 13, "elong": 14, "own_iou": 15, "ring8": 16, "ring16": 17}
HIST_I, ASP, IOU, P8MEAN = 2, 4, 5, 6


def golden_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Six (query, candidate) rows from unlike to alike (the scores below were computed by the code
    before the own-frame features)."""
    g = torch.Generator().manual_seed(16)

    def rows_of(n: int) -> torch.Tensor:
        def unit(*s: int) -> torch.Tensor:
            return torch.nn.functional.normalize(torch.rand(*s, generator=g) - 0.3, dim=-1)
        h = torch.rand(n, HIST, generator=g) ** 4
        return torch.cat([unit(n, C8), unit(n, C16), h / h.sum(1, keepdim=True),
                          (torch.rand(n, SHAPE, generator=g) > 0.4).float(),
                          400 + 1000 * torch.rand(n, 1, generator=g), 1 + 60 * torch.rand(n, 4, generator=g),
                          unit(n, PARTS, C8).flatten(1), unit(n, PARTS, C16).flatten(1)], 1)
    q, c = rows_of(6), rows_of(6)
    mix = torch.linspace(0, 1, 6)[:, None]
    return q, mix * q + (1 - mix) * c


def test_older_verifiers_score_exactly_as_before():
    """The shipped standard-photo PVM (10 features) and a 13-feature model give the scores they gave
    before the 5 own-frame features were added; the first 13 columns are the same with or without
    them; a weights file with 18 features builds an 18-feature model."""
    q, c = golden_rows()
    with torch.no_grad():
        shipped = torch.sigmoid(weights.load("pvm")(q, c)[0])
        torch.manual_seed(0)
        m13 = PairVerifier(scalars=N_SCALARS).eval()
        m13.scalar_mean.copy_(torch.tensor([0.5, 0.5, 0.3, 0.0, 0.2, 0.5, 0.4, 0.2, 0.4, 0.2, 0.5, 0.5, 0.5]))
        m13.scalar_std.fill_(0.25)
        logits13 = m13(q, c)[0]
    assert weights.load("pvm").n_scalars == N_SCALARS_V1
    assert torch.allclose(shipped, torch.tensor([0.001914, 0.01688, 0.201303, 0.731379, 0.955066, 0.997214]),
                          atol=2e-6)
    assert torch.allclose(logits13, torch.tensor([0.218637, 0.069427, 0.216987, 0.338479, 0.324827, 0.324584]),
                          atol=2e-6)
    sq, sc = split_row(q), split_row(c)
    all18 = pair_scalars(sq, sc, N_SCALARS_V3)
    assert all18.shape == (6, N_SCALARS_V3) and pair_scalars(sq, sc).shape == (6, N_SCALARS)
    assert torch.equal(all18[:, :N_SCALARS], pair_scalars(sq, sc))
    assert torch.isfinite(all18).all()


def test_a_file_with_the_own_frame_features_builds_their_model(tmp_path: Path):
    sd = {f"pvm.{k}": v for k, v in PairVerifier(scalars=N_SCALARS_V3).state_dict().items()}
    path = tmp_path / "similar-big-lite0.pt"
    torch.save(sd, path)
    weights.write_sha256(path)
    model = weights.load("pvm-big", path)
    q, c = golden_rows()
    assert model.n_scalars == N_SCALARS_V3 and model(q, c)[0].shape == (6,)


def test_a_file_with_a_wider_head_or_an_embedding_builds_its_model(tmp_path: Path):
    """weights and ship_big_pvm build the verifier a file describes (models.pvm.verifier_for): a
    wider head (train_pvm --head) and an object embedding (--embed) load strictly and score as saved."""
    q, c = golden_rows()
    for i, kw in enumerate(({"head": 32}, {"head": 16, "embed": 16})):
        torch.manual_seed(i)
        saved = PairVerifier(scalars=N_SCALARS_V3, **kw).eval()
        path = tmp_path / f"v{i}" / "similar-big-lite0.pt"
        path.parent.mkdir()
        torch.save({f"pvm.{k}": v for k, v in saved.state_dict().items()}, path)
        weights.write_sha256(path)
        model = weights.load("pvm-big", path)
        assert model.head[0].out_features == kw["head"] and (model.embed is not None) == ("embed" in kw)
        with torch.no_grad():
            assert torch.equal(model(q, c)[0], saved(q, c)[0])


def test_an_ensemble_file_scores_the_mean_of_its_members_logits(tmp_path: Path):
    """ship_big_pvm --verifier A B C writes their VerifierEnsemble (members of different shapes: an
    embedding, a wider head) with one threshold chosen on validation pairs; weights builds it back
    strictly (a missing member's key is refused) and it scores the mean of its members' logits."""
    from backend.models.pvm import VerifierEnsemble
    from backend.training import ship_big_pvm
    q, c = golden_rows()
    members, files = [], []
    for i, kw in enumerate(({"head": 64}, {"head": 64, "embed": 16}, {"head": 16})):
        torch.manual_seed(10 + i)
        m = PairVerifier(scalars=N_SCALARS_V3, **kw).eval()
        members.append(m)
        files.append(tmp_path / f"m{i}.pt")
        torch.save(m.state_dict(), files[-1])
    np.savez(tmp_path / "val.npz", **golden_pairs(20))
    out = tmp_path / "similar-big-lite0.pt"
    assert ship_big_pvm.main(["--verifier", *map(str, files), "--val", str(tmp_path / "val.npz"),
                              "--gate", "0,100", "--out", str(out)]) == 0
    model = weights.load("pvm-big", out)
    assert isinstance(model, VerifierEnsemble) and len(model.members) == 3 and model.n_scalars == N_SCALARS_V3
    assert 0.0 <= float(model.threshold) <= 1.0
    with torch.no_grad():
        mean = torch.stack([m(q, c)[0] for m in members]).mean(0)
        assert torch.allclose(model(q, c)[0], mean, atol=1e-6)
    sd = torch.load(out, weights_only=True)
    bad = tmp_path / "bad" / "similar-big-lite0.pt"
    bad.parent.mkdir()
    torch.save({k: v for k, v in sd.items() if k != "pvm.members.1.embed.0.weight"}, bad)
    weights.write_sha256(bad)
    with pytest.raises(weights.WeightsError):
        weights.load("pvm-big", bad)


def object_mask(angle: float, bump: bool = True) -> np.ndarray:
    """An elongated bar with a round bump on one end, turned by `angle` degrees."""
    m = np.zeros((400, 400), np.uint8)
    pts = cv2.boxPoints(((200, 200), (220, 60), angle)).astype(np.int32)
    cv2.fillPoly(m, [pts], 1)
    if bump:
        t = np.radians(angle)
        cv2.circle(m, (int(200 + 110 * np.cos(t)), int(200 + 110 * np.sin(t))), 45, 1, -1)
    return m > 0


def row_of(mask: np.ndarray, rgb: np.ndarray | None = None, parts8: np.ndarray | None = None) -> torch.Tensor:
    """A descriptor row with the shape, box, area (and colour histogram, s8 parts) of a mask; the
    pooled features are zero."""
    p = as_patch(mask)
    x, y, w, h = p.box
    row = np.zeros(ROW, np.float32)
    o = C8 + C16
    if rgb is not None:
        row[o:o + HIST] = colour_hist(rgb, p)
    row[o + HIST:o + HIST + SHAPE] = cv2.resize(p.mask.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA).ravel()
    row[o + HIST + SHAPE] = p.area
    row[o + HIST + SHAPE + 1:o + HIST + SHAPE + 5] = (x, y, w, h)
    if parts8 is not None:
        row[o + HIST + SHAPE + 5:o + HIST + SHAPE + 5 + PARTS * C8] = parts8.ravel()
    return torch.from_numpy(row)[None]


def scalars(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return pair_scalars(split_row(q), split_row(c), N_SCALARS_V3)[0]


def test_a_turned_copy_keeps_its_shape_in_its_own_frame():
    """Turned by 40°, the box's aspect and the box-shape IoU change a lot; the elongation and the shape
    in its own principal-axis frame hardly do, and a disc of the same area stays unlike it."""
    q = row_of(object_mask(0))
    turned = scalars(q, row_of(object_mask(40)))
    upside_down = scalars(q, row_of(object_mask(180)))
    disc = np.zeros((400, 400), np.uint8)
    cv2.circle(disc, (200, 200), 75, 1, -1)
    other = scalars(q, row_of(disc > 0))
    assert turned[ASP] > 0.5 and turned[IOU] < 0.5
    assert turned[OWN["elong"]] < 0.1 and turned[OWN["own_iou"]] > 0.8
    assert upside_down[OWN["own_iou"]] > 0.95
    assert other[OWN["elong"]] > 0.8 and other[OWN["own_iou"]] < turned[OWN["own_iou"]] - 0.3


def test_a_relit_copy_keeps_its_colours_one_value_bin_apart():
    """25 % darker: the full histogram intersection drops, the one with brightness shifted by a bin
    does not; a copy in another hue stays unlike."""
    rng = np.random.default_rng(0)
    mask = object_mask(0, bump=False)
    rgb = np.zeros((400, 400, 3), np.uint8)
    rgb[...] = (200, 120, 40)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    dark = (rgb * 0.75).astype(np.uint8)
    blue = rgb[..., ::-1].copy()
    q = row_of(mask, rgb)
    relit, hue = scalars(q, row_of(mask, dark)), scalars(q, row_of(mask, blue))
    assert relit[HIST_I] < 0.5 and relit[OWN["hist_v"]] > 0.9
    assert hue[OWN["hist_v"]] < 0.1


def test_parts_turned_by_a_ring_step_match_in_the_ring():
    """The 8 outer part cells moved one step round the centre (a turn of about 45°): the cell-by-cell
    mean cosine drops, the best ring step finds them all."""
    g = np.random.default_rng(1)
    parts = g.normal(size=(PARTS, C8)).astype(np.float32)
    parts /= np.linalg.norm(parts, axis=1, keepdims=True)
    ring = [0, 1, 2, 5, 8, 7, 6, 3]
    turned = parts.copy()
    turned[ring] = parts[np.roll(ring, 1)]
    mask = object_mask(0)
    s = scalars(row_of(mask, parts8=parts), row_of(mask, parts8=turned))
    assert s[P8MEAN] < 0.3 and abs(float(s[OWN["ring8"]]) - 1.0) < 1e-5


def golden_pairs(times: int) -> dict[str, np.ndarray]:
    """The golden rows repeated `times` times as a pairs file's arrays (half positive)."""
    q, c = golden_rows()
    n = 6 * times
    return {"query": q.repeat(times, 1).numpy(), "cand": c.repeat(times, 1).numpy(),
            "label": np.tile((torch.arange(6) >= 3).to(torch.int8).numpy(), times),
            "source": np.zeros(n, np.int8), "scene": np.arange(n, dtype=np.int32)}


def test_train_pvm_reads_the_own_frame_features(tmp_path: Path):
    """--scalars 18 trains a model on all 18 pair features (normalised from the training pairs), with
    --seed, and writes its weights and threshold."""
    data = golden_pairs(50)
    np.savez(tmp_path / "pairs.npz", **data)
    assert train_pvm.main(["--train", str(tmp_path / "pairs.npz"), "--val", str(tmp_path / "pairs.npz"),
                           "--out", str(tmp_path / "out"), "--epochs", "2", "--scalars", str(N_SCALARS_V3),
                           "--seed", "3"]) == 0
    sd = torch.load(tmp_path / "out" / "pvm.pt", weights_only=True)
    assert sd["scalar_mean"].shape == (N_SCALARS_V3,) and 0.0 < float(sd["threshold"]) < 1.0


def test_train_pvm_mixes_pairs_files_with_different_extras(tmp_path: Path):
    """Training files written by different tools (engine_pairs adds "shipped", similar_data does not)
    train together on the columns they share, in either order."""
    data = golden_pairs(50)
    np.savez(tmp_path / "plain.npz", **data)
    np.savez(tmp_path / "engine.npz", shipped=np.zeros(300, bool), **data)
    for order in (("engine", "plain"), ("plain", "engine")):
        out = tmp_path / ("out_" + order[0])
        assert train_pvm.main(["--train", *(str(tmp_path / f"{n}.npz") for n in order), "--val",
                               str(tmp_path / "plain.npz"), "--out", str(out), "--epochs", "1", "--seed", "3"]) == 0
        assert (out / "pvm.pt").is_file()
