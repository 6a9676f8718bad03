"""Training speed on a shared CPU: steps/s of a small loop alone and next to a busy process, per thread setting.

The loop is the quick BNN's shape (MLP 64-512-512-512-10 with BatchNorm, Adam, batch 64, scikit-learn digits).
Each variant runs in a fresh Python process (``OMP_WAIT_POLICY`` must be in the environment before torch
loads), started when no other process keeps a CPU busy, alone and with a competitor: one process that keeps
one core busy (a pure-Python spin loop), or a twin of the same training loop with torch's default threads (two
users training at once). Repeats are interleaved across variants; the figures are medians. Run it on a quiet
machine:

    python -m benchmarks.cpu_load [--repeats 3] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "default": ({}, None),
    "threads1": ({}, 1),
    "threads2": ({}, 2),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "passive_threads1": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
    "nnq_default": ({}, "nnq"),
}
"""name -> (extra environment, torch threads: None = torch's default, "nnq" = our default for --threads 0)."""
LOADS = ("alone", "spin", "twin")
QUIET_WAIT_S = 120.0
SPIN = "while True: pass"


def _loop(seconds: float, warmup: float) -> dict:
    """The measured loop; runs in the worker process after the thread setting is applied."""
    import torch
    import torch.nn.functional as F

    from common.data import load_dataset
    from common.models import MLP

    data = load_dataset("digits", val_size=0)
    torch.manual_seed(0)
    model = MLP(64, (512, 512, 512), 10, out_bn=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x, y = data.x_train, data.y_train

    def steps_for(duration: float) -> tuple[int, float]:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration:
            idx = torch.randint(0, len(x), (64,), generator=gen)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += 1
        return n, time.perf_counter() - t0

    steps_for(warmup)
    n, dt = steps_for(seconds)
    return {"steps_per_s": n / dt, "torch_threads": torch.get_num_threads()}


def worker(threads: str, seconds: float, warmup: float) -> None:
    if threads == "nnq":
        from common.threads import apply_thread_defaults

        apply_thread_defaults(0)
    import torch

    if threads not in ("none", "nnq"):
        torch.set_num_threads(int(threads))
    print(json.dumps(_loop(seconds, warmup)))


def _spawn(variant: str, seconds: float, warmup: float) -> subprocess.Popen:
    env_extra, threads = VARIANTS[variant]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(env_extra)
    cmd = [sys.executable, "-m", "benchmarks.cpu_load", "--worker", "none" if threads is None else str(threads),
           "--seconds", str(seconds), "--warmup", str(warmup)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def measure(variant: str, load: str, seconds: float) -> dict:
    """One timed run of ``variant`` with competitor ``load`` started first (and stopped after).

    The run starts once no other process keeps a CPU busy (sampled over 0.5 s; waits up to ``QUIET_WAIT_S``);
    the busy CPUs seen last are recorded with the figure.
    """
    from common.threads import busy_cpus, usable_cpus

    t0 = time.perf_counter()
    while (background := busy_cpus(usable_cpus(), 0.5)) and time.perf_counter() - t0 < QUIET_WAIT_S:
        time.sleep(1.0)
    competitor = None
    if load == "spin":
        competitor = subprocess.Popen([sys.executable, "-c", SPIN])
    elif load == "twin":  # a second training loop with torch's default threads, running longer than ours
        competitor = _spawn("default", seconds + 30, 0.5)
    try:
        time.sleep(0.5 if competitor else 0)
        proc = _spawn(variant, seconds, 2.0)
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant}/{load} worker failed with status {proc.returncode}")
        return {**json.loads(out.strip().splitlines()[-1]), "background_busy_cpus": background}
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


LABELS = {"default": "torch's default", "threads1": "1 thread", "threads2": "2 threads",
          "passive": "`OMP_WAIT_POLICY=PASSIVE`, default threads",
          "passive_threads1": "`OMP_WAIT_POLICY=PASSIVE`, 1 thread",
          "nnq_default": "ours (`--threads 0`: idle cores at start)"}


def table() -> str:
    """The Markdown table of ``benchmarks/results/cpu_load.json``: steps/s per thread setting and competitor."""
    from benchmarks._meta import RESULTS

    res = json.loads((RESULTS / "cpu_load.json").read_text())
    loads = [ld for ld in LOADS if any(r["load"] == ld for r in res["rows"])]
    cell = {(r["variant"], r["load"]): r for r in res["rows"]}
    lines = ["| threads | " + " | ".join(f"{ld}: steps/s (threads)" for ld in loads) + " |",
             "|---|" + "---:|" * len(loads)]
    for v in dict.fromkeys(r["variant"] for r in res["rows"]):
        lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(
            f"{cell[(v, ld)]['steps_per_s']:.1f} ({cell[(v, ld)]['torch_threads']})" for ld in loads) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per run (after 2 s of warm-up)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    ap.add_argument("--table", action="store_true", help="print the Markdown table of the stored results and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=float, default=2.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, args.seconds, args.warmup)
        return
    if args.table:
        print(table())
        return

    from benchmarks._meta import write_result

    samples: dict[tuple[str, str], list[dict]] = {(v, ld): [] for v in args.variants for ld in args.loads}
    for r in range(args.repeats):
        for v in args.variants:
            for ld in args.loads:
                res = measure(v, ld, args.seconds)
                samples[(v, ld)].append(res)
                print(f"repeat {r}: {v:17s} {ld:5s} {res['steps_per_s']:7.1f} steps/s "
                      f"({res['torch_threads']} threads, {res['background_busy_cpus']} CPUs busy before)", flush=True)
    rows = []
    for (v, ld), runs in samples.items():
        env_extra, threads = VARIANTS[v]
        rows.append({"variant": v, "load": ld, "env": env_extra, "threads_asked": threads,
                     "torch_threads": runs[0]["torch_threads"],
                     "steps_per_s": round(statistics.median(r["steps_per_s"] for r in runs), 2),
                     "steps_per_s_runs": [round(r["steps_per_s"], 2) for r in runs],
                     "background_busy_cpus": [r["background_busy_cpus"] for r in runs]})
    path = write_result("cpu_load", {
        "what": "steps/s of a small training loop alone and beside a competitor process, per thread setting",
        "setup": f"MLP 64-512-512-512-10 (BatchNorm), Adam, batch 64, sklearn digits; each run a fresh process, "
                 f"2 s warm-up then {args.seconds:g} s timed; medians of {args.repeats} interleaved repeats",
        "loads": {"alone": "nothing else running", "spin": "one pure-Python busy loop (one core busy)",
                  "twin": "a second copy of the same loop with torch's default threads"},
        "affinity_cpus": len(os.sched_getaffinity(0)), "rows": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
