"""bench/select.py --photos: the real-photo list and the ground truth made from hand-drawn outlines."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def load_bench_select():
    # bench/select.py shadows the stdlib `select` module by name: load it under another name.
    spec = importlib.util.spec_from_file_location("bench_select", REPO / "bench" / "select.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def disc_photo():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(60, 12, (200, 240, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((200, 240), np.uint8)
    cv2.circle(truth, (120, 100), 50, 1, -1)
    img[truth > 0] = np.clip(rng.normal(200, 12, (int(truth.sum()), 3)), 0, 255).astype(np.uint8)
    return img, truth > 0


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_band_snaps_a_rough_outline_to_the_object():
    bs = load_bench_select()
    img, truth = disc_photo()
    # a hexagon 3 px off the circle: a rough hand-drawn outline
    rough = [[120 + 53 * np.cos(a), 100 + 53 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    drawn = bs.outline_mask(img, rough, band=0)
    snapped = bs.outline_mask(img, rough, band=8)
    assert iou(drawn, truth) < 0.93
    assert iou(snapped, truth) > 0.97


def test_photo_list_is_well_formed_and_missing_photos_are_skipped(tmp_path, capsys):
    bs = load_bench_select()
    listed = json.loads(bs.PHOTOS.read_text())["photos"]
    assert len(listed) >= 3
    for ph in listed:
        assert {"name", "package", "licence", "path", "band", "polygon"} <= ph.keys()
        assert len(ph["polygon"]) >= 3 and ph["band"] >= 0
    img, truth = disc_photo()
    cv2.imwrite(str(tmp_path / "disc.png"), img[:, :, ::-1])
    square = [[70, 50], [170, 50], [170, 150], [70, 150]]
    (tmp_path / "list.json").write_text(json.dumps({"photos": [
        {"name": "disc", "package": "none", "licence": "-", "path": str(tmp_path / "disc.png"), "band": 0, "polygon": square},
        {"name": "gone", "package": "not-installed", "licence": "-", "path": str(tmp_path / "gone.jpg"), "band": 0,
         "polygon": square}]}))
    photos = bs.load_photos(tmp_path / "list.json")
    assert len(photos) == 1
    got_img, gt = photos[0]
    assert np.array_equal(got_img, img) and gt.sum() == 101 * 101
    assert "not-installed" in capsys.readouterr().err
