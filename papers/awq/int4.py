"""Real int4 deployment of AWQ-quantized linear layers, on two kernels: ours (C, AVX2) and PyTorch's own.

``--kernel ours``: :class:`OursInt4Linear` on ``int4_kernel.c``, our weight-only int4 GEMM for batch 1 and small
batches, compiled on first use (:mod:`common.cbuild`) for AVX2 (``-march=x86-64-v3``, the default), ``native`` or
``scalar``, loaded with ctypes. Codes two per byte (:func:`pack_codes`), Delta and Delta z per group in fp32,
activations fp32; per group the scale is applied once, sum_k Delta (q_k - z) x_k = Delta (sum q_k x_k - z sum x_k),
so the output is the pseudo-quantized (dequantized fp32) layer's within fp32 rounding. One thread by default,
OpenMP over output rows with :func:`set_num_threads`.

``--kernel aten``: :class:`Int4Linear` on ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (PyTorch >= 2.5; this
package checks for it): bf16 activations [M, K], weights packed by ``aten._convert_weight_to_int4pack_for_cpu``
from 4-bit codes [N, K] (two per byte), and per group of ``group_size`` input channels a (scale, zero) pair in
bf16, ``[K / group_size, N, 2]``, with the dequantized weight w = (q - 8) * scale + zero. AWQ's layer stores
w = Delta (q - z) (:class:`papers.awq.awq.AwqLinear`), so scale = Delta and zero = Delta (8 - z): the same codes,
no requantization. Group sizes 32, 64 and 128 (and 256) are what that kernel supports.

Both divide the input by s (multiply by the stored 1/s) before the product, as Eq. (2).

``python -m papers.awq.int4 [--k 4096] [--n 4096] [--repeats 50] [--kernel both|ours|aten] [--isa avx2]`` times
one K x N layer at batch 1 (fp32 ``nn.Linear`` vs the int4 kernels, calls interleaved) and prints JSON. With
:data:`AVX2_MACHINE_ENV` in the environment (``ATEN_CPU_CAPABILITY=avx2`` for ATen, ``MKL_ENABLE_INSTRUCTIONS=AVX2``
and ``DNNL_MAX_CPU_ISA`` / ``ONEDNN_MAX_CPU_ISA=AVX2`` for fp32's MKL and oneDNN) torch runs as on an AVX2-only
machine (``torch.backends.cpu.get_cpu_capability()`` says which ATen path ran; :func:`bench_subprocess` does both).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common.cbuild import BASE_FLAGS, ISA_FLAGS, build_library
from common.errors import NnqError
from common.evaluate import interleaved_ms, latency_ms
from papers.awq.awq import AwqLinear, replace_module_

KERNEL_GROUP_SIZES = (32, 64, 128, 256)
INNER_K_TILES = 8
KERNELS = ("ours", "aten")
OUR_ISAS = ("avx2", "native", "scalar")
_SRC = Path(__file__).with_name("int4_kernel.c")
_LIBS: dict[str, ctypes.CDLL] = {}
_THREADS = [1]
_p, _i64 = ctypes.c_void_p, ctypes.c_int64


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


def library(isa: str = "avx2") -> ctypes.CDLL:
    """Our int4 kernel (``int4_kernel.c``) built for ``isa``: "avx2" (-march=x86-64-v3), "native" or "scalar"."""
    if isa not in OUR_ISAS:
        raise NnqError(f"isa={isa!r} is not one of {list(OUR_ISAS)}")
    if isa not in _LIBS:
        lib = ctypes.CDLL(str(build_library(_SRC, cache="awq", stem=f"int4_kernel_{isa}",
                                            flags=BASE_FLAGS + ISA_FLAGS[isa])))
        lib.awq_isa.restype = ctypes.c_char_p
        lib.awq_int4_linear.argtypes = [_p, _i64, _i64, _p, _i64, _i64, _p, _p, _p, _p, _p, ctypes.c_int]
        lib.awq_int4_linear.restype = ctypes.c_int
        _LIBS[isa] = lib
    return _LIBS[isa]


def set_num_threads(n: int) -> None:
    """OpenMP threads of our kernel (over output rows); 1 by default."""
    if n < 1:
        raise NnqError(f"threads must be >= 1, got {n}")
    _THREADS[0] = int(n)


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes [N, K] (K a multiple of 64) -> int32 words [N, K / 8], the layout of ``int4_kernel.c``.

    Block b of 64 codes is 8 words; nibble j of word i holds the code of input channel 64 b + 8 j + i.
    """
    n, k = codes.shape
    if k % 64:
        raise NnqError(f"our int4 kernel packs rows of a multiple of 64 codes, got {k}")
    c = codes.to(torch.int64).reshape(n, k // 64, 8, 8)  # [N, block, j, i]
    shifts = (4 * torch.arange(8, dtype=torch.int64)).view(1, 1, 8, 1)
    words = (c << shifts).sum(2)  # [N, block, i]: nibbles of different j never overlap
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).reshape(n, k // 8)


def unpack_codes(words: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_codes`: int32 words [N, K / 8] -> uint8 codes [N, K]."""
    n, kw = words.shape
    w = words.to(torch.int64).reshape(n, kw // 8, 1, 8) & 0xFFFFFFFF
    shifts = (4 * torch.arange(8, dtype=torch.int64)).view(1, 1, 8, 1)
    return ((w >> shifts) & 0xF).to(torch.uint8).reshape(n, kw * 8)


class OursInt4Linear(nn.Module):
    """A linear layer on our int4 kernel (``int4_kernel.c``): packed 4-bit codes, fp32 Delta and Delta z per group.

    forward(x) = sum_g Delta (sum_{k in g} q_k x'_k - z sum_{k in g} x'_k) + b with x' = x (1/s) (Eq. (2)),
    the dequantized layer's output computed in fp32 (activations stay fp32).
    """

    weight_bits = 4

    def __init__(self, packed: torch.Tensor, delta: torch.Tensor, delta_zero: torch.Tensor, inv_scale: torch.Tensor,
                 bias: torch.Tensor | None, in_features: int, out_features: int, group_size: int,
                 isa: str = "avx2"):
        super().__init__()
        self.in_features, self.out_features, self.group_size, self.isa = in_features, out_features, group_size, isa
        self.register_buffer("packed", packed)  # int32 [N, K / 8]
        self.register_buffer("delta", delta)  # fp32 [N, K / group_size]
        self.register_buffer("delta_zero", delta_zero)  # fp32 [N, K / group_size], Delta z
        self.register_buffer("inv_scale", inv_scale)  # fp32 [K]
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous().clone())
        self._lib = library(isa)

    @classmethod
    @torch.no_grad()
    def from_awq(cls, m: AwqLinear, isa: str = "avx2") -> "OursInt4Linear":
        """Pack an AwqLinear's 4-bit codes for our kernel (same codes, Delta and z; no requantization)."""
        if m.weight_bits != 4 or m.group_size % 64:
            raise ValueError(f"our int4 kernel needs 4-bit codes and a group size that is a multiple of 64, got "
                             f"{m.weight_bits} bits, group {m.group_size}")
        delta = m.delta.squeeze(-1).float().contiguous()  # [N, n_group]
        dz = (delta * m.zero.squeeze(-1).float()).contiguous()
        return cls(pack_codes(m.codes), delta, dz, m.inv_scale.float().contiguous().clone(), m.bias, m.in_features,
                   m.out_features, m.group_size, isa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise NnqError(f"our int4 kernel takes fp32 CPU input, got {x.dtype} on {x.device}")
        shape = x.shape
        x2 = x.detach().reshape(-1, self.in_features).contiguous()
        y = torch.empty(x2.shape[0], self.out_features)
        rc = self._lib.awq_int4_linear(x2.data_ptr(), x2.shape[0], self.in_features, self.packed.data_ptr(),
                                       self.out_features, self.group_size, self.delta.data_ptr(),
                                       self.delta_zero.data_ptr(), self.inv_scale.data_ptr(),
                                       None if self.bias is None else self.bias.data_ptr(), y.data_ptr(),
                                       _THREADS[0])
        if rc:
            raise NnqError(f"our int4 kernel refused the call (status {rc}): shapes {tuple(shape)}, "
                           f"K {self.in_features}, group {self.group_size}")
        return y.reshape(*shape[:-1], self.out_features)

    def stored_bytes(self) -> int:
        """Bytes this layer holds in memory: packed codes, Delta and Delta z, 1/s, bias."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.delta, self.delta_zero,
                                                          self.inv_scale)) + (
            0 if self.bias is None else self.bias.numel() * 4)

    def backend(self) -> str:
        return f"ours ({self.isa} build: {self._lib.awq_isa().decode()})"


@torch.no_grad()
def to_int4_(model: nn.Module, kernel: str = "aten", isa: str = "avx2") -> list[str]:
    """Replace every 4-bit AwqLinear of ``model`` by its int4 layer (in place); returns the names.

    ``kernel="aten"``: :class:`Int4Linear` (PyTorch's op); ``"ours"``: :class:`OursInt4Linear` built for ``isa``.
    """
    if kernel not in KERNELS:
        raise NnqError(f"kernel={kernel!r} is not one of {list(KERNELS)}")
    names = [n for n, m in model.named_modules() if isinstance(m, AwqLinear) and m.weight_bits == 4]
    for n in names:
        m = model.get_submodule(n)
        replace_module_(model, n, OursInt4Linear.from_awq(m, isa) if kernel == "ours" else Int4Linear.from_awq(m))
    return names


# torch as on an AVX2-only machine: ATen's kernels, MKL's GEMMs and oneDNN capped at AVX2 (each library reads its
# variable when it loads, so they are set in a fresh process); DNNL_ and ONEDNN_ are oneDNN's old and new names
AVX2_MACHINE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
                    "ONEDNN_MAX_CPU_ISA": "AVX2"}


def isa_env() -> dict[str, str]:
    """The ISA-capping variables of :data:`AVX2_MACHINE_ENV` that are set in this process."""
    return {k: os.environ[k] for k in AVX2_MACHINE_ENV if k in os.environ}


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
                     "max_rel_diff_vs_pseudo": round(err, 8),
                     "fp32_ms_b1": round(latency_ms(fl, x1, repeats=repeats), 4),
                     "int4_ms_b1": round(latency_ms(i4, x1, repeats=repeats), 4)})
    return rows


KERNEL_NAMES = {"aten": "torch.ops.aten._weight_int4pack_mm_for_cpu (bf16 activations, inner_k_tiles 8)",
                "ours": "papers/awq/int4_kernel.c (fp32 activations, group scale once per group)"}


def deploy_report(float_model: nn.Module, awq_model: nn.Module, evaluate: Callable[[nn.Module], dict],
                  example: Callable[[nn.Module], object], repeats: int = 20, bench: bool = True,
                  kernels: tuple[str, ...] = KERNELS, isa: str = "avx2") -> dict:
    """Pack ``awq_model``'s 4-bit layers for each kernel; compare with the pseudo-quantized model; bytes and latency.

    Returns: {"torch", "cpu_capability", "threads", "pseudo_metrics", whole-model batch-1 latency of fp32 and
    pseudo-quantized fp32, "linear_fp32_bytes", "kernels": {kernel: {"kernel", "isa" (ATen's code path, or our
    build), "layers": [per layer: bytes, max relative difference, batch-1 ms], "int4_metrics" (the evaluation of
    the int4 model), "model_int4_ms_b1", byte totals}}, and (``bench``) the 4096 x 4096 layer benchmark on the
    default and the AVX2 code path}.
    """
    class _Fwd(nn.Module):  # latency_ms wants fn(x); the example closes over its own input
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, _):
            return example(self.m)
    dummy = torch.zeros(1)
    out = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "isa_env": isa_env(), "pseudo_metrics": evaluate(awq_model),
           "model_fp32_ms_b1": round(latency_ms(_Fwd(float_model), dummy, repeats=repeats), 3),
           "model_pseudo_ms_b1": round(latency_ms(_Fwd(awq_model), dummy, repeats=repeats), 3), "kernels": {}}
    groups = {m.group_size for m in awq_model.modules() if isinstance(m, AwqLinear) and m.weight_bits == 4}
    for kernel in kernels:
        if kernel == "aten" and not (available() and groups <= set(KERNEL_GROUP_SIZES)):
            out["kernels"][kernel] = {"skipped": "this torch has no aten._weight_int4pack_mm_for_cpu" if not available()
                                      else f"group sizes {sorted(groups)} not in {KERNEL_GROUP_SIZES}"}
            continue
        if kernel == "ours" and any(g % 64 for g in groups):
            out["kernels"][kernel] = {"skipped": f"group sizes {sorted(groups)}: ours needs multiples of 64"}
            continue
        int4_model = copy.deepcopy(awq_model).eval()
        names = to_int4_(int4_model, kernel, isa)
        rows = _layer_rows(float_model, awq_model, int4_model, names, repeats)
        rep = {"kernel": KERNEL_NAMES[kernel],
               "isa": isa if kernel == "ours" else out["cpu_capability"],
               "backend": int4_model.get_submodule(names[0]).backend() if kernel == "ours" else "aten",
               "layers": rows, "linear_int4_bytes": sum(r["int4_bytes"] for r in rows),
               "max_rel_diff_vs_pseudo": max(r["max_rel_diff_vs_pseudo"] for r in rows),
               "int4_metrics": evaluate(int4_model),
               "model_int4_ms_b1": round(latency_ms(_Fwd(int4_model), dummy, repeats=repeats), 3)}
        out["linear_fp32_bytes"] = sum(r["fp32_bytes"] for r in rows)
        rep["linear_bytes_ratio"] = round(out["linear_fp32_bytes"] / rep["linear_int4_bytes"], 3)
        out["kernels"][kernel] = rep
    if bench:
        out["bench_4096"] = {cap: bench_subprocess(cap, repeats=max(repeats, 20)) for cap in ("default", "avx2")}
    return out


@torch.no_grad()
def bench_layer(k: int = 4096, n: int = 4096, group_size: int = 128, repeats: int = 50, isa: str = "avx2") -> dict:
    """Batch-1 latency of one K x N layer, calls interleaved: fp32 nn.Linear, ATen's int4 kernel and ours.

    Medians in ms; ``speedup`` = fp32 / ATen int4, ``ours_speedup`` = fp32 / ours (our kernel built for ``isa``,
    with our default of 1 thread; torch's threads as set).
    """
    torch.manual_seed(0)
    lin = nn.Linear(k, n)
    aq = AwqLinear.from_float(lin, 4, group_size)
    ours = OursInt4Linear.from_awq(aq, isa)
    x = torch.randn(1, k)
    fns = {"fp32": lambda: lin(x), "ours": lambda: ours(x)}
    i4 = None
    if available() and group_size in KERNEL_GROUP_SIZES:
        i4 = Int4Linear.from_awq(aq)
        fns["aten"] = lambda: i4(x)
    med = {key: statistics.median(v) for key, v in interleaved_ms(fns, repeats).items()}
    out = {"k": k, "n": n, "group_size": group_size, "fp32_ms": round(med["fp32"], 4),
           "ours_ms": round(med["ours"], 4), "ours_speedup": round(med["fp32"] / med["ours"], 3),
           "ours_isa": isa, "ours_backend": ours.backend(), "ours_threads": _THREADS[0],
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "isa_env": isa_env(),
           "threads": torch.get_num_threads(), "fp32_bytes": (k * n + n) * 4, "ours_bytes": ours.stored_bytes()}
    if i4 is not None:
        out.update(int4_ms=round(med["aten"], 4), speedup=round(med["fp32"] / med["aten"], 3),
                   int4_bytes=i4.stored_bytes())
    return out


def bench_subprocess(capability: str = "default", repeats: int = 50, threads: int | None = None) -> dict:
    """:func:`bench_layer` in a fresh process; ``capability="avx2"`` sets :data:`AVX2_MACHINE_ENV` there."""
    env = {k: v for k, v in os.environ.items() if k not in AVX2_MACHINE_ENV}
    if capability == "avx2":
        env.update(AVX2_MACHINE_ENV)
    elif capability != "default":
        raise NnqError(f"capability={capability!r}: use 'default' or 'avx2'")
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
    p.add_argument("--group-size", type=int, default=128, help="group size (64, 128, 256 for both kernels)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats (median)")
    p.add_argument("--threads", type=int, default=1, help="threads of torch and of our kernel")
    p.add_argument("--kernel", choices=("both", *KERNELS), default="both",
                   help="time ours, ATen's or both next to fp32")
    p.add_argument("--isa", choices=OUR_ISAS, default="avx2", help="the build of our kernel")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    set_num_threads(a.threads)
    res = bench_layer(a.k, a.n, a.group_size, a.repeats, a.isa)
    if a.kernel == "aten":
        res = {k: v for k, v in res.items() if not k.startswith("ours")}
    elif a.kernel == "ours":
        res = {k: v for k, v in res.items() if k not in ("int4_ms", "speedup", "int4_bytes")}
    print(json.dumps(res))


if __name__ == "__main__":
    try:
        _main()
    except NnqError as exc:
        sys.exit(f"error: {exc}")
