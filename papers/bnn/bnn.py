"""Binarized Neural Networks.

Courbariaux, Hubara, Soudry, El-Yaniv, Bengio, "Binarized Neural Networks: Training Deep Neural
Networks with Weights and Activations Constrained to +1 or -1", NeurIPS 2016 (arXiv 1602.02830;
published as "Binarized Neural Networks"). Official code: github.com/MatthieuCourbariaux/BinaryNet
(Theano) and github.com/itayhubara/BinaryNet (Torch7).

Idea: weights and hidden activations are constrained to {-1, +1} with the deterministic sign
function in the forward pass, so that at run time every multiply-accumulate becomes an XNOR and a
popcount. Training keeps real-valued "latent" weights that accumulate the gradient; the gradient
of sign is replaced by the straight-through estimator cancelled outside [-1, 1], and the latent
weights are clipped to [-1, 1] after each update. Batch normalisation follows every binary layer;
the input of the first layer stays real and the output of the last layer is not binarized.

Implements: Eq. (1) (deterministic binarization), Eq. (4) (STE with 1_{|r|<=1}), Alg. 1
(forward with binary weights and activations, backward through the STE, latent-weight clipping).
Not implemented: stochastic binarization (Eq. 2-3), shift-based batch normalisation (Alg. 3) and
shift-based AdaMax (Alg. 4), the per-layer Glorot learning-rate scaling — see README, Deviations.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from common.errors import NnqError
from common.models import BasicBlockCifar, ResNetCifar, shortcut_a
from common.train import Callback, TrainContext


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization; zero maps to +1.

    Eq. (1): x^b = Sign(x) = +1 if x >= 0, -1 otherwise.
    """
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class SignSTE(torch.autograd.Function):
    """Sign in the forward pass, straight-through estimator cancelled outside [-1, 1] backward.

    Forward: q = Sign(r) (Eq. 1). Backward: g_r = g_q * 1_{|r| <= 1} (Eq. 4), which keeps the
    gradient's information and cancels it where r is large, where the sign cannot change.
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(r)
        return binarize(r)

    @staticmethod
    def backward(ctx, g_q: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        # Eq. (4): g_r = g_q 1_{|r|<=1}
        return g_q * (r.abs() <= 1).to(g_q.dtype)


sign_ste = SignSTE.apply


class WeightSignSTE(torch.autograd.Function):
    """Sign of the latent weights with the gradient passed straight through (Eq. 4 for weights).

    Alg. 1 clips the latent weights to [-1, 1] after every update (and their initialisation lies
    inside it), so the mask 1_{|W|<=1} of Eq. (4) is all ones for weights and the backward is
    exactly the identity. Skipping the mask avoids four passes over every weight matrix per step
    (about half of a 3x2048 MLP's step time on a CPU). The mask-cancelling :class:`SignSTE` stays
    in use for activations, where |a| > 1 does occur.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        return binarize(w)

    @staticmethod
    def backward(ctx, g_wb: torch.Tensor) -> torch.Tensor:
        # Eq. (4) with 1_{|W|<=1} = 1 (W is kept in [-1, 1] by clip_latent_weights_)
        return g_wb


weight_sign_ste = WeightSignSTE.apply


class BinaryActivation(nn.Module):
    """Hidden-unit binarization a_k^b = Sign(a_k) with the STE of Eq. (4) (Alg. 1, forward)."""

    act_bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)


class BinaryLinear(nn.Linear):
    """A linear layer whose weights are binarized in the forward pass (W^b = Sign(W), Alg. 1).

    ``weight`` holds the real latent weights that the optimizer updates; ``bias`` (if any) stays real.
    """

    weight_bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight_sign_ste(self.weight), self.bias)

    @classmethod
    def from_float(cls, m: nn.Linear) -> "BinaryLinear":
        new = cls(m.in_features, m.out_features, bias=m.bias is not None,
                  device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


class BinaryConv2d(nn.Conv2d):
    """A 2-D convolution with binarized weights in the forward pass (Alg. 1)."""

    weight_bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, weight_sign_ste(self.weight), self.bias)

    @classmethod
    def from_float(cls, m: nn.Conv2d) -> "BinaryConv2d":
        if m.padding_mode != "zeros":
            raise NnqError(f"BinaryConv2d supports zero padding only, got padding_mode={m.padding_mode!r}")
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                  dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                  device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


class BnnBlockCifar(BasicBlockCifar):
    """The CIFAR ResNet block with BNN's Sign in place of each ReLU (used by the study's ResNet-20 row).

    Sign(bn1(conv1 x)) -> bn2(conv2) -> + shortcut(x) -> Sign: both convolutions read ±1 inputs, and with
    :func:`binarize_weights_` they multiply ±1 weights (W1A1). The block's output, the next block's input and
    shortcut, is binary too; the shortcut itself has no parameters (option A).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__(in_planes, planes, stride)
        self.sign1, self.sign2 = BinaryActivation(), BinaryActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sign1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.sign2(out + (shortcut_a(x, self.planes) if self.downsample else x))


class BnnResNetCifar(ResNetCifar):
    """A CIFAR ResNet of :class:`BnnBlockCifar` blocks; the stem's ReLU is a Sign too, so that every block
    reads binary activations. The first conv and the last linear layer are float (the study's rule, and the
    paper's: the first layer's input stays real); :func:`bnn_resnet_cifar` binarizes the blocks' weights.
    """

    def __init__(self, depth: int, num_classes: int = 10, *, in_channels: int = 3):
        super().__init__(depth, num_classes, in_channels=in_channels, block=BnnBlockCifar)
        self.sign = BinaryActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, 3, 32, 32] -> float conv1 -> Sign -> binary blocks -> [B, 64, 8, 8] -> pool -> float linear
        out = self.sign(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(out.mean(dim=(2, 3)))


def bnn_resnet_cifar(depth: int, num_classes: int = 10, in_channels: int = 3) -> BnnResNetCifar:
    """The BNN ResNet of ``depth``, binary weights in its residual blocks (their state-dict keys are a float
    ResNetCifar's, so pretrained float weights load into it unchanged)."""
    model = BnnResNetCifar(depth, num_classes, in_channels=in_channels)
    for i in (1, 2, 3):
        binarize_weights_(getattr(model, f"layer{i}"))
    return model


def binarize_weights_(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear / nn.Conv2d of ``model`` by its binary-weight twin, in place.

    All weights are binarized, the first layer's included (the paper keeps the first layer's
    *input* real, not its weights); activations are binarized by the model's own activation
    modules (build it with ``act=BinaryActivation``).
    """
    for name, child in model.named_children():
        if type(child) is nn.Linear:
            setattr(model, name, BinaryLinear.from_float(child))
        elif type(child) is nn.Conv2d:
            setattr(model, name, BinaryConv2d.from_float(child))
        else:
            binarize_weights_(child)
    return model


def binary_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BinaryLinear, BinaryConv2d))]


@torch.no_grad()
def clip_latent_weights_(model: nn.Module) -> None:
    """Alg. 1, update step: W_k^{t+1} = Clip(W_k^t - eta * g_{W_k}, -1, 1) for binary layers."""
    for m in binary_layers(model):
        m.weight.clamp_(-1.0, 1.0)


class ClipLatentWeights(Callback):
    """Clips the latent weights after every optimizer step (Alg. 1)."""

    def after_step(self, ctx: TrainContext) -> None:
        clip_latent_weights_(ctx.model)


def square_hinge_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The square hinge loss the paper's MNIST/CIFAR experiments minimise (its MNIST experiments / official code).

    Targets are +1 for the true class and -1 for every other class:
    L = mean_{n,c} max(0, 1 - t_{nc} * s_{nc})^2.
    """
    t = F.one_hot(y, logits.shape[1]).to(logits.dtype) * 2 - 1
    return F.relu(1 - t * logits).pow(2).mean()
