"""Deep Compression on MNIST at the ``lenet300_mnist`` / ``lenet5_mnist`` presets: ratio, error, minutes.

Targets (issue 3): LeNet-300-100 >= 40x with <= 1.6% test error; LeNet-5 >= 39x with <= 0.8% test error
(paper: 40x at 1.58%, 39x at 0.74%; Table 1). The ratio is the fp32 safetensors file over the Huffman-coded
file on disk. Writes benchmarks/results/deep_compression_<preset>.json; approve the run folders it names
with ``python -m common.runs approve RUN_DIR``.

    NNQ_DATA_DIR=/path/to/data python -m benchmarks.deep_compression_lenet --preset lenet300_mnist \
        [--threads 1] [--seeds 0 1 2] [extra train flags]
    python -m benchmarks.deep_compression_lenet --preset lenet300_mnist --from-runs RUN_DIR [RUN_DIR ...] \
        [--tag variants]

``--from-runs`` summarises finished run folders of the preset instead of training (their train minutes
are read from summary.json; wall minutes are then not known); each run lists the flags its config.json sets
away from the preset. ``--tag T`` writes deep_compression_<preset>_T.json (e.g. for runs of other recipes).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from benchmarks._meta import write_result
from common.cli import parse_config
from papers.deep_compression.config import PRESETS, Config
from papers.deep_compression.train import main

TARGETS = {"lenet300_mnist": "ratio >= 40x with test error <= 1.6%",
           "paper": "ratio >= 40x with test error <= 1.6% (LeNet-300-100, 6-bit weights as in Table 2)",
           "lenet5_mnist": "ratio >= 39x with test error <= 0.8% (Caffe LeNet-5, 431K parameters)"}
TARGET_VALUES = {"lenet300_mnist": (40.0, 1.6), "paper": (40.0, 1.6), "lenet5_mnist": (39.0, 0.8)}  # (ratio, error %)
MNIST_TEST_IMAGES = 10_000  # the presets test on the full MNIST test set (unless --limit-test)
_RUN_FIELDS = {"seed", "out_dir", "threads", "data_dir", "weights_dir", "preset"}  # not part of a recipe


def binomial_se_pct(error_pct: float, n: int = MNIST_TEST_IMAGES) -> float:
    """Standard error (in points) of a test error measured on n images: how far the test set alone moves it."""
    p = error_pct / 100
    return round(100 * math.sqrt(p * (1 - p) / n), 3)


def _per_run(s: dict, wall_minutes: float | None) -> dict:
    st = s["stages"]
    return {"seed": None, "test_error": s["test_error"], "fp_test_error": s["fp_test_error"],
            "compression_ratio": s["compression_ratio"], "size_bytes": s["size_bytes"], "fp32_bytes": s["fp32_bytes"],
            "stage_ratios": {k: st[k]["ratio"] for k in ("pruned", "shared", "huffman")},
            "stage_errors": {k: st[k]["error"] for k in ("float", "pruned", "shared", "huffman")},
            "density": s["density"], "huffman_vs_entropy": st["huffman_vs_entropy"],
            "train_minutes": round(s["train_time_s"] / 60, 2),
            "wall_minutes": None if wall_minutes is None else round(wall_minutes, 2), "run_dir": s["run_dir"]}


def _mean_std(xs: list[float]) -> dict:
    return {"mean": round(statistics.mean(xs), 4), "std": round(statistics.stdev(xs), 4) if len(xs) > 1 else None,
            "n": len(xs)}


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(TARGETS), default="lenet300_mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--from-runs", nargs="+", type=Path, default=None)
    ap.add_argument("--tag", default=None, help="suffix of the JSON's name")
    args, rest = ap.parse_known_args()
    torch.set_num_threads(args.threads)
    runs = []
    preset = vars(PRESETS[args.preset])
    if args.from_runs:
        for d in args.from_runs:
            s = json.loads((d / "summary.json").read_text())
            cfg = json.loads((d / "config.json").read_text())
            changed = {k: v for k, v in cfg.items() if k in preset and k not in _RUN_FIELDS
                       and v != (list(preset[k]) if isinstance(preset[k], tuple) else preset[k])}
            runs.append({**_per_run(s, None), "seed": cfg["seed"], "config_vs_preset": changed,
                         "n_test": cfg.get("limit_test") or MNIST_TEST_IMAGES})
    else:
        for seed in args.seeds:
            cfg = parse_config(Config, PRESETS, ["--preset", args.preset, "--seed", str(seed), *rest])
            t0 = time.perf_counter()
            s = main(cfg)
            runs.append({**_per_run(s, (time.perf_counter() - t0) / 60), "seed": seed,
                         "n_test": cfg.limit_test or MNIST_TEST_IMAGES})
    ratio_min, error_max = TARGET_VALUES[args.preset]
    for r in runs:
        r["meets_target"] = r["compression_ratio"] >= ratio_min and r["test_error"] <= error_max
        r["test_error_binomial_se"] = binomial_se_pct(r["test_error"], r["n_test"])
    path = write_result(f"deep_compression_{args.preset}" + (f"_{args.tag}" if args.tag else ""), {
        "what": f"Deep Compression, {args.preset} preset: compressed file size, ratio, test error, minutes"
                + (f" ({args.tag}: see each run's config_vs_preset)" if args.tag else ""),
        "target": TARGETS[args.preset], "threads": args.threads, "overrides": rest,
        "test_error": _mean_std([r["test_error"] for r in runs]),
        "compression_ratio": _mean_std([r["compression_ratio"] for r in runs]),
        "runs_meeting_target": sum(r["meets_target"] for r in runs), "runs": runs})
    e, c = _mean_std([r["test_error"] for r in runs]), _mean_std([r["compression_ratio"] for r in runs])
    print(f"{args.preset}: {c['mean']:.1f}x at {e['mean']:.2f}% error over {len(runs)} run(s) -> {path}")


if __name__ == "__main__":
    run()
