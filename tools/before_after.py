#!/usr/bin/env python3
"""Make docs/before-after.png: the demo photo, its selection, and the erased result.

    python3 tools/before_after.py [--image samples/beach.jpg --click 1104,726] [-o docs/before-after.png]

Runs the default engines in this process (select at the click, select similar, erase), like
install.py's demo, and puts three panels side by side: before, selection (tinted), after; below
them, before and after at 100 % (no resampling) around `--zoom`, where texture and seams show.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend import images  # noqa: E402
from backend.pipeline import Pipeline  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=REPO / "samples" / "beach.jpg")
    ap.add_argument("--click", default="1104,726")
    ap.add_argument("--crop", default="300,480,1600,1000", help="x0,y0,x1,y1 of the part to show")
    ap.add_argument("--width", type=int, default=1500, help="width of the figure")
    ap.add_argument("--zoom", default="1104,726,360", help="x,y,size: the 100 %% crops' centre and side")
    ap.add_argument("--engine", default=None, help="erase engine (default: the daemon's default)")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "before-after.png")
    args = ap.parse_args()
    x, y = (float(v) for v in args.click.split(","))
    px = images.load_image(args.image)
    p = Pipeline()
    entry = p.entry(px)
    union, found, sim_engine = p.similar(entry, [(x, y, True)])
    box, patch, erase_engine = p.erase(entry, union, args.engine)
    after = px.copy()
    bx, by, bw, bh = box
    after[by:by + bh, bx:bx + bw] = patch
    tint = px[..., :3].astype(np.float32)
    sel = union > 0
    tint[sel] = 0.45 * tint[sel] + 0.55 * np.array([40, 120, 255])
    x0, y0, x1, y1 = (int(v) for v in args.crop.split(","))
    panels = [px[y0:y1, x0:x1, :3], tint[y0:y1, x0:x1].astype(np.uint8), after[y0:y1, x0:x1, :3]]
    fig = np.hstack([np.pad(pn, ((0, 0), (0, 8), (0, 0)), constant_values=255) for pn in panels])[:, :-8]
    fig = cv2.resize(fig, (args.width, round(fig.shape[0] * args.width / fig.shape[1])), interpolation=cv2.INTER_AREA)
    zx, zy, zs = (int(v) for v in args.zoom.split(","))
    h, w = px.shape[:2]
    zx0, zy0 = min(max(0, zx - zs // 2), w - zs), min(max(0, zy - zs // 2), h - zs)
    pair = [px[zy0:zy0 + zs, zx0:zx0 + zs, :3], after[zy0:zy0 + zs, zx0:zx0 + zs, :3]]
    zoom = np.hstack([pair[0], np.full((zs, 8, 3), 255, np.uint8), pair[1]])
    pad = args.width - zoom.shape[1]
    if pad >= 0:    # centred under the panels, at 100 %
        zoom = np.pad(zoom, ((8, 0), (pad // 2, pad - pad // 2), (0, 0)), constant_values=255)
        fig = np.vstack([fig, zoom])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(fig, cv2.COLOR_RGB2BGR))
    print(f"{args.output}: {len(found)} objects selected ({sim_engine}), erased with {erase_engine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
