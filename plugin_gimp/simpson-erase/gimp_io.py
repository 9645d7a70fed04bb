"""GIMP side of SimpSON Erase: pixels in and out, clicks, the selection and the result layer.

Coordinates: the backend sees one layer's pixels, so masks and points here are in *layer*
pixels (image pixels minus the layer offsets). Pixels move through one Gegl buffer call each;
nothing here loops over pixels in Python except the per-row patch spans.
"""
from __future__ import annotations

from typing import NamedTuple

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from simpson_client import Image, Mask, RequestRejected, SimpsonError, pixels, protocol  # noqa: E402
from simpson_client.protocol import Point  # noqa: E402

BABL = {"rgba8": "R'G'B'A u8", "rgba16": "R'G'B'A u16"}
EIGHT_BIT = {Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL}


class LayerPixels(NamedTuple):
    """A layer's pixels as the backend gets them: width × height in `format`, placed at (x, y)."""
    layer: Gimp.Layer
    x: int
    y: int
    image: Image

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.image.width, self.image.height


def check_layer(drawable: Gimp.Drawable) -> Gimp.Layer:
    """The drawable if it is a plain pixel layer, else a SimpsonError saying what to pick."""
    if drawable is None or not drawable.is_layer() or drawable.is_layer_mask():
        raise SimpsonError("Select a layer (not a channel, path or layer mask) and try again.")
    if drawable.is_group():
        raise SimpsonError("Select a pixel layer, not a layer group, and try again.")
    if drawable.is_indexed():
        raise SimpsonError("Indexed images are not supported: convert the image to RGB (Image > Mode > RGB).")
    return drawable


def wire_format(image: Gimp.Image) -> str:
    """8-bit images travel as rgba8, every other precision as rgba16 (perceptual, as the models want)."""
    return "rgba8" if image.get_precision() in EIGHT_BIT else "rgba16"


def read_layer(image: Gimp.Image, layer: Gimp.Layer) -> LayerPixels:
    """The whole layer as RGBA (no alpha -> opaque), checked against the backend's size limits."""
    w, h = layer.get_width(), layer.get_height()
    if w > protocol.MAX_SIDE or h > protocol.MAX_SIDE or w * h > protocol.MAX_PIXELS:
        raise RequestRejected(f"The layer is {w}x{h} pixels, over SimpSON Erase's limit of "
                              f"{protocol.MAX_PIXELS // 1_000_000} megapixels: scale it down or crop it.", "too_large")
    fmt = wire_format(image)
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, BABL[fmt], Gegl.AbyssPolicy.CLAMP)
    _, x, y = layer.get_offsets()
    return LayerPixels(layer, x, y, Image(w, h, data, fmt))


def read_preview(layer: Gimp.Layer, scale: float) -> tuple[int, int, bytes]:
    """The layer scaled by `scale` (<= 1) as R'G'B'A u8: (width, height, bytes). Gegl does the scaling."""
    w = max(1, int(layer.get_width() * scale))
    h = max(1, int(layer.get_height() * scale))
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), scale, BABL["rgba8"], Gegl.AbyssPolicy.CLAMP)
    return w, h, bytes(data)


def selection_mask(image: Gimp.Image, px: LayerPixels) -> bytes | None:
    """The selection over the layer's area (w*h bytes, 255 = selected), None if nothing is selected there."""
    if Gimp.Selection.is_empty(image):
        return None
    x, y, w, h = px.rect
    data = bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, "Y u8",
                                                        Gegl.AbyssPolicy.NONE))
    return data if data.strip(b"\x00") else None


def marked_points(image: Gimp.Image) -> list[tuple[float, float]]:
    """Clicks marked in the image: the anchors of the selected path(s), else the sample points."""
    points: list[tuple[float, float]] = []
    for path in image.get_selected_paths() or []:
        for stroke in path.get_strokes() or []:
            _, coords, _closed = path.stroke_get_points(stroke)
            # bezier strokes: (control, anchor, control) per point, x and y each
            points += [(coords[i], coords[i + 1]) for i in range(2, len(coords) - 1, 6)]
    if points:
        return points
    sp = image.find_next_sample_point(0)
    while sp:
        pos = image.get_sample_point_position(sp)
        points.append((float(pos[0]), float(pos[1])))
        sp = image.find_next_sample_point(sp)
    return points


def to_layer(points: list[Point], px: LayerPixels) -> list[Point]:
    """Image-space clicks -> layer-space clicks; clicks outside the layer are dropped."""
    w, h = px.image.width, px.image.height
    out = [(x - px.x, y - px.y, pos) for x, y, pos in points]
    return [(x, y, pos) for x, y, pos in out if 0 <= x < w and 0 <= y < h]


def set_selection(image: Gimp.Image, mask: Mask, px: LayerPixels,
                  op: Gimp.ChannelOps = Gimp.ChannelOps.REPLACE) -> None:
    """Combine a layer-space mask with the selection (a temporary channel + select_item).

    Only the mask's bounding box is written (the channel starts black). Parts of the layer
    outside the canvas are cut off; outside the layer counts as unselected."""
    iw, ih = image.get_width(), image.get_height()
    x, y = px.rect[0], px.rect[1]
    mx, my, mw, mh = mask.box
    bx, by = x + mx, y + my                               # the box in image pixels
    x0, y0, x1, y1 = max(0, bx), max(0, by), min(iw, bx + mw), min(ih, by + mh)
    channel = Gimp.Channel.new(image, "SimpSON mask", iw, ih, 100.0, Gegl.Color.new("black"))
    image.insert_channel(channel, None, 0)
    try:
        if x1 > x0 and y1 > y0:
            cw = x1 - x0
            rows = b"".join(mask.crop[(r - by) * mw + (x0 - bx):(r - by) * mw + (x0 - bx) + cw] for r in range(y0, y1))
            buf = channel.get_buffer()
            buf.set(Gegl.Rectangle.new(x0, y0, cw, y1 - y0), "Y u8", rows)
            buf.flush()
        image.select_item(op, channel)
    finally:
        image.remove_channel(channel)


def add_result_layer(image: Gimp.Image, px: LayerPixels, box: tuple[int, int, int, int], patch: bytes) -> Gimp.Layer:
    """A copy of the layer with the patch put in, inserted just above the layer.

    Only the changed span of each patch row is written, so every other pixel stays exactly as it
    was, whatever the layer's precision."""
    layer = px.layer
    result = layer.copy()
    result.set_name(f"{layer.get_name()} (erased)")
    parent = layer.get_parent()
    image.insert_layer(result, parent, image.get_item_position(layer))
    bx, by, bw, bh = box
    fmt = px.image.format
    bpp = protocol.FORMATS[fmt]
    original = pixels.crop(px.image.data, px.image.width, box, bpp)
    buf = result.get_buffer()
    row = bw * bpp
    for r in range(bh):
        new, old = patch[r * row:(r + 1) * row], original[r * row:(r + 1) * row]
        span = changed_span(new, old, bpp)
        if span:
            a, b = span
            buf.set(Gegl.Rectangle.new(bx + a, by + r, b - a, 1), BABL[fmt], new[a * bpp:b * bpp])
    buf.flush()
    result.update(bx, by, bw, bh)
    return result


def changed_span(new: bytes, old: bytes, bpp: int) -> tuple[int, int] | None:
    """First and one-past-last pixel where two rows differ, or None if they are equal."""
    if new == old:
        return None
    lo, hi = 0, len(new)          # bisect on slice equality (C speed): first differing byte
    while lo < hi:
        mid = (lo + hi) // 2
        if new[:mid + 1] == old[:mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    first = lo
    lo, hi = 0, len(new)          # the same from the end: number of equal trailing bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if new[len(new) - mid:] == old[len(old) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    last = len(new) - lo          # one past the last differing byte
    return first // bpp, (last - 1) // bpp + 1
