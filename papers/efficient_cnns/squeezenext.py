"""SqueezeNext: Hardware-Aware Neural Network Design.

Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer — CVPR Workshops 2018 (arXiv 1803.10615).
Official code (Caffe prototxt): https://github.com/amirgholami/SqueezeNext

SqueezeNet's Fire module is replaced by a deeper, thinner block (Fig. 1 right): a two-stage bottleneck of two
1x1 convs (the width halved twice) feeds a 3x3 convolution factored into a 3x1 and a 1x3 conv (separable in
space, not depthwise: 6K instead of 9K weights per filter pair), and a 1x1 expansion returns to the block's
width; a ResNet-style shortcut adds the input. The network (Fig. 5) stacks 23 such blocks-and-layers: a 7x7
stem, blocks [6, 6, 8, 1] at widths 32, 64, 128, 256 (x the width multiplier), a 1x1 conv of 128 channels
before the pool, and a fully connected classifier. The v5 variant moves blocks to later stages ([2, 4, 14, 1])
after hardware simulation showed the early, high-resolution layers to be the slow ones (Sec. 5).

Block widths follow the official 1.0-SqNxt-23 prototxt: for a block of output width C, the squeeze convs give
C/2 and C/4, the separable convs C/4 -> C/2 -> C/2, the expansion C; the first block of each stage has a 1x1 shortcut conv
(stride 2 from the second stage on, where the first squeeze conv has the stride). Every conv is followed by BN
and ReLU, the shortcut conv included, and a ReLU follows the addition. The order of the 3x1 and 1x3 convs
alternates from block to block, as in the prototxt.

Implements: the SqNxt block, 1.0/1.5/2.0-SqNxt-23 and the 23v5 depth layout, the CIFAR-size stem.
Not implemented: the grouped variant (1.0-G-SqNxt-23) and the hardware simulator of Sec. 5.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import ConvBN, init_weights_

WIDTHS = (32, 64, 128, 256)  # stage widths of 1.0-SqNxt (Fig. 5 / official prototxt)
DEPTHS = {"23": (6, 6, 8, 1), "23v5": (2, 4, 14, 1)}  # blocks per stage (Sec. 5 / official prototxts)
STEM, FINAL = 64, 128  # the 7x7 stem and the last 1x1 conv keep 64 and 128 channels at every width (prototxts)


class SqnxtBlock(nn.Module):
    """Fig. 1 right: 1x1 (C/2) | 1x1 (C/4) | 3x1 (C/2) | 1x3 (C/2) | 1x1 (C) (+ shortcut), BN-ReLU after each.

    ``vertical_first=False`` swaps the 3x1 and 1x3 convs (the prototxt alternates them block by block).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut_conv: bool, vertical_first: bool = True):
        super().__init__()
        half, quarter = c_out // 2, c_out // 4
        first, second = (("conv3x1", (3, 1)), ("conv1x3", (1, 3))) if vertical_first else (("conv1x3", (1, 3)),
                                                                                           ("conv3x1", (3, 1)))
        sep = [(first[0], ConvBN(quarter, half, first[1])), (second[0], ConvBN(half, half, second[1]))]
        self.body = nn.Sequential(OrderedDict([
            ("squeeze1", ConvBN(c_in, half, 1, stride)),   # first bottleneck: halve the width (carries the stride)
            ("squeeze2", ConvBN(half, quarter, 1)),        # second bottleneck: halve again
            *sep,                                          # a 3x3 conv factored into 3x1 and 1x3 (separable)
            ("expand", ConvBN(half, c_out, 1))]))          # expansion back to the block's width
        self.shortcut = ConvBN(c_in, c_out, 1, stride) if shortcut_conv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SqueezeNext(nn.Module):
    """w-SqNxt-23 (Fig. 5) and w-SqNxt-23v5.

    Args:
        num_classes: classifier outputs.
        width: width multiplier w of "w-SqNxt-23" (1.0, 1.5, 2.0): stage widths times w; stem and final conv kept.
        depth: "23" ([6, 6, 8, 1] blocks) or "23v5" ([2, 4, 14, 1], 5x5 stem).
        in_channels: image channels.
        cifar: CIFAR-size variant: a 3x3 stride-1 stem and no max-pool (32x32 -> 4x4 before the pool).
    """

    def __init__(self, num_classes: int = 1000, width: float = 1.0, depth: str = "23", in_channels: int = 3,
                 cifar: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise NnqError(f"SqueezeNext depth must be one of {', '.join(DEPTHS)}, got {depth!r}")
        if not width > 0:
            raise NnqError(f"the SqueezeNext width multiplier must be positive, got {width}")
        self.width, self.depth = width, depth
        kernel = 5 if depth == "23v5" else 7
        # DEVIATION (cifar): a 3x3 stride-1 stem and no max-pool for 32x32 inputs.
        self.stem = (ConvBN(in_channels, STEM, 3) if cifar else
                     nn.Sequential(OrderedDict([("conv", nn.Conv2d(in_channels, STEM, kernel, 2, bias=False)),
                                                ("bn", nn.BatchNorm2d(STEM)), ("act", nn.ReLU(inplace=True))])))
        self.cifar = cifar
        c, stages, k = STEM, [], 0
        for s, (c_stage, n) in enumerate(zip(WIDTHS, DEPTHS[depth])):
            c_out = int(c_stage * width)
            blocks = []
            for j in range(n):
                blocks.append(SqnxtBlock(c, c_out, 2 if (j == 0 and s > 0) else 1, shortcut_conv=j == 0,
                                         vertical_first=k % 2 == 0))
                c, k = c_out, k + 1
            stages.append((f"stage{s + 1}", nn.Sequential(*blocks)))
        self.stages = nn.Sequential(OrderedDict(stages))
        self.final = ConvBN(c, FINAL, 1)
        self.fc = nn.Linear(FINAL, num_classes, bias=False)  # the prototxt's fc1000 has no bias
        init_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> stem [B, 64, 109, 109] -> max-pool [B, 64, 54, 54] -> stages [B, 256w, 7, 7]
        #    -> final 1x1 [B, 128, 7, 7] -> global pool -> FC
        x = self.stem(x)
        if not self.cifar:
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)  # Caffe rounding
        x = self.final(self.stages(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def squeezenext(width: float = 1.0, depth: str = "23", num_classes: int = 1000, **kw) -> SqueezeNext:
    return SqueezeNext(num_classes, width, depth, **kw)
