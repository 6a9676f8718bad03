"""AWQ's int4 kernels at batch 1 against torch fp32, as on an AVX2-only machine: one 4096 x 4096 layer and MiniLM.

In one process, with torch capped at AVX2 (``papers.awq.int4.AVX2_MACHINE_ENV``: ``ATEN_CPU_CAPABILITY=avx2``
for ATen's kernels, ``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``DNNL_MAX_CPU_ISA`` / ``ONEDNN_MAX_CPU_ISA=AVX2`` for
fp32's MKL and oneDNN; the benchmark re-executes itself with them set, since each library reads its variable when
it loads), the calls are interleaved (fp32, ours, ATen, fp32, ...) with the same thread count for torch and our
kernel, and the figures are medians over the repeats:

- one 4096 x 4096 linear layer at batch 1 (random weights, 4-bit codes of group 128): torch fp32 ``nn.Linear``,
  our kernel (``papers/awq/int4_kernel.c``) built with ``-march=x86-64-v3`` (AVX2 + FMA, no AVX-512) and built
  with ``-march=native``, and ATen's ``_weight_int4pack_mm_for_cpu`` on its AVX2 path;
- the whole pretrained MiniLM-L6 forward at batch 1 (one test sentence, as ``papers.awq.quantize``'s latency):
  fp32, and its 36 linear layers at W4 g128 (RTN codes: the speed does not depend on the values) on ours (AVX2
  build) and on ATen's kernel; the embeddings of each int4 model are compared with the pseudo-quantized model's.

The machine is shared: the JSON records the load average before and after and the CPUs other processes kept busy
at the start; ratios of interleaved medians are the figures to read.

    python -m benchmarks.awq_int4 [--threads 1 2] [--repeats 60]
    python -m benchmarks.awq_int4 --table      # the Markdown table of benchmarks/results/awq_int4.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

from common.evaluate import interleaved_ms
from papers.awq import int4

NAME = "awq_int4"
TARGET_LAYER_SPEEDUP = 3.0


def _med(v: list[float]) -> float:
    return round(statistics.median(v), 4)


def _row(what: str, threads: int, repeats: int, times: dict[str, list[float]]) -> dict:
    """One result row: the median ms of every candidate and fp32's median over each other candidate's."""
    row = {"what": what, "batch": 1, "threads": threads, "repeats": repeats,
           **{f"{key}_ms": _med(v) for key, v in times.items()}}
    for key in times:
        if key != "fp32":
            row[f"fp32_over_{key}"] = round(statistics.median(times["fp32"]) / statistics.median(times[key]), 3)
    print(json.dumps(row), flush=True)
    return row


@torch.no_grad()
def layer_rows(threads: list[int], repeats: int, k: int = 4096, n: int = 4096,
               group: int = 128) -> tuple[list[dict], dict]:
    from papers.awq.awq import AwqLinear

    torch.manual_seed(0)
    lin = nn.Linear(k, n)
    aq = AwqLinear.from_float(lin, 4, group)
    ours = {isa: int4.OursInt4Linear.from_awq(aq, isa) for isa in ("avx2", "native")}
    aten = int4.Int4Linear.from_awq(aq) if int4.available() else None
    x = torch.randn(1, k)
    ref = aq(x)
    check = {f"ours_{isa}": float((m(x) - ref).abs().max() / ref.abs().max()) for isa, m in ours.items()}
    if aten is not None:
        check["aten"] = float((aten(x) - ref).abs().max() / ref.abs().max())
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        int4.set_num_threads(th)
        fns = {"fp32": lambda: lin(x), "ours_avx2": lambda: ours["avx2"](x), "ours_native": lambda: ours["native"](x)}
        if aten is not None:
            fns["aten"] = lambda: aten(x)
        rows.append(_row(f"{k}x{n} layer", th, repeats, interleaved_ms(fns, repeats)))
    return rows, check


@torch.no_grad()
def minilm_rows(threads: list[int], repeats: int) -> tuple[list[dict], dict]:
    from common.clip import load_minilm
    from papers.awq import awq
    from papers.awq.texts import TEST_TEXTS

    model, tok = load_minilm()
    model.eval()
    names = awq.linear_names(model, lambda s: s.startswith("encoder.layer."))
    pseudo = copy.deepcopy(model)
    awq.apply_rtn_(pseudo, names, 4, 128)
    models = {"fp32": model, "ours_avx2": copy.deepcopy(pseudo)}
    int4.to_int4_(models["ours_avx2"], "ours", "avx2")
    if int4.available():
        models["aten"] = copy.deepcopy(pseudo)
        int4.to_int4_(models["aten"], "aten")
    batch = tok(TEST_TEXTS[0], return_tensors="pt")
    ref = pseudo(**batch).last_hidden_state
    check = {"tokens": int(batch["input_ids"].shape[1]), "linear_layers": len(names)}
    for key, m in models.items():
        if key != "fp32":
            out = m(**batch).last_hidden_state
            check[f"{key}_max_rel_diff_vs_pseudo"] = float((out - ref).abs().max() / ref.abs().max())
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        int4.set_num_threads(th)
        rows.append(_row("MiniLM-L6 forward", th, repeats,
                         interleaved_ms({k: (lambda m=m: m(**batch)) for k, m in models.items()}, repeats)))
    return rows, check


def targets(res: dict) -> dict:
    """The two targets at 1 thread, from the rows: met or not, with the measured ratio."""
    one = {r["what"]: r for r in res["rows"] if r["threads"] == 1}
    layer = next(r for w, r in one.items() if w.endswith("layer"))
    mini = one.get("MiniLM-L6 forward", {})
    return {"layer_ours_avx2_over_fp32_avx2": layer["fp32_over_ours_avx2"],
            "layer_target": f">= {TARGET_LAYER_SPEEDUP:g}x",
            "layer_met": layer["fp32_over_ours_avx2"] >= TARGET_LAYER_SPEEDUP,
            "minilm_ours_avx2_over_fp32": mini.get("fp32_over_ours_avx2"),
            "minilm_met": bool(mini) and mini["fp32_over_ours_avx2"] > 1.0}


LABELS = {"fp32": "torch fp32 (MKL/oneDNN capped at AVX2)", "ours_avx2": "ours, avx2 build (-march=x86-64-v3)",
          "ours_native": "ours, native build (-march=native)", "aten": "ATen int4, AVX2 path (bf16 activations)"}


def table(res: dict) -> str:
    """Markdown: per measurement and thread count, each kernel's median ms and fp32 / kernel."""
    lines = ["| Measure (batch 1) | threads | kernel (ISA) | ms (median) | fp32 / kernel |", "|---|---:|---|---:|---:|"]
    for r in res["rows"]:
        for key, label in LABELS.items():
            if f"{key}_ms" in r:
                ratio = "1.00×" if key == "fp32" else f"{r[f'fp32_over_{key}']:.2f}×"
                lines.append(f"| {r['what']} | {r['threads']} | {label} | {r[f'{key}_ms']:.3f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=60, help="interleaved repeats per measurement (median)")
    ap.add_argument("--minilm-repeats", type=int, default=30)
    ap.add_argument("--table", action="store_true", help="print the table of the stored result and exit")
    args = ap.parse_args()
    if args.table:
        from benchmarks._meta import RESULTS

        print(table(json.loads((RESULTS / f"{NAME}.json").read_text())))
        return
    if any(os.environ.get(k) != v for k, v in int4.AVX2_MACHINE_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.awq_int4", *sys.argv[1:]],
                  {**os.environ, **int4.AVX2_MACHINE_ENV})
    from benchmarks._meta import write_result
    from common.runs import cpu_flags
    from common.threads import busy_cpus, usable_cpus

    load_before, busy_before = os.getloadavg(), busy_cpus(usable_cpus(), 0.5)
    t0 = time.time()
    rows, layer_check = layer_rows(args.threads, args.repeats)
    mrows, minilm_check = minilm_rows(args.threads, args.minilm_repeats)
    res = {"what": "batch-1 latency of AWQ's int4 kernels vs torch fp32, torch capped at AVX2, calls interleaved",
           "rows": rows + mrows, "checks": {"layer_max_rel_diff_vs_pseudo": layer_check, "minilm": minilm_check},
           "isa_env": int4.isa_env(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "ours_backend": {isa: int4.library(isa).awq_isa().decode() for isa in ("avx2", "native")},
           "ours_builds": {"avx2": "cc -O3 -fopenmp -march=x86-64-v3 -mtune=native",
                           "native": "cc -O3 -fopenmp -march=native"},
           "cpu_flags": cpu_flags(), "threads": args.threads, "wall_s": round(time.time() - t0, 1),
           "load": {"loadavg_1_5_15_before": [round(v, 2) for v in load_before],
                    "loadavg_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
                    "busy_cpus_before": busy_before, "usable_cpus": len(usable_cpus()),
                    "note": "shared 2-core machine with two long training runs of other users; read the ratios"}}
    res["targets"] = targets(res)
    print(f"-> {write_result(NAME, res)}")
    print(table(res))
    print(json.dumps(res["targets"]))


if __name__ == "__main__":
    main()
