"""The big-lama generator (Suvorov et al., WACV 2022): a ResNet of fast Fourier convolutions.

A plain nn.Module that knows nothing of files. Module names and the `model.<i>` indices follow
advimman/lama (saicinpainting/training/modules/ffc.py, `kind: ffc_resnet`), so the released
checkpoint's `generator.*` keys load after stripping the prefix (see backend/engines/lama.py).

Input: 4 channels, image·(1−mask) ⊕ mask, RGB in 0..1, mask 1 = hole; H and W multiples of 8.
Output: 3 channels in 0..1 (sigmoid), the prediction for every pixel (composite it yourself).
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

Feat = Union[torch.Tensor, int]      # a branch with no channels is the integer 0, as upstream
Pair = tuple[Feat, Feat]


class FourierUnit(nn.Module):
    """rfft2 over H×W → 1×1 conv + BN + ReLU on (real, imag) as channels → irfft2."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv_layer = nn.Conv2d(in_ch * 2, out_ch * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        f = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
        f = torch.stack((f.real, f.imag), dim=2)            # b, c, 2, h, w/2+1: (re, im) interleaved
        f = f.reshape(b, -1, h, f.shape[-1])
        f = self.relu(self.bn(self.conv_layer(f)))
        f = f.reshape(b, -1, 2, h, f.shape[-1])
        f = torch.complex(f[:, :, 0], f[:, :, 1])
        return torch.fft.irfftn(f, s=(h, w), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global→global path: 1×1 conv to C/2, FourierUnit, residual, 1×1 conv back (no LFU)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, out_ch // 2, 1, bias=False),
                                   nn.BatchNorm2d(out_ch // 2), nn.ReLU(inplace=True))
        self.fu = FourierUnit(out_ch // 2, out_ch // 2)
        self.conv2 = nn.Conv2d(out_ch // 2, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


def _conv_or_none(cin: int, cout: int, k: int, stride: int, padding: int) -> nn.Module:
    if cin == 0 or cout == 0:
        return nn.Identity()
    return nn.Conv2d(cin, cout, k, stride, padding, bias=False, padding_mode="reflect")


class FFC(nn.Module):
    """Local/global split convolution: ratio_gin/ratio_gout of the channels are global."""

    def __init__(self, cin: int, cout: int, k: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        in_g, out_g = int(cin * ratio_gin), int(cout * ratio_gout)
        in_l, out_l = cin - in_g, cout - out_g
        self.ratio_gout = ratio_gout
        self.convl2l = _conv_or_none(in_l, out_l, k, stride, padding)
        self.convl2g = _conv_or_none(in_l, out_g, k, stride, padding)
        self.convg2l = _conv_or_none(in_g, out_l, k, stride, padding)
        self.convg2g = nn.Identity() if in_g == 0 or out_g == 0 else SpectralTransform(in_g, out_g)

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x
        out_l: Feat = 0
        out_g: Feat = 0
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l) + self.convg2l(x_g)
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l) + self.convg2g(x_g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):  # noqa: N801 - upstream's name, kept so the checkpoint keys match
    def __init__(self, cin: int, cout: int, k: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        self.ffc = FFC(cin, cout, k, ratio_gin, ratio_gout, stride, padding)
        out_g = int(cout * ratio_gout)
        self.bn_l = nn.Identity() if ratio_gout == 1 else nn.BatchNorm2d(cout - out_g)
        self.bn_g = nn.Identity() if ratio_gout == 0 else nn.BatchNorm2d(out_g)
        self.act_l = nn.Identity() if ratio_gout == 1 else nn.ReLU(inplace=True)
        self.act_g = nn.Identity() if ratio_gout == 0 else nn.ReLU(inplace=True)

    def forward(self, x: Union[Pair, torch.Tensor]) -> Pair:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        x_l, x_g = self.ffc((x_l, x_g))
        if isinstance(x_l, torch.Tensor):
            x_l = self.act_l(self.bn_l(x_l))
        if isinstance(x_g, torch.Tensor):
            x_g = self.act_g(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.conv1 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)
        self.conv2 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)

    def forward(self, x: Pair) -> Pair:
        id_l, id_g = x
        x_l, x_g = self.conv2(self.conv1(x))
        return id_l + x_l, id_g + x_g


class ConcatTuple(nn.Module):
    def forward(self, x: Pair) -> torch.Tensor:
        x_l, x_g = x
        if not isinstance(x_g, torch.Tensor):
            return x_l  # type: ignore[return-value]
        if not isinstance(x_l, torch.Tensor):
            return x_g
        return torch.cat((x_l, x_g), dim=1)


class LamaGenerator(nn.Module):
    """FFCResNetGenerator with big-lama's settings (defaults: ngf 64, 3 downsamplings, 18 blocks)."""

    def __init__(self, ngf: int = 64, n_downsampling: int = 3, n_blocks: int = 18, ratio: float = 0.75,
                 max_features: int = 1024):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFC_BN_ACT(4, ngf, 7, 0, 0)]
        for i in range(n_downsampling):
            cin, cout = min(max_features, ngf * 2 ** i), min(max_features, ngf * 2 ** (i + 1))
            gout = ratio if i == n_downsampling - 1 else 0.0
            layers.append(FFC_BN_ACT(cin, cout, 3, 0, gout, stride=2, padding=1))
        dim = min(max_features, ngf * 2 ** n_downsampling)
        layers += [FFCResnetBlock(dim, ratio) for _ in range(n_blocks)]
        layers.append(ConcatTuple())
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            cin, cout = min(max_features, ngf * mult), min(max_features, ngf * mult // 2)
            layers += [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×4×H×W (masked image ⊕ mask) -> B×3×H×W in 0..1."""
        return self.model(x)


def inpaint(generator: nn.Module, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """image B×3×H×W 0..1, mask B×1×H×W {0,1} -> the composite, as upstream's `inpainted`."""
    pred = generator(torch.cat((image * (1 - mask), mask), dim=1))
    return mask * pred + (1 - mask) * image


class LamaInpainter(nn.Module):
    """forward(image, mask) -> composite: the same contract as the TorchScript `big-lama.pt`."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return inpaint(self.generator, image, mask)
