"""XNOR-popcount kernel of papers/xnor against torch fp32: GEMM, ResNet-20 binary conv layers, whole models.

Figures (issue 5): binary GEMM M=N=1024, K=4096 bits vs the fp32 GEMM of the same shape (target
>= 8x), the 3x3 binary conv layers of ResNet-20 vs nn.Conv2d, and whole XNOR ResNet-20 / LeNet-5
forwards on the packed path vs their float twins at batch 1 and 64. Every ratio is
median(fp32 time) / median(binary time) over repeats, both measured in the same process with the
same thread count, repeats interleaved (fp32, binary, fp32, binary, ...) so that the load of
other processes on this shared machine hits both; the load average is recorded beside them.

    python benchmarks/xnor_gemm.py [--repeats 21] [--threads 1 2] [--isa native avx2 scalar] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from benchmarks._meta import write_result
from common.models import LeNet5, resnet20
from papers.xnor import kernel
from papers.xnor.models import XnorLeNet5, XnorResNetCifar
from papers.xnor.packed import PackedXnorConv2d, convert_to_packed
from papers.xnor.xnor import XnorConv2d, binarize, bwn_alpha


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Median and min seconds of each callable, calls interleaved round-robin."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: {"median_ms": statistics.median(v) * 1e3, "min_ms": min(v) * 1e3} for k, v in times.items()}


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    kernel.set_num_threads(n)


def gemm(threads: int, isas: list[str], repeats: int) -> list[dict]:
    m = n = 1024
    bits = 4096
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, bits, generator=g), torch.randn(n, bits, generator=g)
    rows = []
    for isa in isas:
        os.environ["NNQ_XNOR_ISA"] = isa
        set_threads(threads)
        aw, bw = kernel.pack_signs(a), kernel.pack_signs(b)
        assert torch.equal(kernel.binary_gemm(aw, bw, bits)[:4, :4].float(), (binarize(a[:4]) @ binarize(b[:4]).T))
        t = interleaved({"fp32": lambda: a @ b.T,
                         "binary": lambda: kernel.binary_gemm(aw, bw, bits),
                         "binary_incl_packing": lambda: kernel.binary_gemm(kernel.pack_signs(a), kernel.pack_signs(b),
                                                                           bits)}, repeats)
        rows.append({"shape": f"M={m} N={n} K={bits} bits", "threads": threads, "isa": isa,
                     "backend": kernel.backend_name(), "fp32_ms": t["fp32"]["median_ms"],
                     "binary_ms": t["binary"]["median_ms"],
                     "binary_incl_packing_ms": t["binary_incl_packing"]["median_ms"],
                     "ratio": t["fp32"]["median_ms"] / t["binary"]["median_ms"],
                     "ratio_incl_packing": t["fp32"]["median_ms"] / t["binary_incl_packing"]["median_ms"],
                     "ratio_of_min": t["fp32"]["min_ms"] / t["binary"]["min_ms"]})
        print(rows[-1])
    os.environ["NNQ_XNOR_ISA"] = "native"
    return rows


@torch.no_grad()
def conv_layers(threads: int, repeats: int) -> list[dict]:
    set_threads(threads)
    rows = []
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        for batch in (1, 64):
            torch.manual_seed(0)
            fconv = nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
            xconv = XnorConv2d.from_float(fconv)
            packed = PackedXnorConv2d(binarize(xconv.weight), bwn_alpha(xconv.weight), None, (1, 1), (1, 1))
            x = torch.randn(batch, c, hw, hw)
            assert torch.equal(packed(x), xconv(x))
            t = interleaved({"fp32": lambda: fconv(x), "xnor_packed": lambda: packed(x),
                             "xnor_simulated": lambda: xconv(x)}, repeats)
            rows.append({"layer": f"ResNet-20 3x3 conv {c}->{c} @ {hw}x{hw}", "batch": batch, "threads": threads,
                         "fp32_ms": t["fp32"]["median_ms"], "xnor_packed_ms": t["xnor_packed"]["median_ms"],
                         "xnor_simulated_ms": t["xnor_simulated"]["median_ms"],
                         "ratio": t["fp32"]["median_ms"] / t["xnor_packed"]["median_ms"],
                         "ratio_of_min": t["fp32"]["min_ms"] / t["xnor_packed"]["min_ms"]})
            print(rows[-1])
    return rows


@torch.no_grad()
def whole_models(threads: int, repeats: int) -> list[dict]:
    set_threads(threads)
    rows = []
    for name, fp, xn, shape in (("ResNet-20 (CIFAR)", resnet20(), XnorResNetCifar(20), (3, 32, 32)),
                                ("LeNet-5 (MNIST 32x32)", LeNet5(), XnorLeNet5(), (1, 32, 32))):
        fp.eval()
        xn.train()
        xn(torch.randn(64, *shape))  # non-trivial BN statistics
        xn.eval()
        packed = convert_to_packed(xn)
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            if batch > 1:
                assert torch.equal(packed(x), xn(x))
            t = interleaved({"fp32": lambda: fp(x), "xnor_packed": lambda: packed(x),
                             "xnor_simulated": lambda: xn(x)}, repeats)
            rows.append({"model": name, "batch": batch, "threads": threads, "fp32_ms": t["fp32"]["median_ms"],
                         "xnor_packed_ms": t["xnor_packed"]["median_ms"],
                         "xnor_simulated_ms": t["xnor_simulated"]["median_ms"],
                         "ratio": t["fp32"]["median_ms"] / t["xnor_packed"]["median_ms"],
                         "ratio_of_min": t["fp32"]["min_ms"] / t["xnor_packed"]["min_ms"]})
            print(rows[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--isa", nargs="+", default=["native", "avx2", "scalar"])
    ap.add_argument("--quick", action="store_true", help="5 repeats, for a smoke check")
    args = ap.parse_args()
    repeats = 5 if args.quick else args.repeats
    load_before = os.getloadavg()
    t0 = time.time()
    figures = {"gemm": [], "conv_layers": [], "whole_models": []}
    for th in args.threads:
        figures["gemm"] += gemm(th, args.isa, repeats)
        figures["conv_layers"] += conv_layers(th, repeats)
        figures["whole_models"] += whole_models(th, repeats)
    load_after = os.getloadavg()
    figures["repeats"] = repeats
    figures["wall_s"] = round(time.time() - t0, 1)
    figures["contention"] = {
        "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": load_after,
        "note": ("shared 2-core machine: other processes ran during the measurement (load average above); "
                 "fp32 and binary repeats are interleaved so both see the same load; 'ratio' is the ratio of "
                 "medians, 'ratio_of_min' of the fastest repeats. With 2 threads the figures are dominated by "
                 "waiting for a descheduled sibling thread (both torch's and ours), not by compute.")}
    figures["kernel"] = {"native_backend": kernel.backend_name("native"),
                         "compile_flags": "cc -O3 -fopenmp -march=native (avx2: -march=x86-64-v3 -mtune=native; scalar: -march=x86-64-v2 -mtune=native)"}
    print(write_result("xnor_gemm", figures))


if __name__ == "__main__":
    main()
