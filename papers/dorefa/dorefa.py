"""DoReFa-Net: low bitwidth weights, activations and gradients.

Zhou, Wu, Ni, Zhou, Wen, Zou, "DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with Low
Bitwidth Gradients", arXiv 1606.06160 (2016), https://arxiv.org/abs/1606.06160. Official code (TensorFlow):
https://github.com/tensorpack/tensorpack/tree/master/examples/DoReFa-Net.

Every number a quantized layer touches lives on a k-bit grid of [0, 1] (or [-1, 1]): ``quantize_k`` rounds
``(2^k - 1) r`` and divides back, and its backward pass is the straight-through estimator. Weights are squashed
by ``tanh``, scaled by the layer's largest ``|tanh(w)|`` into [0, 1], quantized and mapped to [-1, 1]; at one
bit they are ``sign(w)`` times the layer's mean ``|w|``. Activations are clipped to [0, 1] and quantized.
Gradients are quantized too, in the backward pass: each sample's gradient is divided by its largest absolute
value, shifted into [0, 1], given uniform noise of one quantization step and rounded, which makes the
quantized gradient an unbiased estimate of the true one. The first and the last layer stay in full precision.

Implements: quantize_k with its straight-through backward, the weight quantizer f_w^k (k > 1) and the 1-bit
weights sign(w) E(|w|), the activation quantizer f_a^k, the gradient quantizer f_g^k with its uniform noise,
quantized ``Conv2d``/``Linear`` layers (weights and input activations quantized in the forward pass, the
gradient of their output quantized in the backward pass), and the model conversion that keeps the first and
last layers float. A bit width of 32 means "not quantized" everywhere (the paper's W/A/G = 32).
Not implemented: the bit-convolution kernels (Sec. 2.1): the quantized layers compute in float32 on
values that lie on the k-bit grids; the packed artifact stores the weights at k bits.

Citations name the paper's quantizers (quantize_k, f_w^k, f_a^k, f_g^k) and its sections as in arXiv v3;
the equation numbers are not given here (see the README's Known gaps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import from_float_layer

FLOAT_BITS = 32
"""A bit width of 32 means full precision (the paper's W/A/G = 32)."""
WEIGHT_BITS = (1, 2, 3, 4, 8, FLOAT_BITS)
"""Weight bit widths the layers accept."""


def _check_bits(k: int, what: str) -> None:
    if not (1 <= k <= 16 or k == FLOAT_BITS):
        raise NnqError(f"{what} bits must be between 1 and 16, or 32 for full precision; got {k}")


# --------------------------------------------------------------------------------------------- pure functions


def quantize_k(r: torch.Tensor, k: int) -> torch.Tensor:
    """quantize_k(r) = round((2^k - 1) r) / (2^k - 1) for r in [0, 1] (Sec. 2.2); no gradient rule.

    ``round`` is torch's round-half-to-even (the paper writes round; ties have measure zero).
    """
    n = 2 ** k - 1
    return torch.round(r * n) / n


def weight_levels(w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer codes of the k-bit weights and the scale that maps them back (used by the artifact).

    k > 1: codes c in {0, ..., 2^k - 1}, w_q = 2 c / (2^k - 1) - 1 (Sec. 2.3); the returned scale is 1.
    k = 1: codes c in {0, 1} (0: negative, 1: positive or zero), w_q = (2 c - 1) E(|w|); the scale is E(|w|).
    """
    w = w.detach()
    if k == 1:
        return (w >= 0).to(torch.int64), w.abs().mean()
    t = torch.tanh(w)
    x = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5  # in [0, 1]
    return torch.round(x * (2 ** k - 1)).to(torch.int64), torch.ones((), dtype=w.dtype, device=w.device)


def codes_to_weights(codes: torch.Tensor, scale: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`weight_levels`: the k-bit weights w_q from their codes and scale."""
    if k == 1:
        return torch.where(codes == 1, scale, -scale)  # Sec. 2.3: sign(w) E(|w|), as DorefaBinaryWeightSTE
    # Sec. 2.3: 2 quantize_k(...) - 1, with the float operations of quantize_weight (c / n, then 2 x - 1)
    return 2 * (codes.to(scale.dtype) / (2 ** k - 1)) - 1


# ------------------------------------------------------------------------------------- straight-through parts


class DorefaQuantizeSTE(torch.autograd.Function):
    """quantize_k with the straight-through estimator (Sec. 2.2).

    Forward: r_o = round((2^k - 1) r_i) / (2^k - 1). Backward: dc/dr_i = dc/dr_o (the rounding is skipped).
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor, k: int) -> torch.Tensor:
        return quantize_k(r, k)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return grad_out, None


quantize_k_ste = DorefaQuantizeSTE.apply


class DorefaBinaryWeightSTE(torch.autograd.Function):
    """1-bit weights (Sec. 2.3): forward r_o = sign(r_i) E(|r_i|) over the layer; backward dc/dr_i = dc/dr_o.

    E(|r_i|) is the mean absolute weight of the whole layer (one scale per layer), a constant in the backward
    pass. sign(0) is taken as +1 so that every weight is one of the two levels.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        e = w.abs().mean()
        return torch.where(w >= 0, e, -e)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return grad_out


binary_weight_ste = DorefaBinaryWeightSTE.apply


def quantize_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """f_w^k of Sec. 2.3: the k-bit weights of a layer, with the paper's gradient.

    k > 1: w_q = 2 quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1, in [-1, 1]; the gradient flows through
    tanh and the max, and straight through the rounding. k = 1: sign(w) E(|w|). k = 32: w unchanged.
    """
    _check_bits(k, "weight")
    if k == FLOAT_BITS:
        return w
    if k == 1:
        return binary_weight_ste(w)
    t = torch.tanh(w)
    x = t / (2 * t.abs().max()) + 0.5  # Sec. 2.3: tanh(w) / (2 max|tanh(w)|) + 1/2, in [0, 1]
    return 2 * quantize_k_ste(x, k) - 1  # Sec. 2.3: 2 quantize_k(x) - 1, in [-1, 1]


def quantize_activation(x: torch.Tensor, k: int) -> torch.Tensor:
    """f_a^k of Sec. 2.4: quantize_k of the activation clipped to [0, 1]; k = 32: the clipped activation.

    The clip is the bounded activation h of the paper (the gradient is zero outside [0, 1]); the rounding is
    straight-through.
    """
    _check_bits(k, "activation")
    r = torch.clamp(x, 0.0, 1.0)
    return r if k == FLOAT_BITS else quantize_k_ste(r, k)


def quantize_gradient(dr: torch.Tensor, k: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """f_g^k of Sec. 2.5: the k-bit stochastic quantization of a gradient (a pure function of its noise).

        f_g^k(dr) = 2 max_0(|dr|) [quantize_k(dr / (2 max_0(|dr|)) + 1/2 + N(k)) - 1/2],
        N(k) = sigma / (2^k - 1), sigma ~ Uniform(-0.5, 0.5),

    where max_0 is taken over every axis but the first (the batch axis): one scale per sample.

    Args:
        dr: the gradient, [B, ...].
        k: bits; 32 returns ``dr`` itself.
        noise: sigma, a tensor like ``dr`` with values in [-0.5, 0.5); None draws it from the global generator.

    Returns:
        The quantized gradient: per sample at most 2^k distinct values, 2 M (j / (2^k - 1) - 1/2), j = 0 .. 2^k - 1,
        M = max_0(|dr|). Its expectation over the noise is ``dr`` (dithered rounding is unbiased; the argument
        stays in [-1/(2(2^k - 1)), 1 + 1/(2(2^k - 1))], so no value needs clipping).
    """
    _check_bits(k, "gradient")
    if k == FLOAT_BITS:
        return dr
    n = 2 ** k - 1
    # dr: [B, ...] -> M: [B, 1, ..., 1], the largest |dr| of each sample
    m = dr.abs().amax(dim=tuple(range(1, dr.dim())), keepdim=True) if dr.dim() > 1 else dr.abs()
    m = m.clamp_min(torch.finfo(dr.dtype).tiny)
    sigma = torch.rand_like(dr) - 0.5 if noise is None else noise
    x = dr / (2 * m) + 0.5 + sigma / n  # Sec. 2.5: dr / (2 max_0|dr|) + 1/2 + N(k)
    return 2 * m * (quantize_k(x, k) - 0.5)  # Sec. 2.5: 2 max_0|dr| [quantize_k(...) - 1/2]


class DorefaGradQuantSTE(torch.autograd.Function):
    """Identity in the forward pass; f_g^k of Sec. 2.5 on the gradient in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int) -> torch.Tensor:
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return quantize_gradient(grad_out, ctx.k), None


def quantize_grad_ste(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x`` unchanged, its gradient quantized to k bits in the backward pass (k = 32: nothing is added)."""
    _check_bits(k, "gradient")
    return x if k == FLOAT_BITS else DorefaGradQuantSTE.apply(x, k)


# ---------------------------------------------------------------------------------------------------- layers


class _DorefaLayer:
    """Shared part of the quantized layers: bit widths and the quantized weights and inputs."""

    w_bits: int
    a_bits: int
    g_bits: int
    weight_is_quantized: bool
    """True once ``weight`` holds the k-bit weights themselves (a model reloaded from its packed artifact)."""

    def _setup(self, w_bits: int, a_bits: int, g_bits: int) -> None:
        for k, what in ((w_bits, "weight"), (a_bits, "activation"), (g_bits, "gradient")):
            _check_bits(k, what)
        self.w_bits, self.a_bits, self.g_bits = w_bits, a_bits, g_bits
        self.weight_is_quantized = False

    @property
    def weight_bits(self) -> int | None:
        """Bits the stored weight takes (``common.evaluate.module_fields``); None for full precision."""
        return None if self.w_bits == FLOAT_BITS else self.w_bits

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_is_quantized else quantize_weight(self.weight, self.w_bits)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        # A = 32: the layer's input as the network computes it (the study's W1A32 keeps ReLU activations)
        return x if self.a_bits == FLOAT_BITS else quantize_activation(x, self.a_bits)

    def _bits_repr(self) -> str:
        return f"W{self.w_bits}A{self.a_bits}G{self.g_bits}"


class DorefaConv2d(_DorefaLayer, nn.Conv2d):
    """``nn.Conv2d`` on k-bit weights and k-bit inputs; the gradient of its output is quantized (Alg. 1)."""

    def __init__(self, *args, w_bits: int = 1, a_bits: int = 2, g_bits: int = FLOAT_BITS, **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._setup(w_bits, a_bits, g_bits)

    @classmethod
    def from_float(cls, m: nn.Conv2d, **kw) -> "DorefaConv2d":
        """A quantized copy of ``m``: same weights, same state-dict keys."""
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)
        return quantize_grad_ste(y, self.g_bits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._bits_repr()}"


class DorefaLinear(_DorefaLayer, nn.Linear):
    """``nn.Linear`` on k-bit weights and k-bit inputs; the gradient of its output is quantized."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 1,
                 a_bits: int = 2, g_bits: int = FLOAT_BITS):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._setup(w_bits, a_bits, g_bits)

    @classmethod
    def from_float(cls, m: nn.Linear, **kw) -> "DorefaLinear":
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)
        return quantize_grad_ste(y, self.g_bits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._bits_repr()}"


def dorefa_layers(model: nn.Module) -> dict[str, _DorefaLayer]:
    """The quantized layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _DorefaLayer)}


def quantize_model_(model: nn.Module, w_bits: int, a_bits: int, g_bits: int, *, first: str,
                    last: str) -> nn.Module:
    """Replaces every ``Conv2d``/``Linear`` of ``model`` but ``first`` and ``last`` by its DoReFa layer, in place.

    The first and the last layer stay full precision (Sec. 2.7): weights, inputs and gradients.
    """
    named = dict(model.named_modules())
    for name in (first, last):
        if name not in named:
            raise NnqError(f"model has no module {name!r} to keep as its first/last layer")
    for name, m in list(named.items()):
        if type(m) not in (nn.Conv2d, nn.Linear) or name in (first, last):
            continue
        cls = DorefaConv2d if isinstance(m, nn.Conv2d) else DorefaLinear
        q = cls.from_float(m, w_bits=w_bits, a_bits=a_bits, g_bits=g_bits)
        parent, _, child = name.rpartition(".")
        setattr(named[parent] if parent else model, child, q)
    return model
