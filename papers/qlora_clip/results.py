"""Figures, tables and deck of the QLoRA-on-CLIP package from its approved runs.

``python -m papers.qlora_clip.results`` rebuilds everything from ``papers/qlora_clip/results/runs/`` (no
training); ``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/qlora_clip/results/``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from common.deck import (Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, mean_sd, paper_source,
                         runs_source, same_direction)
from common.report import (bar_labels, fmt_mib, fmt_ratio, markdown_table, save_figure, slide_figure,
                           update_readme_block, write_csv)
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from papers.qlora_clip.config import PRESETS
from papers.qlora_clip.paper_numbers import CONSTANT_BITS_PER_PARAM, DATATYPE_PERPLEXITY, MEMORY_65B_GB, MMLU

PAPER = "qlora_clip"
GRID = ("quick", "mnist")  # presets with approved runs; paper needs a GPU and the internet
MAIN = "mnist"  # the preset of the headline (three seeds)
README = Path(__file__).with_name("README.md")
TITLE = "QLoRA applied to CLIP"
CITATION = "Dettmers, Pagnoni, Holtzman, Zettlemoyer — NeurIPS 2023 (arXiv 2305.14314)"
ORDER = ("zero_shot", "full_ft", "lora", "qlora_nf4", "qlora_fp4", "int4_lora")
SHORT = {"zero_shot": "zero-shot", "full_ft": "full FT (fp32)", "lora": "LoRA (fp32 base)",
         "qlora_nf4": "QLoRA NF4+DQ", "qlora_fp4": "QLoRA FP4+DQ", "int4_lora": "LoRA, Int4+DQ base"}
DTYPES = (("nf4", "NF4"), ("fp4", "FP4 (E2M1)"), ("int4", "Int4"))
GROUPS = (("image tower", "image tower"), ("text tower", "text tower (MiniLM)"), ("N(0,1)", "N(0, 1) samples"))
DQ = "with DQ (8-bit absmax, block 64; fp32 constants, block 256)"

IDEA = [
    "Freeze the pretrained model in 4 bits and train only low-rank adapters (LoRA) through it; gradients flow "
    "through the dequantized weights into the adapters (Eq. 5).",
    "NF4 puts its 16 levels at quantiles of N(0, 1), asymmetric so that 0 is exact (Eq. 4); each block of 64 "
    "weights is scaled by its absmax (Eq. 1–2).",
    "Double quantization stores those absmax constants in 8 bits (block 256): 0.5 → 0.127 bit per parameter; "
    "paged optimizers absorb memory spikes (Sec. 3).",
    "Here: CLIP's image tower fine-tuned as a classifier through its zero-shot head, a setting the paper did not "
    "test; every variant gets the same data and steps.",
]
FORMULAS = [
    Formula("Eq. (1)–(2)", r"$X^{q} = \mathrm{round}\left(\frac{q_{\max}}{\mathrm{absmax}(X)}\,X\right) = "
            r"\mathrm{round}(c\,X),\quad \mathrm{dequant}(c, X^{q}) = X^{q}/c$",
            "papers/qlora_clip/nf4.py: quantize_blockwise, dequantize_blockwise",
            note="blockwise: one constant c per block of 64 weights; 4-bit codes look up the nearest level"),
    Formula("Eq. (3)", r"$Y = X W + s\,X L_1 L_2,\quad s = \alpha / r$", "papers/qlora_clip/lora.py: add_lora_ (peft)"),
    Formula("Eq. (4)", r"$q_i = \frac{1}{2}\left(Q_X\left(\frac{i}{2^k+1}\right) + "
            r"Q_X\left(\frac{i+1}{2^k+1}\right)\right)$",
            "papers/qlora_clip/nf4.py: normal_float_code_book",
            note="Q_X: quantile function of N(0, 1); built from two halves so that 0 is a level"),
    Formula("Eq. (5)", r"$Y = X\,\mathrm{doubleDequant}(c_1, c_2, W^{\mathrm{NF4}}) + X L_1 L_2$",
            "papers/qlora_clip/lora.py: quantize_linears_ (bitsandbytes Linear4bit) + add_lora_"),
    Formula("Eq. (6)", r"$\mathrm{doubleDequant}(c_1, c_2, W) = \mathrm{dequant}(\mathrm{dequant}(c_1, c_2),\ W)$",
            "papers/qlora_clip/nf4.py: double_quantize, double_dequantize"),
    Formula("Sec. 3", r"$\frac{32}{64} = 0.5\ \rightarrow\ \frac{8}{64} + \frac{32}{64 \cdot 256} = 0.127$"
            r"$\ \mathrm{bit\ per\ parameter}$", "papers/qlora_clip/nf4.py: bits_per_param_formula",
            note="the absmax constants without and with double quantization"),
]
DEVIATIONS = [
    "CLIP instead of LLaMA: image classification through CLIP's zero-shot head; the paper's MMLU and perplexity "
    "are other units, so we compare directions, never differences.",
    "fp32 instead of BF16 as the reference and the compute dtype on the CPU (the paper preset: bf16 on a GPU).",
    "LoRA on the image tower only: the text tower is quantized but frozen (it only makes the class head).",
    "Paged optimizers only on CUDA; the CPU runs use torch's AdamW.",
    "Int4 base is ours and simulated (dequantized for the matmul); FP4 is bitsandbytes' E2M1 only (no E3M0).",
    "Constant LR, no grad-norm clipping, 375 steps per variant (App. B.2: max grad norm 0.3, thousands of steps); "
    "the small CLIP is pretrained for one epoch on CIFAR-10.",
]
KNOWN_GAPS = [
    "The paper preset (ViT-B-32 with OpenAI weights, bf16, paged AdamW, GPU) has not run.",
    "MNIST seeds 1–2 ran zero-shot, LoRA and QLoRA NF4 only: full FT, FP4 and Int4 have one seed.",
    "The MNIST runs evaluated the test split after each epoch (first schema, no validation split) and recorded "
    "no per-variant peak memory.",
    "Our image tower's weights are near-uniform after one epoch of pretraining: no test of NF4 on normal weights.",
]


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    from papers.qlora_clip.train import main

    common_run_missing(PAPER, grid, PRESETS, main)


# ------------------------------------------------------------------------------------------------ selections

def _preset(runs, preset: str) -> list:
    return sorted((r for r in runs if r.summary.preset == preset), key=lambda r: r.summary.seed)


def _rows(run) -> dict[str, object]:
    """The typed row of each variant of a run."""
    return {row.extra["variant"]: row for row in run.rows()}


def _variants(run) -> dict[str, dict]:
    """The run's per-variant table (storage, training state, time per step)."""
    return {r["variant"]: r for r in run.json("variants.json")}


def _values(runs, variant: str) -> list[tuple[int, float]]:
    """(seed, test top-1) of ``variant`` in every run that trained it."""
    return [(run.summary.seed, _rows(run)[variant].value) for run in runs if variant in _rows(run)]


def _gaps(runs, a: str, b: str) -> list[float]:
    """Test top-1 of ``a`` minus ``b`` in every run that trained both (same seed, same data)."""
    return [_rows(r)[a].value - _rows(r)[b].value for r in runs if {a, b} <= _rows(r).keys()]


def _full(runs):
    """The run of a preset that trained every variant (the lowest seed among them)."""
    return max(runs, key=lambda r: (len(_rows(r)), -r.summary.seed))


def _datatypes(run) -> tuple[dict, dict]:
    raw = run.json("datatypes.json")
    err = {g: {qt: v.get("rel_mse", v.get("mse")) for qt, v in d.items()} for g, d in raw["errors"].items()}
    return err, raw.get("weight_shape", {})


def _sd(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _delta(values, unit: str = "pts") -> str:
    """``"+2.91 pts (n=1)"``, ``"−0.05 ± 2.32 pts (n=3)"``: a signed change, mean ± sd over seeds."""
    spread = f" ± {_sd(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):+.2f}{spread} {unit} (n={len(values)})".replace("-", "−")


def _pct(values) -> str:
    """``"83.71 ± 2.06% (n=3)"``."""
    spread = f" ± {_sd(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}% (n={len(values)})"


# ------------------------------------------------------------------------------------------------ headline

def _headline(runs) -> tuple[list[str], list[list[str]], Source]:
    main = _preset(runs, MAIN)
    full = _full(main)
    var = _variants(full)
    header = ["Claim (paper ref.)", "Paper", "Ours", "Ours: what", "Same direction?"]
    rows: list[list[str]] = []
    gap = _gaps(main, "qlora_nf4", "lora")
    tol = _sd(gap)
    for v, key, label in (("lora", "BFloat16", "16-bit LoRA"), ("qlora_nf4", "NFloat4 + DQ", "QLoRA NF4+DQ")):
        vals = [x for _, x in _values(main, v)]
        rows.append([f"{label} (Table 4, mean)", f"{MMLU[key][0]:.1f} MMLU", mean_sd(vals), "MNIST top-1 %", "—"])
    paper = MMLU["NFloat4 + DQ"][0] - MMLU["BFloat16"][0]
    rows.append(["NF4+DQ matches 16-bit LoRA (Table 4)", f"{paper:+.1f} pts".replace("-", "−"), _delta(gap),
                 "QLoRA − LoRA, same seed", same_direction(statistics.mean(gap), paper, tol=tol)])
    fp4 = _gaps(main, "qlora_fp4", "qlora_nf4")
    if fp4:
        paper = MMLU["Float4"][0] - MMLU["NFloat4 + DQ"][0]
        rows.append(["FP4 below NF4+DQ (Table 4)", f"{paper:+.1f} pts".replace("-", "−"), _delta(fp4),
                     "QLoRA FP4 − NF4, same seed", same_direction(statistics.mean(fp4), paper, tol=tol)])
    err, _ = _datatypes(_shape_run(runs))
    text = err["text tower"]
    ppl = {k: v[0] for k, v in DATATYPE_PERPLEXITY.items()}
    for a, b, pa, pb in (("nf4", "fp4", "NFloat4 + DQ", "Float4 (E2M1)"), ("fp4", "int4", "Float4 (E2M1)", "Int4")):
        la, lb = dict(DTYPES)[a].split(" ")[0], dict(DTYPES)[b].split(" ")[0]
        rows.append([f"{la} error below {lb} (Table 2, perplexity)", f"{ppl[pa]:.2f} vs {ppl[pb]:.2f}",
                     f"{text[a]:.4f} vs {text[b]:.4f}", "rel. MSE, MiniLM weights",
                     same_direction(text[a] - text[b], ppl[pa] - ppl[pb])])
    nf = var["qlora_nf4"]
    bits, ref = CONSTANT_BITS_PER_PARAM[DQ]
    rows.append([f"Constants with DQ, bit/param ({ref.split(',')[0]})", f"{bits:.3f}",
                 f"{nf['bits_per_base_param'] - 4:.3f}", "measured, code books incl.", "—"])
    if "full_ft" in var:
        big, small = MEMORY_65B_GB["16-bit full finetuning"], MEMORY_65B_GB["QLoRA"]
        ours = var["full_ft"]["state_bytes"] / nf["state_bytes"]
        rows.append([f"Training memory, full FT ÷ QLoRA ({big[1].split(',')[0]})",
                     f">{big[0] / small[0]:.0f}× (65B)", fmt_ratio(ours), "weights + grads + AdamW state",
                     same_direction(ours - 1, big[0] / small[0] - 1)])
    src = combine(runs_source(main, extra_files=[full.dir / "variants.json", _shape_run(runs).dir / "datatypes.json"]),
                  paper_source(PAPER, "Tables 2, 4; Sec. 1, 3"))
    return header, rows, src


# ------------------------------------------------------------------------------------------------ figures

def _accuracy_figure(runs, out: Path) -> Path:
    """Test top-1 of every variant on MNIST: each seed a grey dot, the mean ± sd a bar with its value."""
    main = _preset(runs, MAIN)
    shown = [v for v in ORDER if v != "zero_shot" and _values(main, v)]
    fig, ax = slide_figure()
    means, sds = [], []
    for i, v in enumerate(shown):
        vals = [x for _, x in _values(main, v)]
        means.append(statistics.mean(vals))
        sds.append(_sd(vals))
        ax.scatter([i] * len(vals), vals, color="black", edgecolors="white", s=70, zorder=4,
                   label="one seed" if i == 0 else None)
    colours = ["#999999" if v == "full_ft" else "#0072B2" if v in ("lora", "qlora_nf4") else "#56B4E9" for v in shown]
    bars = ax.bar(range(len(shown)), means, yerr=sds, color=colours, capsize=8, width=0.6, zorder=2)
    lo = min(x for v in shown for _, x in _values(main, v))
    ax.set_ylim(lo - 8, 100)
    ns = [len(_values(main, v)) for v in shown]
    for bar, m, sd in zip(bars, means, sds):
        ax.annotate(f"{m:.2f}", (bar.get_x() + bar.get_width() / 2, m + sd), xytext=(0, 6),
                    textcoords="offset points", ha="center", va="bottom", fontsize=14)
    for bar, n in zip(bars, ns):
        ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, lo - 7), ha="center", va="bottom", fontsize=13)
    ax.set_xticks(range(len(shown)), [SHORT[v].replace(" (", "\n(").replace(", ", ",\n") for v in shown],
                  fontsize=13)
    zs = [x for _, x in _values(main, "zero_shot")]
    ax.set(ylabel="MNIST test top-1 (%)",
           title=f"Same 375 steps per variant (zero-shot: {statistics.mean(zs):.2f}%, not drawn)")
    ax.legend(loc="upper right", fontsize=13)
    png, _ = save_figure(fig, out, "accuracy_mnist", footer=runs_source(main).footer)
    return png


def _datatype_figure(run, out: Path) -> Path:
    """Quantization error of the three 4-bit types on the base model's weights and on N(0, 1)."""
    err, shape = _datatypes(run)
    groups = [(g, label) for g, label in GROUPS if g in err]
    fig, ax = slide_figure()
    x = np.arange(len(groups))
    width = 0.26
    for i, (qt, label) in enumerate(DTYPES):
        bars = ax.bar(x + (i - 1) * width, [err[g][qt] for g, _ in groups], width, label=label,
                      color=("#0072B2", "#E69F00", "#009E73")[i])
        bar_labels(ax, bars, "{:.4f}", fontsize=12)
    names = []
    for g, label in groups:
        k = shape.get(g, {}).get("excess_kurtosis")
        names.append(label + (f"\nexcess kurtosis {k:+.2f}" if k is not None else ""))
    ax.set_xticks(x, names, fontsize=13)
    ax.set(ylabel="relative MSE (weights), MSE (N(0, 1))",
           title="4-bit types, block 64 + double quantization (lower is better)")
    ppl = ", ".join(f"{k.split(' (')[0].replace('NFloat4 + DQ', 'NF4+DQ')} {v[0]}"
                    for k, v in DATATYPE_PERPLEXITY.items() if k != "Float4 (E3M0)")
    ax.text(0.01, 0.97, f"Paper, Table 2 (LLM perplexity): {ppl}", transform=ax.transAxes, va="top", fontsize=13)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.9), fontsize=13)
    png, _ = save_figure(fig, out, f"datatypes_{run.summary.preset}", footer=runs_source([run]).footer)
    return png


def _memory_figure(run, out: Path) -> Path:
    """Stored base weights and training state per variant, from the tensors' storage."""
    var = _variants(run)
    shown = [v for v in ORDER if v in var and v != "zero_shot"]
    fig, ax = slide_figure()
    x = np.arange(len(shown))
    for off, key, label, colour in ((-0.2, "base_bytes", "linear weights as stored (4-bit codes + constants)",
                                     "#0072B2"),
                                    (0.2, "state_bytes", "training state: all weights + grads + AdamW", "#E69F00")):
        vals = [var[v][key] for v in shown]
        bars = ax.bar(x + off, [b / 2**20 for b in vals], 0.4, label=label, color=colour)
        bar_labels(ax, bars, values=vals, fmt=lambda b: f"{b / 2**20:.1f}", fontsize=12)
    ax.set_xticks(x, [SHORT[v].replace(" (", "\n(").replace(", ", ",\n") for v in shown], fontsize=13)
    ax.set(ylabel="MiB", title=f"Memory per variant ({run.summary.dataset}, {run.summary.preset} preset)")
    ax.legend(loc="upper right", fontsize=13)
    png, _ = save_figure(fig, out, f"memory_{run.summary.preset}", footer=runs_source([run]).footer)
    return png


def _curves_figure(run, out: Path) -> Path | None:
    """Top-1 per epoch of each variant (validation split where the run had one)."""
    key = "val_top1" if any(m.get("val_top1") is not None for m in run.metrics) else "test_top1"
    fig, ax = slide_figure()
    drawn = False
    for v in ORDER:
        pts = [(m["epoch"], m[key]) for m in run.metrics if m.get("tag") == v and m.get(key) is not None]
        if len(pts) > 1:
            ax.plot(*zip(*pts), marker="o", label=SHORT[v])
            drawn = True
    if not drawn:
        return None
    split = "validation" if key == "val_top1" else "test (first schema: no validation split)"
    ax.set(xlabel="epoch (0 = before tuning)", ylabel=f"{split.split(' ')[0]} top-1 (%)",
           title=f"{run.summary.dataset}, {run.summary.preset} preset: {split} top-1")
    ax.legend(fontsize=13)
    png, _ = save_figure(fig, out, f"curves_{run.summary.preset}", footer=runs_source([run]).footer)
    return png


# ------------------------------------------------------------------------------------------------ tables

def _seed_table(runs) -> tuple[list[str], list[list]]:
    main = _preset(runs, MAIN)
    seeds = [r.summary.seed for r in main]
    header = ["Variant", *(f"s{s} top-1 %" for s in seeds), "Mean ± sd"]
    rows = []
    for v in ORDER:
        got = dict(_values(main, v))
        if got:
            rows.append([SHORT[v], *("—" if s not in got else f"{got[s]:.2f}" for s in seeds),
                         mean_sd(list(got.values()))])
    gap = _gaps(main, "qlora_nf4", "lora")
    per = {r.summary.seed: _rows(r)["qlora_nf4"].value - _rows(r)["lora"].value for r in main
           if {"qlora_nf4", "lora"} <= _rows(r).keys()}
    rows.append(["QLoRA NF4 − LoRA (pts)", *("—" if s not in per else f"{per[s]:+.2f}" for s in seeds),
                 mean_sd(gap)])
    return header, rows


def _variants_table(run) -> tuple[list[str], list[list]]:
    header = ["Variant", "Top-1 %", "Trainable", "Base (stored)", "Bit/base param", "Model (model_bits)",
              "Train state", "s/step"]
    rows = []
    var, typed = _variants(run), _rows(run)
    for v in ORDER:
        if v not in var:
            continue
        r, row = var[v], typed[v]
        rows.append([SHORT[v], f"{row.value:.2f}", f"{r['trainable_params']:,}", fmt_mib(r["base_bytes"]),
                     f"{r['bits_per_base_param']:.3f}", fmt_mib(row.model_bits / 8), fmt_mib(r["state_bytes"]),
                     "—" if r["time_per_step_s"] is None else f"{r['time_per_step_s']:.2f}"])
    return header, rows


def _base_label(run) -> str:
    pre = run.summary.extra.get("pretrained")
    if not pre or pre == "minilm-text":  # the small CLIP's image tower at random init (the text tower pretrained)
        return "random init"
    return "CIFAR-10 pretraining" if "cifar10" in str(pre) else Path(str(pre)).name


def _shape_run(runs):
    """A run of the main preset whose datatypes.json has the weights' shape statistics (the base is the same for
    every seed), else the main preset's full run."""
    main = _preset(runs, MAIN)
    return next((r for r in main if r.json("datatypes.json").get("weight_shape")), _full(main))


def _datatype_table(runs) -> tuple[list[str], list[list], list]:
    """Data-type errors on the main preset's base model, plus the image tower of any other base; the runs used."""
    first = _shape_run(runs)
    others = {}
    for run in runs:
        if _base_label(run) != _base_label(first):
            others.setdefault(_base_label(run), run)
    header = ["Weights", "Excess kurtosis", *(f"{label} error" for _, label in DTYPES), "Order (best first)"]
    rows = []
    for run, groups in ((first, GROUPS), *((r, GROUPS[:1]) for r in others.values())):
        err, shape = _datatypes(run)
        for g, label in groups:
            if g not in err:
                continue
            if g == "image tower":
                label = f"{label} ({_base_label(run)}, {run.summary.preset} runs)"
            order = sorted((qt for qt, _ in DTYPES), key=err[g].get)
            k = shape.get(g, {}).get("excess_kurtosis")
            rows.append([label, "—" if k is None else f"{k:+.2f}", *(f"{err[g][qt]:.5f}" for qt, _ in DTYPES),
                         " < ".join(dict(DTYPES)[q].split(" ")[0] for q in order)])
    ppl = {k: v[0] for k, v in DATATYPE_PERPLEXITY.items()}
    rows.append(["Paper, Table 2: LLM perplexity", "—", f"{ppl['NFloat4 + DQ']}", f"{ppl['Float4 (E2M1)']}",
                 f"{ppl['Int4']}", "NF4 < FP4 < Int4"])
    return header, rows, [first, *others.values()]


def _runs_table(runs) -> tuple[list[str], list[list]]:
    header = ["Preset", "Seed", "Variant", "Test top-1 %", "Full FT %", "W bits", "Model (model_bits)", "File",
              "× vs fp32 file"]
    rows = []
    for run in runs:
        typed = _rows(run)
        for v in ORDER:
            if v not in typed:
                continue
            row = typed[v]
            rows.append([row.preset, row.seed, SHORT[v], f"{row.value:.2f}",
                         "—" if row.fp_value is None else f"{row.fp_value:.2f}",
                         "—" if row.w_bits is None else f"{row.w_bits:g}", fmt_mib(row.model_bits / 8),
                         "—" if row.size_bytes is None else fmt_mib(row.size_bytes),
                         "—" if row.compression_ratio is None else fmt_ratio(row.compression_ratio)])
    return header, rows


# ------------------------------------------------------------------------------------------------ build

def _takeaways(runs) -> list[str]:
    main = _preset(runs, MAIN)
    full = _full(main)
    var, typed = _variants(full), _rows(full)
    nf4 = [x for _, x in _values(main, "qlora_nf4")]
    lora = [x for _, x in _values(main, "lora")]
    gap = _gaps(main, "qlora_nf4", "lora")
    out = [f"On MNIST, QLoRA NF4+DQ reaches {_pct(nf4)} and LoRA on the fp32 base {_pct(lora)}: the gap "
           f"({statistics.mean(gap):+.2f} pts) is inside the seeds' spread ({_sd(gap):.2f}), as the paper's "
           "'NF4+DQ matches 16-bit' says."]
    nf = var["qlora_nf4"]
    out.append(f"The 4-bit base costs {nf['bits_per_base_param']:.3f} bit per weight as stored "
               f"({fmt_ratio(1 / nf['base_ratio_to_fp32'])} smaller than fp32); the artifact file is "
               f"{fmt_ratio(typed['qlora_nf4'].compression_ratio)} smaller than the fp32 file, since embeddings "
               "and LayerNorms stay fp32.")
    err, _ = _datatypes(_shape_run(runs))
    t = err["text tower"]
    out.append(f"On the pretrained MiniLM weights NF4 has the lowest error ({t['nf4']:.4f}); bitsandbytes' FP4 "
               f"(E2M1, {t['fp4']:.4f}) is worse than Int4 ({t['int4']:.4f}) as a weight error, unlike the "
               "paper's perplexity order.")
    if "full_ft" in typed:
        best = max((v for v in typed if v not in ("zero_shot", "full_ft")), key=lambda v: typed[v].value)
        out.append(f"At 375 steps, full fine-tuning (seed {full.summary.seed}: {typed['full_ft'].value:.2f}%) "
                   f"beats every adapter variant (best: {SHORT[best]}, {typed[best].value:.2f}%).")
    return out


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    main = _preset(runs, MAIN)
    full = _full(main)

    header, rows, head_src = _headline(runs)
    md_head = markdown_table(header, rows)
    (out / "headline.md").write_text(md_head + "\n")
    write_csv(out / "headline.csv", header, rows)
    written["headline"] = out / "headline.md"

    written["accuracy_mnist"] = _accuracy_figure(runs, out)
    shape_run = _shape_run(runs)
    written["datatypes_mnist"] = _datatype_figure(shape_run, out)
    written["memory_mnist"] = _memory_figure(full, out)
    figures = [
        Figure("MNIST: every variant on the same budget", written["accuracy_mnist"], runs_source(main),
               notes="Bars: mean over the seeds that trained the variant; whiskers: sd; dots: single seeds."),
        Figure("4-bit data types on the base model's weights", written["datatypes_mnist"],
               combine(runs_source([shape_run], extra_files=[shape_run.dir / "datatypes.json"]),
                       paper_source(PAPER, "Table 2"))),
        Figure("Memory: stored base and training state", written["memory_mnist"],
               runs_source([full], extra_files=[full.dir / "variants.json"])),
    ]

    sh, sr = _seed_table(runs)
    vh, vr = _variants_table(full)
    dh, dr, dt_runs = _datatype_table(runs)
    rh, rr = _runs_table(runs)
    appendix: list = [
        Table("MNIST: test top-1 per seed", sh, sr, runs_source(main),
              legend="— : the seed did not train the variant; mean ± sd over the seeds that did"),
        Table(f"MNIST seed {full.summary.seed}: every variant", vh, vr,
              runs_source([full], extra_files=[full.dir / "variants.json"]),
              legend="Base: the linear layers' weights as stored; model_bits: every stored field, no file overhead; "
                     "s/step: shared 2-core CPU, not a speed comparison"),
        Table("4-bit data types: error and weight shape", dh, dr,
              combine(runs_source(dt_runs, extra_files=[r.dir / "datatypes.json" for r in dt_runs]),
                      paper_source(PAPER, "Table 2")),
              legend="relative MSE of the weights (MSE for N(0, 1)); block 64 + double quantization"),
    ]
    md_blocks = [f"**MNIST, test top-1 per seed**\n\n{markdown_table(sh, sr)}",
                 f"**MNIST seed {full.summary.seed}, every variant**\n\n{markdown_table(vh, vr)}",
                 f"**4-bit data types on the base model's weights** (relative MSE; MSE for N(0, 1))\n\n"
                 f"{markdown_table(dh, dr)}"]
    for run in _preset(runs, "quick"):
        qh, qr = _variants_table(run)
        appendix.append(Table(f"Quick preset ({run.summary.dataset}, CPU minutes): every variant", qh, qr,
                              runs_source([run], extra_files=[run.dir / "variants.json"])))
        md_blocks.append(f"**quick preset, {run.summary.dataset}** (seed {run.summary.seed}, CPU minutes)\n\n"
                         f"{markdown_table(qh, qr)}")
        png = _curves_figure(run, out)
        if png:
            written[png.stem] = png
            appendix.append(Figure(f"Quick preset: top-1 per epoch", png, runs_source([run])))
    appendix.append(Table("Every approved run and variant (quick = CPU minutes, not paper scale)", rh, rr,
                          runs_source(runs),
                          legend="File: the QLoRA NF4 artifact (safetensors); Full FT: fp_value, the float "
                                 "reference of the run"))
    (out / "variants.md").write_text("\n\n".join(md_blocks) + "\n")
    (out / "runs.md").write_text(markdown_table(rh, rr) + "\n")
    write_csv(out / "runs.csv", rh, rr)
    written["variants"], written["runs"] = out / "variants.md", out / "runs.md"

    cite = Source(CITATION, ("papers/qlora_clip/paper_numbers.py",))
    written["deck"] = build_paper_deck(
        out / "qlora_clip_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, cite),
        idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours", header, rows, head_src,
                       legend="Paper: LLaMA (MMLU, perplexity); ours: small CLIP on MNIST. pts: points; flat: "
                              "within the seeds' sd of QLoRA − LoRA"),
        figures=figures,
        deviations=Bullets("Deviations", DEVIATIONS, cite,
                           notes="The README's Deviations section lists all of them with the paper's sections."),
        known_gaps=Bullets("Known gaps", KNOWN_GAPS, runs_source(main)),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(main)),
        appendix=appendix)
    if default_out:
        block = (f"{md_head}\n\n![MNIST, every variant](results/accuracy_mnist.png)\n\n"
                 + "\n\n".join(md_blocks))
        update_readme_block(README, "results", block)
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
