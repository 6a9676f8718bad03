"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size.

Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer — arXiv 1602.07360, 2016.
Official code: https://github.com/forresti/SqueezeNet (Caffe; v1.0 and v1.1)

Three strategies shrink a CNN (Sec. 3.1): replace 3x3 filters by 1x1 filters (9x fewer parameters), feed
the remaining 3x3 filters fewer input channels, and downsample late so that convolutions see large maps.
The Fire module (Sec. 3.2, Fig. 1) does the first two: a squeeze layer of s1x1 1x1 filters feeds an expand
layer of e1x1 1x1 and e3x3 3x3 filters whose outputs are concatenated (s1x1 < e1x1 + e3x3). SqueezeNet
(Table 1, Fig. 2) stacks conv1, eight Fire modules (fire2..fire9) and a 1x1 conv10 classifier with global
average pooling and no fully connected layer. Sec. 6 adds simple bypasses (identity, around Fire modules whose
input and output widths agree) and complex bypasses (a 1x1 conv around the others).

Implements: the Fire module, SqueezeNet v1.0 (Table 1) and v1.1 (the official repository's README: 3x3 conv1
with 64 filters, max-pools moved earlier), simple and complex bypass (Sec. 6, Fig. 2).
Not implemented: the microarchitecture sweeps of Fig. 3 (squeeze ratio, 3x3 share) are reachable through
``Fire`` but not tabulated.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.efficient_cnns.blocks import remap_state_dict

# Table 1 / Fig. 2: (name, s1x1, e1x1, e3x3) of fire2..fire9 (each Fire outputs e1x1 + e3x3 channels).
FIRES = (("fire2", 16, 64, 64), ("fire3", 16, 64, 64), ("fire4", 32, 128, 128), ("fire5", 32, 128, 128),
         ("fire6", 48, 192, 192), ("fire7", 48, 192, 192), ("fire8", 64, 256, 256), ("fire9", 64, 256, 256))
# conv1 (filters, kernel, stride) and the layers after which a 3x3/2 max-pool follows.
VERSIONS = {"1.0": {"conv1": (96, 7, 2), "pool_after": ("conv1", "fire4", "fire8")},  # Table 1
            "1.1": {"conv1": (64, 3, 2), "pool_after": ("conv1", "fire3", "fire5")}}  # official README, v1.1
BYPASSES = ("none", "simple", "complex")


class Fire(nn.Module):
    """Sec. 3.2: squeeze (s1x1 1x1 filters, ReLU) -> [expand 1x1 (e1x1) ReLU ; expand 3x3 (e3x3) ReLU] concat."""

    def __init__(self, c_in: int, s1x1: int, e1x1: int, e3x3: int):
        super().__init__()
        self.s1x1 = nn.Conv2d(c_in, s1x1, 1)
        self.e1x1 = nn.Conv2d(s1x1, e1x1, 1)
        self.e3x3 = nn.Conv2d(s1x1, e3x3, 3, padding=1)  # Sec. 3.3: 1-pixel zero padding keeps 1x1 and 3x3 aligned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, c_in, H, W] -> squeeze [B, s1x1, H, W] -> expand [B, e1x1 + e3x3, H, W]
        s = F.relu(self.s1x1(x))
        return torch.cat([F.relu(self.e1x1(s)), F.relu(self.e3x3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet v1.0 / v1.1 with an optional bypass (Sec. 6).

    Args:
        num_classes: outputs of conv10.
        version: "1.0" (Table 1) or "1.1" (2.4x less computation, same accuracy: the official README).
        in_channels: image channels.
        bypass: "none", "simple" (identity around fire3, fire5, fire7, fire9) or "complex" (also a 1x1 conv around
            fire2, fire4, fire6, fire8; Sec. 6, Fig. 2 middle/right).
        cifar: CIFAR-size variant: conv1 is 3x3 with stride 1 and the first max-pool is dropped (32 -> 8x8 at conv10).
        dropout: dropout before conv10 (Sec. 3.3: 50 % after fire9).
    """

    def __init__(self, num_classes: int = 1000, version: str = "1.0", in_channels: int = 3, bypass: str = "none",
                 cifar: bool = False, dropout: float = 0.5):
        super().__init__()
        if version not in VERSIONS:
            raise NnqError(f"SqueezeNet version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if bypass not in BYPASSES:
            raise NnqError(f"--bypass must be one of {', '.join(BYPASSES)}, got {bypass!r}")
        self.version, self.bypass = version, bypass
        filters, kernel, stride = VERSIONS[version]["conv1"]
        pools = set(VERSIONS[version]["pool_after"])
        if cifar:  # DEVIATION (cifar): a 3x3 stride-1 conv1 and no first max-pool for 32x32 inputs
            kernel, stride = 3, 1
            pools.discard("conv1")
        self.conv1 = nn.Conv2d(in_channels, filters, kernel, stride, padding=kernel // 2 if cifar else 0)
        self.pool_after = tuple(sorted(pools))
        c, fires, shortcuts = filters, [], []
        for k, (name, s, e1, e3) in enumerate(FIRES):
            fires.append((name, Fire(c, s, e1, e3)))
            if bypass != "none" and c == e1 + e3:
                shortcuts.append((name, nn.Identity()))  # simple bypass (widths agree)
            elif bypass == "complex":
                shortcuts.append((name, nn.Conv2d(c, e1 + e3, 1)))  # complex bypass: 1x1 conv
            c = e1 + e3
        self.fires = nn.Sequential(OrderedDict(fires))
        self.bypasses = nn.ModuleDict(OrderedDict(shortcuts))
        self.dropout = nn.Dropout(dropout)
        self.conv10 = nn.Conv2d(c, num_classes, 1)
        for m in self.modules():  # the official prototxt: Xavier init, conv10 Gaussian std 0.01, biases 0
            if isinstance(m, nn.Conv2d):
                if m is self.conv10:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _pool(self, x: torch.Tensor, after: str) -> torch.Tensor:
        # 3x3 stride-2 max-pool, Caffe rounding (ceil), as the official prototxt
        return F.max_pool2d(x, 3, 2, ceil_mode=True) if after in self.pool_after else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> conv1 [B, 96, 109, 109] -> pool -> fire2..fire9 [B, 512, 13, 13] -> conv10 -> avg
        x = self._pool(F.relu(self.conv1(x)), "conv1")
        for name, fire in self.fires.named_children():
            out = fire(x)
            if name in self.bypasses:
                out = out + self.bypasses[name](x)
            x = self._pool(out, name)
        x = F.relu(self.conv10(self.dropout(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def squeezenet(version: str = "1.0", num_classes: int = 1000, **kw) -> SqueezeNet:
    return SqueezeNet(num_classes, version, **kw)


def torchvision_key_map(model: SqueezeNet) -> dict[str, str]:
    """Module prefix map torchvision ``squeezenet1_0`` / ``squeezenet1_1`` -> ours.

    torchvision: ``features.0`` (conv1), ``features.k`` (Fire modules, counted with the ReLU and max-pool entries
    between them), each with ``squeeze``, ``expand1x1``, ``expand3x3``; ``classifier.1`` (conv10). Ours: ``conv1``,
    ``fires.fire2..fire9.{s1x1, e1x1, e3x3}`` (the paper's names), ``conv10``.
    """
    m = {"features.0": "conv1", "classifier.1": "conv10"}
    idx = 3  # features: 0 conv1, 1 ReLU, 2 max-pool
    for name, *_ in FIRES:
        for src, dst in (("squeeze", "s1x1"), ("expand1x1", "e1x1"), ("expand3x3", "e3x3")):
            m[f"features.{idx}.{src}"] = f"fires.{name}.{dst}"
        idx += 2 if name in VERSIONS[model.version]["pool_after"] else 1
    return m


def load_torchvision_state_dict(model: SqueezeNet, state: dict) -> SqueezeNet:
    """Load a torchvision SqueezeNet state dict (same version, no bypass) into ``model`` through the key map."""
    model.load_state_dict(remap_state_dict(state, torchvision_key_map(model)))
    return model
