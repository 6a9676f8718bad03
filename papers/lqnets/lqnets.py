"""LQ-Nets: learned quantizers with a bit-operation-compatible basis.

Zhang, Yang, Ye, Hua, "LQ-Nets: Learned Quantization for Highly Accurate and Compact Deep Neural Networks",
ECCV 2018 (arXiv 1807.10029, https://arxiv.org/abs/1807.10029); official TensorFlow code:
https://github.com/Microsoft/LQ-Nets.

A K-bit LQ quantizer is a basis v in R^K. Its 2^K levels are v^T e for every code e in {-1, +1}^K (weights)
or {0, 1}^K (activations after a ReLU), so a quantized value is a K-bit word and the inner product of two
quantized vectors reduces to K_w * K_a bit-plane products (``bitwise.py``). Each value is mapped to its nearest
level; the basis is learned by Quantization Error Minimisation (QEM, Alg. 1): alternate the B-step (every value
takes its nearest level, i.e. its code) and the v-step (least squares v = (B B^T)^-1 B x), once per training
batch, the basis kept as a moving average. Weights have one basis per output channel, activations one per
layer. Gradients pass straight through the quantizer (for activations, only below the top level).

Implements: the quantizer function Eq. (1)-(2) (levels v^T e, nearest-level encoding), QEM Alg. 1 (B-step,
v-step, moving average), per-channel weight and per-layer activation bases, the straight-through gradients,
the quantized Conv2d/Linear layers and the model conversion (first and last layer float, as the paper), and
the ablation of Sec. 4.1: a uniform quantizer of the same bits (basis constrained to alpha * [1, 2, ..., 2^(K-1)],
alpha fitted by the same QEM). Not implemented here: the bitwise inference lives in ``bitwise.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import from_float_layer

MOMENTUM = 0.9
"""Moving-average factor of the basis (the official code's MOVING_AVERAGES_FACTOR): v <- 0.9 v + 0.1 v_QEM."""
EPS = 1e-4
"""Ridge term of the v-step (the official code's EPS): (B B^T + eps I) v = B x + eps v_old."""


def level_codes(k: int, signed: bool, *, dtype: torch.dtype = torch.float32,
                device: torch.device | None = None) -> torch.Tensor:
    """Every K-bit code e as a row: [2^K, K]; row l holds the bits of l (bit i = (l >> i) & 1).

    Weights (``signed``): bit 0 -> -1, bit 1 -> +1, e in {-1, 1}^K. Activations: e in {0, 1}^K (Sec. 3.1).
    """
    if k < 1:
        raise NnqError(f"an LQ quantizer needs at least 1 bit, got {k}")
    ell = torch.arange(2 ** k, device=device)
    bits = (ell[:, None] >> torch.arange(k, device=device)) & 1  # [2^K, K]
    return (2 * bits - 1 if signed else bits).to(dtype)


def code_bits(code: torch.Tensor, k: int) -> torch.Tensor:
    """Code indices l -> their K bits {0, 1} (uint8): [...] -> [..., K]; bit i is bit-plane i."""
    return ((code[..., None] >> torch.arange(k, device=code.device)) & 1).to(torch.uint8)


def sorted_levels(basis: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2^K levels of each basis, ascending, and the code index of each sorted level.

    Args:
        basis: v, [C, K] (one basis per channel; C = 1 for a per-layer quantizer).
        codes: e, [2^K, K] from :func:`level_codes`.

    Returns:
        levels [C, 2^K] ascending, and order [C, 2^K]: levels[c, i] = v_c^T e_{order[c, i]}.
    """
    # Eq. (2): q_l = v^T e_l for every code e_l; [C, K] x [K, 2^K] -> [C, 2^K]
    levels = basis @ codes.T.to(basis.dtype)
    return torch.sort(levels, dim=1)


def encode(x: torch.Tensor, basis: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-level quantization, Eq. (1) (the B-step of Alg. 1).

    Args:
        x: [C, N], the values of each channel.
        basis: [C, K]; codes: [2^K, K].

    Returns:
        x_hat [C, N] (each value replaced by its nearest level) and code [C, N] (the index l of its code e_l).
        A value exactly between two levels takes the lower one.
    """
    levels, order = sorted_levels(basis, codes)
    thresholds = (levels[:, 1:] + levels[:, :-1]) / 2  # [C, 2^K - 1], midpoints between adjacent levels
    pos = torch.searchsorted(thresholds.contiguous(), x.contiguous().to(levels.dtype))  # [C, N] in [0, 2^K)
    return levels.gather(1, pos).to(x.dtype), order.gather(1, pos)


def code_statistics(x: torch.Tensor, code: torch.Tensor, n_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How many values took each code and their sum: counts, sums [C, 2^K] (float64).

    These are all the v-step needs: B B^T = sum_l n_l e_l e_l^T and B x = sum_l s_l e_l.
    """
    c = x.shape[0]
    counts = torch.zeros(c, n_codes, dtype=torch.float64, device=x.device)
    sums = torch.zeros(c, n_codes, dtype=torch.float64, device=x.device)
    counts.scatter_add_(1, code, torch.ones_like(x, dtype=torch.float64))
    sums.scatter_add_(1, code, x.to(torch.float64))
    return counts, sums


def solve_basis(counts: torch.Tensor, sums: torch.Tensor, codes: torch.Tensor, basis_old: torch.Tensor,
                eps: float = EPS, uniform: bool = False) -> torch.Tensor:
    """The v-step of Alg. 1: v = (B B^T + eps I)^-1 (B x + eps v_old), per channel.

    ``eps`` = 0 is the paper's plain least squares (Eq. (4)); the ridge (the official code's) keeps the solve
    defined when a bit-plane is constant (an unused level) and pulls v towards v_old only there. With
    ``uniform`` the basis is constrained to alpha * p, p = [1, 2, ..., 2^(K-1)] (evenly spaced levels) and alpha
    solves the same problem.

    Args:
        counts, sums: [C, 2^K] from :func:`code_statistics`.
        codes: [2^K, K]; basis_old: [C, K].

    Returns:
        the new basis [C, K] in basis_old's dtype.
    """
    e = codes.to(torch.float64)
    k = e.shape[1]
    # B B^T = sum_l n_l e_l e_l^T: [C, K, K];  B x = sum_l s_l e_l: [C, K]
    btb = torch.einsum("cl,li,lj->cij", counts, e, e)
    btx = sums @ e
    v_old = basis_old.to(torch.float64)
    if uniform:
        p = 2.0 ** torch.arange(k, dtype=torch.float64, device=e.device)  # v = alpha * p
        alpha_old = (v_old @ p) / (p @ p)
        alpha = (btx @ p + eps * (v_old @ p)) / (torch.einsum("i,cij,j->c", p, btb, p) + eps * (p @ p))
        alpha = torch.where(torch.isfinite(alpha), alpha, alpha_old)
        return (alpha[:, None] * p).to(basis_old.dtype)
    eye = torch.eye(k, dtype=torch.float64, device=e.device)
    # Eq. (4): v* = (B B^T)^-1 B x, with the ridge eps
    return torch.linalg.solve(btb + eps * eye, btx + eps * v_old).to(basis_old.dtype)


def quantization_error(x: torch.Tensor, basis: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """||x - Q(x)||^2 per channel, Eq. (3) (the objective QEM minimises): [C, N] -> [C] (float64)."""
    x_hat, _ = encode(x, basis, codes)
    return (x.double() - x_hat.double()).pow(2).sum(1)


@torch.no_grad()
def qem(x: torch.Tensor, basis: torch.Tensor, codes: torch.Tensor, iters: int, *, eps: float = EPS,
        uniform: bool = False, momentum: float = 0.0, track: bool = True) -> tuple[torch.Tensor, list[float]]:
    """Quantization Error Minimisation, Alg. 1, on a fixed tensor.

    Args:
        x: [C, N]; basis: initial v, [C, K]; codes: [2^K, K].
        iters: T, the alternations of B-step and v-step.
        momentum: 0 (the plain algorithm) or the moving average of training (v <- m v + (1 - m) v_new).
        track: also return the error after every iteration (one more B-step each).

    Returns:
        the final basis and (with ``track``) the total quantization error before each iteration and after the last.
    """
    errors = [float(quantization_error(x, basis, codes).sum())] if track else []
    for _ in range(iters):
        _, code = encode(x, basis, codes)  # Alg. 1 l.3: B-step
        counts, sums = code_statistics(x, code, codes.shape[0])
        new = solve_basis(counts, sums, codes, basis, eps, uniform)  # Alg. 1 l.4: v-step
        basis = momentum * basis + (1 - momentum) * new
        if track:
            errors.append(float(quantization_error(x, basis, codes).sum()))
    return basis, errors


def subsample(x: torch.Tensor, max_values: int = 1 << 18) -> torch.Tensor:
    """At most ``max_values`` values per channel, evenly strided: [C, N] -> [C, <= max_values]."""
    return x[:, :: -(-x.shape[1] // max_values)] if x.shape[1] > max_values else x


def init_basis(x: torch.Tensor, k: int, signed: bool) -> torch.Tensor:
    """A starting basis v_i = 2^i * s (evenly spaced levels), s from the data: [C, N] -> [C, K].

    DEVIATION: the official code starts from a fixed basis for He-initialised weights and unit activations
    (it trains from scratch); we fine-tune from trained weights, so s is set from the data (top level at
    3 <|x|> for activations, at 2 <|x|> per channel for weights) and QEM refines it (see LqQuantizer).
    """
    mean_abs = x.detach().abs().double().mean(1).clamp_min(1e-8)  # [C]
    top = (2.0 if signed else 3.0) * mean_abs
    s = top / (2 ** k - 1)  # the top level sum_i 2^i s = (2^K - 1) s
    return (s[:, None] * 2.0 ** torch.arange(k, dtype=torch.float64, device=x.device)).to(x.dtype)


class LqQuantizer(nn.Module):
    """A K-bit LQ quantizer with one basis per channel (Sec. 3.1-3.2); ``bits=None`` is the identity.

    Args:
        bits: K; None keeps the data float.
        signed: codes in {-1, 1}^K (weights) or {0, 1}^K (activations after ReLU).
        channels: bases held: the output channels for a weight quantizer (axis 0), 1 for an activation one.
        momentum: moving-average factor of the basis (the official code: 0.9).
        eps: ridge of the v-step (the official code: 1e-4).
        uniform: constrain the levels to be evenly spaced (the uniform-quantizer ablation).
        init_iters: QEM iterations (no moving average) run on the first data seen, from :func:`init_basis`.

    In training mode ``forward`` also records the B-step's statistics (how many values took each code and their
    sum); :meth:`update_basis_` (run by ``QemCallback`` after each optimizer step) turns them into the v-step
    and the moving average. The basis is a buffer: it is learned by QEM, not by the optimizer.
    """

    def __init__(self, bits: int | None, *, signed: bool, channels: int = 1, momentum: float = MOMENTUM,
                 eps: float = EPS, uniform: bool = False, init_iters: int = 10):
        super().__init__()
        if bits is not None and not 1 <= bits <= 8:
            raise NnqError(f"LQ quantizers take 1 to 8 bits, got {bits}")
        if not 0 <= momentum < 1:
            raise NnqError(f"the basis momentum must be in [0, 1), got {momentum}")
        self.bits, self.signed, self.channels = bits, signed, channels
        self.momentum, self.eps, self.uniform, self.init_iters = momentum, eps, uniform, init_iters
        k = bits or 1
        self.register_buffer("basis", torch.zeros(channels, k))
        self.register_buffer("codes", level_codes(k, signed), persistent=False)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        # weights: [C_out, ...] -> [C_out, N]; activations: [B, ...] -> [1, B * ...]
        return x.reshape(self.channels, -1)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Sets the basis from data ``x``: :func:`init_basis`, then ``init_iters`` QEM iterations."""
        flat = subsample(self._flat(x.detach()))  # a large activation batch: every k-th value is enough here
        basis = init_basis(flat, self.bits, self.signed)
        basis, _ = qem(flat, basis, self.codes, self.init_iters, eps=self.eps, uniform=self.uniform, track=False)
        self.basis.copy_(basis)
        self.initialized.fill_(True)

    def levels(self) -> torch.Tensor:
        """The 2^K levels of each channel, ascending: [C, 2^K]."""
        return sorted_levels(self.basis, self.codes)[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (x_hat, code index) in x's shape (Eq. (1))."""
        if not bool(self.initialized):
            raise NnqError("an LQ quantizer was used before its basis was set; run one training batch first "
                           "or load a trained model")
        x_hat, code = encode(self._flat(x.detach()), self.basis, self.codes)
        return x_hat.reshape(x.shape), code.reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return x
        if not bool(self.initialized):
            if not self.training:
                raise NnqError("an LQ quantizer was used before its basis was set; run one training batch "
                               "first or load a trained model")
            self.initialize(x)
        x_hat, code = self.encode(x)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():  # the B-step of this batch, for the v-step after the optimizer step
                stats = code_statistics(self._flat(x.detach()), self._flat(code), self.codes.shape[0])
                self._stats = stats if self._stats is None else (self._stats[0] + stats[0], self._stats[1] + stats[1])
        if self.signed:
            # straight-through: forward x_hat exactly, gradient 1 (the official code's y = x + sg(q - x))
            return x_hat + (x - x.detach())
        # activations: gradient 1 below the top level, 0 above it (the official code's clipped STE)
        top = self.levels().max()
        x_clip = torch.minimum(x, top)
        return x_hat + (x_clip - x_clip.detach())

    @torch.no_grad()
    def update_basis_(self) -> bool:
        """The v-step of Alg. 1 from the batches seen since the last call, and the moving average (Sec. 3.2).

        Returns whether the basis changed (False when no training batch was seen).
        """
        if self.bits is None or self._stats is None:
            return False
        counts, sums = self._stats
        self._stats = None
        new = solve_basis(counts, sums, self.codes, self.basis, self.eps, self.uniform)
        self.basis.mul_(self.momentum).add_((1 - self.momentum) * new)
        return True

    def extra_repr(self) -> str:
        if self.bits is None:
            return "float"
        kind = "uniform" if self.uniform else "learned"
        return f"bits={self.bits}, codes={'{-1,1}' if self.signed else '{0,1}'}, channels={self.channels}, {kind}"


class _LqLayer:
    """Shared part of the quantized layers: a weight quantizer (per output channel) and an input one."""

    weight_bits: int | None
    act_bits: int | None

    def _setup(self, out_channels: int, w_bits: int | None, a_bits: int | None, uniform: bool,
               momentum: float) -> None:
        self.weight_bits, self.act_bits = w_bits, a_bits
        self.w_quant = LqQuantizer(w_bits, signed=True, channels=out_channels, uniform=uniform, momentum=momentum)
        self.a_quant = LqQuantizer(a_bits, signed=False, channels=1, uniform=uniform, momentum=momentum)

    def quantized_weight(self) -> torch.Tensor:
        return self.w_quant(self.weight)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.a_quant(x)


class LqConv2d(_LqLayer, nn.Conv2d):
    """``nn.Conv2d`` on LQ-quantized weights and LQ-quantized (non-negative) inputs."""

    def __init__(self, *args, w_bits: int | None = 2, a_bits: int | None = 2, uniform: bool = False,
                 momentum: float = MOMENTUM, **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._setup(self.out_channels, w_bits, a_bits, uniform, momentum)

    @classmethod
    def from_float(cls, m: nn.Conv2d, **kw) -> "LqConv2d":
        """A quantized copy of ``m`` (same weights and state-dict keys, plus the bases)."""
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)


class LqLinear(_LqLayer, nn.Linear):
    """``nn.Linear`` on LQ-quantized weights and LQ-quantized (non-negative) inputs."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int | None = 2,
                 a_bits: int | None = 2, uniform: bool = False, momentum: float = MOMENTUM):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._setup(out_features, w_bits, a_bits, uniform, momentum)

    @classmethod
    def from_float(cls, m: nn.Linear, **kw) -> "LqLinear":
        return from_float_layer(cls, m, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)


def lq_layers(model: nn.Module) -> dict[str, _LqLayer]:
    """The quantized layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _LqLayer)}


def lq_quantizers(model: nn.Module) -> dict[str, LqQuantizer]:
    """Every LQ quantizer with bits of ``model`` by module name (``<layer>.w_quant`` / ``<layer>.a_quant``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LqQuantizer) and m.bits is not None}


@torch.no_grad()
def update_bases_(model: nn.Module) -> int:
    """Runs :meth:`LqQuantizer.update_basis_` on every quantizer of ``model``; returns how many changed."""
    return sum(q.update_basis_() for q in lq_quantizers(model).values())


def quantize_model_(model: nn.Module, w_bits: int, a_bits: int | None, *, keep_float: tuple[str, ...],
                    uniform: bool = False, momentum: float = MOMENTUM) -> nn.Module:
    """Replaces every ``Conv2d``/``Linear`` of ``model`` but ``keep_float`` (in place) by its LQ layer.

    Args:
        w_bits: K_w of every quantized layer's weights.
        a_bits: K_a of their inputs (all outputs of a ReLU); None keeps activations float (weight-only).
        keep_float: module names left float: the first and last layer (Sec. 4: not quantized, as the paper).
        uniform: the uniform-quantizer ablation (evenly spaced levels, same bits, same QEM).
        momentum: moving-average factor of the bases.
    """
    named = dict(model.named_modules())
    for name in keep_float:
        if name not in named:
            raise NnqError(f"model has no module {name!r} to keep float")
    for name, m in list(named.items()):
        if type(m) not in (nn.Conv2d, nn.Linear) or name in keep_float:
            continue
        cls = LqConv2d if isinstance(m, nn.Conv2d) else LqLinear
        q = cls.from_float(m, w_bits=w_bits, a_bits=a_bits, uniform=uniform, momentum=momentum)
        parent_name, _, child = name.rpartition(".")
        setattr(named[parent_name] if parent_name else model, child, q)
    return model
