"""Where a quantized model loses: the error of each quantization site alone, and of each kind of site left float.

A *site* is one quantized tensor of the plan: a linear layer's weight (``W``) or input (``X``), or one input of an
attention matmul (``A``: Q or the post-softmax probabilities; ``B``: K^T or V). With the searched scales of a
method fixed, :func:`site_errors` builds the model with

- every site quantized (the method's own model),
- one site quantized and all others float (the site's error alone),
- the sites of one *kind* (the same tensor of the same layer type in every block, e.g. the weights of every
  block's MLP second layer) quantized alone, and every site but that kind quantized (what leaving that kind in
  float would win back),

and measures each with the target's own metric. This is an analysis of the paper's scheme, not part of it: the
steps stay those the search found with every site quantized (parallel quantization, as in the paper).
"""

from __future__ import annotations

import copy
import re
from typing import Callable

import torch
from torch import nn

from papers.ptq4vit import ptq4vit as P

Site = tuple[str, str]
"""(module name, part): part W / X of a linear layer, A / B of a matmul."""


class SiteMatMul(P.PtqMatMul):
    """A quantized matmul with either input left float (``quant_a`` / ``quant_b`` off)."""

    def __init__(self, q: P.PtqMatMul, quant_a: bool, quant_b: bool):
        super().__init__(q.bits, q.a_kind, q.a_delta, q.b_delta)
        self.do_a, self.do_b = quant_a, quant_b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = self.quant_a(a) if self.do_a else a
        b = P.quantize_uniform(b, P._head_view(self.b_delta), self.bits) if self.do_b else b
        return a @ b


def all_sites(scales: dict) -> list[Site]:
    """Every site of a scales artifact, in its order (weights and inputs of linears, A and B of matmuls)."""
    out = []
    for name, e in scales.items():
        if name.startswith("_"):
            continue
        out += {"linear": [(name, "W"), (name, "X")], "matmul": [(name, "A"), (name, "B")],
                "conv": [(name, "W")]}[e["kind"]]
    return out


def site_kind(site: Site) -> str:
    """The layer type of a site with the block index replaced by '*', and its part ('encoder.layer.*.
    intermediate.dense X': the inputs of every block's MLP first layer)."""
    layer = re.sub(r"(^|\.)\d+(\.|$)", r"\1*\2", site[0])
    return f"{layer} {site[1]}"


@torch.no_grad()
def quantize_sites(model: nn.Module, scales: dict, sites, w_bits: int, a_bits: int) -> nn.Module:
    """A copy of the float ``model`` with only ``sites`` quantized, each with its step from ``scales``."""
    q = copy.deepcopy(model)
    by: dict[str, set[str]] = {}
    for name, part in sites:
        by.setdefault(name, set()).add(part)
    for name, parts in by.items():
        e, m = scales[name], q.get_submodule(name)
        if e["kind"] == "linear":
            new = P.PtqLinear.from_float(m, w_bits, a_bits if "X" in parts else None, e["act_kind"], e["w_delta"],
                                         e["a_delta"])
            if "W" not in parts:
                new.weight.copy_(m.weight)
        elif e["kind"] == "matmul":
            new = SiteMatMul(P.PtqMatMul(a_bits, e["a_kind"], e["a_delta"], e["b_delta"]), "A" in parts,
                             "B" in parts)
        else:
            new = P.PtqConv2d.from_float(m, w_bits, e["w_delta"])
        P.replace_module_(q, name, new)
    return q.eval()


@torch.no_grad()
def site_errors(model: nn.Module, scales: dict, w_bits: int, a_bits: int, evaluate: Callable[[nn.Module], dict],
                fp_value: float, log: Callable[[str], None] | None = None) -> dict:
    """The target metric with every site, each site alone, each kind alone and every kind but one quantized.

    Args:
        evaluate: model -> {"value": ...} (the target's test metric); ``fp_value``: its value for the float model.

    Returns:
        {"w_bits", "a_bits", "fp_value", "all": {"value", "drop"}, "sites": [{"site", "kind", "value", "drop"}],
         "kinds": [{"kind", "n_sites", "alone": {...}, "all_but": {...}}]}; drop = fp_value - value.
    """
    sites = all_sites(scales)
    ev = lambda s: (lambda v: {"value": v, "drop": round(fp_value - v, 6)})(
        evaluate(quantize_sites(model, scales, s, w_bits, a_bits))["value"])
    out = {"w_bits": w_bits, "a_bits": a_bits, "fp_value": fp_value, "all": ev(sites), "sites": [], "kinds": []}
    for s in sites:
        out["sites"].append({"site": f"{s[0]} {s[1]}", "kind": site_kind(s), **ev([s])})
    kinds = list(dict.fromkeys(site_kind(s) for s in sites))
    for k in kinds:
        mine = [s for s in sites if site_kind(s) == k]
        rest = [s for s in sites if site_kind(s) != k]
        out["kinds"].append({"kind": k, "n_sites": len(mine), "alone": ev(mine), "all_but": ev(rest)})
        if log:
            e = out["kinds"][-1]
            log(f"  {k}: alone {e['alone']['value']}, every other site {e['all_but']['value']}")
    return out


def weight_row_spread(model: nn.Module, names) -> list[dict]:
    """Per linear layer: the largest |w| and the median over output rows of the row's largest |w| (how much of a
    layer-wise 8-bit grid the typical row gets), with the row that holds the largest."""
    out = []
    for name in names:
        w = model.get_submodule(name).weight.detach().float()
        rows = w.abs().amax(1)
        out.append({"layer": name, "max_abs": round(float(rows.max()), 4), "row_of_max": int(rows.argmax()),
                    "median_row_max": round(float(rows.median()), 4)})
    return out


def input_channel_spread(inputs: dict, names) -> list[dict]:
    """Per linear layer (from captured calibration inputs): the largest |x| and the median over input channels of
    the channel's largest |x|, with the channel that holds the largest."""
    out = []
    for name in names:
        x = torch.cat([i[0].reshape(-1, i[0].shape[-1]) for i in inputs[name]]).float()
        ch = x.abs().amax(0)
        out.append({"layer": name, "max_abs": round(float(ch.max()), 4), "channel_of_max": int(ch.argmax()),
                    "median_channel_max": round(float(ch.median()), 4)})
    return out
