"""Model builders for BWN and XNOR-Net, each with its float twin.

``mode="fp"`` is the usual float network (conv -> BN -> ReLU -> pool); ``mode="bwn"`` is the same
network with binary-weight layers (Sec. 3.1 keeps the architecture); ``mode="xnor"`` reorders every
binary block to BN -> BinActiv -> BinConv -> Pool (Sec. 3.2, Fig. 3), the BinActiv living inside
:class:`XnorConv2d` / :class:`XnorLinear`. In every mode the first and the last weight layer stay
in full precision (Sec. 4).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import BnnConvNet, LeNet5, ResNetCifar, resnet18_imagenet, shortcut_a
from papers.xnor.xnor import XnorConv2d, XnorLinear, binarize_model_

MODES = ("fp", "bwn", "xnor")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise NnqError(f"mode must be one of {MODES}, got {mode!r}")


class SmallConvNet(nn.Module):
    """A 3-conv net for small images (the quick preset's 8x8 digits).

    fp/bwn: conv(c,32) BN ReLU | conv(32,64) BN ReLU MP2 | conv(64,64) BN ReLU MP2 | FC(.,128) BN ReLU | FC(128,classes)
    xnor:   conv(c,32) BN ReLU | BN XnorConv(32,64) MP2 | BN XnorConv(64,64) MP2 | BN XnorFC(.,128) | BN FC(128,classes)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, mode: str = "fp"):
        super().__init__()
        _check_mode(mode)
        if image_size % 4:
            raise NnqError(f"SmallConvNet needs an image size divisible by 4, got {image_size}")
        flat = 64 * (image_size // 4) ** 2
        conv = XnorConv2d if mode == "xnor" else nn.Conv2d
        if mode == "xnor":
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.BatchNorm2d(32), conv(32, 64, 3, padding=1, bias=False), nn.MaxPool2d(2),
                nn.BatchNorm2d(64), conv(64, 64, 3, padding=1, bias=False), nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.BatchNorm1d(flat), XnorLinear(flat, 128, bias=False),
                nn.BatchNorm1d(128), nn.Linear(128, num_classes),
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
                nn.Linear(128, num_classes),
            )
            if mode == "bwn":
                binarize_model_(self, "bwn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, S, S] -> [B, 64, S/4, S/4] -> [B, classes]
        return self.classifier(self.features(x))


class XnorLeNet5(nn.Module):
    """LeNet-5 (32x32 input) in the XNOR block order; c1 and f7 real.

    c1 conv5(6) ReLU MP2 | BN XnorConv5(6,16) MP2 | BN XnorConv5(16,120) | BN XnorFC(120,84) | BN FC(84,classes)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.convnet = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(in_channels, 6, 5)), ("relu1", nn.ReLU()), ("s2", nn.MaxPool2d(2, 2)),
            ("bn3", nn.BatchNorm2d(6)), ("c3", XnorConv2d(6, 16, 5)), ("s4", nn.MaxPool2d(2, 2)),
            ("bn5", nn.BatchNorm2d(16)), ("c5", XnorConv2d(16, 120, 5)),
        ]))
        self.fc = nn.Sequential(OrderedDict([
            ("bn6", nn.BatchNorm1d(120)), ("f6", XnorLinear(120, 84)),
            ("bn7", nn.BatchNorm1d(84)), ("f7", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, 32, 32] -> [B, 120, 1, 1] -> [B, classes]
        return self.fc(self.convnet(x).flatten(1))


class XnorBnnConvNet(nn.Module):
    """The BNN paper's CIFAR-10 ConvNet (common.models.BnnConvNet: 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC)
    in the XNOR block order; the first conv and the last FC stay real.

    conv(c,128) BN ReLU | BN XnorConv(128,128) MP2 | BN XnorConv(128,256) | BN XnorConv(256,256) MP2 |
    BN XnorConv(256,512) | BN XnorConv(512,512) MP2 | BN XnorFC(8192,1024) | BN XnorFC(1024,1024) | BN FC(1024,classes)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        if image_size % 8:
            raise NnqError(f"bnnconv needs an image size divisible by 8, got {image_size}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128),
                                   nn.ReLU()]
        c_in = 128
        for c_out in (128, 256, 256, 512, 512):
            layers += [nn.BatchNorm2d(c_in), XnorConv2d(c_in, c_out, 3, padding=1, bias=False)]
            if c_out == c_in:  # the second conv of each pair halves the map
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        flat = 512 * (image_size // 8) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.BatchNorm1d(flat), XnorLinear(flat, 1024, bias=False),
            nn.BatchNorm1d(1024), XnorLinear(1024, 1024, bias=False),
            nn.BatchNorm1d(1024), nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, S, S] -> [B, 512, S/8, S/8] -> [B, classes]
        return self.classifier(self.features(x))


class XnorBasicBlock(nn.Module):
    """x -> BN -> XnorConv3 -> BN -> XnorConv3 -> + shortcut(x) (Fig. 3 order inside a residual block)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = XnorConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = XnorConv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.bn2(self.conv1(self.bn1(x))))
        return out + (shortcut_a(x, self.planes) if self.downsample else x)


class XnorResNetCifar(ResNetCifar):
    """CIFAR ResNet (6n+2) with XNOR blocks; conv1 and linear real; keys follow common.models.ResNetCifar.

    conv1(3,16) BN ReLU | n XnorBasicBlocks per stage (16, 32, 64) | BN ReLU avgpool | linear
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__(depth, num_classes, in_channels=in_channels, block=XnorBasicBlock)
        self.bn_out = nn.BatchNorm2d(64)  # Fig. 3 order: the last block's output is normalised before the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 32, 32] -> [B, 16, 32, 32] -> [B, 32, 16, 16] -> [B, 64, 8, 8] -> [B, classes]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.relu(self.bn_out(out)).mean(dim=(2, 3)))


class XnorBasicBlockImageNet(nn.Module):
    """ResNet-18 basic block in XNOR order: BN -> XnorConv3 -> BN -> XnorConv3, + shortcut.

    # DEVIATION: the paper does not detail its ResNet-18 block; the 1x1 downsampling shortcut stays real.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = XnorConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = XnorConv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.bn2(self.conv1(self.bn1(x))))
        return out + (x if self.downsample is None else self.downsample(x))


class XnorResNet18(nn.Module):
    """ImageNet ResNet-18 (He et al. 2016) with XNOR basic blocks; the 7x7 stem and the fc stay real (Sec. 4)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes, stages = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(XnorBasicBlockImageNet(in_planes, planes, stride),
                                        XnorBasicBlockImageNet(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn_out = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 224, 224] -> [B, 64, 56, 56] -> ... -> [B, 512, 7, 7] -> [B, classes]
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(F.relu(self.bn_out(out)).mean(dim=(2, 3)))


@torch.no_grad()
def init_from_float_(model: nn.Module, float_model: nn.Module) -> list[str]:
    """Copy every float tensor whose key and shape match (e.g. pretrained conv weights into the XNOR net).

    Returns:
        The copied keys.
    """
    src = float_model.state_dict()
    copied = []
    for k, v in model.state_dict().items():
        if k in src and src[k].shape == v.shape and v.is_floating_point():
            v.copy_(src[k])
            copied.append(k)
    return copied


def build(arch: str, mode: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build ``arch`` ("smallconv", "lenet5", "bnnconv", "resnet20/32/44/56", "resnet18") in ``mode`` ("fp", "bwn",
    "xnor")."""
    _check_mode(mode)
    c, h, w = input_shape
    if arch == "smallconv":
        return SmallConvNet(c, num_classes, h, mode)
    if arch == "lenet5":
        if (h, w) != (32, 32):
            raise NnqError(f"lenet5 needs 32x32 inputs, got {h}x{w}; use the mnist_lenet5 preset (resize 32)")
        if mode == "xnor":
            return XnorLeNet5(c, num_classes)
        m = LeNet5(c, num_classes)
        return binarize_model_(m, "bwn") if mode == "bwn" else m
    if arch == "bnnconv":
        if mode == "xnor":
            return XnorBnnConvNet(c, num_classes, h)
        m = BnnConvNet(c, num_classes, nn.ReLU, image_size=h)
        return binarize_model_(m, "bwn") if mode == "bwn" else m
    if arch in ("resnet20", "resnet32", "resnet44", "resnet56"):
        depth = int(arch[6:])
        if mode == "xnor":
            return XnorResNetCifar(depth, num_classes, c)
        m = ResNetCifar(depth, num_classes, in_channels=c)
        return binarize_model_(m, "bwn") if mode == "bwn" else m
    if arch == "resnet18":
        if mode == "xnor":
            return XnorResNet18(num_classes, c)
        m = resnet18_imagenet(num_classes, in_channels=c)
        return binarize_model_(m, "bwn") if mode == "bwn" else m
    raise NnqError(f"unknown arch {arch!r}; known: smallconv, lenet5, bnnconv, resnet20/32/44/56, resnet18")
