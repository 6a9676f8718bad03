"""Building blocks shared by the architectures of this package (no paper's math lives here).

* :class:`ConvBN` — convolution, batch normalisation and an optional activation, as every table of these
  papers writes a layer ("Conv dw / s2", "1x1 GConv", ...). Its children are named ``conv``, ``bn``, ``act``.
* :func:`make_divisible` — the channel rounding of the TensorFlow-slim MobileNet code that MobileNetV2's
  released models (and torchvision) use for width multipliers.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBN(nn.Sequential):
    """conv(k x k, stride, groups) -> BatchNorm -> activation (``act=None``: linear, as a linear bottleneck).

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel: kernel size, an int or (kh, kw) (SqueezeNext's 1x3 / 3x1).
        stride: stride.
        groups: 1 (dense), c_in (depthwise: groups == channels) or g (ShuffleNet's pointwise group conv).
        act: the activation module class (nn.ReLU, nn.ReLU6) or None.
        bias: give the convolution a bias (SqueezeNext's official model has one; BN makes it redundant).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int] = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU, bias: bool = False):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        layers = [("conv", nn.Conv2d(c_in, c_out, (kh, kw), stride, (kh // 2, kw // 2), groups=groups, bias=bias)),
                  ("bn", nn.BatchNorm2d(c_out))]
        if act is not None:
            layers.append(("act", act(inplace=True)))
        super().__init__(OrderedDict(layers))


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``), never more than 10 % below v.

    The TF-slim rule MobileNetV2's released checkpoints were built with (Sandler et al. do not state it; torchvision
    follows it, so parameter counts agree to the unit).
    """
    min_value = divisor if min_value is None else min_value
    out = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


def init_weights_(model: nn.Module) -> nn.Module:
    """He (fan-out) normal init for convs, BN at (1, 0), linear N(0, 0.01): the MobileNet/ShuffleNet reference init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def remap_state_dict(state: dict, key_map: dict[str, str]) -> dict:
    """``state`` with every key's module prefix replaced through ``key_map`` (a prefix -> prefix map).

    The longest matching prefix wins; a key that no prefix matches raises KeyError (the map is complete or wrong).
    """
    prefixes = sorted(key_map, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        src = next((p for p in prefixes if key.startswith(p + ".")), None)
        if src is None:
            raise KeyError(f"no entry of the key map covers {key!r}")
        out[key_map[src] + key[len(src):]] = value
    return out
