"""QLoRA on the small CLIP at a preset (``mnist``, ``quick``): every variant's accuracy, bits per base parameter,
data types, wall minutes.

Targets (issue 4): QLoRA NF4+DQ within 1 point of LoRA on the fp32 base; quantized base linear weights
<= 0.135x their fp32 bytes (4.127 bits/param) measured from storage; NF4 error < FP4 error < Int4 error on the
pretrained CLIP's weights (paper, Table 2: NF4+DQ 27.41 < FP4 31.07/29.48 < Int4 34.34 perplexity).
The quick preset's target is time: <= 10 minutes on the CPU with the cached small-CLIP pretraining reused
(``wall_minutes``; the pretraining's own minutes are in ``pretraining``).
Writes benchmarks/results/qlora_clip_<preset>.json; approve the run folder it names with
``python -m common.runs approve RUN_DIR``.

    NNQ_DATA_DIR=/path/to/data python -m benchmarks.qlora_clip [--preset mnist] [--threads 2] [extra train flags]
    python -m benchmarks.qlora_clip --from-run RUN_DIR     # record a finished run instead
    python -m common.clip pretrain --threads 1 --out-dir DIR && python -m benchmarks.qlora_clip --from-pretraining DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks._meta import write_result


def figures(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    rows = {r["variant"]: r for r in json.loads((run_dir / "variants.json").read_text())}
    dt_all = json.loads((run_dir / "datatypes.json").read_text())
    dt = dt_all["errors"]
    order = {g: sorted(("nf4", "fp4", "int4"), key=lambda q: d[q].get("rel_mse", d[q].get("mse")))
             for g, d in dt.items()}
    nf = rows.get("qlora_nf4", {})
    return {
        "what": f"small CLIP (ViT 32x32 + MiniLM), {s['preset']} preset: variants on the same budget",
        "preset": s["preset"], "dataset": s["dataset"], "status": s["status"],
        "top1": {k: r["top1"] for k, r in rows.items()},
        "base_zero_shot_top1": {k: r["zero_shot_top1"] for k, r in rows.items()},
        "qlora_nf4_minus_lora": s.get("qlora_minus_lora"),
        "target_within_1_point": None if s.get("qlora_minus_lora") is None else abs(s["qlora_minus_lora"]) <= 1.0,
        "bits_per_base_param": nf.get("bits_per_base_param"), "base_ratio_to_fp32": nf.get("base_ratio_to_fp32"),
        "target_ratio_le_0_135": None if not nf else nf["base_ratio_to_fp32"] <= 0.135,
        "trainable_params": {k: r["trainable_params"] for k, r in rows.items()},
        "time_per_step_s": {k: r["time_per_step_s"] for k, r in rows.items()},
        "train_state_mb": {k: round(r["state_bytes"] / 2**20, 1) for k, r in rows.items()},
        "datatype_errors": dt, "datatype_order_low_to_high": order, "weight_shape": dt_all.get("weight_shape"),
        "train_time_s": s["train_time_s"], "pretraining": s.get("pretraining"), "run_dir": str(run_dir),
        "load_average_1_5_15": os.getloadavg(),
    }


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mnist", help="train preset (mnist, quick)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-run", type=Path, default=None, help="record this finished run instead of training")
    ap.add_argument("--from-pretraining", type=Path, default=None,
                    help="record the minutes of a small-CLIP pretraining saved with `python -m common.clip pretrain "
                         "--out-dir DIR` (-> qlora_clip_pretrain.json)")
    args, rest = ap.parse_known_args()
    if args.from_pretraining is not None:
        info = json.loads((args.from_pretraining / "config.json").read_text())["info"]
        path = write_result("qlora_clip_pretrain", {
            "what": "one-epoch contrastive pretraining of the small CLIP on CIFAR-10 (JPEG q75), the quick preset's "
                    "cached base (built once per machine)",
            "train_minutes": round(info["train_time_s"] / 60, 2), "threads": info["pretraining"]["threads"],
            "zero_shot_top1": info["zero_shot_top1"], "zero_shot_n_test": info["zero_shot_n_test"],
            "settings": info["pretraining"], "folder": str(args.from_pretraining),
            "load_average_1_5_15_when_recorded": os.getloadavg()})
        print(f"-> {path}")
        return
    torch.set_num_threads(args.threads)
    wall = None
    if args.from_run is None:
        from common.cli import parse_config
        from papers.qlora_clip.config import PRESETS, Config
        from papers.qlora_clip.train import main

        cfg = parse_config(Config, PRESETS, ["--preset", args.preset, "--threads", str(args.threads), *rest])
        t0 = time.perf_counter()
        run_dir = Path(main(cfg)["run_dir"])
        wall = round((time.perf_counter() - t0) / 60, 2)
    else:
        run_dir = args.from_run
    fig = figures(run_dir)
    path = write_result(f"qlora_clip_{fig['preset']}", {**fig, "wall_minutes": wall, "threads": args.threads,
                                                          "overrides": rest})
    print(f"-> {path}")


if __name__ == "__main__":
    run()
