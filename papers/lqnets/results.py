"""Tables, figures and deck of the LQ-Nets package from its approved runs.

``python -m papers.lqnets.results`` rebuilds them from ``papers/lqnets/results/runs/`` (no training);
``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/lqnets/results/``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from common.deck import Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, paper_source, runs_source
from common.report import markdown_table, save_figure, slide_figure, summary_footer, update_readme_block
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from common.study import lr_provenance
from papers.lqnets.config import PRESETS
from papers.lqnets.paper_numbers import README_REF, TOP1
from papers.lqnets.train import main

PAPER = "lqnets"
GRID = ("quick",)  # presets run by --run on a CPU; the study, VGG-Small and paper presets are run by hand
README = Path(__file__).with_name("README.md")
TITLE = "LQ-Nets: Learned Quantization"
CITATION = "Zhang, Yang, Ye, Hua — ECCV 2018 (arXiv 1807.10029)"
LQ_COLOR, UNIFORM_COLOR = "#0072B2", "#E69F00"

IDEA = [
    "A K-bit quantizer is a learned basis v ∈ R^K; its 2^K levels are vᵀe for every code e ∈ {−1,1}^K (weights) "
    "or {0,1}^K (activations after ReLU).",
    "Levels need not be evenly spaced, yet a quantized value is still a K-bit word: an inner product is K_w·K_a "
    "bit-plane products (AND + popcount) weighted by v_i^w·v_j^a.",
    "The basis is learned by Quantization Error Minimisation: each value takes its nearest level (B-step), then v "
    "solves least squares (v-step), once per training batch, as a moving average.",
    "Weights: one basis per output channel; activations: one per layer; first and last layers float.",
]
FORMULAS = [
    Formula("Eq. (1)-(2)", r"$Q(x) = v^\top e_l$,  $l = \arg\min_l |x - v^\top e_l|$",
            "papers/lqnets/lqnets.py: sorted_levels, encode", "weights e ∈ {−1,1}^K, activations e ∈ {0,1}^K"),
    Formula("Eq. (3)", r"$Q(w)^\top Q(a) = \sum_i \sum_j v^w_i\, v^a_j\, (b^w_i \cdot b^a_j)$",
            "papers/lqnets/bitwise.py: bitwise_inner",
            "b^w_i · b^a_j = 2 popcount(a_j AND w_i) − popcount(a_j)"),
    Formula("Alg. 1 (B-step)", r"$B^{t} = \arg\min_B \|B^\top v^{t-1} - x\|^2$  (nearest level)",
            "papers/lqnets/lqnets.py: encode"),
    Formula("Alg. 1 (v-step)", r"$v^{t} = (B^{t} B^{t\top})^{-1} B^{t} x$", "papers/lqnets/lqnets.py: solve_basis",
            "ours and the official code: + 1e-4 ridge towards the previous v"),
    Formula("Sec. 3.2", r"$v \leftarrow 0.9\,v + 0.1\,v^{\mathrm{QEM}}$  after every training step",
            "papers/lqnets/lqnets.py: LqQuantizer.update_basis_"),
]
DEVIATIONS = [
    "The bases start from the trained float weights (evenly spaced levels at the data's scale, refined by 10 QEM "
    "iterations); the official code starts from a fixed basis because it trains from scratch.",
    "The paper preset uses torchvision's ResNet-18; the official code trains a pre-activation ResNet-18.",
    "Quick preset: a float twin trained here on 8×8 digits, then 20 epochs of LQ-Nets (quick numbers).",
    "Study setting: the setting's ResNet-20, steps and per-step cosine; LR chosen on the validation split.",
    "The uniform quantizer of the ablation is the LQ quantizer with its basis held to α·[1, 2, …, 2^(K−1)] "
    "(evenly spaced levels), α fitted by the same QEM.",
    "CIFAR-10 is the JPEG q75 copy of the study.",
]
KNOWN_GAPS = [
    "The paper's CIFAR-10 tables (ResNet-20, VGG-Small; learned vs uniform) are not yet checked against the paper "
    "text, so not entered; the ImageNet figures come from the official README.",
    "Equation numbers follow our reading of the paper; not yet checked against the paper text.",
    "The VGG-Small CPU-budget preset and the paper preset (ImageNet ResNet-18) have only been dry-run.",
    "The bitwise path is a readable torch reference (packed bytes, popcount table), not a fast kernel: no speed "
    "is claimed.",
]


def _known_gaps(runs) -> list[str]:
    from common.settings import get_setting

    setting = get_setting("cifar10_resnet20")
    points = {(w, a): setting.seeds_for(w, a) for w, a in ((2, 2), (3, 3), (4, 4))}
    points[(2, None)] = 1
    have = {(r.summary.w_bits, r.summary.a_bits, r.summary.seed, r.config.get("quantizer")) for r in runs
            if r.summary.setting == "cifar10_resnet20"}
    missing = [f"{q} W{w}A{a or 32} s{seed}" for q in ("lq", "uniform") for (w, a), n in points.items()
               for seed in range(n if q == "lq" or (w, a) == (2, 2) else 0) if (w, a, seed, q) not in have]
    study = [f"Study setting cifar10_resnet20 not yet run: {', '.join(missing)}."] if missing else []
    return study + KNOWN_GAPS


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def _bits(s) -> str:
    return f"W{s.w_bits}A{32 if s.a_bits is None else s.a_bits}"


def _quantizer(run) -> str:
    return run.config.get("quantizer", "lq")


def _where(run) -> str:
    s = run.summary
    if s.setting:
        return f"study {s.setting}"
    labels = {"quick": "quick preset (CPU-sized)", "cifar10_vggsmall": "VGG-Small CPU-budget preset"}
    return labels.get(s.preset, f"{s.preset} preset")


def _label(run) -> str:
    s = run.summary
    q = "uniform levels" if _quantizer(run) == "uniform" else "LQ"
    return f"{q}, {_bits(s)}, {run.config.get('arch')}, {_where(run)}, seed {s.seed}"


def _groups(runs) -> dict[tuple, list]:
    """Runs by (where, arch, w_bits, a_bits, quantizer): the seeds of one setting."""
    out: dict[tuple, list] = {}
    for run in runs:
        s = run.summary
        out.setdefault((_where(run), run.config.get("arch"), s.w_bits, s.a_bits, _quantizer(run)), []).append(run)
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _comparison_rows(runs) -> list[list[str]]:
    """LQ vs uniform levels of the same bits on the same schedule, mean ± std over seeds."""
    groups = _groups(runs)
    rows = []
    for (where, arch, w, a, q), lq_runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if q != "lq" or (where, arch, w, a, "uniform") not in groups:
            continue
        uni_runs = groups[(where, arch, w, a, "uniform")]
        lq_v = [r.summary.value for r in lq_runs]
        un_v = [r.summary.value for r in uni_runs]
        lq_e = [r.summary.extra.get("mean_rel_weight_error") for r in lq_runs]
        un_e = [r.summary.extra.get("mean_rel_weight_error") for r in uni_runs]
        rows.append([f"{arch}, W{w}A{32 if a is None else a}, {where}", f"{len(lq_v)} / {len(un_v)}",
                     _mean_std(lq_v), _mean_std(un_v), f"{statistics.mean(lq_v) - statistics.mean(un_v):+.2f}",
                     f"{statistics.mean(lq_e):.4f}", f"{statistics.mean(un_e):.4f}"])
    return rows


def _findings(runs) -> str:
    """The README's findings, each figure read from the approved runs: LQ vs uniform levels seed by seed, the LR
    each setting used, and the bit-operation checks of every run."""
    groups = _groups(runs)
    lines = []
    for (where, arch, w, a, q), lq_runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        uniform = {r.summary.seed: r for r in groups.get((where, arch, w, a, "uniform"), [])}
        pairs = [(r, uniform[r.summary.seed]) for r in sorted(lq_runs, key=lambda r: r.summary.seed)
                 if q == "lq" and r.summary.seed in uniform]
        if not pairs:
            continue
        diffs = [lq.summary.value - un.summary.value for lq, un in pairs]
        lower = sum(lq.summary.extra["mean_rel_weight_error"] < un.summary.extra["mean_rel_weight_error"]
                    for lq, un in pairs)
        both = [r for pair in pairs for r in pair]
        lr = lr_provenance([r.summary for r in both])
        lr = f"; {lr}" if lr else ""
        lines.append(f"- {arch}, W{w}A{32 if a is None else a}, {where}: LQ − uniform top-1 per seed "
                     + ", ".join(f"s{lq.summary.seed} {d:+.2f}" for (lq, _), d in zip(pairs, diffs))
                     + f" pts (mean {statistics.mean(diffs):+.2f}); LQ's weight error is the lower on {lower} of "
                     f"{len(pairs)} seeds{lr}.")
    checked = [r for r in runs if "bitwise_net_same_predictions" in r.summary.extra]
    if checked:
        same = sum(bool(r.summary.extra["bitwise_net_same_predictions"]) for r in checked)
        reloads = sum(bool(r.summary.extra.get("artifact_reproduces_predictions")) for r in checked)
        worst = max(r.summary.extra["bitwise_net_vs_simulated_max_rel"] for r in checked)
        ratios = [r.summary.compression_ratio for r in checked]
        lines.append(f"- Bit-operation inference: in {same} of {len(checked)} runs the whole network computed from "
                     f"packed bit-planes predicts the same classes as the simulated one (largest relative logit "
                     f"difference {worst:.1e}); the bit-plane artifact reloads to the same predictions in {reloads} "
                     f"of {len(checked)}, at {min(ratios):.1f}–{max(ratios):.1f}× smaller than the fp32 file.")
    return "\n".join(lines)


COMPARISON_HEADER = ["Setting", "Seeds (LQ / unif.)", "LQ top-1 (%)", "Uniform top-1 (%)", "Δ (pts)",
                     "LQ weight err.", "Uniform weight err."]


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the tables, the level and accuracy-vs-bits figures and the deck from the approved runs."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    header = ["Run", "Test top-1 (%)", "Float (%)", "Δ", "Paper (ref)", "Model bits", "File (B)", "× vs fp32 file"]
    rows = []
    for run in runs:
        s = run.summary
        paper = TOP1.get((run.config.get("arch"), s.w_bits, s.a_bits)) if _quantizer(run) == "lq" else None
        rows.append([_label(run), f"{s.value:.2f}", "—" if s.fp_value is None else f"{s.fp_value:.2f}",
                     "—" if s.fp_value is None else f"{s.value - s.fp_value:+.2f}",
                     "—" if paper is None else f"{paper[0]:.1f} ({paper[1]})", s.model_bits, s.size_bytes,
                     f"{s.compression_ratio:.1f}×"])
    comparison = _comparison_rows(runs)
    md = markdown_table(header, rows)
    if comparison:
        md += ("\n\nLearned (LQ) vs evenly spaced (uniform) levels, same bits, same schedule; weight err. is the "
               "mean relative quantization error ||w − Q(w)||²/||w||² of the quantized layers:\n\n"
               + markdown_table(COMPARISON_HEADER, comparison))
    (out / "accuracy.md").write_text(md + "\n")
    written["accuracy"] = out / "accuracy.md"

    # the paper's W/A table next to ours (ours only where a run of the same network and bits exists)
    paper_header = ["Network, W/A", "Paper top-1 (%)", "Reference", "Ours"]
    paper_rows = []
    for (arch, w, a), (value, ref) in TOP1.items():
        ours = [r.summary.value for r in runs if r.config.get("arch") == arch and r.summary.w_bits == w
                and r.summary.a_bits == a and _quantizer(r) == "lq" and r.summary.preset == "paper"]
        paper_rows.append([f"ResNet-18 (ImageNet), {w}/{32 if a is None else a}", f"{value:.1f}", ref,
                           _mean_std(ours) if ours else "not run (ImageNet)"])
    (out / "paper_table.md").write_text(markdown_table(paper_header, paper_rows) + "\n")
    written["paper_table"] = out / "paper_table.md"

    figures = []
    for run in runs:
        if _quantizer(run) != "lq" or not (run.dir / "levels.json").is_file():
            continue
        for kind in ("w", "a"):
            png = _levels_figure(run, kind, out)
            if png is not None:
                written[png.stem] = png
                what = "weights" if kind == "w" else "activations"
                figures.append(Figure(f"Levels, {what}: {_short(run)}", png, runs_source([run])))
    figures = _one_per_setting(figures)
    bits_fig = _accuracy_vs_bits(runs, out)
    if bits_fig:
        written["accuracy_vs_bits"] = bits_fig[1]
        figures.insert(0, Figure("Accuracy vs bits: learned vs uniform levels", bits_fig[1], runs_source(bits_fig[0])))

    head_rows = [[f"ResNet-18 ImageNet {w}/{32 if a is None else a}", f"{v:.1f}", "not run (ImageNet)"]
                 for (arch, w, a), (v, _) in TOP1.items()]
    for row in comparison:
        head_rows.append([row[0], "—", f"LQ {row[2]} vs unif. {row[3]}"])
    headline = Table("Paper vs ours", ["Setting (W/A)", "Paper top-1 (%)", "Ours top-1 (%)"], head_rows,
                     combine(paper_source(PAPER, README_REF), runs_source(runs)) if runs
                     else paper_source(PAPER, README_REF),
                     legend="Paper: ImageNet ResNet-18 (official README). Ours: digits (quick) and the study's "
                            "CIFAR-10 ResNet-20 fine-tune, CPU-sized, mean ± std over seeds")
    cite = Source(CITATION, ("papers/lqnets/paper_numbers.py",))
    appendix = [Table("Every approved run (quick = CPU minutes, not paper scale)", header, rows, runs_source(runs))]
    if comparison:
        appendix.insert(0, Table("Learned vs uniform levels (mean ± std over seeds)", COMPARISON_HEADER, comparison,
                                 runs_source(runs)))
    written["deck"] = build_paper_deck(
        out / "lqnets_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, cite),
        idea_figure=None, formulas=FORMULAS, headline=headline, figures=figures,
        deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", _known_gaps(runs), cite),
        takeaways=Bullets("Takeaways", _takeaways(runs, comparison), runs_source(runs) if runs else cite),
        appendix=appendix)
    if default_out:
        update_readme_block(README, "results", md + "\n\nThe paper's figures (ImageNet; ours not run at that "
                            "scale):\n\n" + markdown_table(paper_header, paper_rows))
        update_readme_block(README, "findings", _findings(runs))
    return written


def _short(run) -> str:
    s = run.summary
    where = f"study {s.setting}" if s.setting else s.preset
    return f"{_bits(s)}, {run.config.get('arch')}, {where}, s{s.seed}"


def _one_per_setting(figures: list[Figure]) -> list[Figure]:
    """The level figures of the first seed of each setting (the others stay on disk)."""
    seen, out = set(), []
    for f in figures:
        key = f.title.rsplit(", s", 1)[0]
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _levels_figure(run, kind: str, out: Path) -> Path | None:
    """Per layer: histogram of the values, the learned levels (solid) and a uniform quantizer's (dashed)."""
    rows = [r for r in run.json("levels.json") if r["kind"] == kind]
    if not rows:
        return None
    n = len(rows)
    ncols = min(n, 4 if n <= 8 else 6)
    nrows = -(-n // ncols)
    fig, axes = slide_figure(nrows, ncols, squeeze=False)
    for ax, r in zip(axes.flat, rows):
        edges = r["edges"]
        ax.stairs(r["hist"], edges, fill=True, color="#BBBBBB")
        top = max(r["hist"]) or 1
        for v in r["levels"]:
            ax.axvline(v, color=LQ_COLOR, lw=2)
        for v in r["uniform_levels"]:
            ax.axvline(v, color=UNIFORM_COLOR, lw=2, ls="--")
        if kind == "a":  # a spike of zeros (the ReLU) next to a long tail
            ax.set_yscale("log")
            ax.set_ylim(0.8, top * 1.5)
        else:
            ax.set_ylim(0, top * 1.05)
        ax.set_yticks([])
        ax.minorticks_off()
        ax.set_title(f"{r['layer']}\nerr {r['rel_err']:.3f} vs {r['rel_err_uniform']:.3f}",
                     fontsize=12 if n <= 8 else 10)
        ax.tick_params(labelsize=10 if n <= 8 else 7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    what = "weights, output channel 0" if kind == "w" else "input activations, a test batch (log counts)"
    fig.suptitle(f"{_bits(run.summary)} {what}: learned levels (solid blue) vs uniform (dashed orange); "
                 "err = ||x−Q(x)||²/||x||²", fontsize=14)
    name = f"levels_{kind}_{run.summary.preset}_{_bits(run.summary).lower()}_s{run.summary.seed}"
    png, _ = save_figure(fig, out, name, footer=summary_footer(run.summary.to_dict()))
    return png


def _accuracy_vs_bits(runs, out: Path):
    """Test top-1 vs weight bits (mean ± std over seeds), learned vs uniform levels, one panel per setting."""
    groups = _groups(runs)
    settings = sorted({(where, arch) for (where, arch, _, _, _) in groups})
    settings = [s for s in settings if any(k[4] == "uniform" and (k[0], k[1]) == s for k in groups)]
    if not settings:
        return None
    fig, axes = slide_figure(1, len(settings), squeeze=False)
    used = []
    for ax, (where, arch) in zip(axes.flat, settings):
        for q, color, label in (("lq", LQ_COLOR, "learned levels (LQ)"), ("uniform", UNIFORM_COLOR, "uniform levels")):
            pts = sorted((k[2], [r.summary.value for r in v]) for k, v in groups.items()
                         if (k[0], k[1], k[4]) == (where, arch, q) and k[3] is not None)
            if not pts:
                continue
            used += [r for k, v in groups.items() if (k[0], k[1], k[4]) == (where, arch, q) for r in v]
            xs = [p[0] + (-0.06 if q == "lq" else 0.06) for p in pts]
            means = [statistics.mean(p[1]) for p in pts]
            stds = [statistics.stdev(p[1]) if len(p[1]) > 1 else 0.0 for p in pts]
            ax.errorbar(xs, means, yerr=stds, color=color, marker="o", ms=9, capsize=6, lw=2, label=label)
            for x, m, p in zip(xs, means, pts):
                ax.annotate(f"{m:.2f}\n(n={len(p[1])})", (x, m), textcoords="offset points",
                            xytext=(-40 if q == "lq" else 40, 0), ha="center", va="center", fontsize=12, color=color)
        ax.set(xlabel="bits (W = A)", ylabel="test top-1 (%)", title=f"{arch}, {where}")
        ticks = sorted({k[2] for k in groups if (k[0], k[1]) == (where, arch)})
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 0.6, ticks[-1] + 0.6)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo))
        ax.legend(fontsize=12, loc="lower left")
    png, _ = save_figure(fig, out, "accuracy_vs_bits", footer=runs_source(used).footer)
    return used, png


def _takeaways(runs, comparison) -> list[str]:
    out = []
    for row in comparison:
        out.append(f"{row[0]}: learned levels {row[2]}% vs uniform levels {row[3]}% ({row[4]} pts, seeds "
                   f"{row[1]}); weight quantization error {row[5]} vs {row[6]}.")
    out.append("Learned levels fit the weights better than evenly spaced ones of the same bits (lower "
               "||w − Q(w)||²) while staying bit-operation compatible; at 2 bits the only extra freedom is the "
               "ratio v₂/v₁ per channel, so the gap is small, and 8×8 digits is too easy to show it in accuracy.")
    out.append("The model is stored as K bit-planes per weight plus fp32 bases; reloaded it predicts exactly as "
               "trained, and the network computed from AND + popcount of the planes matches the float one.")
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
