"""Training-loop overhead: ``common.train.fit`` against a bare PyTorch loop, same model, data and threads.

Target (issue 2): time per training epoch of fit / bare <= 1.05, one process. Epochs of the two loops
are interleaved in rounds so that machine noise hits both; the figure is the ratio of the medians.
Evaluation is excluded from both (fit's ``epoch_train_s`` covers the training steps only).

    python -m benchmarks.train_overhead [--rounds 4] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks._meta import write_result
from common.data import load_dataset
from common.models import MLP
from common.train import fit, seed_everything


def bare_epoch(model, opt, x, y, batch_size, gen) -> float:
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=gen)
    model.train()
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per loop per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, nargs="+", default=[1536, 1536, 1536],
                    help="MLP widths (default: the bnn mnist_mlp preset's; 512 512 shows the fixed per-step cost)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, limit_train=20_000, limit_test=2_000)
    c, h, w = data.input_shape
    batch = 100

    def new_model():
        seed_everything(0)
        return MLP(c * h * w, tuple(args.hidden), data.num_classes)

    fit_times, bare_times = [], []
    for r in range(args.rounds):
        model = new_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(r)
        bare_times += [bare_epoch(model, opt, data.x_train, data.y_train, batch, gen) for _ in range(args.epochs)]
        model = new_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        res = fit(model, data, epochs=args.epochs, batch_size=batch, optimizer=opt, seed=r, desc="fit")
        fit_times += [h["epoch_train_s"] for h in res["history"]]
        print(f"round {r}: bare {statistics.median(bare_times):.3f} s  fit {statistics.median(fit_times):.3f} s")
    ratio = statistics.median(fit_times) / statistics.median(bare_times)
    name = "train_overhead" if args.hidden == [1536, 1536, 1536] else "train_overhead_" + "x".join(map(str, args.hidden))
    path = write_result(name, {
        "what": "median time per training epoch, common.train.fit / bare PyTorch loop",
        "target": "<= 1.05", "ratio": round(ratio, 4),
        "fit_epoch_s_median": round(statistics.median(fit_times), 4),
        "bare_epoch_s_median": round(statistics.median(bare_times), 4),
        "fit_epoch_s": [round(t, 4) for t in fit_times], "bare_epoch_s": [round(t, 4) for t in bare_times],
        "setup": f"{args.dataset} 20000 train samples, MLP {c * h * w}-{'-'.join(map(str, args.hidden))}-{data.num_classes}, "
                 f"batch {batch}, Adam, {args.rounds} rounds x {args.epochs} epochs per loop, one process",
        "threads": args.threads})
    print(f"ratio fit/bare = {ratio:.3f} -> {path}")


if __name__ == "__main__":
    main()
