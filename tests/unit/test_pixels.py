from simpson_client import pixels


def test_bgra_rgba_8_and_16_bit():
    assert bytes(pixels.bgra_to_rgba(b"\x01\x02\x03\x04\x05\x06\x07\x08")) == b"\x03\x02\x01\x04\x07\x06\x05\x08"
    bgra16 = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert bytes(pixels.bgra_to_rgba(bgra16, 2)) == bytes([5, 6, 3, 4, 1, 2, 7, 8])
    assert bytes(pixels.rgba_to_bgra(pixels.bgra_to_rgba(bgra16, 2), 2)) == bgra16


def test_paste_and_crop():
    dest = bytearray(4 * 3)                  # 4x3, 1 byte per pixel
    pixels.paste(dest, 4, b"\x01\x02\x03\x04", (1, 1, 2, 2), 1)
    assert bytes(dest) == bytes([0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0])
    assert pixels.crop(bytes(dest), 4, (1, 1, 2, 2), 1) == b"\x01\x02\x03\x04"


def test_mask_box():
    m = bytearray(5 * 4)
    m[1 * 5 + 2] = 255
    m[3 * 5 + 4] = 255
    assert pixels.mask_box(bytes(m), 5, 4) == (2, 1, 3, 3)
    assert pixels.mask_box(bytes(5 * 4), 5, 4) is None


def test_image_to_layer():
    assert pixels.image_to_layer(10.5, 3.5, 4, -2) == (6.5, 5.5)
