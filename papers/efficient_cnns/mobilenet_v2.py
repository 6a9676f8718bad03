"""MobileNetV2: Inverted Residuals and Linear Bottlenecks.

Sandler, Howard, Zhu, Zhmoginov, Chen — CVPR 2018 (arXiv 1801.04381).
Official code: https://github.com/tensorflow/models/tree/master/research/slim/nets/mobilenet

The residual block is inverted: a thin bottleneck (k channels) is expanded by a factor t with a 1x1 conv,
filtered by a 3x3 depthwise conv and projected back to a thin bottleneck by a 1x1 conv *without* a
nonlinearity (the linear bottleneck, Sec. 3.2: ReLU on a low-dimensional manifold destroys information).
The shortcut joins the thin bottlenecks when stride is 1 and the widths agree (Sec. 3.3). One block costs
h w k t (k + d^2 + k') multiply-adds (Sec. 3.4).

Implements: Table 1 (bottleneck block), Table 2 (the 19-layer body with t, c, n, s), the width multiplier
(applied to every layer but the last 1x1 conv when alpha < 1, Sec. 4), ReLU6, resolution through the input size.
Not implemented: SSDLite, DeepLabv3 heads (Sec. 6.2-6.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import ConvBN, init_weights_, make_divisible, remap_state_dict

# Table 2: (expansion t, output channels c, repeats n, stride s of the first repeat).
TABLE2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
STEM, LAST = 32, 1280


class InvertedResidual(nn.Module):
    """Table 1: 1x1 conv (k -> tk) ReLU6 | 3x3 dw conv stride s ReLU6 | 1x1 conv (tk -> k') linear; + x if s = 1, k = k'.

    With t = 1 the expansion conv is left out (the first block of Table 2), as the released models do.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, t: int):
        super().__init__()
        hidden = round(c_in * t)
        self.use_shortcut = stride == 1 and c_in == c_out  # Sec. 3.3 / Fig. 4(d): shortcut between bottlenecks
        self.expand = ConvBN(c_in, hidden, 1, act=nn.ReLU6) if t != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)  # groups == channels
        self.project = ConvBN(hidden, c_out, 1, act=None)  # Sec. 3.2: the linear bottleneck (no ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, k, h, w] -> [B, tk, h, w] -> [B, tk, h/s, w/s] -> [B, k', h/s, w/s]
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_shortcut else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Table 2) with width multiplier ``alpha``.

    Args:
        num_classes: classifier outputs.
        alpha: width multiplier (0.35 ... 1.4 in Fig. 5); channels are rounded by ``make_divisible(c * alpha, 8)``.
        in_channels: image channels.
        cifar: CIFAR-size variant: stride 1 in the first conv and in the first 24-channel bottleneck
            (32x32 -> 4x4 before the pool instead of 224 -> 7).
        dropout: dropout before the classifier (0.2 in torchvision's training recipe; the paper does not say).
    """

    def __init__(self, num_classes: int = 1000, alpha: float = 1.0, in_channels: int = 3, cifar: bool = False,
                 dropout: float = 0.2):
        super().__init__()
        if not alpha > 0:
            raise NnqError(f"the width multiplier alpha must be positive, got {alpha}")
        self.alpha = alpha
        c = make_divisible(STEM * alpha)
        # DEVIATION (cifar): strides 2 -> 1 in the stem and the 24-channel stage for 32x32 inputs.
        self.stem = ConvBN(in_channels, c, 3, 1 if cifar else 2, act=nn.ReLU6)
        blocks = []
        for i, (t, c_out, n, s) in enumerate(TABLE2):
            c_out = make_divisible(c_out * alpha)
            for j in range(n):
                stride = s if j == 0 and not (cifar and i == 1) else 1
                blocks.append(InvertedResidual(c, c_out, stride, t))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(LAST * max(1.0, alpha))  # Sec. 4: the last conv is not thinned for alpha < 1
        self.head = ConvBN(c, last, 1, act=nn.ReLU6)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(last, num_classes)
        init_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> stem [B, 32, 112, 112] -> blocks [B, 320, 7, 7] -> head [B, 1280, 7, 7] -> [B, classes]
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


def mobilenet_v2(alpha: float = 1.0, num_classes: int = 1000, **kw) -> MobileNetV2:
    return MobileNetV2(num_classes, alpha, **kw)


def torchvision_key_map(model: MobileNetV2) -> dict[str, str]:
    """Module prefix map torchvision ``mobilenet_v2`` -> ours.

    torchvision: ``features.0`` (stem: ``.0`` conv, ``.1`` BN), ``features.1..17`` (blocks; ``conv.0`` expansion
    ``[0 conv, 1 BN]`` when t != 1, then the dw conv ``[0 conv, 1 BN]``, then the projection conv and its BN as two
    flat entries), ``features.18`` (head), ``classifier.1`` (FC). Ours: ``stem``, ``blocks.i.{expand, depthwise,
    project}.{conv, bn}``, ``head``, ``fc``.
    """
    m = {"features.0.0": "stem.conv", "features.0.1": "stem.bn"}
    for i, block in enumerate(model.blocks):
        src, dst = f"features.{i + 1}.conv", f"blocks.{i}"
        names = (["expand"] if isinstance(block.expand, ConvBN) else []) + ["depthwise"]
        for j, name in enumerate(names):
            m[f"{src}.{j}.0"], m[f"{src}.{j}.1"] = f"{dst}.{name}.conv", f"{dst}.{name}.bn"
        m[f"{src}.{len(names)}"], m[f"{src}.{len(names) + 1}"] = f"{dst}.project.conv", f"{dst}.project.bn"
    last = len(model.blocks) + 1
    m.update({f"features.{last}.0": "head.conv", f"features.{last}.1": "head.bn", "classifier.1": "fc"})
    return m


def load_torchvision_state_dict(model: MobileNetV2, state: dict) -> MobileNetV2:
    """Load a torchvision ``mobilenet_v2`` state dict (same alpha) into ``model`` through the key map (strict)."""
    model.load_state_dict(remap_state_dict(state, torchvision_key_map(model)))
    return model
