"""Float networks LSQ starts from, and their first/last layer names (the conversion is in lsq.py)."""

from __future__ import annotations

from torch import nn

from common.errors import NnqError
from common.models import build_model


EDGE_LAYERS = {"smallconv": ("conv1", "fc"), "resnet20": ("conv1", "linear"), "resnet18": ("conv1", "fc")}
"""(first, last) layer names per architecture: 8 bits in the paper's setting, float in the study setting."""


def build_float(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The float network ``arch`` for data of ``input_shape`` (C, H, W)."""
    if arch in ("smallconv", "resnet20", "resnet18"):  # common's reference networks
        return build_model(arch, input_shape, num_classes)
    raise NnqError(f"unknown arch {arch!r}; known: {', '.join(EDGE_LAYERS)}")
