"""Inference only: every BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel scale and shift, so it can live in the convolution's
weights and bias (torch.nn.utils.fusion.fuse_conv_bn_eval): the same outputs to float rounding, one
pass over each feature map less. The engines fold the models they run (the one-click model and the
select-similar backbone); training and weights files keep the BatchNorms. The pairs are the
adjacent (Conv2d, BatchNorm2d) of an nn.Sequential and the pairs a module names in `FOLDS`
(backend/models/lite0.py, whose blocks call them in their own forward).
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """`model`, in eval mode, with each foldable BatchNorm folded into its convolution and replaced by
    nn.Identity (in place; the model is returned for chaining)."""
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a], module._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
        for a, b in getattr(module, "FOLDS", ()):
            conv, bn = getattr(module, a, None), getattr(module, b, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, a, fuse_conv_bn_eval(conv, bn))
                setattr(module, b, nn.Identity())
    return model
