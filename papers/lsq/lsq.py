"""Learned Step Size Quantization.

Esser, McKinstry, Bablani, Appuswamy, Modha, "Learned Step Size Quantization", ICLR 2020
(arXiv 1902.08153, https://arxiv.org/abs/1902.08153). No official code was released.

Every quantized layer holds one learnable step size ``s`` for its weights and one for its input
activations. The forward pass rounds ``v / s`` to the nearest integer inside ``[-Q_N, Q_P]`` and scales
back by ``s``; the backward pass lets the loss gradient through the rounding (straight-through) and gives
``s`` the gradient of Eq. (3), which grows as a value approaches a transition between two levels. The
gradient of ``s`` (and of ``s`` only) is multiplied by ``g = 1 / sqrt(N * Q_P)`` so that the step sizes
learn at a pace comparable to the weights (Sec. 2.2). Step sizes start at ``2 <|v|> / sqrt(Q_P)``,
computed on the initial weights or on the first batch of activations, and training starts from a trained
full-precision model.

Implements: Eq. (1)-(2) (quantizer), Eq. (3) (step-size gradient), the gradient scale of Sec. 2.2, the
step-size initialisation of Sec. 2.1, signed weights / unsigned activations after ReLU, quantized
``Conv2d``/``Linear`` layers and the model conversion (first and last layer at 8 bits in the paper's own
setting, float in the study setting). Not implemented here: knowledge distillation lives in
``train.py`` (a loss, not a quantizer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import from_float_layer

GRAD_SCALES = ("nqp", "n", "one")
"""Gradient scale of s: ``nqp`` is the paper's g = 1/sqrt(N Q_P); ``n`` is 1/sqrt(N); ``one`` is no scale."""
INITS = ("paper", "naive")
"""Step-size initialisation: ``paper`` is 2<|v|>/sqrt(Q_P) (Sec. 2.1); ``naive`` (ours) is max|v| / Q_P."""


def quant_range(bits: int, signed: bool) -> tuple[int, int]:
    """(Q_N, Q_P) of a ``bits``-bit quantizer (Sec. 2).

    Unsigned data (activations after ReLU): Q_N = 0, Q_P = 2^b - 1. Signed data (weights):
    Q_N = 2^(b-1), Q_P = 2^(b-1) - 1. Either way there are exactly 2^b levels.
    """
    if bits < 2:
        raise NnqError(f"LSQ needs at least 2 bits per quantizer, got {bits}")
    if signed:
        return 2 ** (bits - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def grad_scale_factor(mode: str, n: int, q_p: int) -> float:
    """The factor applied to the gradient of s (Sec. 2.2): g = 1/sqrt(N Q_P) in the paper.

    Args:
        mode: one of :data:`GRAD_SCALES`.
        n: N_W (weights in the layer) for a weight quantizer, N_F (features per sample) for an activation one.
        q_p: Q_P of the quantizer.
    """
    if mode == "nqp":
        return 1.0 / math.sqrt(n * q_p)  # Sec. 2.2: g = 1 / sqrt(N Q_P)
    if mode == "n":
        return 1.0 / math.sqrt(n)
    if mode == "one":
        return 1.0
    raise NnqError(f"gradient scale must be one of {', '.join(GRAD_SCALES)}, got {mode!r}")


def init_step(v: torch.Tensor, q_p: int, mode: str = "paper") -> torch.Tensor:
    """Initial step size of a quantizer of data ``v``.

    ``paper``: s = 2 <|v|> / sqrt(Q_P) (Sec. 2.1). ``naive`` (ours, for the init ablation): s = max|v| / Q_P,
    the min-max step that clips nothing.
    """
    v = v.detach().float()
    if mode == "paper":
        s = 2.0 * v.abs().mean() / math.sqrt(q_p)  # Sec. 2.1
    elif mode == "naive":
        s = v.abs().max() / q_p
    else:
        raise NnqError(f"init must be one of {', '.join(INITS)}, got {mode!r}")
    return s.clamp_min(1e-8)


class LsqQuantizeSTE(torch.autograd.Function):
    """v_hat = round(clip(v / s, -Q_N, Q_P)) * s with the paper's gradients.

    Forward, Eq. (1)-(2): v_bar = round(clip(v/s, -Q_N, Q_P)); v_hat = v_bar * s.
    Backward for v (straight-through estimator through round, Sec. 2.1): 1 where -Q_N < v/s < Q_P, else 0.
    Backward for s, Eq. (3), times the gradient scale g (Sec. 2.2):
        d v_hat / d s = -v/s + round(v/s)  if -Q_N < v/s < Q_P
                      = -Q_N               if v/s <= -Q_N
                      =  Q_P               if v/s >=  Q_P
    ``round`` is torch's round-half-to-even (the paper writes round-to-nearest; ties have measure zero).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, s: torch.Tensor, q_n: int, q_p: int, g: float) -> torch.Tensor:
        x = v / s
        ctx.save_for_backward(x)
        ctx.q_n, ctx.q_p, ctx.g, ctx.s_shape = q_n, q_p, g, s.shape
        return torch.round(torch.clamp(x, -q_n, q_p)) * s  # Eq. (1), Eq. (2)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        q_n, q_p = ctx.q_n, ctx.q_p
        below, above = x <= -q_n, x >= q_p
        inside = ~(below | above)
        grad_v = grad_out * inside  # STE through round, zero where clipped
        # Eq. (3)
        ds = torch.where(inside, torch.round(x) - x, torch.where(below, torch.full_like(x, -q_n), torch.full_like(x, q_p)))
        grad_s = (grad_out * ds).sum().reshape(ctx.s_shape) * ctx.g  # Sec. 2.2: scale s's gradient only
        return grad_v, grad_s, None, None, None


lsq_quantize = LsqQuantizeSTE.apply


class LsqQuantizer(nn.Module):
    """A uniform quantizer with one learnable step size ``s`` (Sec. 2); ``bits=None`` is the identity.

    Args:
        bits: b; None keeps the data float.
        signed: True for weights (Q_N = 2^(b-1)), False for activations after ReLU (Q_N = 0).
        grad_scale: one of :data:`GRAD_SCALES` (the paper: ``nqp``).
        init: one of :data:`INITS` (the paper: ``paper``).

    ``s`` is initialised on the first forward pass in training mode (on the initial weights, or on the first
    batch of activations, Sec. 2.1); ``initialized`` is a buffer, so a reloaded model keeps its ``s``.
    """

    def __init__(self, bits: int | None, *, signed: bool, grad_scale: str = "nqp", init: str = "paper"):
        super().__init__()
        self.bits, self.signed, self.grad_scale, self.init = bits, signed, grad_scale, init
        grad_scale_factor(grad_scale, 1, 1)  # validate the names early
        if init not in INITS:
            raise NnqError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.q_n, self.q_p = quant_range(bits, signed) if bits is not None else (0, 0)
        self.s = nn.Parameter(torch.ones(())) if bits is not None else None
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def initialize(self, v: torch.Tensor) -> None:
        """Sets s from data ``v`` (Sec. 2.1)."""
        self.s.copy_(init_step(v, self.q_p, self.init))
        self.initialized.fill_(True)

    def forward(self, v: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """Quantize ``v``; ``n`` is N of the gradient scale (default: all elements of ``v``)."""
        if self.bits is None:
            return v
        if not bool(self.initialized):
            if not self.training:
                raise NnqError("an LSQ quantizer was used before its step size was initialised; run one training "
                               "batch first or load a trained model")
            self.initialize(v)
        g = grad_scale_factor(self.grad_scale, v.numel() if n is None else n, self.q_p)
        return lsq_quantize(v, self.s, self.q_n, self.q_p, g)

    @torch.no_grad()
    def codes(self, v: torch.Tensor) -> torch.Tensor:
        """The integers v_bar of Eq. (1), as int32 in [-Q_N, Q_P]."""
        return torch.round(torch.clamp(v / self.s, -self.q_n, self.q_p)).to(torch.int32)

    def extra_repr(self) -> str:
        if self.bits is None:
            return "float"
        return f"bits={self.bits}, signed={self.signed}, Q_N={self.q_n}, Q_P={self.q_p}, grad_scale={self.grad_scale}"


class _LsqLayer:
    """Shared part of the quantized layers: a weight quantizer and an input-activation quantizer."""

    weight_bits: int | None
    act_bits: int | None

    def _setup(self, w_bits: int | None, a_bits: int | None, a_signed: bool, grad_scale: str, init: str) -> None:
        self.weight_bits, self.act_bits = w_bits, a_bits
        self.w_quant = LsqQuantizer(w_bits, signed=True, grad_scale=grad_scale, init=init)
        self.a_quant = LsqQuantizer(a_bits, signed=a_signed, grad_scale=grad_scale, init=init)

    def quantized_weight(self) -> torch.Tensor:
        return self.w_quant(self.weight, self.weight.numel())  # N_W: weights in the layer

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.a_quant(x, x[0].numel())  # N_F: features of one sample


class LsqConv2d(_LsqLayer, nn.Conv2d):
    """``nn.Conv2d`` computing on quantized weights and quantized inputs (Fig. 1 of the paper)."""

    def __init__(self, *args, w_bits: int | None = 4, a_bits: int | None = 4, a_signed: bool = False,
                 grad_scale: str = "nqp", init: str = "paper", **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._setup(w_bits, a_bits, a_signed, grad_scale, init)

    @classmethod
    def from_float(cls, m: nn.Conv2d, **kw) -> "LsqConv2d":
        """A quantized copy of ``m`` (same weights, same state-dict keys plus the step sizes)."""
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)


class LsqLinear(_LsqLayer, nn.Linear):
    """``nn.Linear`` computing on quantized weights and quantized inputs."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int | None = 4,
                 a_bits: int | None = 4, a_signed: bool = False, grad_scale: str = "nqp", init: str = "paper"):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._setup(w_bits, a_bits, a_signed, grad_scale, init)

    @classmethod
    def from_float(cls, m: nn.Linear, **kw) -> "LsqLinear":
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)


def lsq_layers(model: nn.Module) -> dict[str, _LsqLayer]:
    """The quantized layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _LsqLayer)}


def quantize_model_(model: nn.Module, w_bits: int, a_bits: int, *, first: str, last: str,
                    edge_bits: int | None = 8, signed_input: tuple[str, ...] = (), grad_scale: str = "nqp",
                    init: str = "paper") -> nn.Module:
    """Replaces every ``Conv2d``/``Linear`` of ``model`` (in place) by its LSQ layer; returns ``model``.

    Args:
        w_bits, a_bits: bits of the weights and input activations of the inner layers.
        first, last: module names of the first and the last layer.
        edge_bits: bits of the first and last layers' weights and inputs (the paper: 8, Sec. 3); None keeps
            them float (the study setting).
        signed_input: module names whose inputs are signed (the first layer's input image); every other
            quantized layer reads the output of a ReLU (unsigned, Q_N = 0).
        grad_scale, init: see :class:`LsqQuantizer`.
    """
    named = dict(model.named_modules())
    for name in (first, last):
        if name not in named:
            raise NnqError(f"model has no module {name!r} to treat as its first/last layer")
    for name, m in list(named.items()):
        if type(m) not in (nn.Conv2d, nn.Linear):
            continue
        edge = name in (first, last)
        if edge and edge_bits is None:
            continue
        bits = (edge_bits, edge_bits) if edge else (w_bits, a_bits)
        signed = name in signed_input or name == first
        cls = LsqConv2d if isinstance(m, nn.Conv2d) else LsqLinear
        q = cls.from_float(m, w_bits=bits[0], a_bits=bits[1], a_signed=signed, grad_scale=grad_scale, init=init)
        parent_name, _, child = name.rpartition(".")
        setattr(named[parent_name] if parent_name else model, child, q)
    return model


def step_sizes(model: nn.Module) -> dict[str, float]:
    """Every learned step size by name (``<layer>.w`` / ``<layer>.a``), for trajectories and reports."""
    out = {}
    for name, m in lsq_layers(model).items():
        for kind, q in (("w", m.w_quant), ("a", m.a_quant)):
            if q.bits is not None:
                out[f"{name}.{kind}"] = float(q.s.detach())
    return out
