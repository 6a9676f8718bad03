"""Deep Compression on MNIST at the ``lenet300_mnist`` / ``lenet5_mnist`` presets: ratio, error, minutes.

Targets (issue 3): LeNet-300-100 >= 40x with <= 1.6% test error; LeNet-5 >= 39x with <= 0.8% test error
(paper: 40x at 1.58%, 39x at 0.74%; Table 1). The ratio is the fp32 safetensors file over the Huffman-coded
file on disk. Writes benchmarks/results/deep_compression_<preset>.json; approve the run folder it names with
``python -m common.runs approve RUN_DIR``.

    NNQ_DATA_DIR=/path/to/data python -m benchmarks.deep_compression_lenet --preset lenet300_mnist \
        [--threads 1] [extra train flags]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._meta import write_result
from common.cli import parse_config
from papers.deep_compression.config import PRESETS, Config
from papers.deep_compression.train import main

TARGETS = {"lenet300_mnist": "ratio >= 40x with test error <= 1.6%",
           "lenet5_mnist": "ratio >= 39x with test error <= 0.8%"}


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(TARGETS), default="lenet300_mnist")
    ap.add_argument("--threads", type=int, default=1)
    args, rest = ap.parse_known_args()
    torch.set_num_threads(args.threads)
    cfg = parse_config(Config, PRESETS, ["--preset", args.preset, *rest])
    t0 = time.perf_counter()
    s = main(cfg)
    minutes = (time.perf_counter() - t0) / 60
    st = s["stages"]
    path = write_result(f"deep_compression_{args.preset}", {
        "what": f"Deep Compression, {args.preset} preset: compressed file size, ratio, test error, wall minutes",
        "target": TARGETS[args.preset],
        "test_error": s["test_error"], "fp_test_error": s["fp_test_error"],
        "compression_ratio": s["compression_ratio"], "size_bytes": s["size_bytes"], "fp32_bytes": s["fp32_bytes"],
        "stage_ratios": {k: st[k]["ratio"] for k in ("pruned", "shared", "huffman")},
        "stage_errors": {k: st[k]["error"] for k in ("float", "pruned", "shared", "huffman")},
        "density": s["density"], "huffman_vs_entropy": st["huffman_vs_entropy"],
        "wall_minutes": round(minutes, 2), "train_minutes": round(s["train_time_s"] / 60, 2),
        "run_dir": s["run_dir"], "threads": args.threads, "overrides": rest})
    print(f"{args.preset}: {s['compression_ratio']:.1f}x at {s['test_error']:.2f}% error in {minutes:.1f} min -> {path}")


if __name__ == "__main__":
    run()
