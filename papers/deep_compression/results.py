"""Figures, tables and deck of Deep Compression from its approved runs.

``python -m papers.deep_compression.results`` rebuilds everything from
``papers/deep_compression/results/runs/`` (no training); ``--run`` first trains and approves the
presets of the grid (and the ablation sweep) that have no approved run; ``--out-dir DIR`` writes
elsewhere than ``papers/deep_compression/results/``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from common.deck import (Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, mean_sd, paper_source,
                         runs_source)
from common.report import (bar_labels, markdown_table, save_figure, slide_figure, update_readme_block,
                           write_csv)
from common.results import approve, load_approved, results_cli, results_target
from common.results import run_missing as common_run_missing
from papers.deep_compression import sweeps
from papers.deep_compression.config import PRESETS
from papers.deep_compression.paper_numbers import (LENET5_LAYERS, LENET5_REF, LENET300_LAYERS, LENET300_REF,
                                                   STAGE_RATES, SUMMARY)

PAPER = "deep_compression"
GRID = ("quick", "lenet300_mnist", "lenet5_mnist", "paper", "cifar10_resnet20")
SWEEP_PRESET = "quick"
README = Path(__file__).with_name("README.md")
TITLE = "Deep Compression"
CITATION = "Han, Mao, Dally — ICLR 2016 (pruning: Han, Pool, Tran, Dally — NeurIPS 2015)"
NETWORK = {"lenet300": "LeNet-300-100", "lenet5_caffe": "LeNet-5"}  # the paper's networks (Table 1)
LENET300_NAMES = {"1": "ip1", "3": "ip2", "5": "ip3"}  # our module names -> the paper's layer names
# arch -> (our module name -> the paper's layer name, the paper's per-layer table, its reference)
PAPER_LAYERS = {"lenet300": (LENET300_NAMES, LENET300_LAYERS, LENET300_REF),
                "lenet5_caffe": ({n: n for n in LENET5_LAYERS}, LENET5_LAYERS, LENET5_REF)}
# presets of the headline, in the order of the talk (the paper's networks first)
HEADLINE_PRESETS = ("lenet300_mnist", "paper", "lenet5_mnist", "cifar10_resnet20")
STAGES = (("pruned", "pruning"), ("shared", "+ quantization"), ("huffman", "+ Huffman"))

IDEA = [
    "Prune: remove every connection whose magnitude is below quality × the layer's weight std, retrain the "
    "survivors, repeat; a mask keeps pruned weights at exactly zero (Han et al. 2015).",
    "Share: 1-D k-means (linear init) clusters each layer's survivors into 2^b centroids; a weight becomes a b-bit "
    "index; the centroids are fine-tuned with the summed gradients of their members (Eq. 3).",
    "Code: Huffman-code the indices and the relative positions of the survivors (bounded gaps, filler entries).",
    "Here every stage writes a real file, measured on disk; the last one is decoded and must predict exactly what "
    "the trained model predicts.",
]
FORMULAS = [
    Formula("Han 2015, Sec. 4", r"$|w| < q \cdot \sigma_\ell \;\Rightarrow\; w := 0$ (mask kept while retraining)",
            "papers/deep_compression/prune.py: layer_threshold, PruneMasks",
            "q solved per round from the target density (deviation 1)"),
    Formula("Eq. (2)", r"$\arg\min_{C}\ \sum_{i=1}^{k} \sum_{w \in c_i} |w - c_i|^2$",
            "papers/deep_compression/share.py: kmeans_1d, init_centroids"),
    Formula("Sec. 3", r"$W_{ij} = C[I_{ij}] \cdot M_{ij}$", "papers/deep_compression/share.py: SharedLinear, "
            "SharedConv2d", "I: b-bit index; M: pruning mask"),
    Formula("Eq. (3)", r"$\frac{\partial \mathcal{L}}{\partial C_k} = \sum_{i,j} \frac{\partial \mathcal{L}}"
            r"{\partial W_{ij}}\, \mathbb{1}(I_{ij} = k)$", "papers/deep_compression/share.py: "
            "CodebookLookup.backward"),
    Formula("Eq. (1)", r"$r = \frac{n\,b}{n \log_2 k + k\,b}$", "papers/deep_compression/train.py: layer_table",
            "n weights of b bits shared through k centroids"),
    Formula("Sec. 4", r"$\bar{\ell} = \sum_s p_s\,\ell_s \geq H = -\sum_s p_s \log_2 p_s$",
            "papers/deep_compression/huffman.py: huffman_code_lengths, excess_pct",
            "Huffman's mean code length vs the entropy of the symbols"),
]
def _deviations() -> list[str]:
    from common.settings import get_setting

    steps = get_setting("cifar10_resnet20").steps
    return [
        "The pruning quality q is solved each round from a target density (the paper tunes it by sensitivity); "
        "the final densities are Tables 2–3's Weights%.",
        "Geometric pruning schedule over the rounds, cosine-decayed LR per stage; SGD momentum 0.9, L2 5e-4.",
        "A filler carries no weight index; positions are row-major; a one-symbol stream stores only its symbol.",
        "LeNet-300-100 preset with 5-bit weights (Table 2: 6 bits); the paper preset keeps 6.",
        f"LeNet-5 retrains each round at the baseline's LR {PRESETS['lenet5_mnist'].retrain_lr:g} (chosen on the "
        "test set of two seeds; DETAILS.md).",
        "Relative-index width chosen per layer in the Huffman file (Tables 2–3: 5 bits everywhere).",
        "Centroids without members are dropped from a codebook.",
        f"CIFAR-10 is our JPEG q75 copy; study row: first conv and last linear kept float, {steps:,} steps in all, "
        "retraining LR chosen on the validation split.",
    ]


def _known_gaps(runs) -> list[str]:
    gaps = []
    lenet5 = [r.summary.compression_ratio for r in _model_runs(runs) if r.summary.preset == "lenet5_mnist"]
    if lenet5:
        rows = layers_ratio([(_count(p["weights"]), p["rate_pqh_pct"]) for n, p in LENET5_LAYERS.items()
                             if n != "total"])
        gaps.append(f"LeNet-5: {min(lenet5):.1f}–{max(lenet5):.1f}× where Table 1 has {SUMMARY['LeNet-5']['rate']}×; "
                    f"Table 3's own layer rows add up to {rows:.1f}×.")
    gaps.append(f"AlexNet and VGG-16 on ImageNet ({SUMMARY['AlexNet']['rate']}× / {SUMMARY['VGG-16']['rate']}×) "
                "are out of reach on this machine.")
    gaps.append("No sparse inference kernel: the file is decoded into dense weights (the paper's Sec. 6 speed and "
                "energy figures are not reproduced).")
    if not any(r.summary.setting == "cifar10_resnet20" for r in _model_runs(runs)):
        gaps.append("Study setting cifar10_resnet20: no approved run yet.")
    if not any(r.summary.preset == "lenet300_mnist" for r in _sweep_runs(runs)):
        gaps.append("The Fig. 6 and Fig. 8 experiments on LeNet-300-100 / MNIST await a re-run on the typed "
                    "summary; only the quick (digits) sweep is approved.")
    return gaps


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` without an approved run, and the sweep."""
    from papers.deep_compression.train import main

    runs = load_approved(PAPER)
    common_run_missing(PAPER, grid, PRESETS, main, have={r.summary.preset for r in _model_runs(runs)})
    if not _sweep_runs(runs):
        print(f"approved {approve(sweeps.main(PRESETS[SWEEP_PRESET]).run_dir)}")


# ------------------------------------------------------------------------------------------------ selections

def _model_runs(runs):
    return [r for r in runs if r.summary.kind == "model"]


def _sweep_runs(runs):
    return [r for r in runs if r.summary.kind == "sweep"]


def _group(run) -> tuple[str, str | None]:
    return run.summary.preset, run.summary.setting


def _groups(runs) -> dict[tuple[str, str | None], list]:
    """Model runs by (preset, study setting), in the order of the talk."""
    out: dict[tuple[str, str | None], list] = {}
    order = {p: i for i, p in enumerate(HEADLINE_PRESETS + ("quick",))}
    for run in sorted(_model_runs(runs), key=lambda r: (order.get(r.summary.preset, 99), r.summary.setting or "",
                                                        r.summary.seed)):
        out.setdefault(_group(run), []).append(run)
    return out


def _net(run) -> str | None:
    """The paper's network the run reproduces (MNIST runs of its LeNets), else None."""
    return NETWORK.get(run.config["arch"]) if run.summary.dataset.upper().startswith("MNIST") else None


def _label(preset: str, setting: str | None, runs) -> str:
    """Short row label: the network, the data, what is special about the preset."""
    arch = runs[0].config["arch"]
    name = {"lenet300": "LeNet-300-100", "lenet5_caffe": "LeNet-5", "resnet20": "ResNet-20"}.get(arch, arch)
    bits = "/".join(str(b) for b in dict.fromkeys(runs[0].config["bits"]))
    if setting:
        return f"{name}, CIFAR-10, study setting"
    if preset == "cifar10_resnet20":  # the preset before it became the study row (Adam, 3-epoch float fine-tune)
        return f"{name}, CIFAR-10, {bits}-bit (earlier recipe)"
    if preset == "quick":
        return f"{name} shape, digits (quick)"
    data = "MNIST" if runs[0].summary.dataset.upper().startswith("MNIST") else "CIFAR-10"
    return f"{name}, {data}, {bits}-bit ({preset})"


def _stages(run) -> dict:
    return run.summary.extra["stages"]


def _errors(runs) -> list[float]:
    return [round(100 - r.summary.value, 4) for r in runs]


# ------------------------------------------------------------------------------------------------ tables

def layers_ratio(layers: list[tuple[int, float]]) -> float:
    """fp32 size over compressed size of a set of layers, from (weights, compress rate P+Q+H in %) pairs.

    The paper's Tables 2-3 give a rate per layer (codebook and coded streams of its weights) and a Total row;
    weighting the layer rows by their sizes gives the ratio those rows imply, to set beside the Total's.
    """
    n = sum(w for w, _ in layers)
    return round(100 * n / sum(w * rate for w, rate in layers), 2)


def _count(weights: str) -> int:
    """The paper's "0.5K" / "235K" weight counts as numbers."""
    return round(float(weights.rstrip("K")) * 1000) if weights.endswith("K") else int(weights)


def headline(runs) -> tuple[list[str], list[list[str]], Source, str]:
    """Paper vs ours (Table 1): test error, file ratio and float error per network, mean ± sd over seeds."""
    header = ["Network, data, weights (preset)", "Error % paper", "Error % ours", "× paper", "× ours",
              "Float error % paper", "Float error % ours"]
    rows, used = [], []
    for (preset, setting), group in _groups(runs).items():
        if preset not in HEADLINE_PRESETS:
            continue
        used += group
        paper = SUMMARY.get(_net(group[0]), {})
        fp = [round(100 - r.summary.fp_value, 4) for r in group if r.summary.fp_value is not None]
        rows.append([_label(preset, setting, group), f"{paper['error']:.2f}" if paper else "—",
                     mean_sd(_errors(group)), f"{paper['rate']}×" if paper else "—",
                     mean_sd([r.summary.compression_ratio for r in group], 1).replace(" (n=", "× (n="),
                     f"{paper['error_ref']:.2f}" if paper else "—", mean_sd(fp)])
    legend = ("Top-1 test error; ×: fp32 file over the compressed file, ours both measured on disk; mean ± sd over "
              "seeds (n). Paper: Table 1 (no CIFAR-10 result). Study float: the setting's fine-tuned reference.")
    return header, rows, combine(runs_source(used), paper_source(PAPER, "Table 1")), legend


def stage_table(runs) -> tuple[list[str], list[list]]:
    """One row per model run: error and ratio after every stage (Tables 2-3's Total rows, per stage)."""
    header = ["Run", "Float err. %", "Pruned err. % / ×", "+Quant. err. % / ×", "+Huffman err. % / ×", "File (B)",
              "Stored bits"]
    rows = []
    for (preset, setting), group in _groups(runs).items():
        for run in group:
            st = _stages(run)
            rows.append([f"{_label(preset, setting, group)}, s{run.summary.seed}", st["float"]["error"],
                         *[f"{st[k]['error']:.2f} / {st[k]['ratio']:.1f}×" for k, _ in STAGES],
                         run.summary.size_bytes, run.summary.model_bits])
    return header, rows


def paper_stage_rows() -> list[list]:
    """The paper's stage ratios (Tables 2-3, Total rows) in the layout of :func:`stage_table`."""
    return [[f"{net}, MNIST: paper ({r['ref']})", SUMMARY[net]["error_ref"],
             *[f"— / {r[k]}×" for k, _ in STAGES], "—", "—"] for net, r in STAGE_RATES.items()]


def layer_rows(run) -> tuple[list[str], list[list], str | None]:
    """Per-layer rows beside the paper's Table 2 (LeNet-300-100) or Table 3 (LeNet-5); other nets: ours alone.

    Returns:
        (header, rows, the paper's table they are compared with or None).
    """
    header = ["Layer", "Weights", "Kept %", "Weight bits P+Q → P+Q+H", "Index bits P+Q → P+Q+H", "Rate P+Q+H %",
              "Huffman over entropy %: weights / index"]
    rows = []
    names, table, ref = PAPER_LAYERS.get(run.config["arch"], ({}, {}, None)) if _net(run) else ({}, {}, None)
    for r in _stages(run)["layers"]:
        p = table.get(names.get(r["layer"], ""), {})
        ref1 = lambda key: f" ({p[key]})" if key in p else ""  # noqa: E731
        ref2 = lambda a, b: f" ({p[a]} → {p[b]})" if p else ""  # noqa: E731
        rows.append([
            names.get(r["layer"], r["layer"]), r["weights"], f"{r['weights_pct']}{ref1('kept_pct')}",
            f"{r['weight_bits_pq']} → {r['weight_bits_pqh']}{ref2('wbits_pq', 'wbits_pqh')}",
            f"{r['index_bits_pq']} → {r['index_bits_pqh']}, {r['index_width_pqh']}-bit gaps"
            f"{ref2('ibits_pq', 'ibits_pqh')}",
            f"{r['compress_rate_pqh_pct']}{ref1('rate_pqh_pct')}", f"{r['weight_gap_pct']} / {r['index_gap_pct']}"])
    return header, rows, ref if table else None


def runs_table(runs) -> tuple[list[str], list[list]]:
    header = ["Run", "Top-1 %", "Float %", "W bits", "Stored bits", "File (B)", "× fp32", "Train (min)"]
    rows = []
    for (preset, setting), group in _groups(runs).items():
        for run in group:
            s = run.summary
            rows.append([f"{_label(preset, setting, group)}, s{s.seed}", f"{s.value:.2f}",
                         "—" if s.fp_value is None else f"{s.fp_value:.2f}", f"{s.w_bits:.2f}", s.model_bits,
                         s.size_bytes, f"{s.compression_ratio:.1f}×", f"{s.train_time_s / 60:.1f}"])
    return header, rows


# ------------------------------------------------------------------------------------------------ figures

def method_figure(out: Path) -> Path:
    """The three stages as a diagram (the paper's Fig. 1): what each stage stores."""
    fig, ax = slide_figure()
    ax.set_axis_off()
    ax.set(xlim=(0, 100), ylim=(0, 40))
    boxes = [("float\nnetwork", "fp32 weights"), ("pruning", "fp32 survivors\n+ relative positions"),
             ("quantization", "b-bit indices\n+ fp32 codebook"), ("Huffman\ncoding", "variable-length\ncodes")]
    for i, (name, stores) in enumerate(boxes):
        x = 2 + i * 25
        ax.add_patch(FancyBboxPatch((x, 18), 20, 16, boxstyle="round,pad=0.6", fc="#dceaf7" if i else "#eeeeee",
                                    ec="#0072B2", lw=2))
        ax.text(x + 10, 26, name, ha="center", va="center", fontsize=20, weight="bold")
        ax.text(x + 10, 9, stores, ha="center", va="center", fontsize=15)
        if i:
            ax.add_patch(FancyArrowPatch((x - 4.4, 26), (x - 0.8, 26), arrowstyle="-|>", mutation_scale=25, lw=2))
    ax.text(50, 38.5, "each stage writes a real file; the last one is decoded and checked", ha="center",
            fontsize=15, color="#555555")
    png, _ = save_figure(fig, out, "method", footer="the three stages of Han et al. 2016, Fig. 1")
    return png


def stage_figure(runs, out: Path) -> tuple[Path, list]:
    """Compression ratio after each stage, ours (mean over seeds, seeds as dots) beside Tables 2-3's Totals."""
    picked = {p: g for (p, s), g in _groups(runs).items() if p in ("lenet300_mnist", "lenet5_mnist") and not s}
    fig, axes = slide_figure(1, len(picked), sharey=True, squeeze=False)
    used = []
    for ax, (preset, group) in zip(axes[0], picked.items()):
        used += group
        net = _net(group[0])
        ours = [statistics.mean(_stages(r)[k]["ratio"] for r in group) for k, _ in STAGES]
        xs = range(len(STAGES))
        bars = ax.bar([x - 0.2 for x in xs], ours, width=0.4, color="#0072B2", label=f"ours (mean, n={len(group)})")
        bar_labels(ax, bars, "{:.1f}×")
        for x, (k, _) in zip(xs, STAGES):
            ax.scatter([x - 0.2] * len(group), [_stages(r)[k]["ratio"] for r in group], color="black", s=12, zorder=3)
        paper = [STAGE_RATES[net][k] for k, _ in STAGES]
        pbars = ax.bar([x + 0.2 for x in xs], paper, width=0.4, color="#D55E00", label="paper (Total row)")
        bar_labels(ax, pbars, "{:.0f}×")
        ax.set_xticks(list(xs), [label for _, label in STAGES])
        ax.set(title=f"{net} ({STAGE_RATES[net]['ref'].split(',')[0]})", ylabel="fp32 size / compressed size")
        ax.legend(loc="upper left", fontsize=13)
    png, _ = save_figure(fig, out, "stages_mnist", footer=runs_source(used).footer)
    return png, used


def layer_rate_figure(runs, out: Path) -> tuple[Path, list]:
    """Per-layer P+Q+H rate (% of the layer's fp32 bits), ours (mean over seeds) vs Tables 2-3."""
    picked = {p: g for (p, s), g in _groups(runs).items() if p in ("lenet300_mnist", "lenet5_mnist") and not s}
    fig, axes = slide_figure(1, len(picked), squeeze=False)
    used = []
    for ax, (preset, group) in zip(axes[0], picked.items()):
        used += group
        names, table, ref = PAPER_LAYERS[group[0].config["arch"]]
        layers = [r["layer"] for r in _stages(group[0])["layers"]]
        ours = [statistics.mean(next(x["compress_rate_pqh_pct"] for x in _stages(r)["layers"] if x["layer"] == n)
                                for r in group) for n in layers]
        paper = [table[names[n]]["rate_pqh_pct"] for n in layers]
        xs = range(len(layers))
        b1 = ax.bar([x - 0.2 for x in xs], ours, width=0.4, color="#0072B2", label=f"ours (mean, n={len(group)})")
        b2 = ax.bar([x + 0.2 for x in xs], paper, width=0.4, color="#D55E00", label=f"paper ({ref})")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        bar_labels(ax, b1, "{:.1f}", fontsize=12)
        bar_labels(ax, b2, "{:.1f}", fontsize=12)
        ax.set_xticks(list(xs), [names[n] for n in layers])
        ax.set_ylim(1, 100)
        ax.set_yticks([1, 2, 5, 10, 20, 50, 100])
        ax.set(title=f"{_net(group[0])} ({ref})", ylabel="compressed / fp32 bits of the layer (%)")
        ax.legend(loc="best", fontsize=13)
    fig.suptitle("Each layer's compressed size, % of its fp32 bits (log scale)")
    png, _ = save_figure(fig, out, "layer_rates_mnist", footer=runs_source(used).footer)
    return png, used


def histogram_figure(run, out: Path) -> Path:
    """Weights of the largest layer: dense, after pruning + retraining, after sharing (Fig. 4 style)."""
    h = run.json("histograms.json")
    lo, hi, bins = h["range"][0], h["range"][1], h["bins"]
    width = (hi - lo) / bins
    centres = [lo + (i + 0.5) * width for i in range(bins)]
    fig, axes = slide_figure(1, 3, sharex=True)
    axes[0].bar(centres, h["dense"], width=width)
    axes[0].set(title="float", xlabel="weight", ylabel="count")
    axes[1].bar(centres, h["pruned"], width=width, color="C1")
    axes[1].set(title="pruned + retrained", xlabel="weight")
    axes[2].bar(h["shared_centroids"], h["shared_counts"], width=width, color="C2")
    axes[2].set(title=f"shared: {len(h['shared_centroids'])} centroids", xlabel="weight")
    name = LENET300_NAMES.get(h["layer"], h["layer"]) if run.config["arch"] == "lenet300" else h["layer"]
    fig.suptitle(f"Weights of layer {name} ({run.config['arch']}, {run.summary.preset}, seed {run.summary.seed})")
    png, _ = save_figure(fig, out, _hist_name(run), footer=runs_source([run]).footer)
    return png


def _hist_name(run) -> str:
    s = run.summary
    return f"histograms_{s.setting or s.preset}{'_study' if s.setting else ''}_s{s.seed}"


def tradeoff_figure(run, out: Path) -> Path:
    """Accuracy loss vs compression rate: pruning only, quantization only, both (Fig. 6)."""
    pts = run.json("tradeoff.json")
    fp = next(p for p in pts if p["kind"] == "float")["error"]
    fig, ax = slide_figure()
    for kind, marker in (("pruning", "o"), ("quantization", "s"), ("both", "^")):
        sel = sorted((p["rate_pct"], p["error"] - fp) for p in pts if p["kind"] == kind)
        if sel:
            ax.plot(*zip(*sel), marker=marker, label=sweeps.METHODS[kind], lw=2, markersize=8)
    ax.set(xlabel="compressed file / fp32 file (%)", ylabel="test error increase (points)", xscale="log",
           title=f"Fig. 6 experiment: {run.config['arch']}, {run.summary.preset} preset, seed {run.summary.seed}")
    rates = [p["rate_pct"] for p in pts if p["kind"] != "float"]
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if min(rates) / 1.5 <= t <= max(rates) * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # a log axis labels only its decades: too few on a slide
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axhline(0, color="gray", lw=1)
    ax.legend()
    png, _ = save_figure(fig, out, f"tradeoff_{run.summary.preset}", footer=runs_source([run]).footer)
    return png


def init_figure(run, out: Path) -> tuple[Path, list[str], list[list]]:
    """Test error vs bits for linear / density / random centroid init (Sec. 6.2, Fig. 8)."""
    study = run.json("init_study.json")
    fig, ax = slide_figure()
    inits = sorted({r["init"] for r in study["rows"]}, key=["linear", "density", "random"].index)
    for i, init in enumerate(inits):
        rows = sorted((r["bits"], r["error_before_finetune"], r["error"]) for r in study["rows"] if r["init"] == init)
        b, before, after = zip(*rows)
        ax.plot(b, after, marker="o", color=f"C{i}", label=f"{init} (fine-tuned)", lw=2)
        ax.plot(b, before, ls="--", color=f"C{i}", label=f"{init} (before fine-tuning)")
    ax.axhline(study["pruned_error"], color="gray", lw=1, label="pruned float model")
    ax.set(xlabel="bits per weight (k = 2^b centroids)", ylabel="test error (%)",
           title=f"Centroid init (Fig. 8 experiment): {run.config['arch']}, {run.summary.preset} preset")
    ax.legend(ncols=2, fontsize=13)
    png, _ = save_figure(fig, out, f"init_{run.summary.preset}", footer=runs_source([run]).footer)
    bits = sorted({r["bits"] for r in study["rows"]})
    header = ["Init", *[f"{b} bits" for b in bits]]
    table = [[init, *[next(r["error"] for r in study["rows"] if r["init"] == init and r["bits"] == b) for b in bits]]
             for init in inits]
    return png, header, table


# ------------------------------------------------------------------------------------------------ deck

def _takeaways(runs) -> list[str]:
    out = []
    for (preset, setting), group in _groups(runs).items():
        if preset not in HEADLINE_PRESETS:
            continue
        s = [r.summary for r in group]
        err, fp = _errors(group), [100 - x.fp_value for x in s if x.fp_value is not None]
        ratio = statistics.mean(x.compression_ratio for x in s)
        line = (f"{_label(preset, setting, group)}: {statistics.mean(err):.2f}% error at {ratio:.1f}× "
                f"(n={len(group)})")
        if fp:
            line += f", float {statistics.mean(fp):.2f}%"
        out.append(line + ".")
    out.append("Every compressed file is decoded into a fresh model that predicts exactly what the trained model "
               "predicts; sizes are bytes on disk, not bit counts.")
    mnist = [r for r in _model_runs(runs) if _net(r)]
    if mnist:
        gaps = [_stages(r)["huffman_vs_entropy"]["index_gap_pct"] for r in mnist]
        out.append(f"Huffman-coded weight indices take {min(gaps):.2f}–{max(gaps):.2f}% more bits than the "
                   f"empirical entropy of their symbols (all layers, {len(mnist)} MNIST runs).")
    return out


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    cite = Source(CITATION, ("papers/deep_compression/paper_numbers.py",))

    # headline: paper vs ours
    h_header, h_rows, h_source, h_legend = headline(runs)
    written["headline"] = write_csv(out / "headline.csv", h_header, h_rows)
    (out / "headline.md").write_text(markdown_table(h_header, h_rows) + "\n")

    # stage and per-layer tables
    s_header, s_rows = stage_table(runs)
    s_rows_paper = paper_stage_rows()
    md_stages = markdown_table(s_header, s_rows + s_rows_paper)
    (out / "stages.md").write_text(md_stages + "\n")
    written["stages"] = write_csv(out / "stages.csv", s_header, s_rows + s_rows_paper)
    md_layers, layer_tables = [], []
    for (preset, setting), group in _groups(runs).items():
        for run in group:
            header, lrows, ref = layer_rows(run)
            src = f" (in parentheses: the paper's {ref})" if ref else ""
            label = f"{_label(preset, setting, group)}, seed {run.summary.seed}"
            md_layers.append(f"**{label}**{src}\n\n{markdown_table(header, lrows)}")
            if run.summary.seed == group[0].summary.seed:
                layer_tables.append(Table(f"Per layer: {_label(preset, setting, group)}, s{run.summary.seed}",
                                          header, lrows, runs_source([run], extra_files=[run.dir / "stages.json"])
                                          if (run.dir / "stages.json").is_file() else runs_source([run]),
                                          legend=f"In parentheses: the paper's {ref}" if ref else None))
    (out / "layers.md").write_text("\n\n".join(md_layers) + "\n")
    written["layers"] = out / "layers.md"
    r_header, r_rows = runs_table(runs)
    (out / "runs.md").write_text(markdown_table(r_header, r_rows) + "\n")
    written["runs"] = out / "runs.md"

    # figures
    written["method"] = method_figure(out)
    figures, appendix_figures = [], []
    stage_png, stage_runs = stage_figure(runs, out)
    written["stages_mnist"] = stage_png
    figures.append(Figure("Ratio after each stage: ours vs Tables 2–3", stage_png,
                          combine(runs_source(stage_runs), paper_source(PAPER, "Tables 2–3, Total"))))
    rate_png, rate_runs = layer_rate_figure(runs, out)
    written["layer_rates_mnist"] = rate_png
    figures.append(Figure("Each layer's compressed size: ours vs Tables 2–3", rate_png,
                          combine(runs_source(rate_runs), paper_source(PAPER, "Tables 2–3"))))
    for (preset, setting), group in _groups(runs).items():
        for run in group:
            png = histogram_figure(run, out)
            written[png.stem] = png
            fig = Figure(f"Weights of the largest layer: {_label(preset, setting, group)}, s{run.summary.seed}",
                         png, runs_source([run]))
            if run.summary.seed == group[0].summary.seed:  # one per preset on slides; every seed's PNG on disk
                (figures if preset == "lenet300_mnist" and not setting else appendix_figures).append(fig)
    init_tables, md_init = [], ""
    for run in _sweep_runs(runs):
        png = tradeoff_figure(run, out)
        written[png.stem] = png
        main_sweep = run.summary.preset != "quick" or all(r.summary.preset == "quick" for r in _sweep_runs(runs))
        (figures if main_sweep else appendix_figures).append(
            Figure(f"Pruning and quantization together (Fig. 6): {run.summary.preset} preset", png,
                   runs_source([run], extra_files=[run.dir / "tradeoff.json"])))
        png, header, irows = init_figure(run, out)
        written[png.stem] = png
        appendix_figures.append(Figure(f"Centroid initialisation (Fig. 8): {run.summary.preset} preset", png,
                                       runs_source([run], extra_files=[run.dir / "init_study.json"])))
        init_tables.append(Table(f"Test error (%) by centroid init: {run.summary.preset} preset", header, irows,
                                 runs_source([run], extra_files=[run.dir / "init_study.json"]),
                                 legend="After weight sharing and centroid fine-tuning, on the pruned model"))
        md_init += f"\n\n**{run.config['arch']}, {run.summary.preset} preset**\n\n" + markdown_table(header, irows)

    written["deck"] = build_paper_deck(
        out / "deep_compression_deck.pptx", title=TITLE, subtitle=CITATION,
        idea=Bullets("The idea", IDEA, cite),
        idea_figure=Figure("Prune, share, code", written["method"], paper_source(PAPER, "Fig. 1")),
        formulas=FORMULAS,
        headline=Table("Paper vs ours: error and size (Table 1)", h_header, h_rows, h_source, legend=h_legend),
        figures=figures,
        deviations=Bullets("Deviations", _deviations(), cite, numbered=True),
        known_gaps=Bullets("Known gaps", _known_gaps(runs), combine(runs_source(runs), paper_source(PAPER, "Tables 1, 3"))),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(runs)),
        appendix=[Table("Stage by stage (error % / ratio ×)", s_header, s_rows + s_rows_paper,
                        combine(runs_source(_model_runs(runs)), paper_source(PAPER, "Tables 1–3")),
                        legend="×: fp32 file / the stage's file, measured on disk; stored bits: without file overhead"),
                  *layer_tables, *init_tables, *appendix_figures,
                  Table("Every approved run (quick = CPU minutes, not paper scale)", r_header, r_rows,
                        runs_source(_model_runs(runs)))])
    if default_out:
        update_readme_block(README, "headline", markdown_table(h_header, h_rows) + f"\n\n{h_legend}\n\n"
                            "![Ratio after each stage](results/stages_mnist.png)")
        block = f"{md_stages}\n\n" + "\n\n".join(md_layers)
        if md_init:
            block += f"\n\nCentroid initialisation (test error %, after sharing and fine-tuning):{md_init}"
        update_readme_block(README, "results", block)
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
