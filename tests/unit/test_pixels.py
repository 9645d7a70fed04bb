from simpson_client import pixels


def test_paste_and_crop():
    dest = bytearray(4 * 3)                  # 4x3, 1 byte per pixel
    pixels.paste(dest, 4, b"\x01\x02\x03\x04", (1, 1, 2, 2), 1)
    assert bytes(dest) == bytes([0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0])
    assert pixels.crop(bytes(dest), 4, (1, 1, 2, 2), 1) == b"\x01\x02\x03\x04"


def test_mask_keeps_the_box_and_builds_the_full_mask_on_demand():
    from simpson_client import Mask
    m = Mask(5, 4, (1, 2, 3, 2), bytes([255, 0, 255, 255, 255, 0]), "dsn", 0.25)
    assert m._data is None                                 # nothing full-size until asked
    assert m.data == bytes([0] * 10 + [0, 255, 0, 255, 0] + [0, 255, 255, 0, 0])
    assert m.data is m.data and m.seconds == 0.25
    assert Mask(5, 4, (0, 0, 0, 0), b"").data == bytes(20)   # an empty selection
