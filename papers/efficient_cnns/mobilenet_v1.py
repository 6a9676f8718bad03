"""MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications.

Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam — arXiv 1704.04861, 2017.
Official code: https://github.com/tensorflow/models/blob/master/research/slim/nets/mobilenet_v1.md

A standard k x k convolution is factored into a depthwise convolution (one k x k filter per input channel,
``groups == channels``) and a 1 x 1 pointwise convolution that mixes channels (Sec. 3.1, Fig. 2). For
D_K = 3 this costs 1/N + 1/9 of the multiply-adds of the full convolution (Eq. 5). Two global knobs trade
accuracy for cost: the width multiplier alpha thins every layer (Eq. 6) and the resolution multiplier rho
shrinks the input (Eq. 7); both cut the cost roughly quadratically.

Implements: the 28-layer body of Table 1, alpha (Sec. 3.3), rho through the input size (Sec. 3.4).
Not implemented: the Table 4 "Conv MobileNet" (full convolutions) and the Table 5 "shallow" variant.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import ConvBN, init_weights_

# Table 1: (output channels, stride) of each depthwise-separable layer pair (dw 3x3 then pw 1x1) after the
# first full 3x3 conv (32 channels, stride 2). The table prints stride 2 for the last dw layer but its input and
# output are both 7x7, i.e. stride 1 (the released code uses 1).
TABLE1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
          (1024, 2), (1024, 1))
STEM = 32


def scaled(channels: int, alpha: float, min_depth: int = 8) -> int:
    """alpha * M channels (Sec. 3.3), floored to an integer and at least ``min_depth`` as the released code does."""
    return max(int(channels * alpha), min_depth)


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3 right: 3x3 depthwise conv -> BN -> ReLU -> 1x1 pointwise conv -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(OrderedDict([("depthwise", ConvBN(c_in, c_in, 3, stride, groups=c_in)),  # groups == channels
                                      ("pointwise", ConvBN(c_in, c_out, 1))]))


class MobileNetV1(nn.Module):
    """MobileNet (Table 1) with width multiplier ``alpha``.

    The resolution multiplier rho is the input size: 224 rho (rho = 1, 6/7, 5/7, 4/7 give 224, 192, 160, 128).

    Args:
        num_classes: classifier outputs (1000 for ImageNet).
        alpha: width multiplier alpha of Sec. 3.3 (1.0, 0.75, 0.5, 0.25 in Table 6).
        in_channels: image channels.
        cifar: CIFAR-size variant: the first conv has stride 1 (32x32 -> 2x2 before the pool instead of 224 -> 7).
        dropout: dropout before the classifier (default none; the paper does not use it for ImageNet).
    """

    def __init__(self, num_classes: int = 1000, alpha: float = 1.0, in_channels: int = 3, cifar: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if not alpha > 0:
            raise NnqError(f"the width multiplier alpha must be positive, got {alpha}")
        self.alpha = alpha
        c = scaled(STEM, alpha)
        # DEVIATION (cifar): stride 1 in the first conv so that 32x32 images keep enough resolution.
        self.stem = ConvBN(in_channels, c, 3, 1 if cifar else 2)
        blocks = []
        for c_out, stride in TABLE1:
            blocks.append(DepthwiseSeparable(c, scaled(c_out, alpha), stride))
            c = scaled(c_out, alpha)
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)
        init_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> stem [B, 32a, 112, 112] -> blocks [B, 1024a, 7, 7] -> avg pool [B, 1024a] -> FC
        x = self.blocks(self.stem(x))
        return self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


def mobilenet_v1(alpha: float = 1.0, num_classes: int = 1000, **kw) -> MobileNetV1:
    return MobileNetV1(num_classes, alpha, **kw)
