"""Tables, figures and deck of the PTQ4ViT package from its approved runs.

``python -m papers.ptq4vit.results`` rebuilds them from ``papers/ptq4vit/results/runs/`` (no quantization);
``--run`` first runs and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/ptq4vit/results/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.deck import Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, runs_source
from common.report import markdown_table, save_figure, slide_figure, update_readme_block
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from papers.ptq4vit.config import PRESETS
from papers.ptq4vit.paper_numbers import ABLATION, ABLATION_REF, README as README_REF, TOP1
from papers.ptq4vit.sites import site_kind

PAPER = "ptq4vit"
GRID = ("quick",)  # presets --run makes on a CPU
README = Path(__file__).with_name("README.md")
TITLE = "PTQ4ViT: Post-Training Quantization for Vision Transformers with Twin Uniform Quantization"
CITATION = "Yuan, Xue, Chen, Wu, Sun — ECCV 2022 (arXiv 2111.12293)"

IDEA = [
    "Post-softmax values are mostly tiny with a few large ones; post-GELU values are a short negative tail and a "
    "long positive range. One uniform grid serves neither well at 6 bits.",
    "Twin uniform quantization: two uniform ranges with steps related by a power of two (Δ_R2 = 2^m Δ_R1, aligned "
    "by a shift): softmax gets a fine range for small values and [0, 1] for the rest; GELU one range per sign.",
    "The steps are found by a grid search whose metric is Hessian guided: the output change weighted by the squared "
    "gradient of the task loss, not the cosine distance or MSE of base PTQ; weight and input steps alternate.",
    "Here: the real pretrained MiniLM-L6 encoder (softmax attention, GELU MLPs) and small ViTs trained here; "
    "every linear layer and both inputs of each attention matmul quantized, as in the paper.",
]
FORMULAS = [
    Formula("Uniform", r"$\Psi_k(x,\Delta) = \mathrm{clamp}(\lfloor x/\Delta \rceil,\,-2^{k-1},\,2^{k-1}-1)\,\Delta$",
            "papers/ptq4vit/ptq4vit.py: quantize_uniform", "base PTQ: one Δ per tensor (per head for matmuls)"),
    Formula("Twin, softmax",
            r"$T(x) = \Psi_{k-1}(x,\Delta_{R1})$ if $x \leq L\Delta_{R1}$ else $\Psi_{k-1}(x,\Delta_{R2}),\ "
            r"\Delta_{R2} = 2^m\Delta_{R1}$",
            "papers/ptq4vit/ptq4vit.py: twin_softmax", "Δ_R2 = 1/L covers [0, 1]; m searched"),
    Formula("Twin, GELU", r"$T(x) = \Psi_{k-1}(x,\Delta_{R1})$ if $x < 0$ else $\Psi_{k-1}(x,\Delta_{R2})$",
            "papers/ptq4vit/ptq4vit.py: twin_gelu", "R1 reaches min GELU ≈ −0.17"),
    Formula("Hessian metric",
            r"$\min_\Delta\ (\hat{O}-O)^T\,\mathrm{diag}\left((\partial L/\partial O)^2\right)(\hat{O}-O)$",
            "papers/ptq4vit/ptq4vit.py: distance", "vs base PTQ: 1 − cos(O, Ô)"),
]
DEVIATIONS = [
    "Post-softmax R2 step 1/(2^(k−1)−1) so that 1 is a level (the official code; the paper writes 1/2^(k−1)).",
    "Post-GELU: R1 = Δ_R2 / 2^m with the largest m that still reaches min GELU (the paper's 2^m relation); the "
    "official code fixes Δ_R1 = 0.17 / 2^(k−1) independently of Δ_R2.",
    "Gradients for the Hessian metric: cross-entropy against the float model's own predictions (MiniLM: in-batch "
    "retrieval with the float nearest neighbour); the official code's KL to its own output has zero gradient.",
    "MiniLM: a sentence encoder, not a ViT; metric: embedding cosine to fp32 on 48 shipped sentences; calibration "
    "on 32 other sentences. Embeddings and LayerNorms stay fp32 (as the paper's non-matmul layers).",
    "Small ViTs trained here (MNIST minutes, CIFAR-10 an hour on one core) instead of ImageNet ViT/DeiT.",
    "quick preset: a grid of 20 candidates and 2 rounds (paper: 100 and 3); the minilm preset uses the paper's.",
    "Matmul inputs Q, K, V: one step per head, finer than the official configuration's one step per input; all "
    "other steps layer-wise, as the official configuration.",
]
KNOWN_GAPS = [
    "MiniLM W8A8 loses more than the paper's ViTs at 8 bits (abstract: < 0.5% drop): a few outlier dimensions of "
    "its residual stream (MLP second layer's weights, MLP first layer's inputs) meet the paper's layer-wise steps "
    "(appendix table).",
    "ImageNet rows (ViT-S/B, DeiT-S/B) need the hub and an ImageNet folder: only a random-init dry run here.",
    "Paper numbers are checked against the official README's tables; the paper's own table text is not yet checked.",
    "The equation numbers of the paper are not yet checked against its text; the code names the method's parts.",
    "The CIFAR-10 small ViT (an hour of CPU) is not yet trained; its preset exists and dry-runs.",
]


def run_missing(grid=GRID) -> None:
    """Run and approve each preset of ``grid`` that has no approved run yet."""
    from papers.ptq4vit.quantize import main

    common_run_missing(PAPER, grid, PRESETS, main)


def _short(run) -> str:
    model = {"minilm": "MiniLM-L6", "vit_mnist": "small ViT, MNIST", "vit_cifar10": "small ViT, CIFAR-10",
             "vit_digits": "small ViT, digits"}.get(run.config.get("model"), run.config.get("model"))
    return f"{model} ({run.summary.preset})"


def _fmt(run, v) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if run.summary.metric == "test_embedding_cosine" else f"{v:.2f}"


def _paper_table(runs) -> tuple[list[str], list[list[str]]]:
    """The paper's layout: FP | base PTQ and PTQ4ViT at W8A8 and W6A6, our models then the paper's (ImageNet)."""
    header = ["Model (metric)", "FP", "Base PTQ W8A8", "PTQ4ViT W8A8", "Base PTQ W6A6", "PTQ4ViT W6A6"]
    rows = []
    for run in runs:
        by = {(p.extra.get("variant"), p.w_bits, p.a_bits): p.value for p in run.points}
        metric = "cosine to fp32" if run.summary.metric == "test_embedding_cosine" else "top-1 %"
        rows.append([f"{_short(run)}, {metric}", _fmt(run, run.summary.fp_value),
                     *(_fmt(run, by.get((v, b, b))) for b in (8, 6) for v in ("base", "ptq4vit"))])
    for name, t in TOP1.items():
        rows.append([f"{name}, ImageNet top-1 % (paper)", f"{t['fp']:.2f}", f"{t['base_w8a8']:.2f}",
                     f"{t['ptq4vit_w8a8']:.2f}", f"{t['base_w6a6']:.2f}", f"{t['ptq4vit_w6a6']:.2f}"])
    return header, rows


def _ablation_table(runs) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Hessian", "Softmax twin", "GELU twin", "W8A8", "W6A6"]
    rows = []
    tick = lambda b: "✓" if b else ""
    for run in runs:
        abl = run.summary.extra.get("ablation") or []
        keys = []
        for a in abl:
            k = (a["hessian"], a["softmax_twin"], a["gelu_twin"])
            if k not in keys:
                keys.append(k)
        for k in keys:
            v = {a["bits"]: a["value"] for a in abl if (a["hessian"], a["softmax_twin"], a["gelu_twin"]) == k}
            rows.append([_short(run), *(tick(b) for b in k), _fmt(run, v.get(8)), _fmt(run, v.get(6))])
    for h, s, g, w8, w6 in ABLATION["ViT-S/224"]:
        rows.append(["ViT-S/224 (paper)", tick(h), tick(s), tick(g), f"{w8:.2f}", f"{w6:.2f}"])
    return header, rows


def _site_files(run) -> list[str]:
    return sorted(p.name for p in run.dir.glob("sites_w*a*.json"))


def _sites_table(runs) -> tuple[list[str], list[list[str]]]:
    """Per kind of quantized tensor (the same tensor of every block): the drop from float with that kind alone
    quantized and with every other site quantized, and how far its largest value lies above the typical row /
    channel (weights: largest |w| / median over output rows of the row's largest |w|; inputs: largest |x| / median
    over input channels of the channel's largest |x|, calibration set; the worst block)."""
    header = ["Model, bits", "Quantized tensor (every block)", "Alone: drop", "All but this kind: drop",
              "Largest / typical row or channel"]
    rows = []
    for run in runs:
        for name in _site_files(run):
            s = run.json(name)
            scale = 100.0 if run.summary.metric == "test_embedding_cosine" else 1.0
            f = lambda d: f"{scale * d:.2f}"
            ratio = {}
            for e in s.get("weight_rows", []):
                k = site_kind((e["layer"], "W"))
                ratio[k] = max(ratio.get(k, 0.0), e["max_abs"] / max(e["median_row_max"], 1e-12))
            for e in s.get("input_channels", []):
                k = site_kind((e["layer"], "X"))
                ratio[k] = max(ratio.get(k, 0.0), e["max_abs"] / max(e["median_channel_max"], 1e-12))
            tag = f"{_short(run)}, W{s['w_bits']}A{s['a_bits']}"
            rows.append([tag, "every site (the PTQ4ViT model)", f(s["all"]["drop"]), "—", ""])
            for k in sorted(s["kinds"], key=lambda e: -(s["all"]["drop"] - e["all_but"]["drop"])):
                r = ratio.get(k["kind"])
                rows.append([tag, k["kind"], f(k["alone"]["drop"]), f(k["all_but"]["drop"]),
                             f"{r:.0f}×" if r is not None else ""])
    return header, rows


def _histogram_figure(run, out: Path) -> Path | None:
    if not (run.dir / "histograms.json").is_file():
        return None
    h = run.json("histograms.json")
    bits = min(run.config.get("compare_bits") or [6])
    fig, axes = slide_figure(1, 2)
    for ax, key, title in ((axes[0], "post_softmax", "post-softmax"), (axes[1], "post_gelu", "post-GELU")):
        e = h.get(key)
        if not e:
            ax.set_visible(False)
            continue
        lo, hi, n = e["bins"]
        edges = np.linspace(lo, hi, int(n) + 1)
        ax.bar(edges[:-1], np.maximum(e["counts"], 0.5), width=np.diff(edges), align="edge", color="#999999",
               label="values (calibration)")
        ax.set_yscale("log")
        for tag, color, y in (("base", "#E69F00", 0.92), ("ptq4vit", "#0072B2", 0.82)):
            lv = [v for v in e.get(f"{tag}_levels", []) if lo <= v <= hi]
            if lv:
                ax.vlines(lv, 0, 1, transform=ax.get_xaxis_transform(), color=color, lw=0.6, alpha=0.7,
                          label=f"{'uniform (base PTQ)' if tag == 'base' else 'twin (PTQ4ViT)'}: {len(lv)} levels")
        if key == "post_softmax":
            ax.set_xlim(0, 0.25)
        block = re.search(r"\d+", e["layer"])
        ax.set(title=f"{title}, block {block.group(0) if block else '?'}", xlabel="value", ylabel="count (log)")
        ax.legend(fontsize=10, loc="upper right")
    fig.suptitle(f"{_short(run)}: values and the W{bits}A{bits} levels of both quantizers")
    png, _ = save_figure(fig, out, f"histograms_{run.summary.preset}", footer=runs_source([run]).footer)
    return png


def _sweep_figure(runs, out: Path) -> Path | None:
    have = [r for r in runs if r.summary.extra.get("calib_sweep")]
    if not have:
        return None
    fig, axes = slide_figure(1, len(have), squeeze=False)
    for ax, run in zip(axes[0], have):
        sw = sorted(run.summary.extra["calib_sweep"], key=lambda s: s["calib_samples"])
        ax.plot([s["calib_samples"] for s in sw], [s["value"] for s in sw], "o-", color="#0072B2", label="PTQ4ViT")
        ax.axhline(run.summary.fp_value, color="#777777", ls="--", lw=1, label="float")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="calibration samples", ylabel=run.summary.metric)
        ax.set_title(f"{_short(run)}\nW{run.summary.w_bits:g}A{run.summary.a_bits:g}", fontsize=12)
        ax.legend(fontsize=11)
    png, _ = save_figure(fig, out, "calib_sweep", footer=runs_source(have).footer)
    return png


def _bars_figure(runs, out: Path) -> Path | None:
    """Drop from float per model: base PTQ vs PTQ4ViT at W8A8 and W6A6."""
    if not runs:
        return None
    fig, axes = slide_figure(1, len(runs), squeeze=False)
    for ax, run in zip(axes[0], runs):
        by = {(p.extra.get("variant"), p.w_bits): p.value for p in run.points}
        scale = 100.0 if run.summary.metric == "test_embedding_cosine" else 1.0
        labels, vals, colors = [], [], []
        for b in (8, 6):
            for v, c in (("base", "#E69F00"), ("ptq4vit", "#0072B2")):
                if (v, b) in by:
                    labels.append(f"{'base' if v == 'base' else 'PTQ4ViT'}\nW{b}A{b}")
                    vals.append(scale * (run.summary.fp_value - by[(v, b)]))
                    colors.append(c)
        bars = ax.bar(range(len(vals)), vals, color=colors)
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=11)
        ax.set_xticks(range(len(vals)), labels, fontsize=11)
        unit = "100 × (1 − cosine)" if scale == 100.0 else "top-1 points"
        ax.set(ylabel=f"drop from float ({unit})", title=_short(run))
    png, _ = save_figure(fig, out, "drop_from_float", footer=runs_source(runs).footer)
    return png


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the paper-layout table, the ablation table, the figures and the deck; return the paths."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    header, rows = _paper_table(runs)
    a_header, a_rows = _ablation_table(runs)
    md = markdown_table(header, rows) + "\n\nAblation (the layout of the paper's ablation table):\n\n" + \
        markdown_table(a_header, a_rows)
    (out / "paper_table.md").write_text(md + "\n")
    written["table"] = out / "paper_table.md"
    s_header, s_rows = _sites_table(runs)
    sites_md = markdown_table(s_header, s_rows) if s_rows else "No approved run measured its sites (--sites)."
    (out / "sites_table.md").write_text(sites_md + "\n")
    written["sites_table"] = out / "sites_table.md"
    figures = []
    png = _bars_figure(runs, out)
    if png:
        written[png.stem] = png
        figures.append(Figure("Drop from float: base PTQ vs PTQ4ViT", png, runs_source(runs)))
    for run in runs:
        png = _histogram_figure(run, out)
        if png:
            written[png.stem] = png
            figures.append(Figure(f"Post-softmax and post-GELU values, {_short(run)}", png, runs_source([run])))
    png = _sweep_figure(runs, out)
    if png:
        written[png.stem] = png
        figures.append(Figure("Calibration-set size", png, runs_source(runs)))
    cite = Source(f"{CITATION}; {README_REF}", ("papers/ptq4vit/paper_numbers.py",))
    head_rows = [[r[0], r[1], r[3], r[5], r[2], r[4]] for r in rows]
    written["deck"] = build_paper_deck(
        out / "ptq4vit_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, cite),
        idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours: float, base PTQ and PTQ4ViT", ["Model", "FP", "PTQ4ViT W8A8",
                                                                      "PTQ4ViT W6A6", "Base W8A8", "Base W6A6"],
                       head_rows, combine(runs_source(runs), cite),
                       legend="Ours: quick/CPU-budget presets (MiniLM: cosine to fp32); paper: ImageNet top-1 %"),
        figures=figures, deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", KNOWN_GAPS, cite),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(runs)),
        appendix=[Table("Ablation: Hessian metric × softmax twin × GELU twin", a_header, a_rows,
                        combine(runs_source(runs), Source(ABLATION_REF, ("papers/ptq4vit/paper_numbers.py",))))]
        + ([Table("Where the quantized model loses: each kind of quantized tensor", s_header[1:],
                  [r[1:] for r in s_rows], runs_source([r for r in runs if _site_files(r)]),
                  legend="drop = 100 × (1 − cosine to fp32) for MiniLM; typical = median over rows / channels")]
           if s_rows else []))
    if default_out:
        update_readme_block(README, "results", md)
        update_readme_block(README, "sites", sites_md)
        update_readme_block(README, "findings", _findings(runs))
    return written


_ABLATION_ORDER = (((False, False, False), "base PTQ"), ((True, False, False), "Hessian metric alone"),
                   ((True, True, False), "+ softmax twin"), ((True, False, True), "+ GELU twin"),
                   ((True, True, True), "all three"))


def _drop(run, v) -> str:
    """Drop from float: top-1 points, or 100 × (1 − cosine) for an embedding cosine."""
    return f"{100 * (run.summary.fp_value - v):.2f}" if run.summary.metric == "test_embedding_cosine" \
        else f"{run.summary.fp_value - v:.2f} points"


def _findings(runs) -> str:
    """The README's findings, each figure read from the approved runs (the paper's from paper_numbers)."""
    lines = []
    for run in runs:
        by = {(p.extra.get("variant"), p.w_bits): p.value for p in run.points}
        f = lambda v: _fmt(run, v)
        parts = [f"W{b}A{b} PTQ4ViT {f(by[('ptq4vit', b)])}, base PTQ {f(by[('base', b)])}"
                 for b in (8, 6) if ("base", b) in by and ("ptq4vit", b) in by]
        line = f"- {_short(run)}: float {f(run.summary.fp_value)}; " + "; ".join(parts) + "."
        if ("ptq4vit", 8) in by:
            unit = " in 100 × (1 − cos)" if run.summary.metric == "test_embedding_cosine" else ""
            line += f" PTQ4ViT's W8A8 drop from float: {_drop(run, by[('ptq4vit', 8)])}{unit}."
        abl = {(a["hessian"], a["softmax_twin"], a["gelu_twin"]): a["value"]
               for a in run.summary.extra.get("ablation") or [] if a["bits"] == 6}
        if abl:
            line += " Ablation at W6A6: " + ", ".join(f"{name} {f(abl[k])}" for k, name in _ABLATION_ORDER
                                                        if k in abl) + "."
        sweep = sorted(run.summary.extra.get("calib_sweep") or [], key=lambda e: e["calib_samples"])
        if sweep:
            line += (f" Calibration set of {' / '.join(str(e['calib_samples']) for e in sweep)} samples at "
                     f"W{sweep[0]['w_bits']}A{sweep[0]['a_bits']}: {' / '.join(f(e['value']) for e in sweep)}.")
        lines.append(line)
    paper = {(h, s, g): w6 for h, s, g, _, w6 in ABLATION["ViT-S/224"]}
    lines.append("- Paper, ViT-S/224 (ImageNet top-1 %), ablation at W6A6: "
                 + ", ".join(f"{name} {paper[k]:.2f}" for k, name in _ABLATION_ORDER if k in paper) + ".")
    return "\n".join(lines)


def _takeaways(runs) -> list[str]:
    out = []
    for run in runs:
        by = {(p.extra.get("variant"), p.w_bits): p.value for p in run.points}
        f = lambda v: _fmt(run, v)
        for b in (8, 6):
            if ("base", b) in by and ("ptq4vit", b) in by:
                out.append(f"{_short(run)} W{b}A{b}: PTQ4ViT {f(by[('ptq4vit', b)])} vs base PTQ "
                           f"{f(by[('base', b)])} (float {f(run.summary.fp_value)}).")
    vs = TOP1["ViT-S/224"]
    out.append(f"Paper, ViT-S/224 W6A6: PTQ4ViT {vs['ptq4vit_w6a6']:.2f}% vs base PTQ {vs['base_w6a6']:.2f}% "
               f"(float {vs['fp']:.2f}%): the gap opens at 6 bits, as in ours.")
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
