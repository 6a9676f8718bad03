"""Figures, tables and deck of Deep Compression from its approved runs.

``python -m papers.deep_compression.results`` rebuilds everything from
``papers/deep_compression/results/runs/`` (no training); ``--run`` first trains and approves the
presets of the grid (and the ablation sweep) that have no approved run; ``--out-dir DIR`` writes
elsewhere than ``papers/deep_compression/results/``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from matplotlib.ticker import ScalarFormatter

from common.errors import NnqError
from common.report import (
    build_deck,
    comparison_table,
    markdown_table,
    save_figure,
    slide_figure,
    summary_footer,
    update_readme_block,
)
from common.results import approve, load_approved, results_cli, results_dir
from common.results import run_missing as common_run_missing
from papers.deep_compression import sweeps
from papers.deep_compression.config import PRESETS
from papers.deep_compression.paper_numbers import (LENET5_LAYERS, LENET5_REF, LENET300_LAYERS, LENET300_REF,
                                                   STAGE_RATES, SUMMARY)
from papers.deep_compression.train import main

PAPER = "deep_compression"
GRID = ("quick", "lenet300_mnist", "lenet5_mnist", "paper", "cifar10_resnet20")
SWEEP_PRESET = "quick"
README = Path(__file__).with_name("README.md")
NETWORK = {"lenet300": "LeNet-300-100", "lenet5_caffe": "LeNet-5"}  # the paper's networks (Table 1)
LENET300_NAMES = {"1": "ip1", "3": "ip2", "5": "ip3"}  # our module names -> the paper's layer names
# arch -> (our module name -> the paper's layer name, the paper's per-layer table, its reference)
PAPER_LAYERS = {"lenet300": (LENET300_NAMES, LENET300_LAYERS, LENET300_REF),
                "lenet5_caffe": ({n: n for n in LENET5_LAYERS}, LENET5_LAYERS, LENET5_REF)}

IDEA = [
    "Prune: drop every connection below quality × the layer's weight std, retrain, iterate; "
    "a mask keeps pruned weights at exactly zero (Han et al. 2015).",
    "Share: k-means (linear init) clusters each layer's survivors into 2^b centroids; weights store "
    "b-bit indices; centroids are fine-tuned with the summed gradients of their members (Eq. 3).",
    "Huffman-code the indices and the relative positions of the survivors (bounded-width gaps with "
    "filler entries): 35–49× smaller networks with no loss of accuracy.",
]
EQUATION_MAP = [
    ("Han 2015 Sec. 4: threshold = quality × std", "prune.py: layer_threshold, prune_mask"),
    ("Han 2015 Sec. 3.3: iterative prune + retrain, masks", "prune.py: PruneMasks (after_step), density_schedule"),
    ("Eq. (1) k-means objective", "share.py: kmeans_1d"),
    ("Sec. 3.1 random / density / linear init", "share.py: init_centroids"),
    ("Eq. (3) centroid gradient", "share.py: CodebookLookup.backward"),
    ("Sec. 3 shared layers W = C[I]", "share.py: SharedLinear, SharedConv2d"),
    ("Sec. 2 / Fig. 2 relative index + fillers", "huffman.py: relative_indices"),
    ("Sec. 4 Huffman coding", "huffman.py: huffman_code_lengths, canonical_codes"),
    ("the compressed file", "format.py: encode / decode"),
]


def _training_runs(runs):
    return [r for r in runs if r["summary"].get("kind") != "sweep"]


def _sweep_runs(runs):
    return [r for r in runs if r["summary"].get("kind") == "sweep"]


def _setting(run: dict) -> str:
    c, s = run["config"], run["summary"]
    return f"{s['dataset']}, {c['arch']} ({s['preset']} preset, seed {c['seed']})"




def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` without an approved run, and the sweep."""
    runs = load_approved(PAPER)
    common_run_missing(PAPER, grid, PRESETS, main, have={r["summary"]["preset"] for r in _training_runs(runs)})
    if not _sweep_runs(runs):
        summary = sweeps.main(PRESETS[SWEEP_PRESET])
        print(f"approved {approve(summary['run_dir'])}")


def _count(weights: str) -> int:
    """The paper's "0.5K" / "235K" weight counts as numbers."""
    return round(float(weights.rstrip("K")) * 1000) if weights.endswith("K") else int(weights)


def layers_ratio(layers: list[tuple[int, float]]) -> float:
    """fp32 size over compressed size of a set of layers, from (weights, compress rate P+Q+H in %) pairs.

    The paper's Tables 2-3 give a rate per layer (codebook and coded streams of its weights) and a Total row;
    weighting the layer rows by their sizes gives the ratio those rows imply, to set beside the Total's.
    """
    n = sum(w for w, _ in layers)
    return round(100 * n / sum(w * rate for w, rate in layers), 2)


def stage_rows(run: dict) -> list[dict]:
    """Rows "Setting | Ours | Paper (ref)" of one run's stages, beside Tables 1-3."""
    s, st = run["summary"], run["summary"]["stages"]
    net = NETWORK.get(run["config"]["arch"]) if s["dataset"].upper().startswith("MNIST") else None
    paper = STAGE_RATES.get(net, {})
    summ = SUMMARY.get(net, {})
    base = _setting(run)
    rows = [{"setting": f"{base}: ratio after {label}", "ours": st[key]["ratio"], "paper": paper.get(key),
             "ref": paper.get("ref"), "unit": "×"}
            for key, label in (("pruned", "pruning"), ("shared", "+ quantization"), ("huffman", "+ Huffman"))]
    rows += [
        {"setting": f"{base}: float error", "ours": st["float"]["error"], "paper": summ.get("error_ref"),
         "ref": summ.get("ref"), "unit": "%"},
        {"setting": f"{base}: error after pruning", "ours": st["pruned"]["error"], "paper": None,
         "ref": None, "unit": "%"},
        {"setting": f"{base}: error after sharing", "ours": st["shared"]["error"], "paper": None,
         "ref": None, "unit": "%"},
        {"setting": f"{base}: error of the decoded file", "ours": st["huffman"]["error"], "paper": summ.get("error"),
         "ref": summ.get("ref"), "unit": "%"},
        {"setting": f"{base}: compressed size", "ours": round(st["huffman"]["size_bytes"] / 1000, 1),
         "paper": None if not summ else float(summ["size"].split()[0]), "ref": summ.get("ref"), "unit": "KB"},
    ]
    if net and st.get("layers"):
        _, layers, ref = PAPER_LAYERS[run["config"]["arch"]]
        rows.append({"setting": f"{base}: ratio of the weight layers alone (codebooks + coded streams)",
                     "ours": layers_ratio([(r["weights"], r["compress_rate_pqh_pct"]) for r in st["layers"]]),
                     "paper": layers_ratio([(_count(p["weights"]), p["rate_pqh_pct"])
                                            for name, p in layers.items() if name != "total"]),
                     "ref": f"{ref}, layer rows", "unit": "×"})
    gap = st.get("huffman_vs_entropy", {})  # Huffman payload over the order-0 entropy of its symbols, all layers
    rows += [{"setting": f"{base}: Huffman over entropy, {what}", "ours": gap[key], "paper": None, "ref": None,
              "unit": "%"} for key, what in (("index_gap_pct", "weight indices"),
                                             ("position_gap_pct", "relative positions")) if key in gap]
    return rows


def layer_rows(run: dict) -> tuple[list[str], list[list], str | None]:
    """Per-layer rows beside the paper's Table 2 (LeNet-300-100) or Table 3 (LeNet-5); other nets: ours alone.

    Returns:
        (header, rows, the paper's table they are compared with or None).
    """
    header = ["Layer", "Weights", "Kept % (paper)", "Weight bits P+Q → P+Q+H (paper)",
              "Index bits P+Q → P+Q+H (paper)", "Rate P+Q+H % (paper)", "Huffman − entropy %: weights / index"]
    rows = []
    mnist = run["summary"]["dataset"].upper().startswith("MNIST")
    names, table, ref = PAPER_LAYERS.get(run["config"]["arch"], ({}, {}, None)) if mnist else ({}, {}, None)
    for r in run["summary"]["stages"]["layers"]:
        p = table.get(names.get(r["layer"], ""), {})
        ref1 = lambda key: f" ({p[key]})" if key in p else ""  # noqa: E731
        ref2 = lambda a, b: f" ({p[a]} → {p[b]})" if p else ""  # noqa: E731
        width = f", {r['index_width_pqh']}-bit gaps" if "index_width_pqh" in r else ""
        gaps = f"{r['weight_gap_pct']} / {r['index_gap_pct']}" if "index_gap_pct" in r else "—"
        rows.append([
            names.get(r["layer"], r["layer"]), r["weights"], f"{r['weights_pct']}{ref1('kept_pct')}",
            f"{r['weight_bits_pq']} → {r['weight_bits_pqh']}{ref2('wbits_pq', 'wbits_pqh')}",
            f"{r['index_bits_pq']} → {r['index_bits_pqh']}{width}{ref2('ibits_pq', 'ibits_pqh')}",
            f"{r['compress_rate_pqh_pct']}{ref1('rate_pqh_pct')}", gaps])
    return header, rows, ref if table else None


def histogram_figure(run: dict, out: Path) -> Path:
    """Weights of the largest layer: dense, after pruning + retraining, after sharing (Fig. 4/7 style)."""
    h = (run["dir"] / "histograms.json")
    h = json.loads(h.read_text())
    lo, hi, bins = h["range"][0], h["range"][1], h["bins"]
    width = (hi - lo) / bins
    centres = [lo + (i + 0.5) * width for i in range(bins)]
    fig, axes = slide_figure(1, 3, sharex=True)
    axes[0].bar(centres, h["dense"], width=width)
    axes[0].set(title="float", xlabel="weight", ylabel="count")
    axes[1].bar(centres, h["pruned"], width=width, color="C1")
    axes[1].set(title="pruned + retrained", xlabel="weight")
    axes[2].bar(h["shared_centroids"], h["shared_counts"], width=width, color="C2")
    axes[2].set(title=f"shared, {len(h['shared_centroids'])} centroids", xlabel="weight")
    fig.suptitle(f"Weights of layer {h['layer']} ({run['config']['arch']}, {run['summary']['preset']})")
    name = f"histograms_{run['summary']['preset']}_s{run['config']['seed']}"
    png, _ = save_figure(fig, out, name, footer=summary_footer(run["summary"]))
    return png


def tradeoff_figure(run: dict, out: Path) -> Path:
    """Accuracy loss vs compression rate: pruning only, quantization only, both (Fig. 6)."""
    pts = json.loads((run["dir"] / "tradeoff.json").read_text())
    fp = next(p for p in pts if p["kind"] == "float")["error"]
    fig, ax = slide_figure()
    for kind, label, marker in (("pruning", "pruning only", "o"), ("quantization", "quantization only", "s"),
                                ("both", "pruning + quantization", "^")):
        sel = sorted((p["rate_pct"], p["error"] - fp) for p in pts if p["kind"] == kind)
        if sel:
            ax.plot(*zip(*sel), marker=marker, label=label)
    ax.set(xlabel="compressed file / fp32 file (%)", ylabel="error increase (points)", xscale="log",
           title=f"Fig. 6 experiment: {run['config']['arch']}, {run['summary']['preset']} preset")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.axhline(0, color="gray", lw=1)
    ax.legend()
    name = f"tradeoff_{run['summary']['preset']}"
    png, _ = save_figure(fig, out, name, footer=summary_footer(run["summary"]))
    return png


def init_figure(run: dict, out: Path) -> tuple[Path, list[str], list[list]]:
    """Test error vs bits for linear / density / random centroid init (Sec. 3.1, Fig. 5)."""
    study = json.loads((run["dir"] / "init_study.json").read_text())
    fig, ax = slide_figure()
    inits = sorted({r["init"] for r in study["rows"]}, key=["linear", "density", "random"].index)
    for i, init in enumerate(inits):
        rows = sorted((r["bits"], r["error_before_finetune"], r["error"]) for r in study["rows"] if r["init"] == init)
        b, before, after = zip(*rows)
        ax.plot(b, after, marker="o", color=f"C{i}", label=f"{init} (fine-tuned)")
        ax.plot(b, before, ls="--", color=f"C{i}", label=f"{init} (before fine-tuning)")
    ax.axhline(study["pruned_error"], color="gray", lw=1, label="pruned float model")
    ax.set(xlabel="bits per weight (k = 2^b centroids)", ylabel="test error (%)",
           title=f"Centroid init (Fig. 5 experiment): {run['config']['arch']}, {run['summary']['preset']} preset")
    ax.legend(ncols=2)
    name = f"init_{run['summary']['preset']}"
    png, _ = save_figure(fig, out, name, footer=summary_footer(run["summary"]))
    header = ["Init", *[f"{b} bits" for b in sorted({r["bits"] for r in study["rows"]})]]
    table = [[init, *[next(r["error"] for r in study["rows"] if r["init"] == init and r["bits"] == b)
                      for b in sorted({r["bits"] for r in study["rows"]})]] for init in inits]
    return png, header, table


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs = load_approved(PAPER)
    train_runs = _training_runs(runs)
    if not train_runs:
        raise NnqError("no approved training runs in papers/deep_compression/results/runs; "
                       "make them with `python -m papers.deep_compression.results --run`")
    default_out = out_dir is None
    out = Path(out_dir) if out_dir else results_dir(PAPER)
    written: dict[str, Path] = {}
    figures, tables = [], []

    rows = [row for run in train_runs for row in stage_rows(run)]
    md_stages = comparison_table(rows, out, "stages")
    with open(out / "stages.csv", newline="") as f:
        cells = list(csv.reader(f))
    tables.append(("Stage by stage: ours vs the paper (Tables 1-3)", cells[0], cells[1:]))
    written["stages"] = out / "stages.md"

    md_layers = []
    for run in train_runs:
        header, lrows, ref = layer_rows(run)
        md = markdown_table(header, lrows)
        src = f" (in parentheses: the paper's {ref})" if ref else ""
        md_layers.append(f"**{_setting(run)}**{src}\n\n{md}")
        tables.append((f"Per layer — {_setting(run)}", header, lrows))
        png = histogram_figure(run, out)
        figures.append((f"Weight distribution — {run['summary']['preset']}, seed {run['config']['seed']}", png))
        written[png.stem] = png
    (out / "layers.md").write_text("\n\n".join(md_layers) + "\n")
    written["layers"] = out / "layers.md"

    md_init = ""
    for run in _sweep_runs(runs):
        png = tradeoff_figure(run, out)
        figures.append((f"Pruning vs quantization vs both — {run['summary']['preset']}", png))
        written[png.stem] = png
        png, header, irows = init_figure(run, out)
        figures.append((f"Centroid initialisation — {run['summary']['preset']}", png))
        tables.append((f"Test error (%) after sharing + fine-tuning, by init — {_setting(run)}", header, irows))
        md_init += f"\n\n**{_setting(run)}**\n\n" + markdown_table(header, irows)
        written[png.stem] = png

    last = train_runs[-1]["summary"]
    written["deck"] = build_deck(
        out / "deep_compression_deck.pptx", title="Deep Compression",
        subtitle="Han, Mao, Dally — ICLR 2016 (pruning: Han, Pool, Tran, Dally — NeurIPS 2015)", idea=IDEA,
        equation_map=EQUATION_MAP, tables=tables, figures=figures, footer=summary_footer(last))
    if default_out:
        block = f"{md_stages}\n\n" + "\n\n".join(md_layers)
        if md_init:
            block += ("\n\nCentroid initialisation (test error %, after sharing and fine-tuning; short budget):"
                      f"{md_init}")
        update_readme_block(README, "results", block)
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
