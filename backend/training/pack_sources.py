"""Pack the scene generator's sources into a small folder laid out like /usr/share, for a machine
without the Debian image packages (a lent GPU machine): point SIMPSON_SOURCE_ROOT at it there.

    python -m backend.training.pack_sources OUT [--splits train,val] [--bg-side 2560] [--quality 85] [--objects-every 4]

- validation split (what the benchmarks read): the same scenes as from /usr/share. Backgrounds
  are copied as they are; each clipart file is stored as what `synth.load_clipart` makes of it
  (cropped, at most OBJ_MAX_SIDE), kept only where loading the stored file gives the very same
  array (else the original file is copied), and a file it rejects becomes a 1×1 placeholder that
  it rejects too, so the listing, and with it every scene's random choices, stays the same.
- training split: backgrounds shrunk to --bg-side on the long side (JPEG, --quality, raised for
  a smooth wallpaper whose file would fall under synth.BG_MIN_BYTES and drop out of the
  listing; PNG if even quality 100 does), every
  --objects-every-th clipart file that loads, stored as load_clipart makes it in 256 colours
  (--full-colour: all of them). Training scenes from a pack are of the same kind, not the same pixels.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from . import synth


def _target(out: Path, src: Path, suffix: str | None = None) -> Path:
    dst = out / src.relative_to(synth.SOURCE_ROOT)
    dst = dst.with_suffix(suffix) if suffix else dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    return dst


def _write_clip(dst: Path, rgba: np.ndarray, palette: bool = False) -> None:
    """RGBA as PNG; palette: 256 colours (Pillow's octree, alpha kept), ~3.5x smaller, mean
    difference about 1 grey level (training sources only)."""
    if palette:
        from PIL import Image  # noqa: PLC0415 - only the packer needs it
        Image.fromarray(rgba, "RGBA").quantize(256, method=Image.Quantize.FASTOCTREE).save(dst, "PNG", optimize=True)
        return
    cv2.imwrite(str(dst), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def pack_val(out: Path) -> dict[str, int]:
    n = {"bg": 0, "clip_same": 0, "clip_original": 0, "clip_placeholder": 0}
    for p in synth.list_backgrounds("val"):
        shutil.copyfile(p, _target(out, p))
        n["bg"] += 1
    for p in synth.list_objects("val"):
        dst = _target(out, p)
        obj = synth.load_clipart(p)
        if obj is None:
            _write_clip(dst, np.zeros((1, 1, 4), np.uint8))
            if synth.load_clipart.__wrapped__(dst) is not None:   # never: 1×1 is too small
                raise AssertionError(dst)
            n["clip_placeholder"] += 1
            continue
        _write_clip(dst, obj)
        again = synth.load_clipart.__wrapped__(dst)
        if again is not None and again.shape == obj.shape and np.array_equal(again, obj):
            n["clip_same"] += 1
        else:
            shutil.copyfile(p, dst)
            n["clip_original"] += 1
    return n


def pack_train(out: Path, bg_side: int, quality: int, objects_every: int, palette: bool = True) -> dict[str, int]:
    n = {"bg": 0, "clip": 0}
    for p in synth.list_backgrounds("train"):
        bgr = cv2.cvtColor(synth.read_rgb(p, bg_side), cv2.COLOR_RGB2BGR)
        for q in range(quality, 101, 5):   # a smooth wallpaper: higher quality until it is listed
            data, suffix = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])[1], ".jpg"
            if len(data) >= synth.BG_MIN_BYTES:
                break
        else:
            data, suffix = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1], ".png"
        _target(out, p, suffix).write_bytes(data.tobytes())
        n["bg"] += 1
    for p in synth.list_objects("train")[::objects_every]:
        obj = synth.load_clipart(p)
        if obj is not None:
            _write_clip(_target(out, p), obj, palette)
            n["clip"] += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--bg-side", type=int, default=2560, help="training backgrounds' long side")
    ap.add_argument("--quality", type=int, default=85, help="training backgrounds' JPEG quality")
    ap.add_argument("--objects-every", type=int, default=4, help="keep every k-th training clipart file")
    ap.add_argument("--full-colour", action="store_true", help="training clipart without the 256-colour palette")
    ap.add_argument("--splits", default="train,val")
    args = ap.parse_args()
    if args.out.resolve() == synth.SOURCE_ROOT.resolve():
        raise SystemExit("OUT is the source root itself")
    splits = set(args.splits.split(","))
    if "val" in splits:
        print("val:", pack_val(args.out))
    if "train" in splits:
        print("train:", pack_train(args.out, args.bg_side, args.quality, args.objects_every,
                                     not args.full_colour))
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
