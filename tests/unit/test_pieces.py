"""backend/pieces.py: which pieces a first click's wider look adds to its mask."""
import numpy as np

from backend.pieces import (APART_MAX_SHARE, APART_MIN_LOGIT, APART_PEAK_LOGIT, GLANCE_MIN_LOGIT, PIECE_MIN_LOGIT,
                            clicked_component, may_hold_pieces, pieces_to_add)


RED, BLUE = (200, 30, 30), (30, 60, 200)


def _region():
    """A 100x100 region: the clicked piece (a red 20x20 square at 10..30), a second piece of the
    object (blue, 20x10 at 60..80, 10..20), a shape the model is unsure of (60..80, 60..80) and a
    crumb (2x2 at 40, 90), on grey."""
    wider = np.zeros((100, 100), bool)
    logits = np.full((100, 100), -5.0, np.float32)
    parts = {"clicked": (slice(10, 30), slice(10, 30)), "piece": (slice(10, 20), slice(60, 80)),
             "unsure": (slice(60, 80), slice(60, 80)), "crumb": (slice(90, 92), slice(40, 42))}
    sure = {"clicked": 8.0, "piece": PIECE_MIN_LOGIT + 2, "unsure": PIECE_MIN_LOGIT - 1, "crumb": 9.0}
    for name, sl in parts.items():
        wider[sl] = True
        logits[sl] = sure[name]
    base = np.zeros_like(wider)
    base[parts["clicked"]] = True
    rgb = np.full((100, 100, 3), 128, np.uint8)
    rgb[parts["clicked"]] = RED
    rgb[parts["piece"]] = BLUE
    return base, wider, logits, parts, rgb


def test_a_sure_piece_joins_and_the_rest_stays_out():
    base, wider, logits, parts, rgb = _region()
    add = pieces_to_add(base, wider, logits, (20, 20), rgb)
    expect = np.zeros_like(base)
    expect[parts["piece"]] = True
    assert (add == expect).all()


def test_nothing_is_added_when_the_click_selected_nothing_or_the_wider_look_has_no_other_piece():
    base, wider, logits, parts, rgb = _region()
    assert not pieces_to_add(np.zeros_like(base), wider, logits, (20, 20), rgb).any()
    assert not pieces_to_add(base, base.copy(), logits, (20, 20), rgb).any()


def test_the_clicked_component_is_the_one_under_the_click_or_the_whole_mask():
    base, wider, _, parts, _ = _region()
    assert (clicked_component(wider, (15, 15)) == base).all()
    assert (clicked_component(wider, (50, 50)) == wider).all()   # the click misses the mask


def test_the_segmenter_looks_wider_only_after_a_first_click(monkeypatch):
    """ClickSegmenter.predict with SegmentSettings.pieces on decodes a first click a second time in
    a wider window (on a 3000-px photo with a 60-px object); a refining click (with a previous
    mask) and the switch off do not."""
    from backend.segment import ClickSegmenter, SegmentSettings
    calls = []
    orig = ClickSegmenter._add_pieces

    def spy(self, emb, pts, win, out):
        calls.append(len(pts))
        return orig(self, emb, pts, win, out)
    monkeypatch.setattr(ClickSegmenter, "_add_pieces", spy)
    img = np.full((2000, 3000, 3), 200, np.uint8)
    img[1000:1060, 1500:1560] = (200, 30, 30)
    seg = ClickSegmenter()
    for on in (True, False):
        twin = seg.with_settings(SegmentSettings(pieces=on))
        emb = twin.set_image(img)
        first = twin.predict(emb, [(1530, 1030, True)])
        assert first[1030, 1530] == 255 and first[500, 500] == 0
        twin.predict(emb, [(1530, 1030, True), (1545, 1045, True)], prev_mask=first)
    assert calls == [1]


def test_what_the_object_lies_on_does_not_join():
    """A component the model is sure of but much bigger than the clicked piece, that touches it or
    holds it (the table or the animal a small object lies on, a frame around it), stays out."""
    base, wider, logits, parts, rgb = _region()
    table = np.zeros_like(wider)
    table[0:40, 0:45] = True           # under the clicked square: one component with it
    frame = np.zeros_like(wider)
    frame[0:45, 0:45] = True
    frame[5:35, 5:35] = False           # around it, 5 px away: the click inside its hull
    for surface in (table, frame):
        w, lg = wider | surface, logits.copy()
        lg[surface & ~base] = PIECE_MIN_LOGIT + 3
        add = pieces_to_add(base, w, lg, (20, 20), rgb)
        assert add[parts["piece"]].all() and not add[surface & ~base].any()


def test_a_bigger_piece_lying_apart_joins():
    """A piece up to APART_MAX_SHARE times the clicked one's area that lies apart from it (the sign
    beside the puzzle piece clicked, a racket beside its ball) joins; a bigger one, or any with the
    rule off (apart_share None), stays out."""
    base, wider, logits, parts, rgb = _region()
    apart = (slice(40, 100), slice(0, 30))   # 1800 px against the clicked piece's 400, 10 px below it
    assert 1800 <= APART_MAX_SHARE * 400
    wider[apart] = True
    logits[apart] = PIECE_MIN_LOGIT + 3
    rgb[apart] = BLUE
    assert pieces_to_add(base, wider, logits, (20, 20), rgb)[apart].all()
    assert not pieces_to_add(base, wider, logits, (20, 20), rgb, apart_share=None)[apart].any()
    assert not pieces_to_add(base, wider, logits, (20, 20), rgb, apart_share=1800 / 400 - 0.5)[apart].any()
    glance = np.where(base, 8.0, -5.0).astype(np.float32)
    glance[apart] = GLANCE_MIN_LOGIT + 1      # the glance asks for a full look there too
    assert may_hold_pieces(base, glance, (20, 20)) and not may_hold_pieces(base, glance, (20, 20), None)


def test_a_piece_lying_apart_joins_where_the_model_is_sure_of_some_of_it():
    """A piece lying apart whose mean logit is under PIECE_MIN_LOGIT joins when it is at least
    APART_MIN_LOGIT and the model is sure of part of it (APART_PEAK_LOGIT: the racket's ball drawn with
    soft edges); without that peak (a blur of texture the model half takes), touching the clicked piece,
    or with the switch off, it stays out."""
    unsure = (APART_MIN_LOGIT + PIECE_MIN_LOGIT) / 2
    for peak, touching, switch, joins in ((APART_PEAK_LOGIT + 1, False, True, True),
                                          (APART_PEAK_LOGIT - 1, False, True, False),
                                          (APART_PEAK_LOGIT + 1, True, True, False),
                                          (APART_PEAK_LOGIT + 1, False, False, False)):
        base, wider, logits, parts, rgb = _region()
        piece = (slice(10, 30), slice(31, 51)) if touching else parts["piece"]   # 1 px from the clicked one
        wider[piece] = True
        logits[piece] = unsure
        logits[piece[0].start, piece[1].start + 5] = peak       # one pixel, so the mean stays about `unsure`
        rgb[piece] = BLUE
        assert unsure - 0.5 < logits[piece].mean() < PIECE_MIN_LOGIT
        add = pieces_to_add(base, wider, logits, (20, 20), rgb, unsure_apart=switch)
        assert add[piece].all() == joins and (add[piece].any() == joins), (peak, touching, switch)


def test_a_copy_of_the_clicked_piece_beside_it_does_not_join():
    """A smaller red square beside the red square clicked (a neighbouring water drop, coin or cup:
    its colours and its shape) stays out; a red bar of the clicked piece's colours but another shape,
    and a blue square of its shape but other colours, are pieces and join."""
    base, wider, logits, parts, rgb = _region()
    shapes = {"copy": ((slice(40, 54), slice(40, 54)), RED), "bar": ((slice(90, 94), slice(60, 90)), RED),
              "blue square": ((slice(60, 76), slice(10, 26)), BLUE)}
    for sl, colour in shapes.values():
        wider[sl] = True
        logits[sl] = PIECE_MIN_LOGIT + 2
        rgb[sl] = colour
    add = pieces_to_add(base, wider, logits, (20, 20), rgb)
    assert not add[shapes["copy"][0]].any()
    assert add[shapes["bar"][0]].all() and add[shapes["blue square"][0]].all() and add[parts["piece"]].all()


def test_a_glance_asks_for_a_full_look_only_where_something_might_be_a_piece():
    """may_hold_pieces, the glance's looser rule, takes a component the model is less sure of than a
    piece needs (GLANCE_MIN_LOGIT) and says no when the wider look holds only what the click selected."""
    base, wider, logits, parts, rgb = _region()
    logits[parts["piece"]] = (GLANCE_MIN_LOGIT + PIECE_MIN_LOGIT) / 2
    assert may_hold_pieces(base, logits, (20, 20))
    assert not pieces_to_add(base, logits > 0, logits, (20, 20), rgb).any()
    only = np.where(base, 8.0, -5.0).astype(np.float32)
    assert not may_hold_pieces(base, only, (20, 20))
