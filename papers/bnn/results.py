"""Figures, tables and deck of the BNN package from its approved runs.

``python -m papers.bnn.results`` rebuilds everything from ``papers/bnn/results/runs/`` (no training);
``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/bnn/results/``.
"""

from __future__ import annotations

import csv
from pathlib import Path

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
from papers.bnn.config import PRESETS
from papers.bnn.paper_numbers import TEST_ERROR
from papers.bnn.train import main

PAPER = "bnn"
GRID = ("quick", "mnist_mlp")  # presets with approved runs; cifar10_convnet and paper need a GPU
README = Path(__file__).with_name("README.md")

IDEA = [
    "Weights and hidden activations are constrained to ±1 by Sign in the forward pass (Eq. 1).",
    "Real 'latent' weights accumulate the gradients; Sign's gradient is the straight-through "
    "estimator cancelled outside [-1, 1] (Eq. 4); latent weights are clipped to [-1, 1] (Alg. 1).",
    "At inference every multiply-accumulate is an XNOR + popcount and weights take 1 bit: 32× less memory.",
]
EQUATION_MAP = [
    ("Eq. (1) Sign", "papers/bnn/bnn.py: binarize"),
    ("Eq. (4) STE 1_{|r|≤1}", "papers/bnn/bnn.py: SignSTE.backward"),
    ("Alg. 1 forward (W^b, a^b)", "bnn.py: BinaryLinear / BinaryConv2d / BinaryActivation"),
    ("Alg. 1 update + clip", "bnn.py: clip_latent_weights_ (ClipLatentWeights callback)"),
    ("Sec. 2.6 square hinge loss", "bnn.py: square_hinge_loss"),
    ("1-bit storage", "papers/bnn/artifact.py: save_packed / load_packed"),
]


def _setting(run: dict) -> str:
    c, s = run["config"], run["summary"]
    arch = f"MLP {'×'.join(map(str, c['hidden']))}" if c["arch"] == "mlp" else "ConvNet"
    return f"{s['dataset']}, {arch}, {c['epochs']} ep. ({s['preset']} preset)"


def _paper_key(run: dict) -> str | None:
    ds = run["summary"]["dataset"]
    return "MNIST" if ds.upper().startswith("MNIST") else "CIFAR-10" if ds.upper().startswith("CIFAR-10") else None


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs = load_approved(PAPER, required=True)
    default_out = out_dir is None
    out = Path(out_dir) if out_dir else results_dir(PAPER)
    written: dict[str, Path] = {}
    figures = []
    for run in runs:
        s = run["summary"]
        foot = summary_footer(s)
        fig, ax = slide_figure()
        for tag, label in (("float", "float twin (ReLU, fp32)"), ("bnn", "BNN (±1 weights and activations)")):
            pts = [(m["epoch"], 100 - m["test_top1"]) for m in run["metrics"] if m["tag"] == tag]
            if pts:
                ax.plot(*zip(*pts), label=label)
        ax.set(xlabel="epoch", ylabel="test error (%)", ylim=(0, None),
               title=f"BNN vs float twin — {s['preset']} preset")
        ax.legend(title=_setting(run).rsplit(" (", 1)[0], title_fontsize="small")
        name = f"curves_{s['preset']}"
        png, _ = save_figure(fig, out, name, footer=foot)
        figures.append((f"Test error per epoch — {s['preset']} preset", png))
        written[name] = png

    rows = []
    for run in runs:
        s, key = run["summary"], _paper_key(run)
        refs = [(impl, *TEST_ERROR[(key, impl)]) for impl in ("Theano", "Torch7")] if key else [(None, None, None)]
        for impl, err, ref in refs:
            rows.append({"setting": _setting(run) + (f" vs {impl}" if impl else ""), "ours": s["test_error"],
                         "paper": err, "ref": ref, "unit": "test error %"})
    md_acc = comparison_table(rows, out, "accuracy")
    with open(out / "accuracy.csv", newline="") as f:
        acc_csv = list(csv.reader(f))  # the same cells as the Markdown table
    size_header = ["Preset", "Params", "Bits in the model", "1-bit file (B)", "fp32 file (B)", "Ratio"]
    size_rows = [[r["summary"]["preset"], r["summary"]["params"], r["summary"]["model_bits"],
                  r["summary"]["size_bytes"], round(r["summary"]["size_bytes"] * r["summary"]["compression_ratio"]),
                  f"{r['summary']['compression_ratio']:.1f}×"] for r in runs]
    md_size = markdown_table(size_header, size_rows)
    (out / "size.md").write_text(md_size + "\n")
    written["accuracy"], written["size"] = out / "accuracy.md", out / "size.md"

    last = runs[-1]["summary"]
    written["deck"] = build_deck(
        out / "bnn_deck.pptx", title="Binarized Neural Networks",
        subtitle="Courbariaux, Hubara, Soudry, El-Yaniv, Bengio — NeurIPS 2016", idea=IDEA,
        equation_map=EQUATION_MAP,
        tables=[("Test error: ours vs the paper", acc_csv[0], acc_csv[1:]),
                ("Size of the real artifact", size_header, size_rows)],
        figures=figures, footer=summary_footer(last))
    if default_out:
        update_readme_block(README, "results", f"{md_acc}\n\n{md_size}")
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
