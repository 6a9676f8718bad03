"""One entry point for the six architectures: ``build(arch, width, ...)``, and the cost of a model.

``arch`` names a file of this package; ``width`` is that paper's multiplier: alpha (MobileNets), the scale
s or complexity level (ShuffleNet v1/v2), the width w (SqueezeNext); SqueezeNet has none (its version is
chosen with ``variant``). ``variant`` carries the rest: ShuffleNet v1's groups, SqueezeNet's version and bypass,
SqueezeNext's depth.
"""

from __future__ import annotations

import torch
from torch import nn

from common.errors import NnqError
from common.evaluate import count_params, macs
from papers.efficient_cnns.mobilenet_v1 import MobileNetV1
from papers.efficient_cnns.mobilenet_v2 import MobileNetV2
from papers.efficient_cnns.shufflenet_v1 import ShuffleNetV1
from papers.efficient_cnns.shufflenet_v2 import ShuffleNetV2
from papers.efficient_cnns.squeezenet import SqueezeNet
from papers.efficient_cnns.squeezenext import SqueezeNext

ARCHS = ("mobilenet_v1", "mobilenet_v2", "shufflenet_v1", "shufflenet_v2", "squeezenet", "squeezenext")
DEFAULT_VARIANT = {"shufflenet_v1": "g3", "squeezenet": "1.0", "squeezenext": "23"}


def build(arch: str, width: float = 1.0, *, num_classes: int = 1000, in_channels: int = 3, cifar: bool = False,
          variant: str | None = None) -> nn.Module:
    """The network ``arch`` at multiplier ``width``.

    Args:
        arch: one of ``ARCHS``.
        width: the paper's width multiplier (ignored by SqueezeNet).
        num_classes: classifier outputs.
        in_channels: image channels (1 for digits).
        cifar: the CIFAR-size variant (stride/stem changes documented in each file).
        variant: "g1".."g8" (ShuffleNet v1 groups), "1.0"/"1.1" optionally "+simple"/"+complex" (SqueezeNet),
            "23"/"23v5" (SqueezeNext); None: the paper's default.
    """
    variant = variant or DEFAULT_VARIANT.get(arch)
    kw = {"num_classes": num_classes, "in_channels": in_channels, "cifar": cifar}
    if arch == "mobilenet_v1":
        return MobileNetV1(alpha=width, **kw)
    if arch == "mobilenet_v2":
        return MobileNetV2(alpha=width, **kw)
    if arch == "shufflenet_v1":
        if not (variant.startswith("g") and variant[1:].isdigit()):
            raise NnqError(f"ShuffleNet v1 variant must be g1, g2, g3, g4 or g8, got {variant!r}")
        return ShuffleNetV1(groups=int(variant[1:]), scale=width, **kw)
    if arch == "shufflenet_v2":
        return ShuffleNetV2(width=width, **kw)
    if arch == "squeezenet":
        version, _, bypass = variant.partition("+")
        return SqueezeNet(version=version, bypass=bypass or "none", **kw)
    if arch == "squeezenext":
        return SqueezeNext(width=width, depth=variant, **kw)
    raise NnqError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")


def cost(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """Parameters and multiply-accumulates of one image of ``input_shape`` (C, H, W).

    MACs come from torch's FLOP counter (``common.evaluate.macs``: convolutions and linear layers, FLOPs / 2),
    the papers' convention ("mult-adds"); BN, activations, pooling, adds and shuffles are not counted.
    ``params_no_bn`` leaves BatchNorm's affine parameters out (the released MobileNet checkpoints fold them).
    """
    device = next(model.parameters()).device
    n_bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    return {"params": count_params(model), "params_no_bn": count_params(model) - n_bn,
            "macs": macs(model, torch.zeros(1, *input_shape, device=device))}
