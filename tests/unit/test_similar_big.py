"""Select similar's big-photo verifier (issue 23): the regime it decides in, its scores on the
shipped verifier's scale, the engine's choice between the two verifiers, its weights file and the
threshold rule that writes it. The colour backbone and disc scenes of test_similar."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend import similar as sim
from backend import weights
from backend.engines.similar_features import FeaturesEngine
from backend.engines.similar_pvm import PvmEngine
from backend.models.pvm import N_SCALARS_V3, PairVerifier
from backend.training.ship_big_pvm import matching_threshold
from tests.unit.test_similar import ColourBackbone, disc_image, entry_of

BIG_RED = [(150, 150), (600, 180), (1000, 200), (300, 600), (800, 650)]
BIG_BLUE = [(1100, 700)]


def fixed(score_logit: float, threshold: float) -> PairVerifier:
    """A verifier whose score is sigmoid(score_logit) for every pair."""
    model = PairVerifier()
    with torch.no_grad():
        model.head[2].weight.zero_()
        model.head[2].bias.fill_(score_logit)
        model.threshold.fill_(threshold)
    return model.eval()


def test_the_big_photo_regime_is_a_small_query_on_a_photo_over_max_side():
    def q(side: int) -> np.ndarray:
        m = np.zeros((3000, 4000), bool)
        m[100:100 + side, 100:100 + side] = True
        return m
    assert sim.small_on_big(3000, 4000, q(60)) and sim.small_on_big(3000, 4000, q(370))
    assert not sim.small_on_big(3000, 4000, q(380))      # ~9 % of the long side: encoded at MAX_SIDE, as standard
    assert not sim.small_on_big(704, 1024, q(20)[:704, :1024]) and not sim.small_on_big(448, 768, q(10)[:448, :768])
    assert all(sim.encode_side(3000, 4000, q(s)) > 1024 for s in (60, 150))   # the finer encoding's regime
    assert sim.encode_side(3000, 4000, q(370)) == sim.encode_side(3000, 4000, q(380)) == 1024


def test_scores_onto_the_shipped_scale_accept_exactly_as_before():
    own, onto = 0.851, 0.443
    raw = np.linspace(0.0, 1.0, 2001)
    mapped = np.array([sim.onto_scale(float(p), own, onto) for p in raw])
    assert ((mapped >= onto) == (raw >= own)).all()
    assert (np.diff(mapped) >= 0).all()
    assert sim.onto_scale(0.0, own, onto) == 0.0 and sim.onto_scale(1.0, own, onto) == pytest.approx(1.0)
    assert sim.onto_scale(own, own, onto) == pytest.approx(onto)
    assert sim.onto_scale(0.8509, own, onto) < onto                 # just under its own threshold: rejected


def test_learned_verifier_gate_and_scale():
    img, reds, _ = disc_image([(40, 40), (160, 50)], [])
    mm = sim.encode(ColourBackbone(), img, 320)
    q, c = sim.describe(mm, img, reds[0]), sim.describe(mm, img, reds[1])
    v = sim.LearnedVerifier(fixed(0.0, 0.6), gate=(0.3, 2.0), onto=0.4)   # raw 0.5, own threshold 0.6
    assert v.threshold == pytest.approx(0.4) and v.score(q, c) == pytest.approx(0.5 * 0.4 / 0.6, abs=1e-6)
    assert v.score(q, c._replace(area=q.area * 0.25)) == 0.0 and v.score(q, c._replace(area=q.area * 2.5)) == 0.0
    plain = sim.LearnedVerifier(fixed(0.0, 0.6))                            # no gate, no scale: as before
    assert plain.threshold == pytest.approx(0.6) and plain.score(q, c._replace(area=q.area * 0.25)) == pytest.approx(0.5)


def test_the_big_photo_gate_scores_a_smaller_partly_hidden_copy():
    # a copy 70 % of the length of a query 130 % of it, a quarter hidden: 0.22 of the query's area
    img, reds, _ = disc_image([(40, 40), (160, 50)], [])
    mm = sim.encode(ColourBackbone(), img, 320)
    q, c = sim.describe(mm, img, reds[0]), sim.describe(mm, img, reds[1])
    eng = PvmEngine(backbone=ColourBackbone(), model=fixed(0.0, 0.5), segmenter=None, big_model=fixed(30.0, 0.7))
    v = eng.verifier(big_photo=True)
    small = (0.7 / 1.3) ** 2 * 0.75
    assert v.score(q, c._replace(area=q.area * small)) >= v.threshold
    assert v.score(q, c._replace(area=q.area * 0.1)) == 0.0 and v.score(q, c._replace(area=q.area * 2.5)) == 0.0


def test_the_big_photo_verifier_decides_only_for_a_small_query_on_a_big_photo():
    never, always = fixed(-30.0, 0.5), fixed(30.0, 0.5)
    big, reds, _ = disc_image(BIG_RED, BIG_BLUE, h=800, w=1200, r=14)

    def found(img: np.ndarray, seed: np.ndarray, **kw) -> int:
        eng = PvmEngine(backbone=ColourBackbone(), model=never, segmenter=None, **kw)
        return len(eng.similar(entry_of(img), seed, lambda f, m: None))
    assert found(big, reds[0], big_model=always) >= 3              # the big-photo verifier accepts the copies
    assert found(big, reds[0], big_model=None) == 0               # without it the shipped one decides
    off = replace(sim.SimilarSettings(), big_photo_verifier=False)
    assert found(big, reds[0], big_model=always, settings=off) == 0
    small, sreds, _ = disc_image([(40, 40), (160, 50), (270, 60), (80, 180)], [(220, 180)])
    assert found(small, sreds[0], big_model=always) == 0          # a photo up to MAX_SIDE: the shipped one
    shut = PvmEngine(backbone=ColourBackbone(), model=always, segmenter=None, big_model=never)
    assert shut.similar(entry_of(big), reds[0], lambda f, m: None) == []
    assert len(shut.similar(entry_of(small), sreds[0], lambda f, m: None)) >= 3


def test_a_missing_or_damaged_big_photo_verifier_leaves_the_shipped_one(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    main = fixed(0.0, 0.5)
    eng = PvmEngine(backbone=ColourBackbone(), model=main, segmenter=None)
    assert eng.big_model() is None and eng.verifier(big_photo=True).model is main
    file = tmp_path / "similar-big-lite0.pt"
    torch.save({f"pvm.{k}": v for k, v in fixed(1.0, 0.7).state_dict().items()}, file)
    weights.write_sha256(file)
    eng = PvmEngine(backbone=ColourBackbone(), model=main, segmenter=None)
    big = eng.big_model()
    assert big is not None and big is eng.big_model()             # loaded once
    v = eng.verifier(big_photo=True)
    assert v.model is big and v.own == pytest.approx(0.7) and v.threshold == pytest.approx(0.5)
    s = sim.SimilarSettings()
    assert (v.min_ratio, v.max_ratio) == (s.big_photo_min_ratio, s.big_photo_max_ratio)
    assert eng.verifier().model is main
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF                                     # fails its checksum
    file.write_bytes(bytes(data))
    assert PvmEngine(backbone=ColourBackbone(), model=main, segmenter=None).big_model() is None


def test_the_threshold_rule_accepts_no_more_negatives_than_allowed():
    prob = np.array([0.95, 0.9, 0.8, 0.7, 0.7, 0.6, 0.2, 0.99])
    neg = np.array([True, True, True, True, True, True, True, False])
    for allowed in range(0, 8):
        t = matching_threshold(prob, neg, allowed)
        assert (prob[neg] >= t).sum() <= allowed
        assert (prob[neg] >= t - 0.001).sum() > allowed or t == 0.0   # the lowest on the 0.001 grid
    assert matching_threshold(prob, neg, 3) == pytest.approx(0.701)   # the tie at 0.7 rejected together


BIG_FILE = Path(__file__).resolve().parents[2] / "backend" / "weights" / "similar-big-lite0.pt"


@pytest.mark.skipif(not BIG_FILE.exists(), reason="backend/weights/similar-big-lite0.pt not shipped (docs/similar.md)")
def test_shipped_big_photo_verifier_checksum_strict_keys(tmp_path: Path):
    assert weights.usable(BIG_FILE) and BIG_FILE.stat().st_size <= 30 * 2 ** 20
    model = weights.load("pvm-big", BIG_FILE)
    assert model.n_scalars == N_SCALARS_V3 and 0.0 < float(model.threshold) < 1.0   # since the sixteenth session: 18 features
    members = getattr(model, "members", [model])                # version 5 (eighteenth session): an ensemble of five
    assert all(m.head[0].out_features == 64 for m in members)   # versions 3-5: train_pvm --head 64
    sd = torch.load(BIG_FILE, map_location="cpu", weights_only=True)
    assert all(k.startswith("pvm.") for k in sd)
    bad = tmp_path / "similar-big-lite0.pt"
    torch.save({**sd, "pvm.extra": torch.zeros(1)}, bad)
    weights.write_sha256(bad)
    with pytest.raises(weights.WeightsError):
        weights.load("pvm-big", bad)


class ByPlace:
    """A verifier that accepts a candidate whose box lies within `reach` px (x) of the query's."""
    threshold = 0.5
    min_ratio, max_ratio = 0.3, 2.0

    def __init__(self, reach: float = 150.0):
        self.reach = reach
        self.calls = 0

    def score(self, q: sim.Descriptor, c: sim.Descriptor) -> float:
        self.calls += 1
        return 1.0 if abs(q.box[0] - c.box[0]) < self.reach else 0.0


CHAIN = [(40, 60), (160, 70), (270, 60), (380, 70)]   # each 110-120 px from the one before


def chain_result(by_copies: bool, min_score: float = 0.0) -> tuple[list[np.ndarray], list[sim.Candidate], ByPlace]:
    img, reds, _ = disc_image(CHAIN, [], w=480)
    mm = sim.encode(ColourBackbone(), img, 480)
    settings, verifier = sim.SimilarSettings(copies_min_score=min_score), ByPlace()
    res = sim.find_similar(img, reds[0], mm, lambda x, y, t: sim.template_grabcut(img, x, y, t),
                           verifier, settings, cpn=None, by_copies=by_copies)
    return reds, res.accepted, verifier


def covered(reds: list[np.ndarray], accepted: list[sim.Candidate]) -> list[bool]:
    h, w = reds[0].shape
    union = np.zeros((h, w), bool)
    for c in accepted:
        union |= c.patch.full(h, w)
    return [bool((union & m).sum() > 0.5 * m.sum()) for m in reds]


def test_by_copies_accepts_what_an_accepted_copy_accepts_one_hop_only():
    reds, plain, _ = chain_result(False)
    assert covered(reds, plain)[1:] == [True, False, False]      # the query alone reaches the first copy
    reds, chained, v = chain_result(True)
    # the second copy is 230 px from the query but 110 from the first copy (an anchor); the third
    # is 110 px from the second, which was accepted by a copy and is no anchor: one hop only
    assert covered(reds, chained)[1:] == [True, True, False]
    assert len(chained) == 2 and all(c.score >= v.threshold for c in chained)
    h, w = reds[0].shape
    a, b = (c.patch.full(h, w) for c in chained)
    assert not (a & b).any() and not any((c.patch.full(h, w) & reds[0]).any() for c in chained)
    reds, strict, _ = chain_result(True, min_score=1.01)          # a copy's score must reach copies_min_score too
    assert covered(reds, strict)[1:] == [True, False, False]


def test_anchors_gate_on_the_query_area_and_rescore_kept_candidates():
    img, reds, _ = disc_image(CHAIN, [], w=480)
    mm = sim.encode(ColourBackbone(), img, 480)
    d = [sim.describe(mm, img, m) for m in reds]
    anchors = sim.Anchors(ByPlace(), d[0], max_overlap=0.3)
    res = sim.Result()
    known = sim.Known.of(reds[0], sim.to_grid(reds[0], mm), d[0])
    cand = sim.Candidate(sim.as_patch(reds[2]), 1.0, 0.0)
    assert not anchors.check(cand, d[2], sim.to_grid(reds[2], mm), res, known)   # no anchor yet: kept
    assert anchors.score(d[2]._replace(area=d[0].area * 3), [d[1]]) == 0.0        # outside the gate
    anchors.add(d[1], res, known)                                                # the kept one is accepted now
    assert len(res.accepted) == 1 and res.accepted[0].score == 1.0 and known.taken[reds[2]].all()
    assert not anchors.pending and len(known.queries) == 2                        # and proposes in its turn


@pytest.mark.parametrize("rule", ["by_copies", "by_group"])
def test_rules_on_rejected_candidates_only_with_the_big_photo_verifier_deciding(rule):
    """by_copies (off as shipped) and by_group (on, the set rule: docs/similar.md) act only where the big-photo PVM
    decides."""
    never, always = fixed(-30.0, 0.5), fixed(30.0, 0.5)
    on = replace(sim.SimilarSettings(), **{rule: True})
    eng = PvmEngine(backbone=ColourBackbone(), model=never, segmenter=None, big_model=always, settings=on)
    assert getattr(eng, rule)(True) and not getattr(eng, rule)(False)   # a small query on a big photo only
    assert not getattr(PvmEngine(backbone=ColourBackbone(), model=never, segmenter=None, big_model=None,
                                 settings=on), rule)(True)
    assert getattr(sim.SimilarSettings(), rule) == (rule == "by_group")
    assert getattr(PvmEngine(backbone=ColourBackbone(), model=never, segmenter=None, big_model=always),
                   rule)(True) == (rule == "by_group")
    assert not getattr(FeaturesEngine(backbone=ColourBackbone(), segmenter=None, settings=on), rule)(True)
