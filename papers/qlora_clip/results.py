"""Figures, tables and deck of the QLoRA-on-CLIP package from its approved runs.

``python -m papers.qlora_clip.results`` rebuilds everything from ``papers/qlora_clip/results/runs/`` (no
training); ``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/qlora_clip/results/``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from common.report import (
    build_deck,
    comparison_table,
    markdown_table,
    save_figure,
    slide_figure,
    summary_footer,
    update_readme_block,
)
from common.results import load_approved, results_cli, results_dir
from common.results import run_missing as common_run_missing
from papers.qlora_clip.config import PRESETS
from papers.qlora_clip.paper_numbers import CONSTANT_BITS_PER_PARAM, DATATYPE_PERPLEXITY, MMLU
from papers.qlora_clip.train import VARIANT_LABEL, main

PAPER = "qlora_clip"
GRID = ("quick", "mnist")  # presets with approved runs; paper needs a GPU and the internet
README = Path(__file__).with_name("README.md")
DTYPES = (("nf4", "NF4"), ("fp4", "FP4 (bnb E2M1)"), ("int4", "Int4"))

IDEA = [
    "Freeze the pretrained model in 4 bits and train only LoRA adapters through it (Eq. 5): "
    "Y = X·dequant(c1, c2, W_NF4) + X·L1·L2.",
    "NF4 puts its 16 levels at quantiles of N(0, 1) (Eq. 4), asymmetric so 0 is exact; "
    "each block of 64 weights is scaled by its absmax.",
    "Double quantization stores those absmax constants in 8 bits (block 256): 0.5 → 0.127 bit/param; "
    "paged optimizers absorb memory spikes. Here: applied to CLIP's image tower, a setting the paper never tested.",
]
EQUATION_MAP = [
    ("Eq. (4) NF4 quantiles, asymmetric", "papers/qlora_clip/nf4.py: normal_float_code_book"),
    ("Eq. (1)-(2) blockwise absmax", "nf4.py: quantize_blockwise / dequantize_blockwise"),
    ("Sec. 3 Double Quantization", "nf4.py: double_quantize / double_dequantize, dynamic_code_book"),
    ("Table 2 data types FP4 / Int4", "nf4.py: fp4_code_book / int4_code_book"),
    ("Eq. (5)-(6) QLoRA layer", "lora.py: quantize_linears_ (bnb Linear4bit) + add_lora_ (peft)"),
    ("Sec. 4 all linear layers", "lora.py: split_attention_, IMAGE_TOWER_TARGETS"),
    ("Sec. 3 paged optimizers", "train.py: _optimizer (bnb PagedAdamW on CUDA)"),
]


def _variants(run: dict) -> list[dict]:
    return json.loads((Path(run["dir"]) / "variants.json").read_text())


def _datatypes(run: dict) -> dict:
    return json.loads((Path(run["dir"]) / "datatypes.json").read_text())["errors"]



def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def claim_rows(runs: list[dict]) -> list[dict]:
    """Our figures beside the paper's claims, for the runs (seeds) of one preset; accuracy gaps are averaged
    over the seeds that ran both variants, and each seed's value is listed in the note.

    The paper is on LLaMA, ours on CLIP: different tasks and units.
    """
    s = runs[-1]["summary"]
    tag = f"{s['preset']} preset, {s['dataset']}"
    by_seed = [(r["config"]["seed"], {v["variant"]: v for v in _variants(r)}) for r in runs]
    rows = []
    for a, b, label, paper, ref in (
            ("qlora_nf4", "lora", "QLoRA NF4+DQ minus 16/32-bit LoRA",
             MMLU["NFloat4 + DQ"][0] - MMLU["BFloat16"][0], MMLU["BFloat16"][1]),
            ("qlora_fp4", "qlora_nf4", "QLoRA FP4 minus NF4+DQ", MMLU["Float4"][0] - MMLU["NFloat4 + DQ"][0],
             MMLU["Float4"][1])):
        gaps = [(seed, by[a]["top1"] - by[b]["top1"]) for seed, by in by_seed if {a, b} <= by.keys()]
        if gaps:
            n = len(gaps)
            seeds = f"mean of {n} seeds" if n > 1 else f"seed {gaps[0][0]}"
            row = {"setting": f"{label} ({tag}; {seeds}; paper: MMLU)", "ours": round(sum(g for _, g in gaps) / n, 2),
                   "paper": round(paper, 2), "ref": ref, "unit": "points"}
            if n > 1:
                row["note"] = "per seed: " + ", ".join(f"s{sd} {g:+.2f}" for sd, g in gaps)
            rows.append(row)
    nf = next((by["qlora_nf4"] for _, by in by_seed if "qlora_nf4" in by), None)
    if nf:
        bits, ref = CONSTANT_BITS_PER_PARAM["with DQ (8-bit absmax, block 64; fp32 constants, block 256)"]
        rows.append({"setting": f"NF4+DQ constants overhead, millibits per base param, measured storage incl. "
                                f"code books ({s['preset']} preset)",
                     "ours": round(1000 * (nf["bits_per_base_param"] - 4), 1), "paper": round(1000 * bits, 1),
                     "ref": ref})
        rows.append({"setting": f"Base linear bytes / fp32 bytes, target ≤ 0.135 ({s['preset']} preset)",
                     "ours": nf["base_ratio_to_fp32"], "paper": round((4 + bits) / 32, 4), "ref": ref})
    return rows


def variants_table(run: dict) -> tuple[list[str], list[list]]:
    header = ["Variant", "Top-1 %", "Base zero-shot %", "Trainable params", "Base bytes", "Bits/base param",
              "Time/step (s)", "Train state (MB)", "Peak RSS (MB)"]
    rows = [[r["label"], r["top1"], r["zero_shot_top1"], r["trainable_params"], r["base_bytes"],
             r["bits_per_base_param"], r["time_per_step_s"] if r["time_per_step_s"] is not None else "—",
             round(r["state_bytes"] / 2**20, 1), r["peak_mem_mb"]] for r in _variants(run)]
    return header, rows


def _one_run_per_base(runs: list[dict]) -> list[dict]:
    """For each base model (summary "pretrained"), its newest run, preferring one with weight statistics."""
    best: dict[str, dict] = {}
    for run in runs:
        has_stats = "weight_shape" in json.loads((Path(run["dir"]) / "datatypes.json").read_text())
        key = str(run["summary"].get("pretrained"))
        if key not in best or has_stats or not best[key]["_stats"]:
            best[key] = {**run, "_stats": has_stats}
    return list(best.values())


def datatype_table(run: dict) -> tuple[list[str], list[list]]:
    """Data-type error per weight group with its shape statistics, the order found, and the paper's order."""
    raw = json.loads((Path(run["dir"]) / "datatypes.json").read_text())
    dt, shape = raw["errors"], raw.get("weight_shape", {})
    header = ["Weights", "Excess kurtosis", "mean |w|/absmax", *(f"{label} error" for _, label in DTYPES),
              "Order (best first)", "NF4 < FP4 < Int4"]
    names = {"image tower": "image tower (ours, 1 epoch)", "text tower": "text tower (MiniLM, pretrained)",
             "N(0,1)": "N(0, 1) samples (MSE)"}
    rows = []
    for group in ("image tower", "text tower", "N(0,1)"):
        if group not in dt:
            continue
        err = {qt: dt[group][qt].get("rel_mse", dt[group][qt].get("mse")) for qt, _ in DTYPES}
        order = sorted(err, key=err.get)
        st = shape.get(group, {})
        rows.append([names[group], round(st["excess_kurtosis"], 2) if st else "—",
                     round(st["mean_abs_over_absmax"], 3) if st else "—", *(f"{err[qt]:.5f}" for qt, _ in DTYPES),
                     " < ".join(dict(DTYPES)[q].split(" ")[0] for q in order),
                     "yes" if order == ["nf4", "fp4", "int4"] else "no"])
    ppl = {k: v[0] for k, v in DATATYPE_PERPLEXITY.items()}
    rows.append(["Paper, Table 2: LLM perplexity, not weight error", "—", "—", ppl["NFloat4 + DQ"],
                 f"{ppl['Float4 (E2M1)']} (E2M1)", ppl["Int4"], "NF4 < FP4 < Int4", "yes"])
    return header, rows


def datatype_figure(run: dict, out: Path) -> Path:
    dt = _datatypes(run)
    groups = [g for g in ("image tower", "text tower", "N(0,1)") if g in dt]
    fig, ax = slide_figure()
    x = np.arange(len(groups))
    width = 0.26
    for i, (qt, label) in enumerate(DTYPES):
        vals = [dt[g][qt].get("rel_mse", dt[g][qt].get("mse")) for g in groups]
        ax.bar(x + (i - 1) * width, vals, width, label=label)
    pre = run["summary"].get("pretrained")
    origin = ("random init" if not pre else "our CIFAR-10 pretraining" if "cifar10" in str(pre)
              else f"pretrained: {Path(str(pre)).name[:24]}")
    shape = json.loads((Path(run["dir"]) / "datatypes.json").read_text()).get("weight_shape", {})
    kurt = {g: f"\nexcess kurtosis {shape[g]['excess_kurtosis']:+.2f}" if g in shape else "" for g in groups}
    names = {"image tower": f"image tower weights\n({origin}){kurt.get('image tower', '')}",
             "text tower": f"text tower weights\n(MiniLM, pretrained){kurt.get('text tower', '')}",
             "N(0,1)": "N(0, 1) samples"}
    ax.set_xticks(x, [names[g] for g in groups])
    ax.set(ylabel="relative MSE (weights) / MSE (N(0,1))",
           title="4-bit data types, block 64 + double quantization (lower is better)")
    ppl = ", ".join(f"{k} {v[0]}" for k, v in DATATYPE_PERPLEXITY.items())
    ax.text(0.01, 0.97, f"Paper, Table 2 (perplexity): {ppl}", transform=ax.transAxes, va="top", fontsize=13)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.92))
    png, _ = save_figure(fig, out, f"datatypes_{run['summary']['preset']}", footer=summary_footer(run["summary"]))
    return png


def memory_figure(run: dict, out: Path) -> Path:
    rows = [r for r in _variants(run) if r["variant"] != "zero_shot"]
    fig, ax = slide_figure()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["base_bytes"] / 2**20 for r in rows], 0.4, label="base linear weights (stored)")
    ax.bar(x + 0.2, [r["state_bytes"] / 2**20 for r in rows], 0.4,
           label="training state: all weights + grads + optimizer")
    ax.set_xticks(x, [VARIANT_LABEL[r["variant"]].replace(", ", ",\n") for r in rows], fontsize=13)
    ax.set(ylabel="MB (from the tensors' storage)", title="Memory per variant")
    ax.legend()
    png, _ = save_figure(fig, out, f"memory_{run['summary']['preset']}", footer=summary_footer(run["summary"]))
    return png


def curves_figure(run: dict, out: Path) -> Path:
    fig, ax = slide_figure()
    for r in _variants(run):
        pts = [(m["epoch"], m["test_top1"]) for m in run["metrics"] if m.get("tag") == r["variant"]]
        if pts:
            ax.plot(*zip(*pts), label=r["label"])
    ax.set(xlabel="epoch (0 = before tuning)", ylabel="test top-1 (%)",
           title=f"Fine-tuning CLIP — {run['summary']['dataset']} ({run['summary']['preset']} preset)")
    ax.legend()
    png, _ = save_figure(fig, out, f"curves_{run['summary']['preset']}", footer=summary_footer(run["summary"]))
    return png


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs = load_approved(PAPER, required=True)
    default_out = out_dir is None
    out = Path(out_dir) if out_dir else results_dir(PAPER)
    written: dict[str, Path] = {}
    figures, tables, md_blocks, claims = [], [], [], []
    presets: dict[str, list[dict]] = {}
    for run in runs:
        presets.setdefault(run["summary"]["preset"], []).append(run)
    for preset, seeds in presets.items():
        claims += claim_rows(seeds)
        run = max(seeds, key=lambda r: (len(_variants(r)), -r["config"]["seed"]))  # the run with every variant
        for kind, fn in (("curves", curves_figure), ("datatypes", datatype_figure), ("memory", memory_figure)):
            png = fn(run, out)
            written[f"{kind}_{preset}"] = png
            figures.append((f"{kind.capitalize()} — {preset} preset", png))
        header, rows = variants_table(run)
        tables.append((f"Variants on the same budget — {preset} preset, {run['summary']['dataset']}", header, rows))
        md_blocks.append(f"**{preset} preset, {run['summary']['dataset']}** (seed {run['config']['seed']})\n\n"
                         f"{markdown_table(header, rows)}")
    for run in _one_run_per_base(runs):  # the data types depend on the base model only, not on the preset
        dt_header, dt_rows = datatype_table(run)
        tables.append(("4-bit data types on the base model's weights", dt_header, dt_rows))
        md_blocks.append(f"**4-bit data types, block 64 + DQ, on the base model's weights (from the "
                         f"{run['summary']['preset']} run; relative MSE for weights)**\n\n"
                         f"{markdown_table(dt_header, dt_rows)}")
    md_claims = comparison_table(claims, out, "claims")
    with open(out / "claims.csv", newline="") as f:
        claims_csv = list(csv.reader(f))
    md_variants = "\n\n".join(md_blocks)
    (out / "variants.md").write_text(md_variants + "\n")
    written["claims"], written["variants"] = out / "claims.md", out / "variants.md"
    last = runs[-1]
    written["deck"] = build_deck(
        out / "qlora_clip_deck.pptx", title="QLoRA applied to CLIP",
        subtitle="Dettmers, Pagnoni, Holtzman, Zettlemoyer — NeurIPS 2023 (arXiv 2305.14314)", idea=IDEA,
        equation_map=EQUATION_MAP, tables=[("Ours vs the paper's claims", claims_csv[0], claims_csv[1:]), *tables],
        figures=figures, footer=summary_footer(last["summary"]))
    if default_out:
        update_readme_block(README, "results", f"{md_claims}\n\n{md_variants}")
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
