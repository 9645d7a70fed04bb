"""Pixel-layout helpers without numpy: masks and patches as plain bytes.

Conventions: rows top to bottom, pixels left to right, no row padding. 16-bit samples are
little-endian. The wire takes RGBA or BGRA (Krita's order, which its plug-in sends as it is:
no plug-in swaps channels).
"""
from __future__ import annotations


def paste(dest: bytearray, dest_width: int, patch: bytes, box: tuple[int, int, int, int], bytes_per_pixel: int) -> None:
    """Copy patch (box w×h pixels) into dest (dest_width pixels per row) at box's x, y."""
    x, y, w, h = box
    row = w * bytes_per_pixel
    stride = dest_width * bytes_per_pixel
    for r in range(h):
        start = (y + r) * stride + x * bytes_per_pixel
        dest[start:start + row] = patch[r * row:(r + 1) * row]


def crop(src: bytes, src_width: int, box: tuple[int, int, int, int], bytes_per_pixel: int) -> bytes:
    """The box (x, y, w, h) of an image as contiguous bytes."""
    x, y, w, h = box
    stride = src_width * bytes_per_pixel
    return b"".join(src[(y + r) * stride + x * bytes_per_pixel:(y + r) * stride + (x + w) * bytes_per_pixel]
                    for r in range(h))
