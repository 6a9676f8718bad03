"""CPU speed of the efficient CNNs (papers/efficient_cnns): FLOPs are not latency, and what int8 buys.

Three parts, each timed with the candidates interleaved (A, B, C, ..., then again) so that a slow moment of a
shared machine falls on every candidate alike; every figure is a median over the repeats after warm-up.

``latency``     the ImageNet configuration (224x224, float32, eval) of every architecture at batch 1 and 32,
                1 and 2 torch threads (ShuffleNet V2's Fig. 1 on this CPU).
``guidelines``  ShuffleNet V2's four guidelines (Sec. 2) as micro-networks of equal multiply-adds:
                G1 1x1 convs whose input:output widths are 1:1 / 1:2 / 1:6 / 1:12; G2 1x1 group convs with
                g = 1 / 2 / 4 / 8; G3 one conv vs 2 or 4 fragments in series or in parallel; G4 a ResNet
                bottleneck with and without its ReLUs and shortcut. The widths are ours (equal MACs inside each
                guideline, counted by torch's FLOP counter), not the paper's; batch 1, 56x56 maps.
``int8``        each architecture (224x224, batch 1) in float32 and after PyTorch's int8 post-training
                quantization (papers/efficient_cnns/ptq.py, FX): latency, and file bytes both as torch.save
                of the state dict and as safetensors (fp32: common.evaluate.save_fp32; int8: ptq.save_int8).

Every part runs once per instruction-set setting in a fresh process (the variables must be set before torch is
imported): ``default`` (what this CPU offers) and ``avx2``, which caps ATen's kernels (ATEN_CPU_CAPABILITY),
oneDNN (ONEDNN_MAX_CPU_ISA) and MKL (MKL_ENABLE_INSTRUCTIONS) at AVX2 — what an AVX2-only x86 machine runs.
FBGEMM, behind the "x86" int8 engine, picks its kernels by itself and cannot be capped, so on ``avx2`` int8 runs
on the "onednn" engine; on ``default`` both engines are measured.

    python -m benchmarks.efficient_cnns                 # everything -> benchmarks/results/efficient_cnns.json
    python -m benchmarks.efficient_cnns --parts int8 --isa avx2 --repeats 5
    # on a CPU whose flags have no AVX-512 (the default setting then is AVX2, FBGEMM included):
    python -m benchmarks.efficient_cnns --parts latency int8 --isa default --threads 1 --batches 1 \
        --name efficient_cnns_avx2_cpu
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

import torch
from torch import nn

from common.evaluate import interleaved_ms

ISA_ENV = {"default": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                   "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
NETWORKS = [("mobilenet_v1", 1.0, None), ("mobilenet_v2", 1.0, None), ("shufflenet_v1", 1.0, "g3"),
            ("shufflenet_v2", 1.0, None), ("squeezenet", 1.0, "1.0"), ("squeezenet", 1.0, "1.1"),
            ("squeezenext", 1.0, "23")]
PARTS = ("latency", "guidelines", "int8")


def interleaved(fns: dict[str, object], x: torch.Tensor, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time (ms) of every ``fn(x)``, the candidates interleaved within each repeat."""
    times = interleaved_ms({name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}, repeats, warmup)
    return {name: round(statistics.median(v), 3) for name, v in times.items()}


def _networks() -> dict[str, nn.Module]:
    from papers.efficient_cnns.models import build
    from papers.efficient_cnns.train import method_name

    torch.manual_seed(0)
    return {method_name(a, w, v): build(a, w, variant=v).eval() for a, w, v in NETWORKS}


# ---------------------------------------------------------------- ShuffleNet V2's guidelines (Sec. 2)
def _conv1x1(c_in: int, c_out: int, groups: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False), nn.ReLU(inplace=True))


class _Parallel(nn.Module):
    """k branches of one 1x1 conv C -> C/k on the same input, concatenated (G3's parallel fragments)."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.branches = nn.ModuleList(_conv1x1(c, c // k) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class _Bottleneck(nn.Module):
    """A ResNet bottleneck 1x1 C -> C/4, 3x3, 1x1 C/4 -> C, with its ReLUs and shortcut switchable (G4)."""

    def __init__(self, c: int, relu: bool, shortcut: bool):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(c, c // 4, 1, bias=False), nn.Conv2d(c // 4, c // 4, 3, padding=1, bias=False),
                                    nn.Conv2d(c // 4, c, 1, bias=False)])
        self.relu, self.shortcut = relu, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = conv(y)
            if self.relu:
                y = torch.relu(y)
        return y + x if self.shortcut else y


def guideline_nets(c: int = 128, depth: int = 10) -> list[tuple[str, str, nn.Module, int]]:
    """(guideline, variant, network, input channels): ``depth`` blocks each; equal MACs within a guideline."""
    nets: list[tuple[str, str, nn.Module, int]] = []
    for r in (1, 2, 6, 12):  # G1: c1 * c2 = c^2 kept, c2 / c1 = r
        c1, c2 = round(c / math.sqrt(r)), round(c * math.sqrt(r))
        blocks = [m for _ in range(depth) for m in (_conv1x1(c1, c2), _conv1x1(c2, c1))]
        nets.append(("G1", f"c1:c2 = 1:{r} ({c1}, {c2})", nn.Sequential(*blocks), c1))
    for g in (1, 2, 4, 8):  # G2: width^2 / g kept
        w = round(c * math.sqrt(g) / g) * g
        nets.append(("G2", f"g = {g} (width {w})", nn.Sequential(*[_conv1x1(w, w, g) for _ in range(depth)]), w))
    for k in (1, 2, 4):  # G3 in series: k convs of width c / sqrt(k) per block
        w = round(c / math.sqrt(k))
        name = "1 fragment" if k == 1 else f"{k} fragments in series (width {w})"
        nets.append(("G3", name, nn.Sequential(*[_conv1x1(w, w) for _ in range(depth * k)]), w))
    for k in (2, 4):  # G3 in parallel: k branches C -> C/k, concatenated
        nets.append(("G3", f"{k} fragments in parallel", nn.Sequential(*[_Parallel(c, k) for _ in range(depth)]), c))
    for relu, shortcut in ((True, True), (False, True), (True, False), (False, False)):
        name = f"ReLU {'on' if relu else 'off'}, shortcut {'on' if shortcut else 'off'}"
        nets.append(("G4", name, nn.Sequential(*[_Bottleneck(c * 2, relu, shortcut) for _ in range(depth)]), c * 2))
    return nets


def part_guidelines(repeats: int, threads: list[int], size: int = 56) -> list[dict]:
    from common.evaluate import macs

    torch.manual_seed(0)
    nets = guideline_nets()
    rows = [{"guideline": g, "variant": v, "macs": macs(m.eval(), torch.zeros(1, c, size, size)), "ms": {}}
            for g, v, m, c in nets]
    for t in threads:
        torch.set_num_threads(t)
        for guideline in ("G1", "G2", "G3", "G4"):
            group = [(i, m, c) for i, (g, _, m, c) in enumerate(nets) if g == guideline]
            # every variant of a guideline in one interleaved measurement; inputs differ in width only
            inputs = {i: torch.randn(1, c, size, size) for i, _, c in group}
            fns = {str(i): (lambda _x, m=m, i=i: m(inputs[i])) for i, m, _ in group}
            for i, ms in interleaved(fns, torch.empty(0), repeats).items():
                rows[int(i)]["ms"][str(t)] = ms
    return rows


# ---------------------------------------------------------------- latency and int8
def part_latency(repeats: int, threads: list[int], batches: list[int]) -> list[dict]:
    models = _networks()
    out = []
    for t in threads:
        torch.set_num_threads(t)
        for b in batches:
            out.append({"threads": t, "batch": b,
                        "median_ms": interleaved(models, torch.randn(b, 3, 224, 224), repeats)})
    return out


def part_int8(repeats: int, threads: list[int], engines: list[str]) -> dict:
    """fp32 vs int8 (each engine) per architecture, batch 1: bytes and median latency, interleaved."""
    import tempfile
    from pathlib import Path

    from common.evaluate import fp32_size_bytes
    from papers.efficient_cnns.ptq import quantize_int8, save_int8, state_dict_bytes

    models = _networks()
    x = torch.randn(1, 3, 224, 224)
    calib = [torch.randn(4, 3, 224, 224) for _ in range(2)]  # speed and size do not depend on the values
    rows: dict[str, dict] = {}
    for name, model in models.items():
        row = {"fp32_bytes": state_dict_bytes(model), "fp32_safetensors_bytes": fp32_size_bytes(model), "ms": {},
               "errors": {}}
        fns = {"fp32": model}
        for engine in engines:
            try:
                q = quantize_int8(model, calib, x, engine=engine)
                q(x)
            except Exception as err:  # an op this engine cannot run: the benchmark shows it
                row["errors"][engine] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                continue
            row[f"int8_{engine}_bytes"] = state_dict_bytes(q)
            with tempfile.TemporaryDirectory() as tmp:
                row[f"int8_{engine}_safetensors_bytes"] = save_int8(q, Path(tmp) / "int8.safetensors")
            fns[f"int8_{engine}"] = q
        for t in threads:
            torch.set_num_threads(t)
            row["ms"][str(t)] = interleaved(fns, x, repeats)
        rows[name] = row
    return rows


def child(isa: str, parts: list[str], repeats: int, threads: list[int], batches: list[int]) -> dict:
    out: dict = {"isa": isa, "env": ISA_ENV[isa], "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if "latency" in parts:
        out["latency"] = part_latency(repeats, threads, batches)
    if "guidelines" in parts:
        out["guidelines"] = part_guidelines(repeats, threads)
    if "int8" in parts:
        out["int8"] = part_int8(repeats, threads, ["x86", "onednn"] if isa == "default" else ["onednn"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.efficient_cnns", description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    p.add_argument("--isa", nargs="+", choices=tuple(ISA_ENV), default=list(ISA_ENV),
                   help="instruction-set settings, each in its own process")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median reported)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="batch sizes of the latency part")
    p.add_argument("--name", default="efficient_cnns",
                   help="result file benchmarks/results/NAME.json (efficient_cnns_avx2_cpu: run on an AVX2-only CPU)")
    p.add_argument("--child", choices=tuple(ISA_ENV), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.parts, a.repeats, a.threads, a.batches)))
        return 0

    from benchmarks._meta import write_result

    results = {}
    for isa in a.isa:
        # the avx2 setting measures what an AVX2-only machine runs: its latency part at batch 1 only
        parts = [x for x in a.parts if isa == "default" or x != "latency" or 1 in a.batches]
        batches = a.batches if isa == "default" else [1]
        cmd = [sys.executable, "-m", "benchmarks.efficient_cnns", "--child", isa, "--parts", *parts,
               "--repeats", str(a.repeats), "--threads", *map(str, a.threads), "--batches", *map(str, batches)]
        print(f"[{isa}] {' '.join(parts)} ...", flush=True)
        res = subprocess.run(cmd, env={**os.environ, **ISA_ENV[isa]}, capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"the {isa} measurement failed: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}")
        results[isa] = json.loads(res.stdout.strip().splitlines()[-1])
    from papers.efficient_cnns.models import cost

    nets = {name: cost(m, (3, 224, 224)) for name, m in _networks().items()}
    path = write_result(a.name, {
        "input": [3, 224, 224], "repeats": a.repeats, "threads": a.threads, "networks": nets, "isa": results,
        "note": "shared 2-core CPU: other jobs may run beside this one; medians of interleaved repeats"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
