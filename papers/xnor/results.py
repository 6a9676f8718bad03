"""Figures, tables and deck of the XNOR-Net package from its approved runs and the kernel benchmarks.

``python -m papers.xnor.results`` rebuilds everything from ``papers/xnor/results/runs/``,
``benchmarks/results/xnor_gemm.json`` and ``benchmarks/results/xnor_size.json`` (no training); ``--run`` first
trains and approves the runs of the grid that have none; ``--out-dir DIR`` writes elsewhere than
``papers/xnor/results/``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from common.deck import (Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, file_source, mean_sd,
                         paper_source, runs_source, same_direction)
from common.paths import REPO_ROOT
from common.report import (bar_labels, fmt_mib, fmt_ratio, markdown_table, reference_line, save_figure,
                           slide_figure, update_readme_block, write_csv)
from common.results import approve, load_approved, results_cli, results_target
from papers.xnor.config import PRESETS
from papers.xnor.paper_numbers import CIFAR10_ERROR, CLAIMS, IMAGENET_ACCURACY

PAPER = "xnor"
# (preset, overrides): the runs `--run` makes when missing; the paper preset (ImageNet, GPU) is not in it
GRID = (("quick", {}), ("mnist_lenet5", {}), ("cifar10_resnet20_cpu", {}), ("cifar10_bnnconv_cpu", {}),
        ("cifar10_resnet20", {"method": "bwn"}), ("cifar10_resnet20", {"method": "xnor"}))
README = Path(__file__).with_name("README.md")
BENCH = REPO_ROOT / "benchmarks" / "results" / "xnor_gemm.json"
SIZES = REPO_ROOT / "benchmarks" / "results" / "xnor_size.json"
TITLE = "XNOR-Net and Binary-Weight-Networks"
CITATION = "Rastegari, Ordonez, Redmon, Farhadi — ECCV 2016 (arXiv 1603.05279 v4)"
STUDY = "cifar10_resnet20"
METHOD_OF = {"bwn": "BWN", "xnor": "XNOR-Net"}

IDEA = [
    "BWN: a real filter W becomes α·sign(W) with α = mean|W|, the least-squares optimum (Eq. 2–6): 1 bit per "
    "weight plus one scale per filter.",
    "XNOR-Net binarizes the layer's input too; a map K (channel mean of |I|, averaged over each k×k window, Fig. 2) "
    "restores its magnitude, so a convolution becomes XNOR + popcount scaled by K·α (Eq. 11).",
    "Training keeps real weights: sign's gradient is 1_{|r|≤1}; blocks are reordered BN → BinActiv → BinConv → Pool "
    "(Fig. 3); the first and last layers stay real.",
    "Here the packed model runs on 64-bit XNOR-popcount kernels (C) and predicts exactly what the simulated model "
    "predicts; its file is the artifact we measure.",
]
FORMULAS = [
    Formula("Eq. (6)", r"$B^* = \mathrm{sign}(W),\quad \alpha^* = \frac{1}{n}\Vert W\Vert_{\ell 1}$",
            "papers/xnor/xnor.py: binarize, bwn_alpha"),
    Formula("Eq. (1)", r"$I * W \approx (I \oplus B)\,\alpha$", "papers/xnor/xnor.py: BwnConv2d.forward"),
    Formula("Sec. 3.1", r"$\frac{\partial C}{\partial W_i} = \frac{\partial C}{\partial \widetilde{W}_i}"
            r"\left(\frac{1}{n} + \frac{\partial \mathrm{sign}}{\partial W_i}\,\alpha\right)$",
            "papers/xnor/xnor.py: WeightSignSTE.backward", note="sign's gradient: 1 where |r| ≤ 1 (SignSTE)"),
    Formula("Eq. (10)", r"$\beta^* = \frac{1}{n}\Vert X\Vert_{\ell 1}$", "papers/xnor/xnor.py: input_beta"),
    Formula("Fig. 2", r"$A = \frac{1}{c}\sum_i |I_{i,:,:}|,\quad K = A * k,\ k_{ij} = \frac{1}{w h}$",
            "papers/xnor/xnor.py: scaling_map_k"),
    Formula("Eq. (11)", r"$I * W \approx (\mathrm{sign}(I) \circledast \mathrm{sign}(W)) \odot K\alpha$",
            "papers/xnor/xnor.py: XnorConv2d.forward; kernel.py: xnor_conv2d"),
]


def run_missing(grid=GRID) -> None:
    """Train and approve each run of ``grid`` (preset + overrides) that has no approved run yet."""
    from papers.xnor.train import main

    have = {(r.summary.preset, r.config.get("method") if r.summary.setting else None) for r in load_approved(PAPER)}
    for preset, over in grid:
        cfg = dataclasses.replace(PRESETS[preset], **over)
        if (preset, over.get("method")) not in have:
            print(f"approved {approve(main(cfg).run_dir)}")


# ------------------------------------------------------------------------------------------------ selections

def _rows(runs) -> list[tuple]:
    """(run, row) for every typed row of every approved run."""
    return [(run, row) for run in runs for row in run.rows()]


def _values(pairs, method: str) -> list[float]:
    return [row.value for _, row in pairs if row.method == method]


def _study(runs):
    return [(r, row) for r, row in _rows(runs) if row.setting == STUDY]


def _lr_edge_gaps(runs) -> list[str]:
    """A study row whose validation pilots chose the largest LR of its grid (a larger one was not tried)."""
    return [f"Study {row.method}, seed {row.seed}: the validation pilots chose the grid's largest LR "
            f"({row.extra['lr']:g}); a larger one was not tried." for _, row in _study(runs)
            if row.extra.get("lr") == max(row.extra.get("lr_grid") or [None])]


def _preset(runs, preset: str):
    return [(r, row) for r, row in _rows(runs) if row.preset == preset and row.setting is None]


def _src(pairs) -> Source | None:
    seen, out = set(), []
    for run, _ in pairs:
        if run.dir not in seen:
            seen.add(run.dir)
            out.append(run)
    return runs_source(out) if out else None


# ------------------------------------------------------------------------------------------------ headline

def _headline(runs, bench: dict | None) -> tuple[list[str], list[list[str]], Source]:
    header = ["Claim (paper ref.)", "Paper", "Ours", "Ours: setting", "Same direction?"]
    rows: list[list[str]] = []
    conv = _preset(runs, "cifar10_bnnconv_cpu")
    err = {m: [100 - v for v in _values(conv, m)] for m in ("BWN", "XNOR-Net")}
    for m in ("BWN", "XNOR-Net"):
        paper, ref = CIFAR10_ERROR[("bnnconv", m)]
        rows.append([f"CIFAR-10 ConvNet, {m} test error % ({ref.split(',')[0]})", f"{paper:.2f}", mean_sd(err[m]),
                     "bnnconv, CPU budget (3k images, 2 ep.)", "—"])
    if err["BWN"] and err["XNOR-Net"]:
        ours = statistics.mean(err["XNOR-Net"]) - statistics.mean(err["BWN"])
        paper = CIFAR10_ERROR[("bnnconv", "XNOR-Net")][0] - CIFAR10_ERROR[("bnnconv", "BWN")][0]
        rows.append(["XNOR-Net errs more than BWN (Sec. 4.2)", f"{paper:+.2f} pts", f"{ours:+.2f} pts",
                     "the same two runs", same_direction(ours, paper)])
    study = _study(runs)
    fp = [row.fp_value for _, row in study if row.fp_value is not None]
    for m, net_ref in (("BWN", "Table 1"), ("XNOR-Net", "Table 1")):
        vals = _values(study, m)
        paper = IMAGENET_ACCURACY[("AlexNet", m)][0] - IMAGENET_ACCURACY[("AlexNet", "full precision")][0]
        if vals and fp:
            ours = statistics.mean(vals) - fp[0]
            rows.append([f"{m} top-1 minus float (AlexNet, {net_ref})", f"{paper:+.1f} pts", f"{ours:+.2f} pts",
                         "ResNet-20, CIFAR-10 study setting", same_direction(ours, paper, tol=0.5)])
        else:
            rows.append([f"{m} top-1 minus float (AlexNet, {net_ref})", f"{paper:+.1f} pts", "—",
                         "study run not approved yet", "—"])
    ratios = [row.extra.get("binary_layers_ratio") for _, row in study if row.extra.get("binary_layers_ratio")]
    claim, ref = CLAIMS["memory_saving_x"]
    rows.append([f"Memory of binarized layers ({ref.split('; ')[-1]})", f"~{claim}×",
                 mean_sd(ratios, 1).replace(" (n=", "× (n=") if ratios else "—",
                 "ResNet-20 file: sign bits + α", "—"])
    sources = [_src(conv), _src(study), paper_source(PAPER, "Sec. 4.1, 4.2; Table 1")]
    if bench:
        best = max(r["ratio"] for r in bench["conv_layers"] if r["threads"] == 1)
        claim, _ = CLAIMS["conv_speedup_x"]
        rows.append([f"One conv. faster than fp32 (Sec. 4.1; {CLAIMS['conv_speedup_theory_x'][0]}× in theory)",
                     f"{claim}×", fmt_ratio(best), "best ResNet-20 conv, 1 thread (vs torch fp32)", "—"])
        sources.append(file_source(BENCH))
    return header, rows, combine(*sources)


# ------------------------------------------------------------------------------------------------ figures

def _cifar_convnet_figure(runs, out: Path) -> Path | None:
    conv = _preset(runs, "cifar10_bnnconv_cpu")
    if not conv:
        return None
    fig, axes = slide_figure(1, 2, sharey=True)
    tops = []
    for ax, m in zip(axes, ("BWN", "XNOR-Net")):
        errs = [100 - v for v in _values(conv, m)]
        bars = ax.bar([f"ours, {m}\n(CPU budget)"], [statistics.mean(errs)], color="C0")
        bar_labels(ax, bars, "{:.2f}%")
        tops.append(statistics.mean(errs))
        ax.set_title(m)
    axes[0].set_ylim(0, max(tops + [CIFAR10_ERROR[("bnnconv", "XNOR-Net")][0]]) * 1.25)
    for ax, m in zip(axes, ("BWN", "XNOR-Net")):
        paper, ref = CIFAR10_ERROR[("bnnconv", m)]
        reference_line(ax, paper, f"paper {paper:.2f}%", ref="Sec. 4.2", loc="right")
    axes[0].set_ylabel("test error (%)")
    fig.suptitle("CIFAR-10 ConvNet (Sec. 4.2): ours on a CPU budget vs the paper")
    png, _ = save_figure(fig, out, "cifar10_convnet_error", footer=_src(conv).footer)
    return png


def _study_figure(runs, out: Path) -> Path | None:
    study = _study(runs)
    if not study:
        return None
    fp = [row.fp_value for _, row in study if row.fp_value is not None]
    labels, vals = [], []
    if fp:
        labels.append("float reference\n(same recipe)")
        vals.append(fp[0])
    for m, bits in (("BWN", "W1A32"), ("XNOR-Net", "W1A1")):
        v = _values(study, m)
        if v:
            labels.append(f"{m}\n{bits}")
            vals.append(statistics.mean(v))
    fig, ax = slide_figure()
    bars = ax.bar(labels, vals, color=(["C7"] if fp else []) + ["C0", "C1"][:len(vals) - bool(fp)])
    ax.set_ylim(0, 100)
    bar_labels(ax, bars, "{:.2f}%")
    ax.set(ylabel="test top-1 (%)", title="Study setting: ResNet-20 on CIFAR-10 (JPEG q75), 1,400 steps from float")
    png, _ = save_figure(fig, out, "study_cifar10_resnet20", footer=_src(study).footer)
    return png


def _memory_figure(runs, out: Path) -> Path | None:
    pairs = [(r, row) for r, row in _rows(runs) if row.extra.get("binary_layers_ratio") and not row.dry_run]
    if not pairs:
        return None
    labels = [f"{row.method}\n{row.setting or row.preset}".replace("cifar10_", "") for _, row in pairs]
    fig, ax = slide_figure()
    bars = ax.bar(labels, [row.extra["binary_layers_ratio"] for _, row in pairs], color="C0")
    bar_labels(ax, bars, fmt_ratio)
    reference_line(ax, CLAIMS["memory_saving_x"][0], "paper: ~32×", ref=CLAIMS["memory_saving_x"][1], loc="left")
    ax.set_ylim(0, 40)
    ax.tick_params(axis="x", labelsize=11)
    ax.set(ylabel="fp32 weights / (sign bits + α)", title="Binarized layers in the artifact file: bytes saved")
    png, _ = save_figure(fig, out, "memory_ratio", footer=_src(pairs).footer)
    return png


def _size_figure(runs, out: Path) -> Path | None:
    study = _study(runs)
    if not study:
        return None
    labels = ["fp32 file"] + [f"{row.method} artifact" for _, row in study]
    fp32 = study[0][1].size_bytes * study[0][1].compression_ratio
    sizes = [fp32] + [row.size_bytes for _, row in study]
    fig, ax = slide_figure()
    bars = ax.bar(labels, [s / 2**20 for s in sizes], color=["C7"] + ["C0"] * len(study))
    bar_labels(ax, bars, values=sizes, fmt=fmt_mib)
    ax.set(ylabel="file size (MiB)", title="ResNet-20: the real files (first conv, last linear and BN stay fp32)")
    png, _ = save_figure(fig, out, "size_study", footer=_src(study).footer)
    return png


def _speed_figure(bench: dict, out: Path) -> Path:
    bars = []
    for r in bench["gemm"]:
        if r["threads"] == 1:
            isa = {"native": "AVX-512", "avx2": "AVX2", "scalar": "scalar"}.get(r["isa"], r["isa"])
            bars.append((f"GEMM\n{isa}", r["ratio"]))
    for r in bench["conv_layers"]:
        if r["threads"] == 1 and r["batch"] == 64:
            bars.append((r["layer"].replace("ResNet-20 3x3 conv ", "conv ").replace(" @ ", "\n@"), r["ratio"]))
    for r in bench["whole_models"]:
        if r["threads"] == 1:
            bars.append((f"{r['model'].split(' (')[0]}\nbatch {r['batch']}", r["ratio"]))
    fig, ax = slide_figure()
    drawn = ax.bar(range(len(bars)), [b[1] for b in bars], color="C0")
    ax.set_yscale("log")
    ax.set_ylim(0.5, 150)
    bar_labels(ax, drawn, fmt_ratio)
    reference_line(ax, CLAIMS["conv_speedup_x"][0], "paper: 58×, one conv. in its CPU code", ref="Sec. 4.1",
                   loc="left")
    ax.axhline(1, color="grey", lw=1)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=11)
    ax.set(ylabel="fp32 time / packed time (×, log)", title="Measured: XNOR-popcount vs torch fp32, 1 thread")
    png, _ = save_figure(fig, out, "speed", footer=file_source(BENCH).footer)
    return png


def _curves(run, out: Path) -> Path | None:
    s = run.summary
    fig, ax = slide_figure()
    drawn = False
    for tag, label in (("float", "float twin"), ("bwn", "BWN"), ("xnor", "XNOR-Net")):
        pts = [(m.get("step") or m["epoch"], m.get("val_top1", m.get("test_top1"))) for m in run.metrics
               if m.get("tag") == tag and m.get("val_top1", m.get("test_top1")) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
            drawn = True
    if not drawn:
        return None
    split = "validation" if any("val_top1" in m for m in run.metrics) else "test (first schema: no validation split)"
    xlab = "optimizer step" if any("step" in m for m in run.metrics) else "epoch"
    ax.set(xlabel=xlab, ylabel=f"{split.split(' ')[0]} top-1 (%)", title=f"{s.preset}: {split} top-1 while training")
    ax.legend()
    name = f"curves_{s.preset}" + (f"_{run.config.get('method')}" if s.setting else "")
    png, _ = save_figure(fig, out, name, footer=runs_source([run]).footer)
    return png


# ------------------------------------------------------------------------------------------------ tables

def _runs_table(runs) -> tuple[list[str], list[list]]:
    header = ["Preset", "Method", "Data", "W/A", "Test top-1 %", "Float ref. %", "File", "× vs fp32 file",
              "Stored (model_bits)"]
    rows = []
    for _, row in _rows(runs):
        rows.append([row.preset + (" (study)" if row.setting else ""), row.method, row.dataset,
                     f"{row.w_bits:g}/{row.a_bits or 32}", f"{row.value:.2f}",
                     "—" if row.fp_value is None else f"{row.fp_value:.2f}", fmt_mib(row.size_bytes),
                     fmt_ratio(row.compression_ratio), fmt_mib(row.model_bits / 8)])
    return header, rows


def _layer_table(sizes: dict) -> tuple[list[str], list[list]]:
    header = ["Model", "Mode", "Layer", "Shape", "n per filter", "fp32 (B)", "Signs (B)", "α (B)", "Ratio",
              "Bound 32n/(n+32)"]
    rows = [[m["model"], m["mode"].upper(), r["layer"], "×".join(map(str, r["shape"])), r["filter_weights"],
             r["fp32_weight_bytes"], r["sign_bytes"], r["alpha_bytes"], fmt_ratio(r["ratio"]), fmt_ratio(r["bound"])]
            for m in sizes["models"] for r in m["layers"]]
    return header, rows


def _speed_table(bench: dict) -> tuple[list[str], list[list]]:
    header = ["What", "Batch", "Threads", "fp32 (ms)", "Packed (ms)", "Speed-up"]
    rows = [[f"GEMM 1024×1024×4096 bits ({r['isa']})", "—", r["threads"], f"{r['fp32_ms']:.3f}",
             f"{r['binary_ms']:.3f}", fmt_ratio(r["ratio"])] for r in bench["gemm"]]
    rows += [[r["layer"], r["batch"], r["threads"], f"{r['fp32_ms']:.3f}", f"{r['xnor_packed_ms']:.3f}",
              fmt_ratio(r["ratio"])] for r in bench["conv_layers"]]
    rows += [[r["model"], r["batch"], r["threads"], f"{r['fp32_ms']:.3f}", f"{r['xnor_packed_ms']:.3f}",
              fmt_ratio(r["ratio"])] for r in bench["whole_models"]]
    return header, rows


# ------------------------------------------------------------------------------------------------ build

DEVIATIONS = [
    "Data: CIFAR-10 is our JPEG q75 copy (labelled so); the ImageNet paper preset needs a GPU and has no run.",
    "CIFAR-10 ConvNet: 3,000 training images, 2 epochs per net, 2,000 test images (a CPU budget), not the paper's "
    "full training: its error is far above 9.88 / 10.17%.",
    "Study runs fine-tune the shared float ResNet-20 for 1,400 steps (the paper trains from scratch); LR chosen on "
    "the validation split; BWN with SGD (momentum 0.9), XNOR-Net with Adam, as Sec. 4.2.",
    "The paper's own presets train all three nets with Adam and a per-epoch cosine (Sec. 4.2: SGD for BWN).",
    "sign(0) = +1: the paper's rule for weights (Sec. 3.1); for inputs it does not say, we use the same rule.",
    "Speed: measured wall-clock of our C kernel against torch fp32; the paper's 58× is one convolution of its "
    "own CPU code (62.27× counted, Sec. 4.1).",
]
KNOWN_GAPS = [
    "No ImageNet number (Tables 1–2): the paper preset only dry-runs here.",
    "One seed per run; no spread yet.",
    "Packed convolutions pay a border correction for zero padding (the float path pads sign(I) with 0).",
]


def _takeaways(runs) -> list[str]:
    out = ["1 bit per weight: the binarized layers of the artifacts are "
           + ", ".join(sorted({fmt_ratio(row.extra["binary_layers_ratio"]) for _, row in _rows(runs)
                               if row.extra.get("binary_layers_ratio")}))
           + " smaller than fp32; the one fp32 α per filter keeps short filters below 32×."]
    study = _study(runs)
    fp = [row.fp_value for _, row in study if row.fp_value is not None]
    b, x = _values(study, "BWN"), _values(study, "XNOR-Net")
    if b and x and fp:
        out.append(f"On the study setting, BWN reaches {b[0]:.1f}% top-1 against the float {fp[0]:.1f}%; binarizing "
                   f"the inputs too (XNOR-Net) costs much more: {x[0]:.1f}%.")
    out.append("The packed models predict exactly what the simulated ones predict; the measured speed-up of the "
               "whole ResNet-20 is far below 58×, since first/last layers, BN and memory traffic stay.")
    return out


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs, out, default_out = results_target(PAPER, out_dir)
    bench = json.loads(BENCH.read_text()) if BENCH.is_file() else None
    written: dict[str, Path] = {}

    header, rows, head_src = _headline(runs, bench)
    md_head = markdown_table(header, rows)
    (out / "headline.md").write_text(md_head + "\n")
    write_csv(out / "headline.csv", header, rows)
    written["headline"] = out / "headline.md"

    figures: list[Figure] = []
    for name, maker, title in (("cifar10_convnet_error", _cifar_convnet_figure, "CIFAR-10 ConvNet: paper vs ours"),
                               ("study_cifar10_resnet20", _study_figure, "Study setting: BWN and XNOR-Net"),
                               ("size_study", _size_figure, "The real files: fp32 vs 1-bit artifacts"),
                               ("memory_ratio", _memory_figure, "Binarized layers: ~32× smaller, α counted")):
        png = maker(runs, out)
        if png:
            written[name] = png
            figures.append(Figure(title, png, _figure_source(name, runs),
                                  notes=f"Made by papers/xnor/results.py from papers/xnor/results/runs/ ({png.name})."))
    if bench:
        written["speed"] = _speed_figure(bench, out)
        figures.append(Figure("Measured speed of the packed path", written["speed"], file_source(BENCH)))

    appendix: list = []
    rh, rr = _runs_table(runs)
    (out / "runs.md").write_text(markdown_table(rh, rr) + "\n")
    write_csv(out / "runs.csv", rh, rr)
    written["runs"] = out / "runs.md"
    appendix.append(Table("Every approved run (quick = CPU minutes, not paper scale)", rh, rr, runs_source(runs),
                          legend="File: the artifact; stored: model_bits / 8, the representation without file "
                                 "overhead"))
    for run in runs:
        png = _curves(run, out)
        if png:
            written[png.stem] = png
            appendix.append(Figure(f"Training curve: {png.stem.removeprefix('curves_')}", png, runs_source([run])))
    if SIZES.is_file():
        lh, lr = _layer_table(json.loads(SIZES.read_text()))
        (out / "memory_layers.md").write_text(markdown_table(lh, lr) + "\n")
        write_csv(out / "memory_layers.csv", lh, lr)
        written["memory_layers"] = out / "memory_layers.md"
        shown = [r for r in lr if r[1] == "XNOR" and r[0].startswith(("ResNet-20", "BNN-paper", "ResNet-18"))]
        appendix.append(Table("Per binarized layer (XNOR): signs and α apart", lh, shown, file_source(SIZES),
                              legend="every builder and mode: results/memory_layers.md"))
    if bench:
        sh, sr = _speed_table(bench)
        (out / "speed.md").write_text(markdown_table(sh, sr) + "\n")
        written["speed_table"] = out / "speed.md"
        appendix.append(Table("Measured speed (median of repeats)", sh, sr, file_source(BENCH)))

    cite = Source(CITATION, ("papers/xnor/paper_numbers.py",))
    written["deck"] = build_paper_deck(
        out / "xnor_deck.pptx", title=TITLE, subtitle=CITATION,
        idea=Bullets("The idea", IDEA, cite), idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours", header, rows, head_src,
                       legend="pts: percentage points; same direction: our change has the paper's sign"),
        figures=figures,
        deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", KNOWN_GAPS + _lr_edge_gaps(runs), cite),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(runs)),
        appendix=appendix)
    if default_out:
        block = md_head
        if "study_cifar10_resnet20" in written:
            block += "\n\n![study setting](results/study_cifar10_resnet20.png)"
        block += "\n\nEvery approved run:\n\n" + markdown_table(rh, rr)
        update_readme_block(README, "results", block)
    return written


def _figure_source(name: str, runs) -> Source:
    if name == "cifar10_convnet_error":
        return combine(_src(_preset(runs, "cifar10_bnnconv_cpu")), paper_source(PAPER, "Sec. 4.2"))
    if name in ("study_cifar10_resnet20", "size_study"):
        return _src(_study(runs))
    return combine(_src([(r, row) for r, row in _rows(runs) if row.extra.get("binary_layers_ratio")]),
                   paper_source(PAPER, "Sec. 3.1"))


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=[f"{p} {o}".strip(" {}") for p, o in GRID], argv=argv)


if __name__ == "__main__":
    cli()
