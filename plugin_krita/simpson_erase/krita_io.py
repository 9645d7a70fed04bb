"""Pixels in and out of Krita: layer pixels, the selection, result layers (main thread only).

Everything works on a region in image coordinates: the image rectangle grown to the layer's
bounds, so a layer moved off the canvas or larger than it keeps all its pixels. Krita's
pixelData is BGRA (16-bit samples little-endian on every platform Krita ships on) and travels as
it is (the wire's bgra8 and bgra16: the daemon swaps, and an erase's patch comes back as BGRA).
"""
from __future__ import annotations

import enum
from typing import Callable, NamedTuple, Optional

from krita import Document, Krita, Node, Selection
from PyQt5.QtCore import QByteArray, QRect, QTimer

from .simpson_client import Image, Mask
from .simpson_client.pixels import paste

TEMP_MASK = "SimpSON Erase selection (temporary)"
RESULT_LAYER = "SimpSON Erase"
STEP_MS = 30          # Krita tells its UI about new nodes through postponed signals: let them arrive
DEPTHS = {"U8": ("bgra8", 1), "U16": ("bgra16", 2)}     # Krita's pixelData as the wire names it


class Unsupported(Exception):
    """The document or layer cannot be used; str() is one sentence for the user."""


class SelectionOp(enum.Enum):
    replace = "selectopaque"
    add = "selectopaque_add"
    subtract = "selectopaque_subtract"


class LayerPixels(NamedTuple):
    rect: QRect            # region in image coordinates
    bytes_per_sample: int
    bgra: QByteArray       # rect's pixels as Krita gives them (BGRA), never copied
    image: Image           # the same bytes (a memoryview of bgra), for the backend


def check_colour_space(model: str, depth: str, what: str = "layer") -> tuple[str, int]:
    """-> (wire format, bytes per sample); Unsupported with a sentence for anything else."""
    if model == "RGBA" and depth in DEPTHS:
        return DEPTHS[depth]
    raise Unsupported(f"SimpSON Erase works on 8- and 16-bit integer RGB images; this {what} is {model} {depth}. "
                      "Convert it with Image > Convert Image Color Space (RGB/Alpha, 8 or 16-bit integer).")


def active(app: Krita) -> tuple[Document, Node]:
    doc = app.activeDocument()
    win = app.activeWindow()
    if doc is None or win is None or win.activeView() is None:
        raise Unsupported("Open an image first.")
    node = doc.activeNode()
    if node is None or node.type().endswith("mask"):
        raise Unsupported("Pick a layer (not a mask) in the Layers docker first.")
    check_colour_space(doc.colorModel(), doc.colorDepth(), "image")
    check_colour_space(node.colorModel(), node.colorDepth())
    return doc, node


def region(doc: Document, node: Node) -> QRect:
    """The image rectangle, grown to the layer's bounds (layers can be moved or larger than the canvas)."""
    rect = QRect(0, 0, doc.width(), doc.height())
    bounds = node.bounds()
    return rect.united(bounds) if bounds.isValid() and not bounds.isEmpty() else rect


def read_layer(doc: Document, node: Node, reuse: Optional[LayerPixels] = None) -> LayerPixels:
    """The layer's pixels over `region`, in Krita's own buffer. `reuse`: an earlier read, given back as
    it is (with the hash the client computed) when the layer's bytes have not changed (QByteArray's
    comparison: no copy): the one-click tool's further clicks skip the hash of a 12-MP layer."""
    fmt, bps = check_colour_space(node.colorModel(), node.colorDepth())
    rect = region(doc, node)
    x, y, w, h = rect.x(), rect.y(), rect.width(), rect.height()
    doc.waitForDone()
    raw = node.pixelData(x, y, w, h) if node.type() == "paintlayer" else node.projectionPixelData(x, y, w, h)
    if raw.size() != w * h * 4 * bps:
        raise Unsupported(f"Krita returned no pixels for the layer {node.name()!r}; pick a paint layer.")
    if reuse is not None and reuse.rect == rect and reuse.bytes_per_sample == bps and reuse.bgra == raw:
        return reuse
    return LayerPixels(rect, bps, raw, Image(w, h, memoryview(raw), fmt))


def read_selection(doc: Document, rect: QRect) -> Optional[bytes]:
    """rect's selection as w*h bytes (255 = selected), or None if nothing is selected."""
    sel = doc.selection()
    if sel is None:
        return None
    data = bytes(sel.pixelData(rect.x(), rect.y(), rect.width(), rect.height()))
    if len(data) != rect.width() * rect.height() or not data.strip(b"\x00"):
        return None
    return data


LAYER_TYPES = ("paintlayer", "grouplayer", "filllayer", "filterlayer", "vectorlayer", "clonelayer", "filelayer")


def _mask_host(doc: Document) -> Optional[Node]:
    """A layer without children (masks): our temporary mask can come and go there without an undo entry."""
    stack = list(doc.topLevelNodes())
    active_node = doc.activeNode()
    if active_node is not None:
        stack.insert(0, active_node)
    while stack:
        node = stack.pop(0)
        kids = node.childNodes()
        if node.type() in LAYER_TYPES and not kids:
            return node
        stack.extend(k for k in kids if k.type() == "grouplayer" or k.type() in LAYER_TYPES)
    return None


def apply_selection(app: Krita, doc: Document, rect: QRect, mask: Mask, op: SelectionOp,
                    then: Callable[[Optional[str]], None]) -> None:
    """Make mask (of the layer at rect; only its box is written) the selection as ONE undoable step,
    then call then(error).

    Document.setSelection is not undoable. So the mask goes into a temporary local selection mask,
    Krita's own Select Opaque action (replace/add/subtract) turns it into the global selection
    (one undo entry, "Select Opaque"), and the mask is taken away again. The mask is attached with
    Node.setChildNodes on a layer that has no children, which (unlike addChildNode/remove in
    Krita 5) leaves no undo entries. The steps are spread over timer ticks (see STEP_MS).
    """
    if app.activeDocument() != doc:
        return then("The image changed while SimpSON Erase was working; try again.")
    sel = Selection()
    bx, by, bw, bh = mask.box
    if bw and bh:
        sel.setPixelData(QByteArray(mask.crop), rect.x() + bx, rect.y() + by, bw, bh)
    temp = doc.createSelectionMask(TEMP_MASK)
    temp.setSelection(sel)
    before = doc.activeNode()
    host = _mask_host(doc)
    if host is not None:
        host.setChildNodes([temp])
    else:                                   # every layer has masks: fall back to undoable add/remove
        doc.rootNode().addChildNode(temp, None)

    def select() -> None:
        error = None
        try:
            if app.activeDocument() != doc:
                raise Unsupported("The image changed while SimpSON Erase was working; try again.")
            doc.setActiveNode(temp)
            app.action(op.value).trigger()
            doc.waitForDone()
        except Exception as e:              # whatever happens, the temporary mask must go again
            error = str(e) if isinstance(e, Unsupported) else f"Could not set the selection: {e!r}"
        QTimer.singleShot(STEP_MS, lambda: cleanup(error))

    def cleanup(error: Optional[str]) -> None:
        try:
            kids = host.childNodes() if host is not None else []
            if len(kids) == 1 and kids[0].uniqueId() == temp.uniqueId():
                host.setChildNodes([])      # removes its only child, no undo entry
            else:
                temp.remove()
            if before is not None:
                doc.setActiveNode(before)
            doc.waitForDone()
        finally:
            then(error)

    QTimer.singleShot(STEP_MS, select)


def add_result_layer(doc: Document, node: Node, px: LayerPixels, box: tuple[int, int, int, int],
                     patch_bgra: bytes) -> Node:
    """A copy of the layer with the patch (box in region coordinates, in the layer's BGRA as it went:
    LayerPixels.image's format) put in, just above the layer."""
    out = bytearray(px.bgra)
    paste(out, px.rect.width(), patch_bgra, box, 4 * px.bytes_per_sample)
    if node.type() == "paintlayer":         # same colour space, blending, opacity and pixels off the region
        layer = node.duplicate()
        layer.setName(RESULT_LAYER)
    else:                                   # groups, vector layers...: their projection, in the image's space
        layer = doc.createNode(RESULT_LAYER, "paintlayer")
    layer.setPixelData(QByteArray(bytes(out)), px.rect.x(), px.rect.y(), px.rect.width(), px.rect.height())
    parent = node.parentNode() or doc.rootNode()
    parent.addChildNode(layer, node)       # pixels first, then into the image: one "add layer"
    doc.refreshProjection()
    return layer
