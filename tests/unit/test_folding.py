"""backend/models/folding.py: BatchNorms folded into their convolutions give the same outputs."""
import torch
from torch import nn

from backend.models.dsn import build_dsn_lite0, click_maps
from backend.models.folding import fold_batchnorm
from backend.models.lite0 import Lite0


def _with_statistics(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (a fresh model's are 0 / 1: folding them
    would test nothing)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_the_one_click_model_folded_gives_the_same_logits_and_keeps_no_batchnorm():
    model = _with_statistics(build_dsn_lite0())
    assert _batchnorms(model) > 60
    x = torch.rand(1, 3, 160, 224) * 255
    pos, neg = click_maps([(100.0, 80.0, True), (30.0, 20.0, False)], 160, 224)
    with torch.inference_mode():
        before = model(x, pos[None], neg[None])[0]
        folded = fold_batchnorm(model)
        after = folded(x, pos[None], neg[None])[0]
    assert _batchnorms(folded) == 0
    assert torch.allclose(before, after, atol=1e-3 * float(before.abs().max()))


def test_the_backbone_with_its_classifier_folds_every_pair():
    model = _with_statistics(Lite0(head=True))
    x = torch.rand(1, 3, 96, 96) * 255
    with torch.inference_mode():
        before = model(x)
        after = fold_batchnorm(model)(x)
    assert _batchnorms(model) == 0
    for level, feats in before.items():
        assert torch.allclose(feats, after[level], atol=1e-3 * float(feats.abs().max())), level
