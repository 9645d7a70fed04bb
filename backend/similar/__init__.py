"""Select similar: proposals from feature matching, one-click masks, verification, iteration.

    query mask ──► prototype (mask-pooled Lite0 features at strides 8 and 16)        encoding.py
               ──► cosine map over the image (encoded so the query is ~96 px), peaks by max-pool NMS
                   (or, when backend/weights/cpn-lite0.pt exists, the learned CPN heatmap's peaks)
                                                                                     proposals.py
               ──► each peak becomes a click for the one-click segmenter (DSN, or GrabCut fallback),
                   its mask repaired with the query's shape            shape_repair.py, grabcut.py
               ──► a verifier scores (query, candidate)                            verification.py
               ──► a rejected candidate that is the query's own pixels turned, scaled and re-lit
                   is accepted all the same                                    pixel_match.py
               ──► accepted candidates become new queries (IDS)                           loop.py
               ──► parts of the object that the query's mask left out, found because they
                   lie beside every copy, join the copies and the query          repeated_parts.py

Settings, data types and constants: types.py. The image is encoded once per scale (cached in the
ImageEntry by the engine, backend/engines/similar_features.py); everything after that is matching
on a small grid plus one segmenter call per proposal.
"""
from .encoding import (big_photo, cosine_map, encode, encode_raw, encode_side, match_feats, pool, pool_parts, small_on_big,
                       to_grid)
from .grabcut import GRABCUT_ITERS, GRABCUT_SIDE, template_grabcut
from .loop import Anchors, Known, find_similar
from .proposals import (ALIGN_SIDE, Proposer, align, cpn_heatmap, default_cpn, move_template, peak_kernel, peaks,
                        smooth_map)
from .shape_repair import (HOLE_SHARE, PIECE_MIN, PIECES_MAX, SHORT, SHORT_BIG, click_the_shape, complete_pieces,
                           complete_shape, holes_of, interior_point, keep_parts, query_pieces)
from .types import (HIST_BINS, LARGE_SIDE, LEVELS, MAX_SIDE, MIN_SIDE, PARTS, SHAPE, SIDE_STEP, SMALL_SEED, STRIDE,
                    TARGET_SEED, Candidate, Descriptor, MaskPatch, MatchMap, Result, Segment, SimilarSettings, Verifier,
                    as_patch)
from .verification import CosineVerifier, LearnedVerifier, colour_hist, describe, descriptor_row, onto_scale

__all__ = [
    "big_photo", "small_on_big", "cosine_map", "encode", "encode_raw", "encode_side", "match_feats", "pool", "pool_parts", "to_grid",
    "GRABCUT_ITERS", "GRABCUT_SIDE", "template_grabcut", "Anchors", "Known", "find_similar",
    "ALIGN_SIDE", "Proposer", "align", "cpn_heatmap", "default_cpn", "move_template", "peak_kernel", "peaks",
    "smooth_map", "HOLE_SHARE", "PIECE_MIN", "PIECES_MAX", "SHORT", "SHORT_BIG", "click_the_shape", "complete_pieces",
    "complete_shape", "holes_of", "interior_point", "keep_parts", "query_pieces",
    "HIST_BINS", "LARGE_SIDE", "LEVELS", "MAX_SIDE", "MIN_SIDE", "PARTS", "SHAPE", "SIDE_STEP", "SMALL_SEED",
    "STRIDE", "TARGET_SEED", "Candidate", "Descriptor", "MaskPatch", "MatchMap", "Result", "Segment",
    "SimilarSettings", "Verifier", "as_patch", "CosineVerifier", "LearnedVerifier", "colour_hist", "describe",
    "descriptor_row", "onto_scale",
]
