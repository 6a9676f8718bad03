"""Float networks LSQ starts from, and their first/last layer names (the conversion is in lsq.py)."""

from __future__ import annotations

from torch import nn

from common.errors import NnqError
from common.models import SmallConvNet


EDGE_LAYERS = {"smallconv": ("conv1", "fc"), "resnet20": ("conv1", "linear"), "resnet18": ("conv1", "fc")}
"""(first, last) layer names per architecture: 8 bits in the paper's setting, float in the study setting."""


def build_float(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The float network ``arch`` for data of ``input_shape`` (C, H, W)."""
    c, h, _ = input_shape
    if arch == "smallconv":
        return SmallConvNet(c, num_classes, h)
    if arch == "resnet20":
        from common.models import ResNetCifar

        return ResNetCifar(20, num_classes, in_channels=c)
    if arch == "resnet18":
        from torchvision.models import resnet18

        m = resnet18(num_classes=num_classes)
        if c != 3:
            m.conv1 = nn.Conv2d(c, 64, 7, stride=2, padding=3, bias=False)
        return m
    raise NnqError(f"unknown arch {arch!r}; known: {', '.join(EDGE_LAYERS)}")
