"""AWQ: Activation-aware Weight Quantization.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", MLSys 2024 (arXiv 2306.00978). Official code: github.com/mit-han-lab/llm-awq.

Idea: weight-only group quantization (INT3/INT4, group 128) loses most of its accuracy on a small set of
"salient" input channels, and those are the channels with large *activations*, not large weights. Instead of
keeping them in higher precision (mixed precision is unfriendly to hardware), AWQ multiplies each input channel
of the weight by a factor s and divides the activation by s, an exact float identity; scaling a salient channel
up shrinks its relative rounding error. The per-channel factor is s = s_X^alpha, with s_X the mean activation
magnitude of the channel on a small calibration set and alpha chosen on a grid to minimise the output error of
the quantized layers; a per-group weight-clipping search follows. Round-to-nearest (RTN) is the baseline.

Implements: Eq. (1) (group quantizer; the asymmetric variant with a zero point, as the paper's experiments),
Eq. (2)-(3) (the equivalent transform W diag(s), diag(s)^-1 X), Eq. (4) (the objective L(s)), Eq. (5) (the
search space s = s_X^alpha on a grid of alpha), Sec. 3.2 (the clip search), Table 1 (keeping 1% salient
channels in fp by activation / weight / random). Not implemented: folding diag(s)^-1 into the previous
LayerNorm or linear (we keep it as an explicit per-channel multiply on the layer input, same output), TinyChat's
GPU kernels (our real deployment is PyTorch's int4 CPU op, see ``papers.awq.int4``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from common.errors import NnqError

N_GRID = 20  # Sec. 3.2: grid of alpha in [0, 1] (llm-awq uses 20 points)
MAX_SHRINK = 0.5  # clip search: the clip ratio goes from 1 down to 1 - MAX_SHRINK


def _check(bits: int, group_size: int, c_in: int) -> None:
    if bits not in (2, 3, 4, 8):
        raise NnqError(f"bits must be 2, 3, 4 or 8, got {bits}")
    if group_size < 1 or c_in % group_size:
        raise NnqError(f"group size {group_size} must divide the input width {c_in}; choose a divisor of {c_in}")


def group_view(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """w: [c_out, c_in] -> [c_out, n_group, group_size] (a view; groups run along the input channels)."""
    c_out, c_in = w.shape
    return w.reshape(c_out, c_in // group_size, group_size)


def group_params(w: torch.Tensor, bits: int, group_size: int,
                 max_val: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Step size Delta and integer zero point of each group (asymmetric min-max, Eq. (1) with a zero point).

    Args:
        w: [c_out, c_in] weight.
        bits: N; codes are 0 .. 2^N - 1.
        group_size: input channels per group (paper: 128).
        max_val: [c_out, n_group] clip threshold of the clip search; the group range is clipped to
            [-max_val, max_val] first. None: no clip.

    Returns:
        (delta [c_out, n_group, 1], zero [c_out, n_group, 1]) with zero an integer in [0, 2^N - 1].
    """
    _check(bits, group_size, w.shape[1])
    g = group_view(w, group_size)  # [c_out, n_group, group_size]
    hi, lo = g.amax(-1, keepdim=True), g.amin(-1, keepdim=True)  # [c_out, n_group, 1]
    if max_val is not None:
        m = max_val.unsqueeze(-1)
        hi, lo = torch.minimum(hi, m), torch.maximum(lo, -m)
    q_max = 2**bits - 1
    # Eq. (1), asymmetric: Delta = (max - min) / (2^N - 1) (the paper's symmetric form is max|w| / 2^(N-1))
    delta = (hi - lo).clamp_min(1e-5) / q_max
    zero = (-torch.round(lo / delta)).clamp(0, q_max)
    return delta, zero


def quantize_codes(w: torch.Tensor, delta: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes q = clamp(Round(w / Delta) + z, 0, 2^N - 1): [c_out, c_in] -> [c_out, c_in] (uint8)."""
    gs = w.shape[1] // delta.shape[1]
    q = torch.clamp(torch.round(group_view(w, gs) / delta) + zero, 0, 2**bits - 1)  # Eq. (1)
    return q.reshape(w.shape).to(torch.uint8)


def dequantize(q: torch.Tensor, delta: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """w_hat = Delta (q - z): codes [c_out, c_in] -> weight [c_out, c_in] in Delta's dtype."""
    gs = q.shape[1] // delta.shape[1]
    return ((group_view(q.to(delta.dtype), gs) - zero) * delta).reshape(q.shape)


def pseudo_quantize(w: torch.Tensor, bits: int, group_size: int = 128,
                    max_val: torch.Tensor | None = None) -> torch.Tensor:
    """Q(w): round-to-nearest group quantization, returned in float (fake quantization; Eq. (1)).

    RTN, the paper's baseline, is this function applied to the unscaled weight.
    """
    delta, zero = group_params(w, bits, group_size, max_val)
    return dequantize(quantize_codes(w, delta, zero, bits), delta, zero)


# ------------------------------------------------------------------------------ activation statistics


@torch.no_grad()
def activation_scale(x: torch.Tensor) -> torch.Tensor:
    """s_X: mean |x| of each input channel over the calibration tokens, x: [..., c_in] -> [c_in] (Sec. 3.2)."""
    return x.reshape(-1, x.shape[-1]).abs().float().mean(0)


def weight_scale(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean over output channels of |w| / max|w| in its group: [c_out, c_in] -> [c_in] (Table 1's 'based on W')."""
    g = group_view(w.abs(), group_size)
    return (g / g.amax(-1, keepdim=True).clamp_min(1e-12)).reshape(w.shape).mean(0)


# ------------------------------------------------------------------------------ the equivalent transform


def scale_weight(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """W diag(s): w [c_out, c_in], s [c_in] -> [c_out, c_in] (Eq. (2): Q(w s) (x / s))."""
    return w * s


def scale_input(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """diag(s)^-1 X: x [..., c_in], s [c_in] -> [..., c_in] (Eq. (2))."""
    return x / s


def output_error(x: torch.Tensor, weights: Sequence[torch.Tensor], bits: int, group_size: int,
                 s: torch.Tensor | None = None) -> float:
    """L(s) = sum over the layers sharing input X of || Q(W diag(s)) (diag(s)^-1 X) - W X ||^2 / numel (Eq. (4)).

    Args:
        x: [n_tok, c_in] calibration input shared by the layers.
        weights: the layers' [c_out_i, c_in] weights (q, k, v of one attention block share X).
        s: [c_in] per-channel scale; None is s = 1 (RTN).
    """
    total, count = 0.0, 0
    for w in weights:
        ref = x @ w.T  # W X: [n_tok, c_out]
        if s is None:
            out = x @ pseudo_quantize(w, bits, group_size).T
        else:
            out = scale_input(x, s) @ pseudo_quantize(scale_weight(w, s), bits, group_size).T
        total += (out - ref).pow(2).sum().item()
        count += ref.numel()
    return total / max(count, 1)


def normalised_scale(s_x: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = s_X^alpha (Eq. (5)), divided by sqrt(max s * min s) so that the scales straddle 1 (as llm-awq)."""
    s = s_x.clamp_min(1e-4).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


@torch.no_grad()
def search_scale(x: torch.Tensor, weights: Sequence[torch.Tensor], bits: int, group_size: int = 128,
                 n_grid: int = N_GRID, s_x: torch.Tensor | None = None) -> dict:
    """The scale search: alpha* = argmin_alpha L(s_X^alpha) on alpha in {0, 1/n, ..., (n-1)/n} (Eq. (4)-(5)).

    alpha = 0 gives s = 1, i.e. RTN, so the search never returns an error above RTN's.

    Args:
        x: [n_tok, c_in] calibration input of the layers.
        weights: the [c_out_i, c_in] weights that read x.
        s_x: [c_in] the statistic the scales come from; default the activation magnitude of x
            (pass ``weight_scale`` for the 'scale by weight' ablation).

    Returns:
        {"scale": [c_in] best s, "alpha": best alpha, "curve": [(alpha, L)], "rtn_error": L(1), "error": L(s*)}.
    """
    x = x.reshape(-1, x.shape[-1]).float()
    s_x = activation_scale(x) if s_x is None else s_x.float()
    curve, best = [], (float("inf"), 0.0, torch.ones_like(s_x))
    for i in range(n_grid):
        alpha = i / n_grid
        s = normalised_scale(s_x, alpha) if alpha > 0 else torch.ones_like(s_x)
        err = output_error(x, weights, bits, group_size, s)  # Eq. (4)
        curve.append((alpha, err))
        if err < best[0]:
            best = (err, alpha, s)
    return {"scale": best[2], "alpha": best[1], "curve": curve, "rtn_error": curve[0][1], "error": best[0]}


@torch.no_grad()
def search_clip(x: torch.Tensor, w: torch.Tensor, bits: int, group_size: int = 128,
                n_grid: int = N_GRID, max_shrink: float = MAX_SHRINK) -> torch.Tensor:
    """The clip search (Sec. 3.2): per group, the clip threshold max_val = r * max|w| with r on a grid in
    [1 - max_shrink, 1] that minimises the group's partial-output error || x_g Q_clip(w_g)^T - x_g w_g^T ||^2.

    Args:
        x: [n_tok, c_in] input of the layer (already divided by s when the weight was scaled).
        w: [c_out, c_in] weight (already W diag(s)).

    Returns:
        max_val: [c_out, n_group]; r = 1 (no clip) is on the grid, so the error never exceeds no clip.
    """
    x = x.reshape(-1, x.shape[-1]).float()
    n_group = w.shape[1] // group_size
    xg = x.reshape(x.shape[0], n_group, group_size)  # [n_tok, n_group, group_size]
    wg = group_view(w, group_size)  # [c_out, n_group, group_size]
    ref = torch.einsum("tgk,ogk->otg", xg, wg)  # partial outputs [c_out, n_tok, n_group]
    absmax = wg.abs().amax(-1)  # [c_out, n_group]
    best_err = torch.full_like(absmax, float("inf"))
    best_max = absmax.clone()
    for i in range(int(max_shrink * n_grid) + 1):
        max_val = absmax * (1 - i / n_grid)
        wc = torch.maximum(torch.minimum(w, max_val.repeat_interleave(group_size, 1)),
                           -max_val.repeat_interleave(group_size, 1))
        q = group_view(pseudo_quantize(wc, bits, group_size, max_val), group_size)
        err = (torch.einsum("tgk,ogk->otg", xg, q) - ref).pow(2).mean(1)  # [c_out, n_group]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, max_val, best_max)
    return best_max


# ------------------------------------------------------------------------------ Table 1: mixed precision


def salient_channels(kind: str, w: torch.Tensor, s_x: torch.Tensor, fraction: float = 0.01,
                     seed: int = 0) -> torch.Tensor:
    """Indices of the ``fraction`` of input channels kept in fp (Table 1): by activation, by weight, or random."""
    c_in = w.shape[1]
    k = max(1, round(fraction * c_in))
    if kind == "activation":
        return s_x.topk(k).indices
    if kind == "weight":
        return w.abs().mean(0).topk(k).indices  # Table 1: salient by the weight's magnitude (L2 / mean |w|)
    if kind == "random":
        return torch.randperm(c_in, generator=torch.Generator().manual_seed(seed))[:k]
    raise NnqError(f"salient channel kind must be activation, weight or random, got {kind!r}")


def keep_channels_fp(w: torch.Tensor, bits: int, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    """RTN everywhere except the input channels ``keep``, which stay in floating point (Table 1)."""
    out = pseudo_quantize(w, bits, group_size)
    out[:, keep] = w[:, keep]
    return out


# ------------------------------------------------------------------------------ the quantized layer


class AwqLinear(nn.Linear):
    """A linear layer whose weight is stored as N-bit group codes of W diag(s), with the input divided by s.

    forward(x) = (x / s) @ (Delta (q - z))^T + b: equals the float layer up to quantization (Eq. (2)).
    The dequantized weight is cached in ``weight`` (same state-dict key as the float layer); the codes,
    steps and zero points are the stored representation (``stored_fields``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, bits: int, group_size: int):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_bits = bits
        self.group_size = group_size
        n_group = in_features // group_size
        self.register_buffer("codes", torch.zeros(out_features, in_features, dtype=torch.uint8))
        self.register_buffer("delta", torch.ones(out_features, n_group, 1))
        self.register_buffer("zero", torch.zeros(out_features, n_group, 1))
        self.register_buffer("inv_scale", torch.ones(in_features))
        self.weight.requires_grad_(False)

    @classmethod
    @torch.no_grad()
    def from_float(cls, m: nn.Linear, bits: int, group_size: int = 128, scale: torch.Tensor | None = None,
                   max_val: torch.Tensor | None = None) -> "AwqLinear":
        """Quantize ``m``: W' = W diag(s) (Eq. (2)), clip to max_val, N-bit group codes (Eq. (1))."""
        _check(bits, group_size, m.in_features)
        q = cls(m.in_features, m.out_features, m.bias is not None, bits, group_size).to(m.weight.device)
        w = m.weight.detach().float()
        s = torch.ones(m.in_features, device=w.device) if scale is None else scale.float().to(w.device)
        w = scale_weight(w, s)
        if max_val is not None:
            m_rep = max_val.repeat_interleave(group_size, 1)
            w = torch.maximum(torch.minimum(w, m_rep), -m_rep)
        delta, zero = group_params(w, bits, group_size, max_val)
        delta = delta.half().float()  # Delta is stored in fp16 (as llm-awq): quantize with the stored value
        q.codes.copy_(quantize_codes(w, delta, zero, bits))
        q.delta.copy_(delta)
        q.zero.copy_(zero)
        q.inv_scale.copy_(1.0 / s)
        q.weight.copy_(dequantize(q.codes, q.delta, q.zero))
        if m.bias is not None:
            q.bias.copy_(m.bias.detach())
        return q

    @classmethod
    @torch.no_grad()
    def from_codes(cls, codes: torch.Tensor, delta: torch.Tensor, zero: torch.Tensor, inv_scale: torch.Tensor,
                   bias: torch.Tensor | None, bits: int, group_size: int) -> "AwqLinear":
        """The layer from its stored fields (codes [c_out, c_in], Delta and z [c_out, n_group, 1], 1/s [c_in])."""
        c_out, c_in = codes.shape
        q = cls(c_in, c_out, bias is not None, bits, group_size)
        q.codes.copy_(codes)
        q.delta.copy_(delta.float().reshape(q.delta.shape))
        q.zero.copy_(zero.float().reshape(q.zero.shape))
        q.inv_scale.copy_(inv_scale.float())
        q.weight.copy_(dequantize(q.codes, q.delta, q.zero))
        if bias is not None:
            q.bias.copy_(bias.float())
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x * self.inv_scale, self.weight, self.bias)  # Eq. (2): Q(W s)(x / s)

    def stored_fields(self, prefix: str = "") -> list:
        """Codes at N bits, Delta and z per group (fp16 and N bits), 1/s and the bias in fp32."""
        from common.evaluate import StoredField

        n_groups = self.delta.numel()
        fields = [StoredField.fixed(prefix + "codes", self.codes.numel(), self.weight_bits),
                  StoredField.fixed(prefix + "delta", n_groups, 16),
                  StoredField.fixed(prefix + "zero", n_groups, self.weight_bits),
                  StoredField.fixed(prefix + "inv_scale", self.in_features, 32)]
        if self.bias is not None:
            fields.append(StoredField.fixed(prefix + "bias", self.bias.numel(), 32))
        return fields


# ------------------------------------------------------------------------------ a model's linear layers


def input_groups(names: Sequence[str]) -> list[list[str]]:
    """Groups of linear layers that read the same input and so share one scale s (q, k, v of an attention block).

    A name ending in ``query``/``key``/``value`` (Hugging Face BERT) or ``q_proj``/``k_proj``/``v_proj``
    joins the group of its siblings, and so do LLaMA's ``gate_proj``/``up_proj`` (both read the MLP input);
    every other layer is its own group.
    """
    shared = {"query": "qkv", "key": "qkv", "value": "qkv", "q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv",
              "gate_proj": "gate_up", "up_proj": "gate_up"}
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    for n in names:
        parent, _, leaf = n.rpartition(".")
        key = f"{parent}.<{shared[leaf]}>" if leaf in shared else n
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(n)
    return [groups[k] for k in order]


def linear_names(model: nn.Module, include: Callable[[str], bool] = lambda n: True) -> list[str]:
    """Names of the nn.Linear layers of ``model`` (transformer blocks' projections) that ``include`` accepts."""
    return [n for n, m in model.named_modules() if type(m) is nn.Linear and include(n)]


@torch.no_grad()
def capture_inputs(model: nn.Module, names: Sequence[str], run: Callable[[], object],
                   max_tokens: int = 4096) -> dict[str, torch.Tensor]:
    """The calibration inputs of the named linear layers: runs ``run()`` once with forward hooks.

    Returns:
        {name: [n_tok, c_in]} (at most ``max_tokens`` rows each, the first ones).
    """
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = []
    for n in names:
        def hook(mod, inp, out, n=n):
            store[n].append(inp[0].detach().reshape(-1, inp[0].shape[-1]).float().cpu())
        hooks.append(model.get_submodule(n).register_forward_hook(hook))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v)[:max_tokens] for n, v in store.items() if v}


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


@torch.no_grad()
def search_model(model: nn.Module, inputs: dict[str, torch.Tensor], bits: int, group_size: int = 128,
                 n_grid: int = N_GRID, clip: bool = True, scale_by: str = "activation",
                 fixed_alpha: float | None = None) -> dict:
    """AWQ search over every layer group of ``inputs``: scales (Eq. (4)-(5)), then clips (Sec. 3.2).

    Layers are searched on the float model's inputs (one pass of calibration, not re-run block by block).

    Args:
        scale_by: "activation" (AWQ), "weight" (ablation: s from the weight's magnitude) or "none" (s = 1).
        fixed_alpha: no search: s = s_X^alpha at this alpha (the ablation alpha = 1).

    Returns:
        The artifact: {name: {"scale": [c_in], "max_val": [c_out, n_group] or None, "alpha": float}}
        plus {"_curves": {group: [(alpha, L)]}, "_errors": {group: (rtn, awq)}} for the report.
    """
    art: dict = {}
    curves, errors = {}, {}
    for group in input_groups(list(inputs)):
        x = inputs[group[0]]
        weights = [model.get_submodule(n).weight.detach().float() for n in group]
        if scale_by == "none":
            res = {"scale": torch.ones(x.shape[1]), "alpha": 0.0, "curve": [], "rtn_error": None, "error": None}
        elif fixed_alpha is not None:
            s = normalised_scale(activation_scale(x), fixed_alpha) if fixed_alpha > 0 else torch.ones(x.shape[1])
            err = output_error(x.float(), weights, bits, group_size, s)
            res = {"scale": s, "alpha": fixed_alpha, "curve": [(fixed_alpha, err)],
                   "rtn_error": output_error(x.float(), weights, bits, group_size), "error": err}
        else:
            s_x = None if scale_by == "activation" else sum(weight_scale(w, group_size) for w in weights)
            res = search_scale(x, weights, bits, group_size, n_grid, s_x=s_x)
        curves[group[0]] = res["curve"]
        errors[group[0]] = (res["rtn_error"], res["error"])
        for n, w in zip(group, weights):
            s = res["scale"]
            max_val = search_clip(scale_input(x, s), scale_weight(w, s), bits, group_size) if clip else None
            art[n] = {"scale": s, "max_val": max_val, "alpha": res["alpha"]}
    art["_curves"], art["_errors"] = curves, errors
    return art


@torch.no_grad()
def apply_awq_(model: nn.Module, artifact: dict, bits: int, group_size: int = 128) -> list[str]:
    """Replace every layer named in ``artifact`` by its AwqLinear; returns the names (in place)."""
    done = []
    for name, entry in artifact.items():
        if name.startswith("_"):
            continue
        m = model.get_submodule(name)
        replace_module_(model, name, AwqLinear.from_float(m, bits, group_size, entry["scale"], entry["max_val"]))
        done.append(name)
    return done


@torch.no_grad()
def apply_rtn_(model: nn.Module, names: Sequence[str], bits: int, group_size: int = 128) -> None:
    """The RTN baseline: every named layer quantized as it is (s = 1, no clip)."""
    for name in names:
        replace_module_(model, name, AwqLinear.from_float(model.get_submodule(name), bits, group_size))


@torch.no_grad()
def apply_keep_fp_(model: nn.Module, inputs: dict[str, torch.Tensor], kind: str, bits: int, group_size: int = 128,
                   fraction: float = 0.01, seed: int = 0) -> None:
    """Table 1 ablation: RTN with ``fraction`` of each layer's input channels kept in fp, chosen by ``kind``."""
    for name, x in inputs.items():
        m = model.get_submodule(name)
        keep = salient_channels(kind, m.weight.float(), activation_scale(x), fraction, seed)
        m.weight.copy_(keep_channels_fp(m.weight.float(), bits, group_size, keep).to(m.weight.dtype))


def save_artifact(artifact: dict, path, meta: dict | None = None) -> None:
    """The search result (scales, clips) as safetensors: ``<name>.scale``, ``<name>.max_val``; alpha in metadata."""
    import json

    from safetensors.torch import save_file

    from common.paths import atomic_path

    tensors, alphas = {}, {}
    for name, e in artifact.items():
        if name.startswith("_"):
            continue
        tensors[f"{name}.scale"] = e["scale"].float().cpu().clone()  # q, k, v share one s
        if e["max_val"] is not None:
            tensors[f"{name}.max_val"] = e["max_val"].float().cpu().clone()
        alphas[name] = e["alpha"]
    md = {"format": "nnq-awq-search/1", "alpha": json.dumps(alphas), **{k: str(v) for k, v in (meta or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=md)


def load_artifact(path) -> dict:
    """Inverse of :func:`save_artifact`."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        md = f.metadata() or {}
        if md.get("format") != "nnq-awq-search/1":
            raise NnqError(f"{path} is not an AWQ search artifact (format {md.get('format')!r}); rerun the search")
        alphas = json.loads(md["alpha"])
        keys = set(f.keys())
        return {n: {"scale": f.get_tensor(f"{n}.scale"),
                    "max_val": f.get_tensor(f"{n}.max_val") if f"{n}.max_val" in keys else None,
                    "alpha": a} for n, a in alphas.items()}
