"""Krita's BGRA pixels <-> the wire's RGBA (red and blue swapped), in Qt's native code where it can.

Every click of the one-click tool reads the layer again and swaps a 12-MP layer's 48 MB: the
stdlib's strided copies (simpson_client.pixels) take several times as long as QImage.rgbSwapped
(`python3 tools/editors/in-root.sh python3 bench/krita_pixels.py`), and the time is the user's
(issue 23: a first click on a 12-MP photo within 0.3 s, a further one within 0.15 s).
"""
from __future__ import annotations

from PyQt5.QtGui import QImage

from .simpson_client.pixels import bgra_to_rgba


def swap_red_blue(data: bytes, w: int, h: int, bps: int) -> bytes:
    """w×h pixels of 4 samples of `bps` bytes with the first and third sample swapped: Krita's BGRA
    <-> RGBA, both ways. 8-bit pixels go through QImage.rgbSwapped; 16-bit ones, a buffer of another
    length and an image QImage cannot hold, through simpson_client.pixels."""
    if bps == 1 and w > 0 and h > 0 and len(data) == 4 * w * h:
        swapped = QImage(data, w, h, 4 * w, QImage.Format_RGBA8888).rgbSwapped()
        if not swapped.isNull() and swapped.bytesPerLine() == 4 * w:
            return swapped.constBits().asstring(4 * w * h)
    return bytes(bgra_to_rgba(data, bps))
