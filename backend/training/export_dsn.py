"""Ship trained 1C-DSN weights: state dict only, checked by loading, plus a sha256 file.

    python -m backend.training.export_dsn RUN_DIR/best.pt [--out backend/weights/dsn-lite0.pt] [--half]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from .. import weights


def export(src: Path, dst: Path | None = None, half: bool = False) -> str:
    """Writes dst (default: the shipped file) and dst.with_suffix('.sha256'); returns the sha256."""
    dst = dst or weights.path("dsn")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    if "model" in sd and isinstance(sd["model"], dict):  # a full training checkpoint
        sd = sd["model"]
    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    torch.save(sd, tmp)
    weights.build("dsn", weights.read(tmp, checked=False))  # strict load check
    os.replace(tmp, dst)
    return weights.write_sha256(dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("--out", type=Path, default=weights.path("dsn"))
    ap.add_argument("--half", action="store_true", help="store float16 (half the size)")
    args = ap.parse_args()
    digest = export(args.src, args.out, args.half)
    print(f"{args.out} ({args.out.stat().st_size / 1e6:.1f} MB) sha256 {digest}")


if __name__ == "__main__":
    main()
