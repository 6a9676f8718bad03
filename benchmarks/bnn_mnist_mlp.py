"""BNN MLP on MNIST at the ``mnist_mlp`` preset: test error and minutes on this machine.

Target (issue 2): <= 1.5% test error within 30 minutes on 2 cores (paper: 0.96% Theano after 1000
epochs, 1.40% Torch7; Table 1). Writes benchmarks/results/bnn_mnist_mlp.json; approve the run folder
it names with ``python -m common.runs approve RUN_DIR``.

    NNQ_DATA_DIR=/path/to/data python -m benchmarks.bnn_mnist_mlp [--threads 2] [extra train flags]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._meta import write_result
from common.cli import parse_config
from papers.bnn.config import PRESETS, Config
from papers.bnn.train import main


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    args, rest = ap.parse_known_args()
    torch.set_num_threads(args.threads)
    cfg = parse_config(Config, PRESETS, ["--preset", "mnist_mlp", *rest])
    t0 = time.perf_counter()
    s = main(cfg)
    minutes = (time.perf_counter() - t0) / 60
    path = write_result("bnn_mnist_mlp", {
        "what": "BNN MLP on MNIST, mnist_mlp preset: test error and wall minutes (float twin included)",
        "target": "test error <= 1.5% within 30 minutes on 2 cores",
        "test_error": s["test_error"], "fp_test_error": None if s["fp_value"] is None else round(100 - s["fp_value"], 4),
        "wall_minutes": round(minutes, 2), "bnn_train_minutes": round(s["train_time_s"] / 60, 2),
        "epochs": cfg.epochs, "hidden": list(cfg.hidden), "size_bytes": s["size_bytes"],
        "compression_ratio": s["compression_ratio"], "run_dir": s["run_dir"], "threads": args.threads,
        "overrides": rest})
    print(f"test error {s['test_error']:.2f}% in {minutes:.1f} min -> {path}")


if __name__ == "__main__":
    run()
