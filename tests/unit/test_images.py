"""Image files as the CLI reads them: orientation, depth, limits."""
import numpy as np
import pytest
from PIL import Image, ImageOps

from backend import images


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pil_exif_transpose(tmp_path, orientation):
    """Issue 26.9: every EXIF orientation turns the pixels as PIL (and photo viewers) do."""
    rgb = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGBA"))
    assert np.array_equal(images.load_image(tmp_path / "o.png"), expected)
    assert np.array_equal(images.orient(rgb, orientation), expected[..., :3])


def test_sixteen_bit_files_keep_their_depth_and_turn(tmp_path):
    import cv2
    bgr = np.random.default_rng(0).integers(0, 65535, (4, 6, 3), np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), bgr)
    px = images.load_image(tmp_path / "d.png")
    assert px.dtype == np.uint16 and px.shape == (4, 6, 4) and np.array_equal(px[..., :3], bgr[..., ::-1])
    assert px.flags.writeable


def test_damaged_file_is_one_sentence(tmp_path):
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[:len(data) - 30])
    with pytest.raises(ValueError, match="damaged or incomplete"):
        images.load_image(tmp_path / "b.png")
    with pytest.raises(ValueError, match="Cannot read image"):
        images.load_image(tmp_path / "missing.png")
