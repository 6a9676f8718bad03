"""ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices.

Zhang, Zhou, Lin, Sun — CVPR 2018 (arXiv 1707.01083).
Official code: https://github.com/megvii-model/ShuffleNet-Series (ShuffleNetV1)

Dense 1x1 convolutions dominate the cost of thin networks; ShuffleNet makes them group convolutions
(g groups) and, so that information still flows between groups, permutes the channels after the first one:
the channel shuffle (Sec. 3.1, Fig. 1) reshapes (g, n) -> transposes -> flattens. The unit (Fig. 2b/c) is a
bottleneck residual block: 1x1 GConv -> shuffle -> 3x3 depthwise conv -> 1x1 GConv, added to the input; with
stride 2 the shortcut is a 3x3 average pool and the two are concatenated. For an input of c x h x w and m
bottleneck channels a unit costs hw(2cm/g + 9m) multiply-adds (Sec. 3.2).

Implements: channel shuffle, the unit of Fig. 2(b)/(c), the network of Table 1 for g = 1, 2, 3, 4, 8, the
scale factor s ("ShuffleNet s x", Sec. 4.1.1) with stem and bottleneck rules as the official code.
Not implemented: the "no shuffle" ablation switch is a plain argument (``shuffle=False``) but not tabulated.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import ConvBN, init_weights_

# Table 1: output channels of Stage 2, 3, 4 for each number of groups g (ShuffleNet 1x); repeats 4, 8, 4
# (the first unit of each stage has stride 2); Conv1 has 24 channels.
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                  8: (384, 768, 1536)}
REPEATS = (4, 8, 4)
STEM = 24
# Conv1 width of the scaled nets in the official code (ShuffleNetV1/network.py): 12 or 16 at 0.5x, 48 at 2.0x;
# the paper gives only the 1x width (24), which every other (g, s) keeps.
OFFICIAL_STEM = {(3, 0.5): 12, (8, 0.5): 16, (3, 2.0): 48, (8, 2.0): 48}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Sec. 3.1 / Fig. 1(c): [B, g*n, H, W] -> reshape [B, g, n, H, W] -> transpose [B, n, g, H, W] -> flatten.

    Output channel k*g + j is input channel j*n + k: every group of the next group conv receives one channel from
    each group of the previous one. The inverse is ``channel_shuffle(y, n)``.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise NnqError(f"channel shuffle needs channels divisible by groups, got {c} channels and {groups} groups")
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


torch.fx.wrap("channel_shuffle")  # one node in traced graphs (FX int8 quantization, ptq.py): its shape check stays


def _round_to(v: int, g: int) -> int:
    return max(g, (v + g - 1) // g * g)


class ShuffleUnit(nn.Module):
    """Fig. 2(b) (stride 1: add, then ReLU) and Fig. 2(c) (stride 2: 3x3 avg-pool shortcut, concat, then ReLU).

    Args:
        c_in: input channels.
        c_out: output channels of the unit (for stride 2 the residual branch makes ``c_out - c_in`` of them).
        groups: g of the 1x1 group convolutions.
        stride: 1 or 2.
        first_group: dense first 1x1 conv (Sec. 3.3: "we do not apply group convolution on the first pointwise
            layer [of Stage 2] because the number of input channels is relatively small").
        shuffle: apply the channel shuffle (the ablation of Table 3 switches it off).
    """

    def __init__(self, c_in: int, c_out: int, groups: int, stride: int, first_group: bool = False,
                 shuffle: bool = True):
        super().__init__()
        self.stride, self.groups = stride, groups
        self.shuffle = shuffle and groups > 1 and not first_group
        branch_out = c_out - c_in if stride == 2 else c_out
        # Sec. 3.3: bottleneck channels = 1/4 of the unit's output channels.
        # DEVIATION: rounded up to a multiple of g where c_out / 4 is not (only scaled nets, e.g. 0.5x g=4).
        mid = _round_to(c_out // 4, groups)
        g1 = 1 if first_group else groups
        self.gconv1 = ConvBN(c_in, mid, 1, groups=g1)  # 1x1 GConv, BN, ReLU
        self.depthwise = ConvBN(mid, mid, 3, stride, groups=mid, act=None)  # 3x3 DWConv, BN (no ReLU, Sec. 3.2)
        self.gconv2 = ConvBN(mid, branch_out, 1, groups=groups, act=None)  # 1x1 GConv, BN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gconv1(x)
        if self.shuffle:
            out = channel_shuffle(out, self.groups)  # Fig. 2(b): shuffle after the first 1x1 GConv
        out = self.gconv2(self.depthwise(out))
        if self.stride == 1:
            return F.relu(x + out)
        return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), out], 1))  # Fig. 2(c)


class ShuffleNetV1(nn.Module):
    """ShuffleNet s x with g groups (Table 1).

    Args:
        num_classes: classifier outputs.
        groups: g in {1, 2, 3, 4, 8}.
        scale: s of "ShuffleNet s x" (1, 0.5, 0.25 in Table 2): stage channels times s; Conv1 24, or the
            official code's width for g = 3, 8 at 0.5x and 2x (``OFFICIAL_STEM``).
        in_channels: image channels.
        cifar: CIFAR-size variant: Conv1 with stride 1 and no max-pool (32x32 -> 4x4 before the pool).
        shuffle: channel shuffle on (the paper) or off (the Table 3 ablation).
    """

    def __init__(self, num_classes: int = 1000, groups: int = 3, scale: float = 1.0, in_channels: int = 3,
                 cifar: bool = False, shuffle: bool = True):
        super().__init__()
        if groups not in STAGE_CHANNELS:
            raise NnqError(f"ShuffleNet groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
        if not scale > 0:
            raise NnqError(f"the ShuffleNet scale factor must be positive, got {scale}")
        self.groups, self.scale = groups, scale
        # DEVIATION (cifar): Conv1 stride 1 and no max-pool for 32x32 inputs.
        c = OFFICIAL_STEM.get((groups, scale), STEM)
        self.stem = ConvBN(in_channels, c, 3, 1 if cifar else 2)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        stages = []
        for k, (c_stage, n) in enumerate(zip(STAGE_CHANNELS[groups], REPEATS)):
            c_out = _round_to(int(c_stage * scale), groups)
            units = [ShuffleUnit(c, c_out, groups, 2, first_group=k == 0, shuffle=shuffle)]
            units += [ShuffleUnit(c_out, c_out, groups, 1, shuffle=shuffle) for _ in range(n - 1)]
            stages.append((f"stage{k + 2}", nn.Sequential(*units)))
            c = c_out
        self.stages = nn.Sequential(OrderedDict(stages))
        self.fc = nn.Linear(c, num_classes)
        init_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> Conv1 [B, 24, 112, 112] -> MaxPool [B, 24, 56, 56] -> Stages [B, C4, 7, 7] -> FC
        x = self.stages(self.maxpool(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def shufflenet_v1(groups: int = 3, scale: float = 1.0, num_classes: int = 1000, **kw) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes, groups, scale, **kw)
