"""Real int4 deployment of AWQ-quantized linear layers on PyTorch's own weight-only int4 CPU kernel.

The kernel is ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (PyTorch >= 2.5; this package checks for it):
bf16 activations [M, K], weights packed by ``aten._convert_weight_to_int4pack_for_cpu`` from 4-bit codes
[N, K] (two per byte), and per group of ``group_size`` input channels a (scale, zero) pair in bf16,
``[K / group_size, N, 2]``, with the dequantized weight w = (q - 8) * scale + zero. AWQ's layer stores
w = Delta (q - z) (:class:`papers.awq.awq.AwqLinear`), so scale = Delta and zero = Delta (8 - z): the same codes,
no requantization. The input is divided by s (multiplied by the stored 1/s) before the kernel, as Eq. (2).
Group sizes 32, 64 and 128 (and 256) are what the kernel supports.

``python -m papers.awq.int4 [--k 4096] [--n 4096] [--repeats 50]`` times one K x N layer at batch 1 (fp32
``nn.Linear`` vs the int4 kernel) and prints JSON; run it with ``ATEN_CPU_CAPABILITY=avx2`` in the environment
to force ATen's AVX2 code path on a machine with AVX-512 (``torch.backends.cpu.get_cpu_capability()`` says
which path ran; :func:`bench_subprocess` does both).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from typing import Callable

import torch
from torch import nn

from common.evaluate import latency_ms
from papers.awq.awq import AwqLinear, replace_module_

KERNEL_GROUP_SIZES = (32, 64, 128, 256)
INNER_K_TILES = 8


def available() -> bool:
    """Whether this torch has the int4 CPU kernel and its packing op."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


class Int4Linear(nn.Module):
    """A linear layer whose weight lives as packed int4 codes for ``aten._weight_int4pack_mm_for_cpu``.

    forward(x) = int4mm(bf16(x * (1/s)), packed, scale/zero) + b, computed in bf16, returned in x's dtype.
    """

    weight_bits = 4

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, inv_scale: torch.Tensor,
                 bias: torch.Tensor | None, in_features: int, out_features: int, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("packed", packed)  # uint8 [N, K / 2]
        self.register_buffer("scales_zeros", scales_zeros)  # bf16 [K / group_size, N, 2]
        self.register_buffer("inv_scale", inv_scale)  # fp32 [K]
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    @torch.no_grad()
    def from_awq(cls, m: AwqLinear) -> "Int4Linear":
        """Pack an AwqLinear's 4-bit codes; scale = Delta, zero = Delta (8 - z) per group (same dequantized w)."""
        if m.weight_bits != 4 or m.group_size not in KERNEL_GROUP_SIZES:
            raise ValueError(f"the int4 kernel needs 4-bit codes and a group size in {KERNEL_GROUP_SIZES}, "
                             f"got {m.weight_bits} bits, group {m.group_size}")
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(m.codes.to(torch.int32).contiguous(),
                                                                     INNER_K_TILES)
        delta = m.delta.squeeze(-1)  # [N, n_group]
        zero_f = delta * (8.0 - m.zero.squeeze(-1))  # w = Delta (q - z) = Delta (q - 8) + Delta (8 - z)
        sz = torch.stack([delta.T, zero_f.T], -1).to(torch.bfloat16).contiguous()  # [n_group, N, 2]
        return cls(packed, sz, m.inv_scale.float().clone(), m.bias, m.in_features, m.out_features, m.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xb = (x * self.inv_scale).to(torch.bfloat16).reshape(-1, self.in_features)  # diag(s)^-1 X, Eq. (2)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.packed, self.group_size, self.scales_zeros)
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def stored_bytes(self) -> int:
        """Bytes this layer holds in memory: packed codes, scale/zero pairs, 1/s, bias."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scales_zeros, self.inv_scale)) + (
            0 if self.bias is None else self.bias.numel() * 4)


@torch.no_grad()
def to_int4_(model: nn.Module) -> list[str]:
    """Replace every 4-bit AwqLinear of ``model`` by its Int4Linear (in place); returns the names."""
    names = [n for n, m in model.named_modules() if isinstance(m, AwqLinear) and m.weight_bits == 4]
    for n in names:
        replace_module_(model, n, Int4Linear.from_awq(model.get_submodule(n)))
    return names


@torch.no_grad()
def _layer_rows(float_model: nn.Module, awq_model: nn.Module, int4_model: nn.Module, names: list[str],
                repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in names:
        fl, aq, i4 = float_model.get_submodule(n), awq_model.get_submodule(n), int4_model.get_submodule(n)
        x = torch.randn(8, fl.in_features, generator=g)
        ref = aq(x)
        err = float((i4(x) - ref).abs().max() / ref.abs().max())
        x1 = x[:1]
        rows.append({"layer": n, "shape": [fl.out_features, fl.in_features],
                     "fp32_bytes": (fl.weight.numel() + fl.out_features) * 4, "int4_bytes": i4.stored_bytes(),
                     "max_rel_diff_vs_pseudo": round(err, 6),
                     "fp32_ms_b1": round(latency_ms(fl, x1, repeats=repeats), 4),
                     "int4_ms_b1": round(latency_ms(i4, x1, repeats=repeats), 4)})
    return rows


def deploy_report(float_model: nn.Module, awq_model: nn.Module, evaluate: Callable[[nn.Module], dict],
                  example: Callable[[nn.Module], object], repeats: int = 20, bench: bool = True) -> dict:
    """Pack ``awq_model``'s 4-bit layers for the kernel; compare with the pseudo-quantized model; bytes and latency.

    Returns: {"kernel", "cpu_capability", "layers": [per layer: bytes, max relative difference, batch-1 ms],
    "int4_metrics" (the evaluation of the int4 model), "pseudo_metrics", whole-model batch-1 latency of fp32,
    pseudo-quantized fp32 and int4, byte totals, and (``bench``) the 4096 x 4096 layer benchmark}.
    """
    int4_model = copy.deepcopy(awq_model).eval()
    names = to_int4_(int4_model)
    rows = _layer_rows(float_model, awq_model, int4_model, names, repeats)
    class _Fwd(nn.Module):  # latency_ms wants fn(x); the example closes over its own input
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, _):
            return example(self.m)
    dummy = torch.zeros(1)
    out = {"kernel": "torch.ops.aten._weight_int4pack_mm_for_cpu (bf16 activations, inner_k_tiles 8)",
           "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "layers": rows,
           "linear_fp32_bytes": sum(r["fp32_bytes"] for r in rows), "linear_int4_bytes": sum(r["int4_bytes"] for r in rows),
           "max_rel_diff_vs_pseudo": max(r["max_rel_diff_vs_pseudo"] for r in rows),
           "pseudo_metrics": evaluate(awq_model), "int4_metrics": evaluate(int4_model),
           "model_fp32_ms_b1": round(latency_ms(_Fwd(float_model), dummy, repeats=repeats), 3),
           "model_pseudo_ms_b1": round(latency_ms(_Fwd(awq_model), dummy, repeats=repeats), 3),
           "model_int4_ms_b1": round(latency_ms(_Fwd(int4_model), dummy, repeats=repeats), 3)}
    out["linear_bytes_ratio"] = round(out["linear_fp32_bytes"] / out["linear_int4_bytes"], 3)
    if bench:
        out["bench_4096"] = {cap: bench_subprocess(cap, repeats=max(repeats, 20)) for cap in ("default", "avx2")}
    return out


@torch.no_grad()
def bench_layer(k: int = 4096, n: int = 4096, group_size: int = 128, repeats: int = 50) -> dict:
    """Batch-1 latency of one K x N layer: fp32 nn.Linear vs the int4 kernel on random 4-bit codes."""
    torch.manual_seed(0)
    lin = nn.Linear(k, n)
    aq = AwqLinear.from_float(lin, 4, group_size)
    i4 = Int4Linear.from_awq(aq)
    x = torch.randn(1, k)
    fp = latency_ms(lin, x, repeats=repeats, warmup=5)
    q = latency_ms(i4, x, repeats=repeats, warmup=5)
    return {"k": k, "n": n, "group_size": group_size, "fp32_ms": round(fp, 4), "int4_ms": round(q, 4),
            "speedup": round(fp / q, 3), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "fp32_bytes": (k * n + n) * 4, "int4_bytes": i4.stored_bytes()}


def bench_subprocess(capability: str = "default", repeats: int = 50, threads: int | None = None) -> dict:
    """:func:`bench_layer` in a fresh process; ``capability="avx2"`` sets ATEN_CPU_CAPABILITY=avx2 there."""
    env = dict(os.environ)
    if capability != "default":
        env["ATEN_CPU_CAPABILITY"] = capability
    cmd = [sys.executable, "-m", "papers.awq.int4", "--repeats", str(repeats),
           "--threads", str(threads or torch.get_num_threads())]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m papers.awq.int4", description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=4096, help="input width K")
    p.add_argument("--n", type=int, default=4096, help="output width N")
    p.add_argument("--group-size", type=int, default=128, help="group size (32, 64, 128, 256)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(json.dumps(bench_layer(a.k, a.n, a.group_size, a.repeats)))


if __name__ == "__main__":
    _main()
