"""Float networks LQ-Nets starts from, and the layers each keeps float (the conversion is in lqnets.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import build_model


class VggSmall(nn.Module):
    """VGG-Small, the paper's CIFAR-10 network (Sec. 4.2; the official cifar10-vgg-small.py).

    conv0(c,128) BN ReLU | conv1(128,128) MP2 BN ReLU | conv2(128,256) BN ReLU | conv3(256,256) MP2 BN ReLU |
    conv4(256,512) BN ReLU | conv5(512,512) MP2 BN ReLU | linear(512*(S/8)^2, classes). Every conv 3x3, no bias;
    conv0 and linear stay float (as the paper), every other conv reads a ReLU output.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        if image_size % 8:
            raise NnqError(f"vggsmall needs an image size divisible by 8, got {image_size}")
        widths = (128, 128, 256, 256, 512, 512)
        c_in = in_channels
        for i, c in enumerate(widths):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c, 3, padding=1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c))
            c_in = c
        self.linear = nn.Linear(512 * (image_size // 8) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, S, S] -> [B, 128, S/2, S/2] -> [B, 256, S/4, S/4] -> [B, 512, S/8, S/8] -> [B, classes]
        out = x
        for i in range(6):
            out = getattr(self, f"conv{i}")(out)
            if i % 2:
                out = F.max_pool2d(out, 2)
            out = F.relu(getattr(self, f"bn{i}")(out))
        return self.linear(out.flatten(1))


KEEP_FLOAT = {"smallconv": ("conv1", "fc"), "resnet20": ("conv1", "linear"), "vggsmall": ("conv0", "linear"),
              "resnet18": ("conv1", "fc")}
"""(first, last) layer names per architecture: both stay float (Sec. 4, as the paper and the study setting)."""


def build_float(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The float network ``arch`` for data of ``input_shape`` (C, H, W)."""
    c, h, _ = input_shape
    if arch == "vggsmall":
        return VggSmall(c, num_classes, h)
    if arch in ("smallconv", "resnet20", "resnet18"):  # common's reference networks
        return build_model(arch, input_shape, num_classes)
    raise NnqError(f"unknown arch {arch!r}; known: {', '.join(KEEP_FLOAT)}")
