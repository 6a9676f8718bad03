"""CPU latency of the six networks: ``python -m papers.efficient_cnns.benchmark [--repeats N]``.

ShuffleNet V2's point (Sec. 2, Fig. 1) is that FLOPs do not predict speed. This measures the forward latency of the
ImageNet configuration of every architecture at 224x224 on this CPU, in eval mode and float32, at batch 1 and 32 and
with 1 and 2 torch threads. Each setting runs the models interleaved (model A, B, C, ..., then again) so that a
slow moment of a shared machine falls on every model alike, and reports the median of the repeats after warm-up.
Writes ``results/latency.json`` with the machine, threads, torch version and commit; ``results.py`` draws it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

import torch

from common.paths import atomic_write_text
from common.runs import cpu_name, git_state
from papers.efficient_cnns.models import build, cost
from papers.efficient_cnns.train import method_name

OUT = Path(__file__).with_name("results") / "latency.json"
NETWORKS = [("mobilenet_v1", 1.0, None), ("mobilenet_v2", 1.0, None), ("shufflenet_v1", 1.0, "g3"),
            ("shufflenet_v2", 1.0, None), ("squeezenet", 1.0, "1.0"), ("squeezenet", 1.0, "1.1"),
            ("squeezenext", 1.0, "23")]


@torch.no_grad()
def measure(models: dict[str, torch.nn.Module], batch: int, repeats: int, warmup: int = 2,
            size: int = 224) -> dict[str, float]:
    """Median forward time (ms) per model, the models interleaved within every repeat."""
    x = torch.randn(batch, 3, size, size)
    for m in models.values():
        for _ in range(warmup):
            m(x)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            m(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: round(statistics.median(v), 3) for name, v in times.items()}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m papers.efficient_cnns.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per setting (median reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="batch sizes to measure")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    models = {method_name(a, w, v): build(a, w, variant=v).eval() for a, w, v in NETWORKS}
    rows = {name: {"macs": cost(m, (3, 224, 224))["macs"], "params": sum(p.numel() for p in m.parameters())}
            for name, m in models.items()}
    settings = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            settings.append({"threads": threads, "batch": batch,
                             "median_ms": measure(models, batch, args.repeats)})
    commit, dirty = git_state()
    record = {"benchmark": "efficient_cnns_latency", "input": [3, 224, 224], "repeats": args.repeats,
              "networks": rows, "settings": settings,
              "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "commit": commit, "dirty": dirty,
                          "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          "note": "shared CPU: other jobs may run beside this one; medians of interleaved repeats"}}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
