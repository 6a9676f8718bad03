"""ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design.

Ma, Zhang, Zheng, Sun — ECCV 2018 (arXiv 1807.11164).
Official code: https://github.com/megvii-model/ShuffleNet-Series (ShuffleNetV2)

FLOPs do not predict speed: memory access cost and parallelism matter too (Sec. 2, Fig. 1). Four guidelines
follow from controlled benchmarks (Sec. 2): G1 equal input/output widths minimise memory access for a 1x1 conv;
G2 group convolutions raise memory access; G3 fragmentation (many small branches) hurts parallelism; G4
element-wise operations are not free. The V2 unit (Fig. 3c) splits the channels into two halves (channel
split): one passes through untouched, the other goes through 1x1 conv -> 3x3 depthwise -> 1x1 conv with equal
widths and no groups; the halves are concatenated (no add) and channel-shuffled. The stride-2 unit (Fig. 3d)
drops the split and gives the left half its own 3x3 depthwise + 1x1 conv, doubling the width.

Implements: channel split, the units of Fig. 3(c)/(d), the network of Table 5 at 0.5x, 1x, 1.5x, 2x.
Not implemented: the SE / residual variants and ShuffleNet V2-Large of the appendix.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import ConvBN, remap_state_dict
from papers.efficient_cnns.shufflenet_v1 import channel_shuffle

torch.fx.wrap("channel_shuffle")  # one node in traced graphs (FX int8 quantization, ptq.py)

# Table 5: output channels of Conv1, Stage 2, 3, 4 and Conv5 for each complexity level; repeats 4, 8, 4.
STAGE_CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024), 1.5: (24, 176, 352, 704, 1024),
                  2.0: (24, 244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


class ShuffleV2Unit(nn.Module):
    """Fig. 3(c) (stride 1: channel split, right branch, concat, shuffle) and Fig. 3(d) (stride 2: both branches).

    The right branch is 1x1 conv BN ReLU | 3x3 dw conv BN (stride) | 1x1 conv BN ReLU with equal widths (G1) and
    no group convs (G2); the concat replaces the add of V1 (G4).
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        if stride == 1 and c_in != c_out:
            raise NnqError(f"a stride-1 ShuffleNet V2 unit keeps its width, got {c_in} -> {c_out}")
        self.stride = stride
        half = c_out // 2
        if stride == 2:  # Fig. 3(d): the left branch has its own dw conv and 1x1 conv
            self.left = nn.Sequential(OrderedDict([
                ("depthwise", ConvBN(c_in, c_in, 3, 2, groups=c_in, act=None)),
                ("pointwise", ConvBN(c_in, half, 1))]))
        right_in = c_in if stride == 2 else half
        self.right = nn.Sequential(OrderedDict([
            ("pointwise1", ConvBN(right_in, half, 1)),
            ("depthwise", ConvBN(half, half, 3, stride, groups=half, act=None)),  # groups == channels
            ("pointwise2", ConvBN(half, half, 1))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)  # channel split (Sec. 3, Fig. 3c): c' = c/2
            out = torch.cat([left, self.right(right)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out, 2)  # the two branches' channels interleave


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 (Table 5).

    Args:
        num_classes: classifier outputs.
        width: complexity level 0.5, 1.0, 1.5 or 2.0 ("ShuffleNet v2 1x" ...).
        in_channels: image channels.
        cifar: CIFAR-size variant: Conv1 with stride 1 and no max-pool (32x32 -> 4x4 before the pool).
    """

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_channels: int = 3, cifar: bool = False):
        super().__init__()
        if width not in STAGE_CHANNELS:
            raise NnqError(f"ShuffleNet V2 width must be one of {sorted(STAGE_CHANNELS)}, got {width}")
        self.width = width
        c1, *stage_c, c5 = STAGE_CHANNELS[width]
        # DEVIATION (cifar): Conv1 stride 1 and no max-pool for 32x32 inputs.
        self.stem = ConvBN(in_channels, c1, 3, 1 if cifar else 2)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        c, stages = c1, []
        for k, (c_out, n) in enumerate(zip(stage_c, REPEATS)):
            units = [ShuffleV2Unit(c, c_out, 2)] + [ShuffleV2Unit(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append((f"stage{k + 2}", nn.Sequential(*units)))
            c = c_out
        self.stages = nn.Sequential(OrderedDict(stages))
        self.head = ConvBN(c, c5, 1)  # Conv5
        self.fc = nn.Linear(c5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> Conv1 [B, 24, 112, 112] -> MaxPool [B, 24, 56, 56] -> Stages [B, C4, 7, 7]
        #    -> Conv5 [B, C5, 7, 7] -> global pool [B, C5] -> FC
        x = self.head(self.stages(self.maxpool(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def shufflenet_v2(width: float = 1.0, num_classes: int = 1000, **kw) -> ShuffleNetV2:
    return ShuffleNetV2(num_classes, width, **kw)


def torchvision_key_map(model: ShuffleNetV2) -> dict[str, str]:
    """Module prefix map torchvision ``shufflenet_v2_x*`` -> ours.

    torchvision: ``conv1.{0 conv, 1 BN}``, ``stage{2,3,4}.i.branch1.{0 dw conv, 1 BN, 2 conv, 3 BN}`` (stride 2
    only), ``stage*.i.branch2.{0 conv, 1 BN, 3 dw conv, 4 BN, 5 conv, 6 BN}`` (2 and 7 are ReLUs),
    ``conv5.{0, 1}``, ``fc``. Ours: ``stem``, ``stages.stage*.i.left.{depthwise, pointwise}``,
    ``stages.stage*.i.right.{pointwise1, depthwise, pointwise2}`` (each ``.conv``/``.bn``), ``head``, ``fc``.
    """
    m = {"conv1.0": "stem.conv", "conv1.1": "stem.bn", "conv5.0": "head.conv", "conv5.1": "head.bn", "fc": "fc"}
    for name, stage in model.stages.named_children():
        for i, unit in enumerate(stage):
            src, dst = f"{name}.{i}", f"stages.{name}.{i}"
            if unit.stride == 2:
                for j, part in ((0, "depthwise"), (2, "pointwise")):
                    m[f"{src}.branch1.{j}"], m[f"{src}.branch1.{j + 1}"] = f"{dst}.left.{part}.conv", f"{dst}.left.{part}.bn"
            for j, part in ((0, "pointwise1"), (3, "depthwise"), (5, "pointwise2")):
                m[f"{src}.branch2.{j}"], m[f"{src}.branch2.{j + 1}"] = f"{dst}.right.{part}.conv", f"{dst}.right.{part}.bn"
    return m


def load_torchvision_state_dict(model: ShuffleNetV2, state: dict) -> ShuffleNetV2:
    """Load a torchvision ``shufflenet_v2_x*`` state dict (same width) into ``model`` through the key map (strict)."""
    model.load_state_dict(remap_state_dict(state, torchvision_key_map(model)))
    return model
