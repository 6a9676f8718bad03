"""PTQ4ViT: post-training quantization for vision transformers with twin uniform quantization.

Yuan, Xue, Chen, Wu, Sun, "PTQ4ViT: Post-Training Quantization for Vision Transformers with Twin Uniform
Quantization", ECCV 2022 (arXiv 2111.12293). Official code: github.com/hahnyuan/PTQ4ViT.

Idea: two kinds of activations in a transformer are badly served by one uniform grid. Post-softmax values are
mostly tiny with a few large ones that matter; post-GELU values are a short negative tail (down to about -0.17)
and a long positive range. *Twin uniform quantization* gives each kind two uniform ranges, R1 and R2, each with
its own step, the two steps related by a power of two (Delta_R2 = 2^m Delta_R1) so that hardware aligns them
with a shift: post-softmax values get a fine R1 for small values and a coarse R2 = [0, 1]; post-GELU values get
one range for the negative and one for the positive side. The scaling factors of every layer are found by a
grid search whose metric is *Hessian guided*: the output change weighted by the squared gradient of the task
loss (a diagonal approximation of the output Hessian), instead of base PTQ's cosine distance or MSE; the weight
and activation steps are searched alternately, on 32 calibration images, every layer from the float model's
own inputs (parallel quantization).

Implements: the k-bit uniform quantizer (signed, symmetric), the twin uniform quantizers for post-softmax and
post-GELU values (with the 2^m relation), the three metrics (cosine, MSE, Hessian guided), the alternating
search of (Delta_W, Delta_X) of a linear layer and of (Delta_A, Delta_B) of a matrix multiplication (head-wise
steps, as the official code), quantized Linear / Conv2d / MatMul layers, the calibration capture (inputs and
output gradients of every layer in one forward and backward pass) and the search of a whole model.
Not implemented: the paper's integer kernels (our layers compute in float with quantized values; the packed
integer storage is in :mod:`papers.ptq4vit.artifact`), Swin's window attention.

Equation numbers of the paper are not yet checked against its text: the comments name the method's parts
(twin uniform / Hessian guided metric / search) and cite the official README where a setting comes from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError

METRICS = ("hessian", "cosine", "mse")
ACT_KINDS = ("uniform", "twin_gelu", "twin_softmax", "none")


def _gelu_min() -> float:
    """min_x GELU(x) = x Phi(x) (about -0.16997, at x about -0.7518), from a fine grid."""
    x = torch.linspace(-1.0, -0.5, 200001, dtype=torch.float64)
    return float(F.gelu(x).min())


GELU_MIN = _gelu_min()


def q_levels(bits: int) -> int:
    """L = 2^(k-1) - 1: the largest code of a (k-1)-bit unsigned range (each twin range), and of a k-bit signed one."""
    return 2 ** (bits - 1) - 1


# ------------------------------------------------------------------------------ quantizers


def quantize_uniform(x: torch.Tensor, delta: torch.Tensor, bits: int) -> torch.Tensor:
    """Psi_k(x, Delta) = clamp(round(x / Delta), -2^(k-1), 2^(k-1) - 1) Delta: the k-bit signed uniform quantizer.

    ``delta`` broadcasts against ``x`` (a scalar, one step per head or per output group).
    """
    return torch.clamp(torch.round(x / delta), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * delta


def uniform_codes(x: torch.Tensor, delta: torch.Tensor, bits: int) -> torch.Tensor:
    """The integer codes of :func:`quantize_uniform` (int8 for bits <= 8)."""
    return torch.clamp(torch.round(x / delta), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).to(torch.int8)


def softmax_delta_r2(bits: int) -> float:
    """Twin uniform, post-softmax: R2 = [0, 1] with L + 1 levels, Delta_R2 = 1 / L, so that 1 is a level.

    DEVIATION: the paper writes Delta_R2 = 1 / 2^(k-1) (1 itself then rounds to 1 - 2^(1-k)); the official code
    uses 1 / (2^(k-1) - 1), which represents the range end 1 exactly. We follow the code.
    """
    return 1.0 / q_levels(bits)


def twin_softmax(x: torch.Tensor, m: int, bits: int) -> torch.Tensor:
    """Twin uniform quantizer of post-softmax values x in [0, 1] (k bits: one range flag + k-1 bits).

    R1 = [0, L Delta_R1] with Delta_R1 = Delta_R2 / 2^m (small values, finely); R2 = [0, 1] with Delta_R2 = 1 / L.
    T(x) = Psi_{k-1}(x, Delta_R1) if x <= L Delta_R1 else Psi_{k-1}(x, Delta_R2)  (twin uniform, post-softmax).
    """
    d2 = softmax_delta_r2(bits)
    d1 = d2 / 2 ** int(m)  # Delta_R2 = 2^m Delta_R1: the two ranges align by an m-bit shift
    big_l = q_levels(bits)
    r1 = torch.clamp(torch.round(x / d1), 0, big_l) * d1
    r2 = torch.clamp(torch.round(x / d2), 0, big_l) * d2
    return torch.where(x <= big_l * d1, r1, r2)


def gelu_m(delta_r2: torch.Tensor | float, bits: int) -> int:
    """The shift m of the post-GELU twin quantizer: the largest m >= 0 with L Delta_R2 / 2^m >= |min GELU|.

    R1 (the negative side) then has the finest power-of-two step Delta_R1 = Delta_R2 / 2^m that still reaches the
    most negative GELU output. DEVIATION: the official code fixes Delta_R1 = 0.16997 / 2^(k-1) with no tie to
    Delta_R2; we keep the paper's 2^m relation, so Delta_R1 is within a factor 2 of that value.
    """
    d2 = float(delta_r2)
    ratio = q_levels(bits) * d2 / abs(GELU_MIN)
    return max(0, int(math.floor(math.log2(ratio)))) if ratio > 0 else 0


def twin_gelu(x: torch.Tensor, delta_r2: torch.Tensor | float, bits: int, m: int | None = None) -> torch.Tensor:
    """Twin uniform quantizer of post-GELU values (k bits: a sign flag + k-1 bits of magnitude).

    R1 = [-L Delta_R1, 0] for the negative values, R2 = [0, L Delta_R2] for the positive ones, Delta_R2 = 2^m
    Delta_R1 (twin uniform, post-GELU). ``m`` defaults to :func:`gelu_m` of ``delta_r2``.
    """
    m = gelu_m(delta_r2, bits) if m is None else int(m)
    d1 = delta_r2 / 2**m
    big_l = q_levels(bits)
    neg = torch.clamp(torch.round(x / d1), -big_l, 0) * d1
    pos = torch.clamp(torch.round(x / delta_r2), 0, big_l) * delta_r2
    return torch.where(x < 0, neg, pos)


def twin_softmax_levels(m: int, bits: int) -> torch.Tensor:
    """Every value the post-softmax twin quantizer can output (sorted, unique): at most 2^k of them."""
    d2 = softmax_delta_r2(bits)
    codes = torch.arange(q_levels(bits) + 1, dtype=torch.float64)
    return torch.unique(torch.cat([codes * d2 / 2**m, codes * d2])).float()


def twin_gelu_levels(delta_r2: float, bits: int, m: int | None = None) -> torch.Tensor:
    """Every value the post-GELU twin quantizer can output (sorted, unique)."""
    m = gelu_m(delta_r2, bits) if m is None else m
    codes = torch.arange(q_levels(bits) + 1, dtype=torch.float64)
    return torch.unique(torch.cat([-codes * delta_r2 / 2**m, codes * delta_r2])).float()


def quantize_act(x: torch.Tensor, kind: str, delta: torch.Tensor, bits: int | None) -> torch.Tensor:
    """An activation quantizer by kind: uniform (``delta`` = Delta, broadcast), twin_gelu (``delta`` = [Delta_R2, m]),
    twin_softmax (``delta`` = [m]); ``bits=None`` or kind ``none``: identity."""
    if bits is None or kind == "none":
        return x
    if kind == "uniform":
        return quantize_uniform(x, delta, bits)
    if kind == "twin_gelu":
        return twin_gelu(x, delta[0], bits, int(delta[1]))
    if kind == "twin_softmax":
        return twin_softmax(x, int(delta[0]), bits)
    raise NnqError(f"activation quantizer kind must be one of {', '.join(ACT_KINDS)}, got {kind!r}")


# ------------------------------------------------------------------------------ metrics


def distance(o: torch.Tensor, o_hat: torch.Tensor, g: torch.Tensor | None, metric: str) -> tuple[torch.Tensor, int]:
    """Sum of the metric's distance per group, and the number of terms, on canonical tensors [R, G, F].

    R: rows (tokens), G: groups that own a step each (heads, output groups), F: features.

    - hessian: sum (dL/dO)^2 (O_hat - O)^2: the Hessian-guided distance, (O_hat - O)^T diag((dL/dO)^2) (O_hat - O),
      the diagonal approximation of the second-order term of the task loss at the layer output (the official
      code's ``brecq`` similarity).
    - mse: sum (O_hat - O)^2 (base PTQ's alternative).
    - cosine: sum over rows of 1 - cos(O_r, O_hat_r) along F (base PTQ's metric).

    Returns:
        (sums [G], count): distance per group = sums / count.
    """
    if metric == "hessian":
        if g is None:
            raise NnqError("the Hessian-guided metric needs the output gradients; capture them with need_grad=True")
        return (g * (o_hat - o)).pow(2).sum((0, 2)), o.shape[0] * o.shape[2]
    if metric == "mse":
        return (o_hat - o).pow(2).sum((0, 2)), o.shape[0] * o.shape[2]
    if metric == "cosine":
        return (1 - F.cosine_similarity(o, o_hat, dim=-1)).sum(0), o.shape[0]
    raise NnqError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


@dataclass
class SearchSettings:
    """The search space and metric of one method (official configs: BasePTQ.py and PTQ4ViT.py).

    Attributes:
        metric: hessian (PTQ4ViT), cosine (base PTQ) or mse.
        alpha, beta, n: candidates Delta = (alpha + i (beta - alpha) / n) Delta_0, i = 0..n, Delta_0 the min-max step.
        rounds: rounds of the alternating search (weight step, then activation step).
        twin_softmax, twin_gelu: use the twin uniform quantizers for post-softmax / post-GELU values.
        max_m: largest shift m of the post-softmax search (m = 0..max_m; the official code: 0..19).
    """

    metric: str = "hessian"
    alpha: float = 0.01
    beta: float = 1.2
    n: int = 100
    rounds: int = 3
    twin_softmax: bool = True
    twin_gelu: bool = True
    max_m: int = 15

    def factors(self) -> list[float]:
        return [self.alpha + i * (self.beta - self.alpha) / self.n for i in range(self.n + 1)]


# Official README ("Base PTQ"): alpha = 0.5, beta = 1.2, one round, cosine; PTQ4ViT: alpha ~ 0, beta = 1.2, 3 rounds.
BASE_PTQ = SearchSettings(metric="cosine", alpha=0.5, beta=1.2, n=100, rounds=1, twin_softmax=False, twin_gelu=False)
PTQ4VIT = SearchSettings(metric="hessian", alpha=0.01, beta=1.2, n=100, rounds=3, twin_softmax=True, twin_gelu=True)


def _minmax_step(x: torch.Tensor, bits: int, dims=None) -> torch.Tensor:
    """Delta_0 = max|x| / (2^(k-1) - 0.5): the min-max start of the search (as the official code)."""
    a = x.abs().amax() if dims is None else x.abs().amax(dims)
    return (a / (2 ** (bits - 1) - 0.5)).clamp_min(1e-8)


# ------------------------------------------------------------------------------ search: a linear layer


@dataclass
class LinearData:
    """What the search of one linear layer sees: its float input X [N, c_in], and dL/dO [N, c_out] (or None)."""

    x: torch.Tensor
    grad: torch.Tensor | None = None
    out: torch.Tensor | None = None
    """The float output (filled once by the search)."""


def _linear_canon(o: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, c_out] -> [N, G, c_out / G]."""
    return o.reshape(o.shape[0], groups, -1)


def linear_distance(weight, bias, data: LinearData, w_hat, x_hat, metric: str, groups: int = 1) -> torch.Tensor:
    """Distance per output group [G] of F.linear(x_hat, w_hat) to the float layer's output."""
    o = F.linear(data.x, weight, bias) if data.out is None else data.out
    o_hat = F.linear(x_hat, w_hat, bias)
    g = None if data.grad is None else _linear_canon(data.grad, groups)
    s, c = distance(_linear_canon(o, groups), _linear_canon(o_hat, groups), g, metric)
    return s / c


def _act_candidates(x: torch.Tensor, kind: str, bits: int, st: SearchSettings) -> list[torch.Tensor]:
    """Candidate activation 'deltas' for :func:`quantize_act`, the first one being the min-max start."""
    if kind == "uniform":
        d0 = _minmax_step(x, bits)
        return [d0.reshape(1)] + [d0.reshape(1) * f for f in st.factors()]
    if kind == "twin_gelu":  # Delta_R2 on the grid from max(x) (the positive range), m from Delta_R2
        d0 = (x.amax().clamp_min(1e-8) / (q_levels(bits) + 0.5)).reshape(1)
        out = []
        for f in [None, *st.factors()]:
            d2 = d0 if f is None else d0 * f
            out.append(torch.stack([d2[0], torch.tensor(float(gelu_m(d2, bits)), dtype=d2.dtype)]))
        return out
    raise NnqError(f"no search for activation kind {kind!r} at a linear layer")


@torch.no_grad()
def search_linear(weight: torch.Tensor, bias: torch.Tensor | None, data: LinearData, w_bits: int,
                  a_bits: int | None, act_kind: str, st: SearchSettings, groups: int = 1) -> dict:
    """Alternating search of the weight steps (one per output group) and the input quantizer of a linear layer.

    Round r: Delta_W* = argmin over the grid of D(W_hat(Delta_W), X_hat(Delta_X)) per output group, then
    Delta_X* = argmin of the summed distance with W_hat(Delta_W*). Each grid starts with the current value, so
    the distance never rises above that of the min-max start.

    Args:
        weight: [c_out, c_in]; bias: [c_out] or None.
        data: the float input X [N, c_in] and, for the Hessian metric, dL/dO [N, c_out].
        act_kind: uniform or twin_gelu (the input of the MLP's second layer), or none (weight-only).
        groups: output groups with a weight step each (3 for a fused qkv layer, as the official code).

    Returns:
        {"w_delta": [G], "a_delta": quantize_act's delta (or None), "start": distance at the start,
         "error": final distance, "curve": per step the best distance}.
    """
    w = weight.float()
    c_out = w.shape[0]
    if c_out % groups:
        raise NnqError(f"{groups} weight groups do not divide the {c_out} outputs")
    data = LinearData(data.x.float(), data.grad, F.linear(data.x.float(), w, bias))
    wg = w.reshape(groups, -1)
    d_w0 = _minmax_step(wg, w_bits, dims=1)  # [G]
    expand = lambda d: d.repeat_interleave(c_out // groups).unsqueeze(1)  # [G] -> [c_out, 1]
    w_hat = lambda d: quantize_uniform(w, expand(d), w_bits)
    quant_x = a_bits is not None and act_kind != "none"
    a_cands = _act_candidates(data.x, act_kind, a_bits, st) if quant_x else [None]
    a_delta = a_cands[0]
    x_hat = lambda a: quantize_act(data.x, act_kind, a, a_bits) if a is not None else data.x
    d_w = d_w0.clone()
    start = linear_distance(w, bias, data, w_hat(d_w), x_hat(a_delta), st.metric, groups)
    best_g = start.clone()
    curve = [float(start.sum())]
    w_factors = st.factors()
    for _ in range(st.rounds):
        xq = x_hat(a_delta)
        for f in w_factors:  # per output group: the groups' distances are independent
            cand = d_w0 * f
            dist = linear_distance(w, bias, data, w_hat(cand), xq, st.metric, groups)
            better = dist < best_g
            best_g = torch.where(better, dist, best_g)
            d_w = torch.where(better, cand, d_w)
        curve.append(float(best_g.sum()))
        if quant_x:
            wq = w_hat(d_w)
            best = float(best_g.sum())
            for a in a_cands[1:]:
                dist = linear_distance(w, bias, data, wq, x_hat(a), st.metric, groups)
                if float(dist.sum()) < best:
                    best, best_g, a_delta = float(dist.sum()), dist, a
            curve.append(best)
    return {"w_delta": d_w, "a_delta": a_delta, "start": float(start.sum()), "error": float(best_g.sum()),
            "curve": curve}


# ------------------------------------------------------------------------------ search: a matrix multiplication


@dataclass
class MatMulData:
    """The float inputs of one matmul A @ B over the calibration set, in chunks (sentences of different lengths).

    a: list of [b, h, t, d] (Q) or [b, h, t, t'] (attention probabilities); b: list of [b, h, d, t'] (K^T) or
    [b, h, t', d] (V); grad: list of dL/dO [b, h, t, *] (or None).
    """

    a: list[torch.Tensor]
    b: list[torch.Tensor]
    grad: list[torch.Tensor] | None = None
    out: list[torch.Tensor] | None = None
    """The float outputs A @ B (filled once by the search)."""


def _mm_canon(o: torch.Tensor) -> torch.Tensor:
    """[b, h, t, f] -> [b t, h, f]: heads are the groups."""
    return o.permute(0, 2, 1, 3).reshape(-1, o.shape[1], o.shape[3])


def matmul_distance(data: MatMulData, qa: Callable, qb: Callable, metric: str) -> torch.Tensor:
    """Distance per head [h] of qa(A) @ qb(B) to A @ B, over every chunk."""
    total, count = 0.0, 0
    for i, (a, b) in enumerate(zip(data.a, data.b)):
        g = None if data.grad is None else _mm_canon(data.grad[i])
        o = a @ b if data.out is None else data.out[i]
        s, c = distance(_mm_canon(o), _mm_canon(qa(a) @ qb(b)), g, metric)
        total, count = total + s, count + c
    return total / count


def _head_view(d: torch.Tensor) -> torch.Tensor:
    return d.reshape(1, -1, 1, 1)


@torch.no_grad()
def search_matmul(data: MatMulData, bits: int, a_kind: str, st: SearchSettings) -> dict:
    """Alternating search of the steps of A and B of one matmul (head-wise, as the official code).

    A is Q (uniform) or the attention probabilities (twin_softmax: a search over the shift m = 0..max_m, one
    for all heads; uniform otherwise); B (K^T or V) is uniform. Each grid starts with the current value.

    Returns:
        {"a_delta": [h] or [1] (m), "b_delta": [h], "start", "error", "curve"} (distances summed over heads).
    """
    heads = data.a[0].shape[1]
    data = MatMulData(data.a, data.b, data.grad, [a @ b for a, b in zip(data.a, data.b)])
    amax = lambda xs: torch.stack([x.abs().amax((0, 2, 3)) for x in xs]).amax(0)  # [h]
    d_b0 = (amax(data.b) / (2 ** (bits - 1) - 0.5)).clamp_min(1e-8)
    d_b = d_b0.clone()
    qb = lambda d: (lambda t: quantize_uniform(t, _head_view(d), bits))
    if a_kind == "twin_softmax":
        a_cands = [torch.tensor([float(m)]) for m in range(st.max_m + 1)]
        d_a = a_cands[0]
        qa = lambda d: (lambda t: twin_softmax(t, int(d[0]), bits))
    elif a_kind == "uniform":
        d_a0 = (amax(data.a) / (2 ** (bits - 1) - 0.5)).clamp_min(1e-8)
        a_cands = [d_a0 * f for f in st.factors()]
        d_a = d_a0.clone()
        qa = lambda d: (lambda t: quantize_uniform(t, _head_view(d), bits))
    else:
        raise NnqError(f"matmul input A must be quantized uniform or twin_softmax, got {a_kind!r}")
    best_h = matmul_distance(data, qa(d_a), qb(d_b), st.metric)
    start = float(best_h.sum())
    curve = [start]
    for _ in range(st.rounds):
        if a_kind == "twin_softmax":  # one m for the whole tensor (heads share it)
            best = float(best_h.sum())
            for cand in a_cands:
                dist = matmul_distance(data, qa(cand), qb(d_b), st.metric)
                if float(dist.sum()) < best:
                    best, best_h, d_a = float(dist.sum()), dist, cand
        else:
            for cand in a_cands:  # head-wise: each head keeps its best
                dist = matmul_distance(data, qa(cand), qb(d_b), st.metric)
                better = dist < best_h
                best_h = torch.where(better, dist, best_h)
                d_a = torch.where(better, cand, d_a)
        curve.append(float(best_h.sum()))
        for f in st.factors():
            cand = d_b0 * f
            dist = matmul_distance(data, qa(d_a), qb(cand), st.metric)
            better = dist < best_h
            best_h = torch.where(better, dist, best_h)
            d_b = torch.where(better, cand, d_b)
        curve.append(float(best_h.sum()))
    assert heads == d_b.numel()
    return {"a_delta": d_a, "b_delta": d_b, "start": start, "error": float(best_h.sum()), "curve": curve}


@torch.no_grad()
def search_conv_weight(conv: nn.Conv2d, x: torch.Tensor, bits: int, st: SearchSettings,
                       grad: torch.Tensor | None = None) -> dict:
    """Per-output-channel weight steps of the patch-embedding convolution (input kept float, as the official
    code's ``qconv`` with a_bit = 32); each channel's distance is independent, so one grid serves all channels."""
    w = conv.weight.float()
    d0 = _minmax_step(w.reshape(w.shape[0], -1), bits, dims=1)  # [c_out]
    view = lambda d: d.reshape(-1, 1, 1, 1)
    o = conv._conv_forward(x, w, conv.bias)  # [b, c, h, w]
    canon = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1], 1)  # [b h w, c, 1]: channels are groups
    g = None if grad is None else canon(grad)
    metric = "mse" if st.metric == "cosine" else st.metric  # cosine along a single feature is undefined

    def dist(d):
        s, c = distance(canon(o), canon(conv._conv_forward(x, quantize_uniform(w, view(d), bits), conv.bias)), g,
                        metric)
        return s / c

    d_best, best = d0.clone(), dist(d0)
    start = float(best.sum())
    for f in st.factors():
        cand = d0 * f
        e = dist(cand)
        better = e < best
        best, d_best = torch.where(better, e, best), torch.where(better, cand, d_best)
    return {"w_delta": d_best, "start": start, "error": float(best.sum())}


# ------------------------------------------------------------------------------ the quantized layers


class MatMul(nn.Module):
    """A @ B as a module, so that a model's attention matmuls can be found, hooked and quantized."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class PtqMatMul(MatMul):
    """A matmul with quantized inputs: qa(A) @ qb(B); steps head-wise (uniform) or the twin shift m (softmax)."""

    def __init__(self, bits: int, a_kind: str, a_delta: torch.Tensor, b_delta: torch.Tensor):
        super().__init__()
        self.bits, self.a_kind = bits, a_kind
        self.register_buffer("a_delta", a_delta.detach().float().clone())
        self.register_buffer("b_delta", b_delta.detach().float().clone())

    def quant_a(self, a: torch.Tensor) -> torch.Tensor:
        if self.a_kind == "twin_softmax":
            return twin_softmax(a, int(self.a_delta[0]), self.bits)
        return quantize_uniform(a, _head_view(self.a_delta), self.bits)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.quant_a(a) @ quantize_uniform(b, _head_view(self.b_delta), self.bits)


class PtqLinear(nn.Linear):
    """A linear layer with a k-bit weight (one step per output group) and a quantized input.

    ``weight`` holds the dequantized weight codes * Delta_W (same state-dict key as the float layer); ``codes``
    the integer codes; the input quantizer is uniform (Delta_X) or twin_gelu ([Delta_R2, m]).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, w_bits: int, a_bits: int | None,
                 act_kind: str, groups: int = 1):
        super().__init__(in_features, out_features, bias=bias)
        self.w_bits, self.a_bits, self.act_kind, self.groups = w_bits, a_bits, act_kind, groups
        self.register_buffer("codes", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_delta", torch.ones(groups))
        self.register_buffer("a_delta", torch.ones(2 if act_kind == "twin_gelu" else 1))
        self.weight.requires_grad_(False)

    def _row_delta(self) -> torch.Tensor:
        return self.w_delta.repeat_interleave(self.out_features // self.groups).unsqueeze(1)

    @classmethod
    @torch.no_grad()
    def from_float(cls, m: nn.Linear, w_bits: int, a_bits: int | None, act_kind: str, w_delta: torch.Tensor,
                   a_delta: torch.Tensor | None) -> "PtqLinear":
        q = cls(m.in_features, m.out_features, m.bias is not None, w_bits, a_bits, act_kind,
                groups=w_delta.numel()).to(m.weight.device)
        q.w_delta.copy_(w_delta.float())
        if a_delta is not None:
            q.a_delta.copy_(a_delta.float())
        q.codes.copy_(uniform_codes(m.weight.float(), q._row_delta(), w_bits))
        q.weight.copy_(q.codes.float() * q._row_delta())
        if m.bias is not None:
            q.bias.copy_(m.bias.detach())
        return q

    @torch.no_grad()
    def refresh_weight_(self) -> None:
        """weight = codes * Delta_W (after codes and steps were loaded)."""
        self.weight.copy_(self.codes.float() * self._row_delta())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(quantize_act(x, self.act_kind, self.a_delta, self.a_bits), self.weight, self.bias)


class PtqConv2d(nn.Conv2d):
    """The patch embedding with a k-bit weight (one step per output channel); its input (the image) stays float."""

    def __init__(self, conv: nn.Conv2d, w_bits: int):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
        self.w_bits = w_bits
        self.register_buffer("codes", torch.zeros(self.weight.shape, dtype=torch.int8))
        self.register_buffer("w_delta", torch.ones(conv.out_channels))
        self.weight.requires_grad_(False)
        self.to(conv.weight.device)

    @classmethod
    @torch.no_grad()
    def from_float(cls, conv: nn.Conv2d, w_bits: int, w_delta: torch.Tensor) -> "PtqConv2d":
        q = cls(conv, w_bits)
        q.w_delta.copy_(w_delta.float())
        q.codes.copy_(uniform_codes(conv.weight.float(), w_delta.reshape(-1, 1, 1, 1), w_bits))
        q.refresh_weight_()
        if conv.bias is not None:
            q.bias.copy_(conv.bias.detach())
        return q

    @torch.no_grad()
    def refresh_weight_(self) -> None:
        self.weight.copy_(self.codes.float() * self.w_delta.reshape(-1, 1, 1, 1))


# ------------------------------------------------------------------------------ the whole model


@dataclass
class Plan:
    """Which modules of a model are quantized, and how.

    linears: {name: (act_kind, weight groups)}; act_kind "uniform" or "twin_gelu"-capable ("gelu": the input
    is post-GELU); matmuls: {name: "qk" or "av"} ("av": A holds attention probabilities); convs: [name].
    """

    linears: dict[str, tuple[str, int]] = field(default_factory=dict)
    matmuls: dict[str, str] = field(default_factory=dict)
    convs: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [*self.convs, *self.linears, *self.matmuls]


@dataclass
class Captured:
    """Float inputs (and output gradients) of every planned module over the calibration set."""

    inputs: dict[str, list] = field(default_factory=dict)
    grads: dict[str, list] = field(default_factory=dict)


def capture(model: nn.Module, plan: Plan, run: Callable[[nn.Module], torch.Tensor | None],
            need_grad: bool) -> Captured:
    """Run the calibration set through the float model once, keeping each planned module's inputs and, with
    ``need_grad``, dL/dO of its output (one backward pass of ``run``'s loss: parallel quantization, every layer
    sees the float model's own inputs, as the official code).

    Args:
        run: model -> the task loss on the calibration set (a tensor with its graph) when need_grad, else None.
    """
    cap = Captured()
    hooks = []

    def hook(name):
        def fn(mod, args, out):
            cap.inputs.setdefault(name, []).append(tuple(a.detach() for a in args[:2 if name in plan.matmuls else 1]))
            if need_grad:
                slot = cap.grads.setdefault(name, [])
                slot.append(None)
                i = len(slot) - 1
                if out.requires_grad:
                    def keep(g, i=i):
                        slot[i] = g.detach()
                    out.register_hook(keep)
        return fn

    for name in plan.names():
        hooks.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        if need_grad:
            params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
            for p, _, _ in params:  # the graph runs through the parameters (token ids carry no gradient)
                p.requires_grad_(True)
            try:
                with torch.enable_grad():
                    loss = run(model)
                    if loss is None or not loss.requires_grad:
                        raise NnqError("the calibration loss has no graph; the Hessian-guided metric needs dL/dO")
                    loss.backward()
            finally:
                for p, r, g in params:
                    p.requires_grad_(r)
                    p.grad = g
        else:
            with torch.no_grad():
                run(model)
    finally:
        for h in hooks:
            h.remove()
    if need_grad:  # forward passes outside the loss's graph (e.g. a no-grad reference) bring no gradient: drop them
        for name in list(cap.inputs):
            grads = cap.grads.get(name, [])
            keep = [i for i, g in enumerate(grads) if g is not None]
            cap.inputs[name] = [cap.inputs[name][i] for i in keep]
            cap.grads[name] = [grads[i] for i in keep]
    return cap


def _act_kind(role: str, st: SearchSettings) -> str:
    return "twin_gelu" if role == "gelu" and st.twin_gelu else "uniform"


@torch.no_grad()
def search_model(model: nn.Module, plan: Plan, cap: Captured, w_bits: int, a_bits: int, st: SearchSettings,
                 log: Callable[[str], None] | None = None) -> dict:
    """Search the steps of every planned module (each on the float model's inputs); returns the scales artifact
    {name: {"kind": ..., tensors ...}} with "_errors" {name: (start, final)} and "_curves"."""
    out: dict = {"_errors": {}, "_curves": {}}
    grads = lambda n: cap.grads.get(n) if st.metric == "hessian" else None
    for name in plan.convs:
        m = model.get_submodule(name)
        x = torch.cat([i[0] for i in cap.inputs[name]])
        g = grads(name)
        res = search_conv_weight(m, x, w_bits, st, None if g is None else torch.cat(g))
        out[name] = {"kind": "conv", "w_delta": res["w_delta"]}
        out["_errors"][name] = (res["start"], res["error"])
    for name, (role, groups) in plan.linears.items():
        m = model.get_submodule(name)
        x = torch.cat([i[0].reshape(-1, m.in_features) for i in cap.inputs[name]])
        g = grads(name)
        data = LinearData(x, None if g is None else torch.cat([t.reshape(-1, m.out_features) for t in g]))
        kind = _act_kind(role, st)
        res = search_linear(m.weight, m.bias, data, w_bits, a_bits, kind, st, groups)
        out[name] = {"kind": "linear", "act_kind": kind, "w_delta": res["w_delta"], "a_delta": res["a_delta"]}
        out["_errors"][name], out["_curves"][name] = (res["start"], res["error"]), res["curve"]
        if log:
            log(f"  {name}: {st.metric} distance {res['start']:.3g} -> {res['error']:.3g}")
    for name, role in plan.matmuls.items():
        a_kind = "twin_softmax" if role == "av" and st.twin_softmax else "uniform"
        g = grads(name)
        data = MatMulData([i[0] for i in cap.inputs[name]], [i[1] for i in cap.inputs[name]], g)
        res = search_matmul(data, a_bits, a_kind, st)
        out[name] = {"kind": "matmul", "a_kind": a_kind, "a_delta": res["a_delta"], "b_delta": res["b_delta"]}
        out["_errors"][name], out["_curves"][name] = (res["start"], res["error"]), res["curve"]
    return out


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def apply_scales_(model: nn.Module, scales: dict, w_bits: int, a_bits: int) -> nn.Module:
    """Replace each searched module by its quantized layer with the searched steps (in place); returns model."""
    for name, e in scales.items():
        if name.startswith("_"):
            continue
        m = model.get_submodule(name)
        if e["kind"] == "conv":
            replace_module_(model, name, PtqConv2d.from_float(m, w_bits, e["w_delta"]))
        elif e["kind"] == "linear":
            replace_module_(model, name, PtqLinear.from_float(m, w_bits, a_bits, e["act_kind"], e["w_delta"],
                                                              e["a_delta"]))
        elif e["kind"] == "matmul":
            replace_module_(model, name, PtqMatMul(a_bits, e["a_kind"], e["a_delta"], e["b_delta"]))
        else:
            raise NnqError(f"unknown entry kind {e['kind']!r} for {name} in the scales artifact")
    return model


def save_scales(scales: dict, path, meta: dict | None = None) -> None:
    """The search result as safetensors: ``<name>.w_delta`` / ``.a_delta`` / ``.b_delta``; kinds in the metadata."""
    import json

    from safetensors.torch import save_file

    from common.paths import atomic_path

    tensors, kinds = {}, {}
    for name, e in scales.items():
        if name.startswith("_"):
            continue
        kinds[name] = {k: v for k, v in e.items() if isinstance(v, str)}
        for k, v in e.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{name}.{k}"] = v.detach().float().cpu().contiguous().clone()
    md = {"format": "nnq-ptq4vit-scales/1", "kinds": json.dumps(kinds), **{k: str(v) for k, v in (meta or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=md)


def load_scales(path) -> dict:
    """Inverse of :func:`save_scales`."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            md = f.metadata() or {}
            if md.get("format") != "nnq-ptq4vit-scales/1":
                raise NnqError(f"{path} is not a PTQ4ViT scales artifact (format {md.get('format')!r}); rerun the search")
            out = {}
            for name, kinds in json.loads(md["kinds"]).items():
                e = dict(kinds)
                for k in ("w_delta", "a_delta", "b_delta"):
                    if f"{name}.{k}" in f.keys():
                        e[k] = f.get_tensor(f"{name}.{k}")
                e.setdefault("a_delta", None) if e["kind"] == "linear" else None
                out[name] = e
            return out
    except NnqError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise NnqError(f"cannot read the scales artifact {path} ({type(exc).__name__}); rerun the search") from None
