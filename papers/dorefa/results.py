"""Tables, figures and deck of the DoReFa-Net package from its approved runs.

``python -m papers.dorefa.results`` rebuilds them from ``papers/dorefa/results/runs/`` (no training): the W x A
heat map and the gradient-bits figure of the ``svhn_convnet_mnist`` grid, its table beside the paper's
Table 1 column, the study rows, the measured bias of the gradient quantizer, the deck. ``--run`` first trains
and approves the cells of the grid (and the quick preset) that have no approved run; ``--out-dir DIR`` writes
elsewhere than ``papers/dorefa/results/``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from common.deck import (Bullets, Figure, Formula, Source, Table, build_paper_deck, file_source, mean_sd,
                         runs_source)
from common.report import markdown_table, save_figure, slide_figure, update_readme_block, write_csv
from common.results import approve, load_approved, results_cli, results_target
from common.settings import get_setting
from common.study import lr_provenance
from papers.dorefa.config import GRID_A, GRID_G, GRID_SEEDS, GRID_W, PRESETS, STUDY_POINTS
from papers.dorefa.dorefa import quantize_gradient
from papers.dorefa.paper_numbers import SVHN_TABLE1, TOP1, official_top1

PAPER = "dorefa"
GRID_PRESET = "svhn_convnet_mnist"
GRID = ("quick", GRID_PRESET)  # presets --run trains on a CPU; the study and paper presets are run by hand
README = Path(__file__).with_name("README.md")
TITLE = "DoReFa-Net"
CITATION = "Zhou, Wu, Ni, Zhou, Wen, Zou — arXiv 1606.06160 (2016)"
GRID_LABEL = "MNIST 40×40, SVHN net at ¼ width, 20k images, 3 epochs (CPU budget)"
STUDY = "cifar10_resnet20"

IDEA = [
    "Weights, activations and gradients all live on k-bit grids, so both the forward and the backward "
    "convolutions could run as bit operations.",
    "quantize_k rounds (2^k − 1)·r and divides back; its backward pass is straight-through.",
    "Weights: tanh, scaled into [0, 1] by the layer's max |tanh w|, quantized, mapped to [−1, 1]; one bit: "
    "sign(w)·E|w|. Activations: clipped to [0, 1], quantized.",
    "Gradients: per sample divided by their max |dr|, shifted into [0, 1], given uniform noise of one step, "
    "rounded: an unbiased k-bit estimate. The first and last layers stay full precision.",
]
FORMULAS = [
    Formula("Sec. 2.2", r"$\mathrm{quantize}_k(r) = \frac{1}{2^k-1}\,\mathrm{round}\left((2^k-1)\,r\right)$",
            "papers/dorefa/dorefa.py: quantize_k, DorefaQuantizeSTE", "backward: straight-through"),
    Formula("Sec. 2.3", r"$w_q = 2\,\mathrm{quantize}_k\left(\frac{\tanh w}{2\max|\tanh w|}+\frac{1}{2}\right)-1$",
            "papers/dorefa/dorefa.py: quantize_weight", "k = 1: sign(w)·E(|w|), one scale per layer"),
    Formula("Sec. 2.4", r"$x_q = \mathrm{quantize}_k\left(\mathrm{clip}(x,\,0,\,1)\right)$",
            "papers/dorefa/dorefa.py: quantize_activation"),
    Formula("Sec. 2.5", r"$\tilde{dr} = 2M\left[\mathrm{quantize}_k\left(\frac{dr}{2M}+\frac{1}{2}+"
                        r"\frac{\sigma}{2^k-1}\right)-\frac{1}{2}\right]$",
            "papers/dorefa/dorefa.py: quantize_gradient, DorefaGradQuantSTE",
            "M = max |dr| over all axes but the batch; σ ~ U(−½, ½)"),
]
DEVIATIONS = [
    "No SVHN here: the paper's SVHN ConvNet and W/A/G grid run on MNIST resized to 40×40, at a quarter of the "
    "channels, 20k images, 3 epochs (CPU budget); its numbers are labelled so.",
    "Gradients are quantized at the output of every inner conv/linear layer; the first and last layers and their "
    "gradients stay full precision.",
    "A = 32 leaves the layer input as the network computes it (ReLU); A < 32 clips it to [0, 1] first.",
    "Cosine LR decay per step for the short runs; Adam as the paper; no weight decay.",
    "Study setting: fine-tuned from the float ResNet-20 (the paper trains from scratch), G = 32, Adam LR chosen "
    "on the validation split.",
]
KNOWN_GAPS = [
    "The paper's SVHN Table 1 and ImageNet AlexNet table are not yet checked against the paper's text: their columns "
    "show —. Only the abstract's 46.1% (AlexNet W1A2G6) is entered.",
    "SVHN itself and ImageNet (AlexNet, the paper preset) are not on this machine: both are only dry-run.",
]


def measure_gradient_quantizer(bits=(2, 4, 6, 8), draws: int = 2000, seed: int = 0) -> list[dict]:
    """Measured properties of f_g^k on a fixed random gradient [32, 128] of samples of different scales.

    For each k: the largest number of distinct values in one sample (at most 2^k), and the bias of the mean of
    ``draws`` quantized copies in units of its exact standard error (dithered rounding has variance
    step^2 f (1 - f), f the fractional part): unbiased means these z-scores have mean 0 and RMS 1.
    """
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-4, 2, 32, dtype=torch.float64)[:, None]  # six decades between samples
    dr = torch.randn(32, 128, generator=g, dtype=torch.float64) * scales
    rows = []
    for k in bits:
        torch.manual_seed(seed + k)
        n = 2 ** k - 1
        q = quantize_gradient(dr.repeat(draws, 1), k).reshape(draws, *dr.shape)
        levels = max(len(torch.unique(q[0, i])) for i in range(dr.shape[0]))
        m = dr.abs().amax(1, keepdim=True)
        y = n * (dr / (2 * m) + 0.5)
        f = y - y.floor()
        se = (2 * m / n) * (f * (1 - f)).sqrt() / math.sqrt(draws)
        ok = se > 0
        z = ((q.mean(0) - dr) / se.clamp_min(1e-300))[ok]
        rel = ((q.mean(0) - dr).abs() / m).max().item()
        rows.append({"k": k, "levels_max": levels, "levels_bound": 2 ** k, "z_mean": round(z.mean().item(), 3),
                     "z_rms": round(z.pow(2).mean().sqrt().item(), 3), "max_bias_over_M": rel,
                     "plain_rounding_z_rms": round(_plain_z_rms(dr, k, se, ok), 1)})
    return rows


def _plain_z_rms(dr, k, se, ok) -> float:
    q = quantize_gradient(dr, k, noise=torch.zeros_like(dr))
    return ((q - dr) / se.clamp_min(1e-300))[ok].pow(2).mean().sqrt().item()


def _bits(x) -> int:
    return 32 if x is None else int(x)


def _cell(run) -> tuple[int, int, int]:
    s = run.summary
    return _bits(s.w_bits), _bits(s.a_bits), _bits(s.g_bits)


def _grid_cells() -> list[tuple[int, int, int]]:
    cells = [(w, a, 32) for w in GRID_W for a in GRID_A]
    cells += [(1, 2, g) for g in GRID_G]
    return cells


def run_missing(grid=GRID) -> None:
    """Train and approve the quick preset and every (cell, seed) of the grid that has no approved run yet."""
    from papers.dorefa.train import main

    runs = load_approved(PAPER)
    presets = {r.summary.preset for r in runs}
    have = {(r.summary.preset, *_cell(r), r.summary.seed) for r in runs}
    for preset in grid:
        if preset == GRID_PRESET:
            for w, a, g in _grid_cells():
                for seed in range(GRID_SEEDS.get((w, a, g), 1)):
                    if (preset, w, a, g, seed) not in have:
                        cfg = dataclasses.replace(PRESETS[preset], w_bits=w, a_bits=a, g_bits=g, seed=seed)
                        print(f"approved {approve(main(cfg).run_dir)}")
        elif preset not in presets:
            print(f"approved {approve(main(PRESETS[preset]).run_dir)}")


def _values(runs, cell) -> list[float]:
    return [r.summary.value for r in runs if _cell(r) == cell]


def _fmt(values: list[float]) -> str:
    return mean_sd(values) if values else "—"


def _heatmap(grid_runs, out: Path):
    import numpy as np

    fig, ax = slide_figure()
    mat = np.full((len(GRID_W), len(GRID_A)), np.nan)
    for i, w in enumerate(GRID_W):
        for j, a in enumerate(GRID_A):
            v = _values(grid_runs, (w, a, 32))
            if v:
                mat[i, j] = sum(v) / len(v)
    finite = mat[np.isfinite(mat)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0, 100)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#DDDDDD")  # grey: cells not run
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower",
                   aspect="auto")
    ax.grid(False)
    for i, w in enumerate(GRID_W):
        for j, a in enumerate(GRID_A):
            v = _values(grid_runs, (w, a, 32))
            spread = f"\n±{_sd(v):.2f} (n={len(v)})" if len(v) > 1 else ""
            text = f"{sum(v) / len(v):.2f}{spread}" if v else "not run"
            dark = bool(v) and mat[i, j] < (lo + hi) / 2
            ax.text(j, i, text, ha="center", va="center", fontsize=15, color="white" if dark else "black")
    ax.set_xticks(range(len(GRID_A)), [f"A = {a}" for a in GRID_A])
    ax.set_yticks(range(len(GRID_W)), [f"W = {w}" for w in GRID_W])
    ax.set_title("Test top-1 (%) by weight × activation bits, G = 32\n" + GRID_LABEL, fontsize=17)
    fig.colorbar(im, ax=ax, label="test top-1 (%)")
    png, _ = save_figure(fig, out, "grid_wa_heatmap", footer=runs_source(grid_runs).footer)
    return png


def _sd(v: list[float]) -> float:
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0


def _gradient_figure(grid_runs, out: Path):
    picked = [g for g in (*GRID_G, 32) if _values(grid_runs, (1, 2, g))]
    if not picked:
        return None
    fig, ax = slide_figure()
    for i, g in enumerate(picked):
        v = _values(grid_runs, (1, 2, g))
        ax.bar(i, sum(v) / len(v), color="#0072B2", width=0.6)
        ax.plot([i] * len(v), v, "o", color="#D55E00", markersize=7, zorder=3)
        ax.annotate(f"{sum(v) / len(v):.2f}", (i, max(v)), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize=14)
    allv = [x for g in picked for x in _values(grid_runs, (1, 2, g))]
    ax.set_xticks(range(len(picked)), [f"G = {g}" for g in picked])
    ax.set(ylabel="test top-1 (%)", ylim=(max(0.0, min(allv) - 3), min(100.0, max(allv) + 1.5)))
    ax.set_title("W1A2 as the gradient bits fall (bars: mean; dots: seeds)\n" + GRID_LABEL, fontsize=17)
    png, _ = save_figure(fig, out, "grid_gradient_bits", footer=runs_source(grid_runs).footer)
    return png


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the grid heat map and tables, the gradient-quantizer measurement and the deck; return the paths."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    grid_runs = [r for r in runs if r.summary.preset == GRID_PRESET]
    study_runs = [r for r in runs if r.summary.setting]
    other_runs = [r for r in runs if r not in grid_runs and r not in study_runs]
    study_header, study_rows = _study_table(study_runs)

    grid_header = ["W", "A", "G", "Ours top-1 (%)", "Paper Table 1 (SVHN)", "Official example (SVHN)"]
    grid_rows = []
    for cell in _grid_cells():
        paper = SVHN_TABLE1.get(cell)
        grid_rows.append([*cell, _fmt(_values(grid_runs, cell)), "—" if paper is None else f"{paper:.3f}",
                          official_top1("svhn", *cell) or "—"])
    md_grid = markdown_table(grid_header, grid_rows)
    (out / "grid.md").write_text(md_grid + "\n")
    write_csv(out / "grid.csv", grid_header, grid_rows)
    written["grid"] = out / "grid.md"

    figures = []
    if grid_runs:
        written["heatmap"] = _heatmap(grid_runs, out)
        figures.append(Figure("W × A grid at G = 32 (MNIST 40×40, CPU budget)", written["heatmap"],
                              runs_source(grid_runs)))
        gfig = _gradient_figure(grid_runs, out)
        if gfig:
            written["gradient_bits"] = gfig
            figures.append(Figure("Gradient bits at W1A2 (MNIST 40×40, CPU budget)", gfig,
                                  runs_source([r for r in grid_runs if _cell(r)[:2] == (1, 2)])))

    meas = measure_gradient_quantizer()
    meas_header = ["k", "levels per sample (max)", "bound 2^k", "bias z: mean", "bias z: RMS",
                   "plain rounding z: RMS"]
    meas_rows = [[r["k"], r["levels_max"], r["levels_bound"], r["z_mean"], r["z_rms"], r["plain_rounding_z_rms"]]
                 for r in meas]
    md_meas = markdown_table(meas_header, meas_rows)
    (out / "gradient_quantizer.md").write_text(md_meas + "\n")
    written["gradient_quantizer"] = out / "gradient_quantizer.md"

    run_header = ["Run", "Test top-1 (%)", "Float (%)", "Model bits", "File (B)", "× vs fp32 file"]
    run_rows = [[_label(r), f"{r.summary.value:.2f}",
                 "—" if r.summary.fp_value is None else f"{r.summary.fp_value:.2f}", r.summary.model_bits,
                 r.summary.size_bytes, f"{r.summary.compression_ratio:.1f}×"] for r in sorted(runs, key=_label)]
    md_runs = markdown_table(run_header, run_rows)
    lr_lines = "\n".join(f"- {t}" for t in _study_lrs(study_runs))
    md_study = (markdown_table(study_header, study_rows).rstrip("\n") + (f"\n\n{lr_lines}" if lr_lines else "")
                if study_rows else "No study run is approved yet.")
    (out / "study.md").write_text(md_study + "\n")
    written["study"] = out / "study.md"
    (out / "runs.md").write_text(md_runs + "\n")
    written["runs"] = out / "runs.md"

    head = ["Setting", "Ours top-1 (%)", "Paper (ref)", "Official example"]
    head_rows = [["AlexNet W1A2G6, ImageNet (paper preset)", "not run (needs ImageNet)",
                  f"{TOP1[('alexnet', 1, 2, 6)][0]:.1f} ({TOP1[('alexnet', 1, 2, 6)][1]})",
                  official_top1("alexnet", 1, 2, 6)]]
    for cell in ((32, 32, 32), (1, 2, 32), (1, 2, 4), (1, 2, 2), (1, 1, 32)):
        v = _values(grid_runs, cell)
        if v:
            official = official_top1("svhn", *cell)
            head_rows.append([f"W{cell[0]}A{cell[1]}G{cell[2]}, MNIST 40×40 (CPU budget)", mean_sd(v), "—",
                              "—" if official is None else f"{official} (SVHN)"])
    for row in study_rows:
        head_rows.append([f"{row[0]}G32, CIFAR-10 (JPEG q75) ResNet-20 study", row[1], "—", "—"])
    cite = Source(CITATION, ("papers/dorefa/paper_numbers.py",))
    head_src = runs_source(runs) if runs else cite
    written["deck"] = build_paper_deck(
        out / "dorefa_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, cite),
        idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours", head, head_rows, head_src,
                       legend="—: no such figure, or the paper's table is not yet checked against its text. Official "
                              "example: the authors' tensorpack re-run (its docstrings), top-1 = 100 − its error"),
        figures=figures, deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", _known_gaps(runs), cite),
        takeaways=Bullets("Takeaways", _takeaways(grid_runs, meas, study_rows), head_src),
        appendix=[*([Table("Study rows: ResNet-20 on CIFAR-10 (JPEG q75), G = 32", study_header, study_rows,
                           runs_source(study_runs), legend=STUDY_LEGEND)] if study_rows else []),
                  Table("W/A/G grid beside the paper's Table 1 column", grid_header, grid_rows,
                        runs_source(grid_runs) if grid_runs else cite,
                        legend=GRID_LABEL + "; mean ± sd over seeds"),
                  Table("Gradient quantizer f_g^k, measured (2,000 draws)", meas_header, meas_rows,
                        file_source(out / "gradient_quantizer.md", what="results.py measure_gradient_quantizer"),
                        legend="z = error of the mean over draws / its exact standard error; unbiased: mean 0, RMS 1"),
                  *([Table("Every approved run", run_header, run_rows, runs_source(runs))] if runs else [])])
    if default_out:
        update_readme_block(README, "results", md_grid + "\n\nEvery approved run:\n\n" + md_runs)
        update_readme_block(README, "gradient", md_meas)
        update_readme_block(README, "headline", markdown_table(head, head_rows))
        missing = _missing_cells(runs)
        line = (f"- Grid cells not yet run (seeds of the cells that decide the ordering): {', '.join(missing)}."
                if missing else "- Every cell and seed of the grid is run.")
        study = _missing_study_seeds(runs)
        line += (f"\n- Study setting {STUDY} not yet run: {', '.join(study)}." if study
                 else f"\n- Every point and seed of the study setting {STUDY} is run.")
        update_readme_block(README, "missing", line)
        update_readme_block(README, "takeaways",
                            "\n".join(f"- {t}" for t in _takeaways(grid_runs, meas, study_rows)))
        update_readme_block(README, "study", md_study)
    return written


def _label(run) -> str:
    s = run.summary
    w, a, g = _cell(run)
    where = f"study setting {s.setting}" if s.setting else f"{s.preset} preset"
    quick = " (CPU-sized)" if s.preset in ("quick", GRID_PRESET) else ""
    return f"{s.dataset}, {run.config.get('arch')}, W{w}A{a}G{g}, {where}{quick}, seed {s.seed}"


def _known_gaps(runs) -> list[str]:
    gaps = list(KNOWN_GAPS)
    missing = _missing_cells(runs)
    if missing:
        gaps.append(f"Grid cells not yet run: {', '.join(missing)}.")
    study = _missing_study_seeds(runs)
    if study:
        gaps.append(f"Study setting {STUDY} not yet run: {', '.join(study)}.")
    return gaps


def _missing_study_seeds(runs) -> list[str]:
    """The study points and seeds (as many as the setting asks of each point) with no approved run."""
    setting = get_setting(STUDY)
    have = {(*_cell(r), r.summary.seed) for r in runs if r.summary.setting == STUDY}
    return [f"W{w}A{a} s{seed}" for w, a in STUDY_POINTS for seed in range(setting.seeds_for(w, a))
            if (w, a, 32, seed) not in have]


STUDY_LEGEND = ("Mean ± sd over seeds; float: the shared float ResNet-20 the runs start from, on the same test set; "
                "LR: the Adam LR seed 0's validation pilots chose, given to the other seeds")


def _study_table(study_runs) -> tuple[list[str], list[list]]:
    """One row per study point: test top-1 over seeds, the float start, the change, the LR and each seed."""
    header = ["W/A", "Ours top-1 (%)", "Float (%)", "Change (pts)", "LR", "Seeds"]
    rows = []
    for w, a in STUDY_POINTS:
        rs = sorted((r for r in study_runs if _cell(r) == (w, a, 32)), key=lambda r: r.summary.seed)
        if not rs:
            continue
        values = [r.summary.value for r in rs]
        fp = rs[0].summary.fp_value
        change = "—" if fp is None else f"{sum(values) / len(values) - fp:+.2f}"
        lrs = sorted({r.summary.extra.get("lr") for r in rs} - {None})
        rows.append([f"W{w}A{a}", mean_sd(values), "—" if fp is None else f"{fp:.2f}", change,
                     ", ".join(f"{v:g}" for v in lrs) or "—",
                     ", ".join(f"s{r.summary.seed} {r.summary.value:.2f}" for r in rs)])
    return header, rows


def _study_lrs(study_runs) -> list[str]:
    """How each study point's LR was set (common.study.lr_provenance), e.g. when the pilots chose a grid end."""
    out = []
    for w, a in STUDY_POINTS:
        rs = [r.summary for r in study_runs if _cell(r) == (w, a, 32)]
        text = lr_provenance(rs) if rs else ""
        if text:
            out.append(f"W{w}A{a}: {text}.")
    return out


def _missing_cells(runs) -> list[str]:
    grid = {(r.summary.preset, *_cell(r), r.summary.seed) for r in runs}
    return [f"W{w}A{a}G{g} s{s}" for w, a, g in _grid_cells() for s in range(GRID_SEEDS.get((w, a, g), 1))
            if (GRID_PRESET, w, a, g, s) not in grid]


def _takeaways(grid_runs, meas, study_rows) -> list[str]:
    out = []

    def mean(cell):
        v = _values(grid_runs, cell)
        return sum(v) / len(v) if v else None

    def line(what: str, cells) -> None:
        got = [(name, mean(c)) for name, c in cells]
        got = [(name, m) for name, m in got if m is not None]
        if len(got) > 1:
            out.append(f"{what}: " + " → ".join(f"{name} {m:.2f}%" for name, m in got) + ".")

    line("Weight bits fall (A = 32, G = 32)", [(f"W{w}", (w, 32, 32)) for w in sorted(GRID_W, reverse=True)])
    line("Activation bits fall (W = 1, G = 32)", [(f"A{a}", (1, a, 32)) for a in sorted(GRID_A, reverse=True)])
    line("Gradient bits fall (W1A2)", [(f"G{g}", (1, 2, g)) for g in (32, *sorted(GRID_G, reverse=True))])
    if out:
        out.insert(0, f"Our grid, means over seeds: {GRID_LABEL}.")
    worst = max(r["z_rms"] for r in meas)
    out.append(f"The gradient quantizer is unbiased as measured: bias z-scores have RMS ≤ {worst:.2f} (1 expected), "
               f"against {min(r['plain_rounding_z_rms'] for r in meas):.0f} or more for plain rounding; at most 2^k "
               "levels per sample.")
    if study_rows:
        out.append("ResNet-20 study (CIFAR-10 JPEG q75, fine-tuned from float): "
                   + ", ".join(f"{row[0]} {row[1].split(' (')[0]}% ({row[3]} pts vs float)" for row in study_rows)
                   + ".")
    out.append("The trained model is stored as k-bit codes (plus E|w| at one bit); reloaded, it gives the same "
               "logits as the trained model.")
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
