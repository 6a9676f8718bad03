"""Float reference networks shared by several papers, and loaders for the shared pretrained weights.

* :class:`MLP`, :class:`LeNet300100` — fully connected nets (LeNet-300-100: LeCun, Bottou, Bengio, Haffner,
  "Gradient-based learning applied to document recognition", Proc. IEEE 1998).
* :class:`LeNet5` — LeNet-5 (LeCun et al. 1998) in the ReLU/max-pool form whose state-dict keys match the
  shared csinva/gan-vae-pretrained-pytorch MNIST weights.
* :class:`LeNet5Caffe` — Caffe's "LeNet" MNIST example (examples/mnist/lenet_train_test.prototxt), the 431K-parameter
  LeNet-5 of Han, Mao, Dally, "Deep Compression", ICLR 2016, Table 3, and of Han et al. NeurIPS 2015, Table 1.
* :class:`BnnConvNet` — the CIFAR-10 ConvNet of Courbariaux, Hubara, Soudry, El-Yaniv, Bengio,
  "Binarized Neural Networks", NeurIPS 2016 (arXiv 1602.02830), Sec. 2.6 / Table 1.
* :class:`ResNetCifar` — the CIFAR ResNet-20/32/44/56 of He, Zhang, Ren, Sun, "Deep Residual Learning for
  Image Recognition", CVPR 2016, Sec. 4.2 (option-A shortcut), with the state-dict keys of
  akamaster/pytorch_resnet_cifar10 so its checkpoints load strictly.

* :func:`from_float_layer` — the float ``Conv2d``/``Linear`` -> quantized subclass copy behind every paper's
  ``from_float`` (the quantized layer itself, its math, stays in the paper's package).

``act`` arguments are factories (a callable returning a fresh module, e.g. ``nn.ReLU``) so that papers can
swap in their binary or quantized activations.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.errors import NnqError

ActFactory = Callable[[], nn.Module]


class MLP(nn.Sequential):
    """Flatten, then ``[Linear, BatchNorm1d, act, Dropout]`` per hidden layer, then Linear (+BN1d).

    Args:
        in_features: Flattened input size.
        hidden: Widths of the hidden layers.
        num_classes: Output size.
        act: Activation factory.
        batchnorm: BatchNorm1d after each hidden Linear (whose bias is then dropped).
        dropout: Dropout after each hidden activation.
        dropout_in: Dropout on the flattened input.
        out_bn: BatchNorm1d after the output Linear (the BNN paper's MLP ends with one).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        act: ActFactory = nn.ReLU,
        batchnorm: bool = True,
        dropout: float = 0.0,
        dropout_in: float = 0.0,
        out_bn: bool = False,
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        if dropout_in > 0:
            layers.append(nn.Dropout(dropout_in))
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes, bias=not out_bn))
        if out_bn:
            layers.append(nn.BatchNorm1d(num_classes))
        super().__init__(*layers)


class LeNet300100(nn.Sequential):
    """LeNet-300-100 (LeCun et al. 1998): 784-300-100-10 with ReLU, 266,610 parameters."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for 32x32 inputs, 61,706 parameters with 1 input channel.

    c1 conv5 (6) -> ReLU -> max-pool 2 -> c3 conv5 (16) -> ReLU -> max-pool 2 -> c5 conv5 (120) -> ReLU
    -> f6 (84) -> ReLU -> f7 (classes). Child names follow the csinva MNIST weights
    (``convnet.c1 .. relu5``, ``fc.f6, relu6, f7``).

    # DEVIATION: the csinva model ends with LogSoftmax (``fc.sig7``); ``forward`` here returns logits.
    # The argmax and the cross-entropy (log_softmax is idempotent) are unchanged, and it has no parameters.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.convnet = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(in_channels, 6, 5)),
            ("relu1", nn.ReLU()),
            ("s2", nn.MaxPool2d(2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)),
            ("relu3", nn.ReLU()),
            ("s4", nn.MaxPool2d(2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)),
            ("relu5", nn.ReLU()),
        ]))
        self.fc = nn.Sequential(OrderedDict([
            ("f6", nn.Linear(120, 84)),
            ("relu6", nn.ReLU()),
            ("f7", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, 32, 32] -> convnet -> [B, 120, 1, 1] -> [B, 120] -> [B, classes]
        return self.fc(self.convnet(x).flatten(1))


class LeNet5Caffe(nn.Module):
    """Caffe's MNIST "LeNet" (the Deep Compression / Han 2015 "LeNet-5"), 28x28 input, 431,080 parameters.

    conv1 5x5 (20) -> max-pool 2 -> conv2 5x5 (50) -> max-pool 2 -> ip1 (500) -> ReLU -> ip2 (classes); as in
    Caffe's ``examples/mnist/lenet_train_test.prototxt`` there is no nonlinearity after the convolutions. Child
    names follow the prototxt (and the layer names of the Deep Compression paper's Table 3).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        if (image_size - 4) % 2 or ((image_size - 4) // 2 - 4) % 2 or image_size < 16:
            raise NnqError(f"LeNet5Caffe needs an image size like 28 (two 5x5 convs, two 2x2 pools), got {image_size}")
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(50 * side * side, 500)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, 28, 28] -> [B, 20, 12, 12] -> [B, 50, 4, 4] -> [B, 800] -> [B, 500] -> [B, classes]
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.ip2(self.relu1(self.ip1(x.flatten(1))))


class BnnConvNet(nn.Module):
    """The CIFAR-10 ConvNet of the BNN paper (Courbariaux et al. 2016, Sec. 2.6):
    2x128C3 - MP2 - 2x256C3 - MP2 - 2x512C3 - MP2 - 2x1024FC - 10.

    Every conv and hidden FC has no bias and is followed by BatchNorm and ``act()``. Where a max-pool follows
    a conv it sits between the conv and its BatchNorm (conv -> MP2 -> BN -> act), as in the authors' code
    (pooling before the sign keeps the pooled value real). ``features`` holds the conv part, ``classifier``
    the FC part.

    Args:
        in_channels: Input channels.
        num_classes: Output size.
        act: Activation factory (``nn.ReLU`` for the float twin, a binary activation for BNN).
        out_bn: BatchNorm1d after the last Linear (the paper's nets end with one); its Linear then has no bias.
        image_size: Input height/width (divisible by 8).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        act: ActFactory = nn.ReLU,
        *,
        out_bn: bool = False,
        image_size: int = 32,
    ):
        super().__init__()
        if image_size % 8:
            raise NnqError(f"BnnConvNet needs an image size divisible by 8, got {image_size}; use resize=32")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in (128, 256, 512):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act()]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(c_out), act()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        flat = 512 * (image_size // 8) ** 2
        fc: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in ((flat, 1024), (1024, 1024)):
            fc += [nn.Linear(w_in, w_out, bias=False), nn.BatchNorm1d(w_out), act()]
        fc.append(nn.Linear(1024, num_classes, bias=not out_bn))
        if out_bn:
            fc.append(nn.BatchNorm1d(num_classes))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, S, S] -> features -> [B, 512, S/8, S/8] -> classifier -> [B, classes]
        return self.classifier(self.features(x))


def shortcut_a(x: torch.Tensor, planes: int) -> torch.Tensor:
    """Option-A shortcut (He et al. 2016, Sec. 4.2): subsample by 2, zero-pad channels by planes//4 each side."""
    # x: [B, planes/2, H, W] -> [B, planes/2, H/2, W/2] -> [B, planes, H/2, W/2]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))


class BasicBlockCifar(nn.Module):
    """relu(bn1(conv1 x)) -> bn2(conv2) -> + shortcut(x) -> relu; the shortcut has no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (shortcut_a(x, self.planes) if self.downsample else x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth 6n+2 (He et al. 2016, Sec. 4.2): 16/32/64 channels, n basic blocks per stage.

    State-dict keys follow akamaster/pytorch_resnet_cifar10 (``conv1, bn1, layer{1,2,3}.i.{conv,bn}{1,2},
    linear``), so its checkpoints load strictly once the ``module.`` prefix is stripped
    (see :func:`load_resnet_cifar`).

    Args:
        depth: 20, 32, 44, 56, ... (6n+2).
        num_classes: Output size.
        in_channels: Input channels.
        block: ``block(in_planes, planes, stride)`` builds each residual block (default
            :class:`BasicBlockCifar`); papers pass their quantized blocks here.
    """

    def __init__(self, depth: int, num_classes: int = 10, *, in_channels: int = 3,
                 block: Callable[[int, int, int], nn.Module] | None = None):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise NnqError(f"ResNetCifar depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for j in range(n):
                blocks.append((block or BasicBlockCifar)(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 32, 32] -> [B, 16, 32, 32] -> [B, 32, 16, 16] -> [B, 64, 8, 8] -> pool -> [B, classes]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(out.mean(dim=(2, 3)))


def resnet20(num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 for CIFAR (0.27M parameters)."""
    return ResNetCifar(20, num_classes)


def resnet32(num_classes: int = 10) -> ResNetCifar:
    """ResNet-32 for CIFAR (0.46M parameters)."""
    return ResNetCifar(32, num_classes)


def resnet44(num_classes: int = 10) -> ResNetCifar:
    """ResNet-44 for CIFAR (0.66M parameters)."""
    return ResNetCifar(44, num_classes)


def resnet56(num_classes: int = 10) -> ResNetCifar:
    """ResNet-56 for CIFAR (0.85M parameters)."""
    return ResNetCifar(56, num_classes)


class SmallConvNet(nn.Module):
    """A 3-conv net for the quick presets' 8x8 digits (the float net DoReFa-Net, LQ-Nets and LSQ quantize).

    conv(c,32) BN ReLU | conv(32,64) BN ReLU MP2 | conv(64,64) BN ReLU MP2 | FC(64*(S/4)^2, classes)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8):
        super().__init__()
        if image_size % 4:
            raise NnqError(f"smallconv needs an image size divisible by 4, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, S, S] -> [B, 32, S, S] -> [B, 64, S/2, S/2] -> [B, 64, S/4, S/4] -> [B, classes]
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.max_pool2d(F.relu(self.bn2(self.conv2(out))), 2)
        out = F.max_pool2d(F.relu(self.bn3(self.conv3(out))), 2)
        return self.fc(out.flatten(1))


# ------------------------------------------------------------------------------------------- loaders


def _torch_load(path: str | Path) -> object:
    path = Path(path)
    if not path.is_file():
        raise NnqError(f"weights file {path} not found; check the path (shared weights: see weights/SOURCES.md)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated / foreign files
        raise NnqError(f"cannot read weights file {path} ({type(e).__name__}); it is truncated or not a torch file")


def _load_strict(model: nn.Module, state: object, path: str | Path, what: str) -> nn.Module:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NnqError(f"{path}: not a state dict of tensors; expected {what} weights")
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:2]}{' ...' if len(shapes) > 2 else ''}")
        raise NnqError(f"{path} does not match {what}: {'; '.join(parts)}; pick the file made for this model")
    model.load_state_dict(state, strict=False)  # strict up to num_batches_tracked, checked above
    return model.eval()


def load_state_file(model: nn.Module, path: str | Path, what: str) -> nn.Module:
    """Loads a float model's weights (a ``.safetensors`` file, or a torch file read with ``weights_only=True``,
    optionally ``{"state_dict": ...}``) into ``model``; any unreadable or mismatching file is one clear NnqError.

    Returns the model in eval mode.
    """
    return _load_strict(model, _read_state_file(path), path, what)


def load_float_weights(model: nn.Module, path: str | Path, what: str) -> nn.Module:
    """:func:`load_state_file`, also for a checkpoint saved from ``DataParallel`` (every key ``module.``-prefixed,
    as the shared akamaster CIFAR ResNets); returns the model in train mode (the start of a training run)."""
    state = _read_state_file(path)
    if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return _load_strict(model, state, path, what).train()


def _read_state_file(path: str | Path) -> object:
    """The state dict in a ``.safetensors`` or torch file (unwrapped from ``{"state_dict": ...}``)."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        if not Path(path).is_file():
            raise NnqError(f"weights file {path} not found; check the path")
        try:
            state = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - truncated / foreign files
            raise NnqError(f"cannot read weights file {path} ({type(e).__name__}); it is truncated or not safetensors")
    else:
        state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def load_resnet_cifar(depth: int, path: str | Path, num_classes: int = 10) -> ResNetCifar:
    """Loads an akamaster CIFAR ResNet checkpoint (``{'state_dict': ..., 'best_prec1': ...}``, ``module.`` keys).

    The model expects ImageNet-normalised inputs (``load_dataset(..., normalize="imagenet")``).

    Args:
        depth: 20, 32, 44 or 56.
        path: The ``.th`` file.
        num_classes: Output size of the checkpoint.

    Returns:
        The model in eval mode.

    Raises:
        NnqError: unreadable file, or keys/shapes that do not match ResNet-``depth``.
    """
    obj = _torch_load(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if isinstance(state, dict):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return _load_strict(ResNetCifar(depth, num_classes), state, path, f"ResNet-{depth} (CIFAR)")


def load_lenet5_mnist(path: str | Path) -> LeNet5:
    """Loads the csinva LeNet-5 MNIST state dict; inputs are 32x32 in [0, 1] (``resize=32, normalize="none"``).

    Raises:
        NnqError: unreadable file, or keys/shapes that do not match LeNet-5.
    """
    return _load_strict(LeNet5(1, 10), _torch_load(path), path, "LeNet-5 (1x32x32, 10 classes)")


# ------------------------------------------------------------------------------------------ registry


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kw) -> nn.Module:
    """Builds a float reference model by name for data of ``input_shape`` ``(C, H, W)``.

    Names: "mlp" (``hidden`` default (256, 256), other MLP keywords pass through), "lenet300", "lenet5"
    (needs 32x32 input), "lenet5_caffe" (28x28), "bnn_convnet" (``act``, ``out_bn``), "resnet20", "resnet32",
    "resnet44", "resnet56", "resnet18" (torchvision's, ImageNet), "smallconv" (the quick presets' 3-conv net).

    Raises:
        NnqError: unknown name or an input shape the model cannot take.
    """
    c, h, w = tuple(input_shape)
    flat = c * h * w
    if name == "mlp":
        return MLP(flat, kw.pop("hidden", (256, 256)), num_classes, **kw)
    if name == "lenet300":
        return LeNet300100(flat, num_classes, **kw)
    if name == "lenet5":
        if (h, w) != (32, 32):
            raise NnqError(f"lenet5 needs 32x32 inputs, got {h}x{w}; load the data with resize=32")
        return LeNet5(c, num_classes, **kw)
    if name == "lenet5_caffe":
        if h != w:
            raise NnqError(f"lenet5_caffe needs square inputs (28x28 MNIST), got {h}x{w}")
        return LeNet5Caffe(c, num_classes, image_size=h, **kw)
    if name == "bnn_convnet":
        if h != w:
            raise NnqError(f"bnn_convnet needs square inputs, got {h}x{w}; use resize=32")
        return BnnConvNet(c, num_classes, image_size=h, **kw)
    if name.startswith("resnet") and name[6:].isdigit() and int(name[6:]) in (20, 32, 44, 56):
        return ResNetCifar(int(name[6:]), num_classes, in_channels=c, **kw)
    if name == "resnet18":
        return resnet18_imagenet(num_classes, in_channels=c)
    if name == "smallconv":
        return SmallConvNet(c, num_classes, h)
    raise NnqError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


MODEL_NAMES = ("mlp", "lenet300", "lenet5", "lenet5_caffe", "bnn_convnet", "resnet20", "resnet32", "resnet44",
               "resnet56", "resnet18", "smallconv")


def resnet18_imagenet(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18, the ImageNet network of the papers' ``paper`` presets; for ``in_channels`` other
    than 3 its first conv takes that many channels."""
    from torchvision.models import resnet18

    m = resnet18(num_classes=num_classes)
    if in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return m


# ------------------------------------------------------------------------------------------- attention


class SplitMultiheadAttention(nn.Module):
    """Self/cross attention with separate ``nn.Linear`` q/k/v/out projections; drop-in for nn.MultiheadAttention.

    Same math as ``nn.MultiheadAttention`` (Vaswani et al., 2017): softmax(q k^T / sqrt(d_head) + mask) v, then
    the output projection; the call signature and ``(output, None)`` return value match it.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True, batch_first: bool = True):
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "SplitMultiheadAttention":
        """Copies the fused in-projection of ``mha`` into three linear layers."""
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn or mha.dropout:
            raise NnqError("only plain nn.MultiheadAttention (same q/k/v dims, no bias_k, no dropout) can be split")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=bias, batch_first=mha.batch_first)
        w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3, dim=0)  # 3 x [E, E]
        with torch.no_grad():
            for lin, w in zip((new.q_proj, new.k_proj, new.v_proj), (w_q, w_k, w_v), strict=True):
                lin.weight.copy_(w)
            if bias:
                b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)
                for lin, b in zip((new.q_proj, new.k_proj, new.v_proj), (b_q, b_k, b_v), strict=True):
                    lin.bias.copy_(b)
                new.out_proj.bias.copy_(mha.out_proj.bias.detach())
            new.out_proj.weight.copy_(mha.out_proj.weight.detach())
        return new.to(mha.in_proj_weight.device)

    def forward(self, query, key, value, need_weights=False, attn_mask=None, key_padding_mask=None, **_):
        if need_weights:
            raise NnqError("SplitMultiheadAttention does not return attention weights")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, lq, _e = query.shape
        lk = key.shape[1]
        q = self.q_proj(query).view(b, lq, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lq, d]
        k = self.k_proj(key).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lk, d]
        v = self.v_proj(value).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lk, d]
        mask = _merge_masks(attn_mask, key_padding_mask, q.dtype, b, lq, lk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, Lq, d]
        out = self.out_proj(out.transpose(1, 2).reshape(b, lq, self.embed_dim))  # [B, Lq, E]
        return (out if self.batch_first else out.transpose(0, 1)), None


def _merge_masks(attn_mask, key_padding_mask, dtype, b, lq, lk):
    """nn.MultiheadAttention masks (bool True = masked, or additive float) -> one additive SDPA mask or None."""
    mask = None
    if attn_mask is not None:
        mask = attn_mask.to(dtype) if attn_mask.dtype != torch.bool else torch.zeros_like(
            attn_mask, dtype=dtype).masked_fill(attn_mask, float("-inf"))
        if mask.dim() == 3:  # [B*H, Lq, Lk]
            mask = mask.view(b, -1, lq, lk)
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(torch.bool) if key_padding_mask.dtype == torch.bool else key_padding_mask < 0
        add = torch.zeros(b, 1, 1, lk, dtype=dtype, device=kpm.device).masked_fill(kpm[:, None, None, :], float("-inf"))
        mask = add if mask is None else mask + add
    return mask


def split_attention_(model: nn.Module) -> list[str]:
    """Replaces every ``nn.MultiheadAttention`` in ``model`` by an equivalent `SplitMultiheadAttention`.

    Returns:
        The names of the replaced modules.
    """
    names = [n for n, m in model.named_modules() if type(m) is nn.MultiheadAttention]
    for name in names:
        _set_module(model, name, SplitMultiheadAttention.from_mha(model.get_submodule(name)))
    return names


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# ---------------------------------------------------------------------------------------- float -> subclass


def float_layer_args(m: nn.Module) -> tuple[tuple, dict]:
    """The constructor arguments (positional, keyword) that rebuild the float ``nn.Conv2d`` or ``nn.Linear`` ``m``."""
    if isinstance(m, nn.Conv2d):
        return (m.in_channels, m.out_channels, m.kernel_size), dict(
            stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
            padding_mode=m.padding_mode)
    if isinstance(m, nn.Linear):
        return (m.in_features, m.out_features), dict(bias=m.bias is not None)
    raise TypeError(f"from_float_layer takes an nn.Conv2d or nn.Linear, got {type(m).__name__}")


def from_float_layer(cls: type[nn.Module], m: nn.Module, **kw) -> nn.Module:
    """An instance of ``cls`` (a subclass of ``m``'s float layer class: a paper's quantized layer) built with ``m``'s
    constructor arguments plus ``kw``, holding a copy of every parameter and buffer of ``m``, on ``m``'s device.

    The subclass's own state (step sizes, bases, ...) keeps the value its constructor gave it; a key of ``m``'s
    state dict that ``cls`` does not have is an error.
    """
    args, kwargs = float_layer_args(m)
    q = cls(*args, **kwargs, **kw)
    unexpected = q.load_state_dict(m.state_dict(), strict=False).unexpected_keys
    if unexpected:
        raise TypeError(f"{cls.__name__} has no {', '.join(unexpected)} of the float {type(m).__name__}")
    return q.to(m.weight.device)
