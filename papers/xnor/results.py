"""Figures, tables and deck of the XNOR-Net package from its approved runs and the kernel benchmark.

``python -m papers.xnor.results`` rebuilds everything from ``papers/xnor/results/runs/``,
``benchmarks/results/xnor_gemm.json`` and ``benchmarks/results/xnor_size.json`` (no training); ``--run`` first trains and approves the presets of
the grid that have no approved run; ``--out-dir DIR`` writes elsewhere than ``papers/xnor/results/``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from common.report import (
    build_deck,
    comparison_table,
    footer_text,
    markdown_table,
    save_figure,
    slide_figure,
    summary_footer,
    update_readme_block,
)
from common.runs import REPO_ROOT, load_approved, results_cli, results_dir
from common.runs import run_missing as common_run_missing
from papers.xnor.config import PRESETS
from papers.xnor.paper_numbers import CLAIMS, IMAGENET_ACCURACY
from papers.xnor.train import main

PAPER = "xnor"
GRID = ("quick", "mnist_lenet5", "cifar10_resnet20_cpu")  # presets with approved runs; cifar10_resnet20 and paper need a GPU
README = Path(__file__).with_name("README.md")
BENCH = REPO_ROOT / "benchmarks" / "results" / "xnor_gemm.json"
SIZES = REPO_ROOT / "benchmarks" / "results" / "xnor_size.json"

IDEA = [
    "BWN: a real filter W is replaced by α·sign(W) with α = mean|W| — the closed-form least-squares optimum "
    "(Eq. 2–6).",
    "XNOR-Net: the input is binarized too; a scaling map K (channel-mean of |I|, box-averaged over each k×k window, "
    "Fig. 2) restores the magnitude, so a convolution becomes XNOR + popcount scaled by K·α (Eq. 11).",
    "Training keeps real weights; sign's gradient is the STE 1_{|r|≤1}, and the weight gradient adds the α term "
    "(1/n + α·∂sign/∂W); blocks are reordered BN → BinActiv → BinConv → Pool; first and last layers stay real.",
    "Here the packed model really runs on 64-bit XNOR-popcount kernels (C, AVX-512 VPOPCNTDQ / AVX2 / scalar) "
    "and gives bit-identical outputs to the simulated model.",
]
EQUATION_MAP = [
    ("Eq. (6) α* = ‖W‖ℓ1 / n, B* = sign(W)", "papers/xnor/xnor.py: bwn_alpha, binarize"),
    ("Eq. (1) I∗W ≈ (I ⊕ B)α", "xnor.py: BwnConv2d.forward, BwnLinear.forward"),
    ("Sec. 3.1 STE ∂sign/∂r = 1_{|r|≤1}", "xnor.py: SignSTE.backward (sign_ste)"),
    ("Sec. 3.1 ∂C/∂W = ∂C/∂W̃ (1/n + ∂sign/∂W α)", "xnor.py: WeightSignSTE.backward"),
    ("Eq. (10) β = ‖X‖ℓ1 / n", "xnor.py: input_beta; XnorLinear"),
    ("Fig. 2 A = Σ|I|/c, K = A ∗ k", "xnor.py: scaling_map_k"),
    ("Eq. (11) I∗W ≈ (sign(I) ⊛ sign(W)) ⊙ Kα", "xnor.py: XnorConv2d.forward; kernel.py: xnor_conv2d"),
    ("Sec. 3.2 XNOR + bit-count", "papers/xnor/xnor_kernel.c: micro_tile, xnor_conv2d_f32"),
    ("Fig. 3 BN → BinActiv → BinConv → Pool", "models.py: SmallConvNet, XnorLeNet5, XnorBnnConvNet, XnorResNetCifar, XnorResNet18"),
    ("32× memory (1 bit / weight)", "packed.py: save_packed / load_packed"),
]


def _setting(run: dict, epochs_key: str | None = None) -> str:
    s, c = run["summary"], run["config"]
    epochs = f", {c[epochs_key]} ep." if epochs_key else ""
    start = ", from the shared float weights" if c.get("init_from") else ""
    return f"{s['dataset']}, {s['arch']}{epochs}{start} ({s['preset']} preset)"


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def _accuracy_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        s = run["summary"]
        imagenet = "resnet18" == s.get("arch") and "imagenet" in str(s["dataset"]).lower()
        for label, key, method, epochs_key in (("float twin", "fp_value", "full precision", "baseline_epochs"),
                                               ("BWN", "bwn_value", "BWN", "bwn_epochs"),
                                               ("XNOR-Net", "value", "XNOR-Net", "epochs")):
            paper, ref = (None, None)
            if imagenet:
                paper, _, ref = IMAGENET_ACCURACY[("ResNet-18", method)]
            rows.append({"setting": f"{_setting(run, epochs_key)} — {label}", "ours": s.get(key), "paper": paper, "ref": ref,
                         "unit": "top-1 %",
                         "note": None if imagenet else "paper reports ImageNet only (see rows below)"})
    for (net, method), (top1, _, ref) in IMAGENET_ACCURACY.items():
        rows.append({"setting": f"ImageNet, {net} — {method}", "ours": None, "paper": top1, "ref": ref,
                     "unit": "top-1 %", "note": "reference: needs the paper preset (GPU)"})
    return rows


def _speed_figure(bench: dict, out: Path, foot: str) -> Path:
    bars = []
    for r in bench["gemm"]:
        if r["threads"] == 1:
            bars.append((f"GEMM\n{ {'native': 'AVX-512', 'avx2': 'AVX2', 'scalar': 'scalar'}.get(r['isa'], r['isa'])}",
                         r["ratio"]))
    for r in bench["conv_layers"]:
        if r["threads"] == 1 and r["batch"] == 64:
            bars.append((r["layer"].replace("ResNet-20 3x3 conv ", "conv ").replace(" @ ", "\n@"), r["ratio"]))
    for r in bench["whole_models"]:
        if r["threads"] == 1:
            bars.append((f"{r['model'].split(' (')[0]}\nbatch {r['batch']}", r["ratio"]))
    claim, claim_ref = CLAIMS["conv_speedup_x"]
    fig, ax = slide_figure()
    ax.bar(range(len(bars)), [b[1] for b in bars], color="C0", label="measured: fp32 time / packed time (1 thread)")
    ax.axhline(claim, color="C1", ls="--", label=f"paper: {claim}× fewer high-precision ops ({claim_ref}; counted)")
    ax.axhline(1, color="grey", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=11)
    ax.set(ylabel="speed-up over torch fp32 (×)", title="XNOR-popcount kernel vs fp32 on this CPU")
    ax.legend(fontsize=12, loc="center right")
    png, _ = save_figure(fig, out, "speed", footer=foot)
    return png


def _size_tables(sizes: dict, out: Path) -> tuple[str, list, list]:
    """Per-model memory table (sign bits and alpha apart, everything counted) and a per-layer file."""
    header = ["Model", "Mode", "Binarized layers", "fp32 weights (B)", "Sign bits (B)", "α (B)",
              "Ratio (sign bits + α)", "Ratio (sign bits only)", "Per-layer ratio", "Whole file fp32 (B)",
              "Whole file packed (B)", "Whole-file ratio"]
    rows = [[m["model"], m["mode"].upper(), m["binarized_layers"], m["fp32_weight_bytes"], m["sign_bytes"],
             m["alpha_bytes"], f"{m['binarized_ratio']:.2f}×", f"{m['binarized_ratio_sign_bits_only']:.2f}×",
             f"{m['layer_ratio_min']:.1f}–{m['layer_ratio_max']:.1f}×", m["fp32_file_bytes"], m["packed_file_bytes"],
             f"{m['file_ratio']:.1f}×"] for m in sizes["models"]]
    layer_header = ["Model", "Mode", "Layer", "Shape", "n (weights per filter)", "fp32 weight (B)", "Sign bits (B)",
                    "α (B)", "Ratio", "Bound 32n/(n+32)"]
    layer_rows = [[m["model"], m["mode"].upper(), r["layer"], "×".join(map(str, r["shape"])), r["filter_weights"],
                   r["fp32_weight_bytes"], r["sign_bytes"], r["alpha_bytes"], f"{r['ratio']:.2f}×",
                   f"{r['bound']:.2f}×"] for m in sizes["models"] for r in m["layers"]]
    (out / "memory_layers.md").write_text(markdown_table(layer_header, layer_rows) + "\n")
    with open(out / "memory_layers.csv", "w", newline="") as f:
        csv.writer(f).writerows([layer_header] + layer_rows)
    return markdown_table(header, rows), header, rows


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
        for tag, label in (("float", "float twin (fp32)"), ("bwn", "BWN (binary weights)"),
                           ("xnor", "XNOR-Net (binary weights and inputs)")):
            pts = [(m["epoch"], m["test_top1"]) for m in run["metrics"] if m["tag"] == tag]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set(xlabel="epoch", ylabel="test top-1 (%)", title=f"FP vs BWN vs XNOR — {s['dataset']}, {s['arch']}")
        ax.legend()
        name = f"curves_{s['preset']}"
        png, _ = save_figure(fig, out, name, footer=foot)
        figures.append((f"Test accuracy per epoch — {s['preset']} preset", png))
        written[name] = png

    md_acc = comparison_table(_accuracy_rows(runs), out, "accuracy")
    with open(out / "accuracy.csv", newline="") as f:
        acc_csv = list(csv.reader(f))
    mem_header = ["Preset", "Params", "fp32 file (B)", "XNOR packed file (B)", "Ratio (whole model)",
                  "Binarized layers fp32 (B)", "Binarized layers sign bits + α (B)", "Ratio (binarized layers)"]
    mem_rows = [[r["summary"]["preset"], r["summary"]["params"],
                 r["summary"].get("fp32_size_bytes",
                                  round(r["summary"]["size_bytes"] * r["summary"]["compression_ratio"])),
                 r["summary"]["size_bytes"],
                 f"{r['summary']['compression_ratio']:.1f}×", r["summary"]["binary_layers_fp32_bytes"],
                 r["summary"]["binary_layers_packed_bytes"], f"{r['summary']['binary_layers_ratio']:.1f}×"]
                for r in runs]
    md_mem = markdown_table(mem_header, mem_rows)
    md_sizes = ""
    if SIZES.is_file():
        md_sizes, size_header, size_rows = _size_tables(json.loads(SIZES.read_text()), out)
        written["memory_layers"] = out / "memory_layers.md"
    (out / "memory.md").write_text(md_mem + "\n" + (f"\n{md_sizes}\n" if md_sizes else ""))
    written["accuracy"], written["memory"] = out / "accuracy.md", out / "memory.md"

    last = runs[-1]["summary"]
    tables = [("Top-1: ours vs the paper", acc_csv[0], acc_csv[1:]), ("Memory of the trained artifacts", mem_header,
                                                                       mem_rows)]
    if md_sizes:
        tables.append(("Memory per builder: sign bits and α apart, everything counted (xnor_size.json)",
                       size_header, size_rows))
    md_speed = ""
    if BENCH.is_file():
        bench = json.loads(BENCH.read_text())
        m = bench["machine"]
        foot = footer_text("benchmark", f"{m['cpu']}, {m['cpu_count']} cores", m["commit"], dirty=m["dirty"])
        written["speed"] = _speed_figure(bench, out, foot)
        figures.insert(0, ("Measured speed of the packed path vs fp32 (benchmarks/xnor_gemm.py)", written["speed"]))
        sp_header = ["What", "Batch", "Threads", "fp32 (ms)", "XNOR packed (ms)", "Speed-up"]
        sp_rows = [[f"GEMM M=N=1024, K=4096 bits ({r['isa']})", "—", r["threads"], round(r["fp32_ms"], 3),
                    round(r["binary_ms"], 3), f"{r['ratio']:.1f}×"] for r in bench["gemm"]]
        sp_rows += [[r["layer"], r["batch"], r["threads"], round(r["fp32_ms"], 3), round(r["xnor_packed_ms"], 3),
                     f"{r['ratio']:.2f}×"] for r in bench["conv_layers"]]
        sp_rows += [[r["model"], r["batch"], r["threads"], round(r["fp32_ms"], 3), round(r["xnor_packed_ms"], 3),
                     f"{r['ratio']:.2f}×"] for r in bench["whole_models"]]
        md_speed = markdown_table(sp_header, sp_rows)
        (out / "speed.md").write_text(md_speed + "\n")
        written["speed_table"] = out / "speed.md"
        tables.append(("Measured speed (median of repeats; shared, loaded machine)", sp_header, sp_rows))
    written["deck"] = build_deck(
        out / "xnor_deck.pptx", title="XNOR-Net and Binary-Weight-Networks",
        subtitle="Rastegari, Ordonez, Redmon, Farhadi — ECCV 2016", idea=IDEA, equation_map=EQUATION_MAP,
        tables=tables, figures=figures,
        footer=summary_footer(last))
    if default_out:
        block = f"{md_acc}\n\nTrained artifacts (approved runs):\n\n{md_mem}"
        if md_sizes:
            block += (f"\n\nEvery builder, randomly initialised ({SIZES.name}; per layer: results/memory_layers.md):"
                      f"\n\n{md_sizes}")
        block += f"\n\nMeasured speed ({BENCH.name}):\n\n{md_speed}" if md_speed else ""
        update_readme_block(README, "results", block)
    return written


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
