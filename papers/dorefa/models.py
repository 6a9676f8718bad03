"""Float networks DoReFa-Net is applied to, and their first/last layer names (the conversion is in dorefa.py).

* ``smallconv``: a 3-conv net for the quick preset's 8x8 digits.
* ``svhn_convnet``: the paper's SVHN network (Sec. 3.1: seven conv layers and one fully connected layer), laid
  out as in the official tensorpack example ``svhn-digit-dorefa.py`` (read, not copied): 40x40 inputs,
  48C5 - MP2 - 64C3 - 64C3 - MP2 - 128C3 - 128C3 - 128C3 - dropout - 512C5 - FC; ``width`` scales the channels
  of the seven convolutions.
* ``alexnet``: AlexNet with BatchNorm (the paper's ImageNet network, Sec. 3.2).
* ``resnet20`` (the study setting, from common) and ``resnet18`` (torchvision) for ImageNet folders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import build_model

ARCHS = ("smallconv", "svhn_convnet", "alexnet", "resnet20", "resnet18")


class SvhnConvNet(nn.Module):
    """The SVHN network of Sec. 3.1, as the official example lays it out, for 40x40 inputs.

    conv0 48C5 valid (+bias) -> MP2 -> act | conv1 64C3 same BN act | conv2 64C3 same BN MP2 act |
    conv3 128C3 valid BN act | conv4 128C3 same BN act | conv5 128C3 valid BN act | dropout 0.5 |
    conv6 512C5 valid BN act | fc -> classes.
    Sizes: 40 -> 36 -> 18 -> 18 -> 9 -> 7 -> 7 -> 5 -> 1. ``act`` is ReLU; the quantized layers clip their inputs to
    [0, 1] (the bounded activation of Sec. 2.4), the full-precision last layer reads the ReLU output.

    Args:
        width: multiplies the channels of conv0..conv6 (1.0: the network above).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 40, width: float = 1.0,
                 dropout: float = 0.5):
        super().__init__()
        if image_size != 40:
            raise NnqError(f"svhn_convnet needs 40x40 inputs (the official example resizes SVHN to 40), got "
                           f"{image_size}; pass --resize 40")
        c = [max(1, round(ch * width)) for ch in (48, 64, 64, 128, 128, 128, 512)]
        self.conv0 = nn.Conv2d(in_channels, c[0], 5)
        self.conv1 = nn.Conv2d(c[0], c[1], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[1])
        self.conv2 = nn.Conv2d(c[1], c[2], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c[2])
        self.conv3 = nn.Conv2d(c[2], c[3], 3, bias=False)
        self.bn3 = nn.BatchNorm2d(c[3])
        self.conv4 = nn.Conv2d(c[3], c[4], 3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(c[4])
        self.conv5 = nn.Conv2d(c[4], c[5], 3, bias=False)
        self.bn5 = nn.BatchNorm2d(c[5])
        self.drop = nn.Dropout(dropout)
        self.conv6 = nn.Conv2d(c[5], c[6], 5, bias=False)
        self.bn6 = nn.BatchNorm2d(c[6])
        self.fc = nn.Linear(c[6], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, 40, 40] -> [B, 48w, 18, 18] -> [B, 64w, 9, 9] -> [B, 128w, 5, 5] -> [B, 512w, 1, 1] -> [B, classes]
        out = F.relu(F.max_pool2d(self.conv0(x), 2))
        out = F.relu(self.bn1(self.conv1(out)))
        out = F.relu(F.max_pool2d(self.bn2(self.conv2(out)), 2))
        out = F.relu(self.bn3(self.conv3(out)))
        out = F.relu(self.bn4(self.conv4(out)))
        out = F.relu(self.bn5(self.conv5(out)))
        out = F.relu(self.bn6(self.conv6(self.drop(out))))
        return self.fc(out.flatten(1))


class AlexNetBN(nn.Module):
    """AlexNet (Krizhevsky et al. 2012) with BatchNorm after every conv and hidden FC, for 224x224 inputs.

    conv1 96C11/4 -> MP3/2 | conv2 256C5 -> MP3/2 | conv3 384C3 | conv4 384C3 | conv5 256C3 -> MP3/2 |
    fc6 4096 | fc7 4096 | fc8 classes. conv1 and fc8 are the full-precision first and last layers.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()

        def block(c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, 96, 11, 4, 2), nn.MaxPool2d(3, 2),
            *block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
            *block(256, 384, 3, 1, 1), *block(384, 384, 3, 1, 1), *block(384, 256, 3, 1, 1), nn.MaxPool2d(3, 2))
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> [B, 256, 6, 6] -> [B, 9216] -> [B, classes]
        return self.classifier(self.pool(self.features(x)).flatten(1))


EDGE_LAYERS = {"smallconv": ("conv1", "fc"), "svhn_convnet": ("conv0", "fc"), "alexnet": ("features.0", "classifier.6"),
               "resnet20": ("conv1", "linear"), "resnet18": ("conv1", "fc")}
"""(first, last) layer names per architecture: they stay full precision (Sec. 2.7)."""


def build_float(arch: str, input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Module:
    """The float network ``arch`` for data of ``input_shape`` (C, H, W); ``width`` scales svhn_convnet."""
    c, h, _ = input_shape
    if arch == "svhn_convnet":
        return SvhnConvNet(c, num_classes, h, width)
    if arch == "alexnet":
        return AlexNetBN(c, num_classes)
    if arch in ("smallconv", "resnet20", "resnet18"):  # common's reference networks
        return build_model(arch, input_shape, num_classes)
    raise NnqError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
