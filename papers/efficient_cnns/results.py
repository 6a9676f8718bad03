"""Tables, figures and deck of the efficient-CNN package.

``python -m papers.efficient_cnns.results`` rebuilds them (no training): the parameter / multiply-add table of every
architecture beside the papers' tables (counted here from the networks, MACs by torch's FLOP counter), the
width-multiplier curves, the papers' ImageNet accuracy against the multiply-adds we count, the approved runs'
accuracy against their MACs and measured latency, and the deck. ``--run`` first trains and approves the presets of
the grid that have no approved run; ``--out-dir DIR`` writes elsewhere than ``papers/efficient_cnns/results/``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from common.deck import (Bullets, Figure, Formula, Source, Table, build_paper_deck, combine, file_source,
                         runs_source)
from common.report import PALETTE, markdown_table, save_figure, slide_figure, update_readme_block, write_csv
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from papers.efficient_cnns.config import PRESETS
from papers.efficient_cnns.models import build as build_model
from papers.efficient_cnns.models import cost
from papers.efficient_cnns.paper_numbers import PAPER as PAPER_ROWS
from papers.efficient_cnns.paper_numbers import SOURCES
from papers.efficient_cnns.train import main, method_name

PAPER = "efficient_cnns"
GRID = ("quick",)  # presets run by --run on a CPU; the CIFAR-10 presets and the paper preset are run by hand
README = Path(__file__).with_name("README.md")
TITLE = "Efficient CNN architectures: MobileNet v1/v2, ShuffleNet v1/v2, SqueezeNet, SqueezeNext"
CITATION = "Howard 2017 · Sandler CVPR'18 · Zhang CVPR'18 · Ma ECCV'18 · Iandola 2016 · Gholami CVPR-W'18"
CODE = "papers/efficient_cnns"

# (arch, width, variant, input size, key in paper_numbers.PAPER or None): the rows of the params/MACs table.
TABLE_ROWS = [
    *[("mobilenet_v1", a, None, 224, ("mobilenet_v1", str(a), 224)) for a in (1.0, 0.75, 0.5, 0.25)],
    *[("mobilenet_v1", 1.0, None, r, ("mobilenet_v1", "1.0", r)) for r in (192, 160, 128)],
    ("mobilenet_v1", 0.5, None, 160, ("mobilenet_v1", "0.5", 160)),
    ("mobilenet_v2", 1.0, None, 224, ("mobilenet_v2", "1.0", 224)),
    ("mobilenet_v2", 1.4, None, 224, ("mobilenet_v2", "1.4", 224)),
    *[("shufflenet_v1", 1.0, f"g{g}", 224, ("shufflenet_v1", f"1.0x g{g}", 224)) for g in (1, 2, 3, 4, 8)],
    ("shufflenet_v1", 0.5, "g3", 224, ("shufflenet_v1", "0.5x g3", 224)),
    ("shufflenet_v1", 1.5, "g3", 224, ("shufflenet_v1", "1.5x g3", 224)),
    ("shufflenet_v1", 2.0, "g3", 224, ("shufflenet_v1", "2.0x g3", 224)),
    *[("shufflenet_v2", w, None, 224, ("shufflenet_v2", f"{w}x", 224)) for w in (0.5, 1.0, 1.5, 2.0)],
    ("squeezenet", 1.0, "1.0", 224, ("squeezenet", "1.0", 224)),
    ("squeezenet", 1.0, "1.1", 224, None),
    ("squeezenet", 1.0, "1.0+complex", 224, None),
    *[("squeezenext", w, "23", 227, None) for w in (1.0, 1.5, 2.0)],
    ("squeezenext", 1.0, "23v5", 227, None),
]
HEADLINE = [("mobilenet_v1", 1.0, None, 224), ("mobilenet_v2", 1.0, None, 224), ("shufflenet_v1", 1.0, "g3", 224),
            ("shufflenet_v2", 1.0, None, 224), ("squeezenet", 1.0, "1.0", 224), ("squeezenext", 1.0, "23", 227)]
FAMILIES = [("mobilenet_v1", None, (0.25, 0.5, 0.75, 1.0, 1.25)), ("mobilenet_v2", None, (0.35, 0.5, 0.75, 1.0, 1.4)),
            ("shufflenet_v1", "g3", (0.25, 0.5, 1.0, 1.5, 2.0)), ("shufflenet_v2", None, (0.5, 1.0, 1.5, 2.0)),
            ("squeezenext", "23", (1.0, 1.5, 2.0))]

IDEA = [
    "MobileNet: a 3×3 conv becomes a depthwise 3×3 (one filter per channel) plus a 1×1 pointwise conv — "
    "1/N + 1/9 of the multiply-adds; α thins every layer, ρ shrinks the input.",
    "MobileNetV2: inverted residuals — expand a thin bottleneck ×6 with 1×1, filter depthwise, project back "
    "linearly (no ReLU on the thin tensor); shortcuts join the thin ends.",
    "ShuffleNet: the 1×1 convs become group convs; a channel shuffle lets the groups talk. "
    "ShuffleNet V2: FLOPs do not predict speed — channel split, equal widths, no groups, concat instead of add.",
    "SqueezeNet: Fire modules (1×1 squeeze, then 1×1 + 3×3 expand), late downsampling, no FC: AlexNet accuracy "
    "with 1.2 M parameters. SqueezeNext: two-stage squeeze, 3×1 + 1×3 separable convs, residual adds.",
]
FORMULAS = [
    Formula("MobileNets Eq. (5)", r"$\frac{D_K^2 M D_F^2 + M N D_F^2}{D_K^2 M N D_F^2} = \frac{1}{N} + \frac{1}{D_K^2}$",
            f"{CODE}/mobilenet_v1.py: DepthwiseSeparable", "checked with torch's FLOP counter (tests)"),
    Formula("MobileNets Eq. (7)", r"$D_K^2\,\alpha M\,(\rho D_F)^2 + \alpha M\,\alpha N\,(\rho D_F)^2$",
            f"{CODE}/mobilenet_v1.py: MobileNetV1(alpha); input size = 224ρ"),
    Formula("MobileNetV2 Sec. 3.4", r"$h \cdot w \cdot d' \cdot t\,(d' + k^2 + d'')$",
            f"{CODE}/mobilenet_v2.py: InvertedResidual", "multiply-adds of one stride-1 block"),
    Formula("ShuffleNet Sec. 3.2", r"$hw\,(2cm/g + 9m)$", f"{CODE}/shufflenet_v1.py: ShuffleUnit",
            "vs ResNet's hw(2cm + 9m²)"),
    Formula("ShuffleNet Fig. 1", r"$(g, n) \rightarrow (n, g)$: out $kg + j$ $\leftarrow$ in $jn + k$",
            f"{CODE}/shufflenet_v1.py: channel_shuffle", "inverse: shuffle with n groups"),
]
DEVIATIONS = [
    "CIFAR-size variants (ours): stride-1 stems, no first max-pool, MobileNetV2's 24-channel stage at stride 1.",
    "MobileNet v1: ReLU as the paper (the released code uses ReLU6); channel counts floor(αC), at least 8.",
    "ShuffleNet v1: bottleneck width rounded up to a multiple of g where C/4 is not (scaled nets only); "
    "Conv1 width of 0.5× and 2× from the official code.",
    "SqueezeNext: block widths, BN-ReLU on every conv and the alternating 3×1/1×3 order from the official prototxt.",
    "Training: one SGD + cosine recipe for every architecture on digits and CIFAR-10 (the papers train on ImageNet).",
]
KNOWN_GAPS = [
    "SqueezeNet's and SqueezeNext's own tables are not yet checked against the paper text (no figures entered).",
    "ShuffleNet V2: our MACs are 0.5–1.3 % below Table 5 (41/146/299/591 M); the paper's counter is not published.",
    "MobileNetV2 1.4: 6.1 M parameters (torchvision, TF-slim 6.06 M) against the 6.9 M of Table 4.",
    "No ImageNet training here (the paper preset is dry-run only); CIFAR-10 presets defined, not yet run.",
]


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _paper(v: float | None) -> str:
    """A paper's figure as printed (4.2, 1.32, 569)."""
    return "—" if v is None else f"{v:g}"


NOTES = {  # why a row differs from the paper beyond rounding (see the README's counting conventions)
    ("mobilenet_v2", "1.4"): "paper 6.9 M: not reproduced",
    ("shufflenet_v1", "1.0x g1"): "Table 1 excludes the FC",
    ("shufflenet_v1", "1.0x g2"): "Table 1 excludes the FC",
    ("shufflenet_v1", "1.0x g3"): "Table 1 excludes the FC",
    ("shufflenet_v1", "1.0x g4"): "Table 1 excludes the FC",
    ("shufflenet_v1", "1.0x g8"): "Table 1 excludes the FC",
    ("shufflenet_v2", "0.5x"): "MACs 0.5-1.3 % low",
    ("shufflenet_v2", "1.0x"): "MACs 0.5-1.3 % low",
    ("shufflenet_v2", "1.5x"): "MACs 0.5-1.3 % low",
    ("shufflenet_v2", "2.0x"): "MACs 0.5-1.3 % low",
    ("squeezenet", "1.0"): "paper's 1700: FLOPs",
}


@functools.lru_cache(maxsize=None)
def _row_cost(arch, width, variant, res) -> dict:
    return cost(build_model(arch, width, variant=variant), (3, res, res))


def params_macs_rows() -> list[list[str]]:
    """Network | input | params ours (all / without BN) | params paper | MACs ours | MACs paper | reference."""
    rows = []
    for arch, width, variant, res, key in TABLE_ROWS:
        c = _row_cost(arch, width, variant, res)
        paper = PAPER_ROWS.get(key, {}) if key else {}
        p, m = paper.get("params"), paper.get("macs")
        ref = "; ".join(sorted({v[1] for v in paper.values()}))
        rows.append([method_name(arch, width, variant), str(res), f"{c['params'] / 1e6:.3f}",
                     f"{c['params_no_bn'] / 1e6:.3f}", _paper(p[0] if p else None),
                     f"{c['macs'] / 1e6:.1f}", _paper(m[0] if m else None),
                     f"{SOURCES[arch].split(',')[0]}, {ref}" if ref else "— (not yet checked)",
                     NOTES.get(key[:2], "") if key else ""])
    return rows


PM_HEADER = ["Network", "Input", "Params (M)", "w/o BN (M)", "Paper (M)", "MACs (M)", "Paper (M)", "Paper ref.",
             "Note"]


HEADLINE_HEADER = ["Network", "Params ours (M)", "Paper (M)", "MACs ours (M)", "Paper (M)", "Paper top-1 (%)"]


def _headline_rows() -> list[list[str]]:
    rows = []
    for arch, width, variant, res in HEADLINE:
        key = next((k for a, w, v, r, k in TABLE_ROWS if (a, w, v, r) == (arch, width, variant, res)), None)
        paper = PAPER_ROWS.get(key, {}) if key else {}
        c = _row_cost(arch, width, variant, res)
        p, m, t = paper.get("params"), paper.get("macs"), paper.get("top1")
        rows.append([method_name(arch, width, variant) + ("" if res == 224 else f" ({res})"),
                     f"{c['params'] / 1e6:.2f}", _paper(p[0] if p else None), f"{c['macs'] / 1e6:.1f}",
                     _paper(m[0] if m else None), _fmt(t[0] if t else None)])
    return rows


def _width_figure(out: Path) -> Path:
    fig, axes = slide_figure(1, 2)
    for i, (arch, variant, widths) in enumerate(FAMILIES):
        cs = [_row_cost(arch, w, variant, 224) for w in widths]
        style = {"color": PALETTE[i], "marker": "osD^v"[i], "label": method_name(arch, 1.0, variant).rsplit(" ", 1)[0]
                 if arch != "shufflenet_v1" else "ShuffleNet (g=3)"}
        axes[0].plot(widths, [c["macs"] / 1e6 for c in cs], **style)
        axes[1].plot(widths, [c["params"] / 1e6 for c in cs], **style)
    for ax, what in zip(axes, ("multiply-adds (M), 224×224", "parameters (M)")):
        ax.set(xlabel="width multiplier (α, s or w)", ylabel=what, yscale="log")
    axes[0].legend(fontsize=12)
    axes[0].set_title("MACs grow ~ width² …", fontsize=16)
    axes[1].set_title("… and so do parameters, less steeply", fontsize=16)
    png, _ = save_figure(fig, out, "width_curves", footer="counted from our networks (torch FLOP counter) · no runs")
    return png


def _accuracy_figure(out: Path) -> Path:
    fig, ax = slide_figure()
    for i, arch in enumerate(("mobilenet_v1", "mobilenet_v2", "shufflenet_v1", "shufflenet_v2", "squeezenet")):
        pts = []
        for a, w, v, r, key in TABLE_ROWS:
            top1 = PAPER_ROWS.get(key, {}).get("top1") if key else None
            if a == arch and top1:
                pts.append((_row_cost(a, w, v, r)["macs"] / 1e6, top1[0], method_name(a, w, v) + f" {r}"))
        if not pts:
            continue
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="osD^v"[i], color=PALETTE[i],
                ls="-" if arch != "squeezenet" else "none", label=NAMES_SHORT[arch], markersize=9)
    ax.set(xscale="log", xlabel="multiply-adds counted here (M, log scale)", ylabel="ImageNet top-1 (%), paper",
           title="The papers' ImageNet accuracy against the multiply-adds we count")
    ax.legend(fontsize=13, loc="lower right")
    png, _ = save_figure(fig, out, "accuracy_vs_macs", footer="top-1: the papers' tables (paper_numbers.py) · "
                                                              "MACs: our networks, torch FLOP counter")
    return png


BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "efficient_cnns.json"
"""Written by ``python -m benchmarks.efficient_cnns`` (latency, ShuffleNet V2's guidelines, int8), read here."""


BENCH_AVX2_CPU = BENCH.with_name("efficient_cnns_avx2_cpu.json")
"""The same benchmark run on a CPU without AVX-512 (``--name efficient_cnns_avx2_cpu``): FBGEMM's AVX2 kernels too."""
ISA_LABEL = {"default": "default ISA", "avx2": "capped at AVX2", "avx2_cpu": "AVX2-only CPU"}


def _bench(path: Path = BENCH) -> dict | None:
    import json

    return json.loads(path.read_text()) if path.is_file() else None


def _int8_settings(data: dict) -> dict[str, dict]:
    """The instruction-set settings with an int8 part: this file's, then the AVX2-only CPU's default, if measured."""
    isas = {isa: v for isa, v in data["isa"].items() if v.get("int8")}
    cpu = _bench(BENCH_AVX2_CPU)
    if cpu is not None and cpu["isa"].get("default", {}).get("int8"):
        isas["avx2_cpu"] = cpu["isa"]["default"]
    return isas


def _latency_figure(out: Path, data: dict) -> Path:
    """Measured CPU latency against the MACs we count, batch 1 and batch 32 (per image), 1 thread."""
    nets, settings = data["networks"], data["isa"]["default"].get("latency", [])
    fig, axes = slide_figure(1, 2)
    for ax, batch in zip(axes, (1, 32)):
        setting = next((st for st in settings if st["threads"] == 1 and st["batch"] == batch), None)
        if setting is None:
            continue
        for i, (name, ms) in enumerate(setting["median_ms"].items()):
            ax.scatter(nets[name]["macs"] / 1e6, ms / batch, color=PALETTE[i % len(PALETTE)], marker="osD^v<>"[i % 7],
                       s=120, label=name)
        ax.set(xlabel="multiply-adds counted here (M)", ylabel="ms per image (median)",
               title=f"batch {batch}, 1 thread")
    axes[0].legend(fontsize=11)
    m = data["machine"]
    png, _ = save_figure(fig, out, "latency_vs_macs",
                         footer=f"benchmark: efficient_cnns.json · {m['cpu']} · torch {m['torch']} · "
                                f"commit {m['commit'][:7]}")
    return png


def _latency_rows(data: dict) -> tuple[list[str], list[list[str]]]:
    settings = data["isa"]["default"].get("latency", [])
    header = ["Network", "MACs (M)"] + [f"b={st['batch']}, {st['threads']} thr (ms)" for st in settings]
    rows = [[name, f"{net['macs'] / 1e6:.0f}"] + [f"{st['median_ms'][name]:.1f}" for st in settings]
            for name, net in data["networks"].items()]
    return header, rows


def _guideline_rows(data: dict) -> tuple[list[str], list[list[str]]]:
    """ShuffleNet V2's four guidelines: equal-MAC variants, their latency and the ratio to each guideline's first."""
    rows_in = data["isa"]["default"].get("guidelines", [])
    threads = sorted({t for r in rows_in for t in r["ms"]}, key=int)
    header = ["Guideline", "Variant", "MACs (M)"] + [f"{t} thr (ms)" for t in threads] + ["× first (1 thr)"]
    rows, first = [], {}
    for r in rows_in:
        base = first.setdefault(r["guideline"], r["ms"].get("1"))
        rows.append([r["guideline"], r["variant"], f"{r['macs'] / 1e6:.0f}"]
                    + [_fmt(r["ms"].get(t), 1) for t in threads]
                    + ["—" if base is None or r["ms"].get("1") is None else f"{r['ms']['1'] / base:.2f}×"])
    return header, rows


def _int8_rows(data: dict) -> tuple[list[str], list[list[str]]]:
    """fp32 vs int8 per network at batch 1, 1 thread: bytes, and latency on each instruction set and engine.

    The files are safetensors (fp32: common.evaluate.save_fp32; int8: ptq.save_int8); the torch.save ratio is that
    of the two state dicts as PyTorch pickles them."""
    isas = _int8_settings(data)
    cols = [(isa, key) for isa in isas for key in ("fp32", "int8_x86", "int8_onednn")
            if any(key in r["ms"].get("1", {}) for r in isas[isa].get("int8", {}).values())]
    header = ["Network", "fp32 (MB)", "int8 (MB)", "fp32/int8 file", "fp32/int8 torch.save"] + [
        f"{ISA_LABEL[isa]}: {key.replace('_', ' ')} (ms)" for isa, key in cols]
    rows = []
    for name in data["networks"]:
        r0 = isas["default"].get("int8", {}).get(name)
        if r0 is None:
            continue
        q_bytes = r0.get("int8_x86_bytes") or r0.get("int8_onednn_bytes")
        q_file = r0.get("int8_x86_safetensors_bytes") or r0.get("int8_onednn_safetensors_bytes")
        fp_file = r0.get("fp32_safetensors_bytes")
        row = [name, _fmt(fp_file and fp_file / 1e6, 2), _fmt(q_file and q_file / 1e6, 2),
               "—" if not (q_file and fp_file) else f"{fp_file / q_file:.2f}×",
               "—" if not q_bytes else f"{r0['fp32_bytes'] / q_bytes:.2f}×"]
        for isa, key in cols:
            ms = isas[isa].get("int8", {}).get(name, {}).get("ms", {}).get("1", {})
            fp, v = ms.get("fp32"), ms.get(key)
            row.append("—" if v is None else f"{v:.1f}" if key == "fp32" else f"{v:.1f} ({fp / v:.2f}×)")
        rows.append(row)
    return header, rows


NAMES_SHORT = {"mobilenet_v1": "MobileNet (α, ρ)", "mobilenet_v2": "MobileNetV2", "shufflenet_v1": "ShuffleNet",
               "shufflenet_v2": "ShuffleNet V2", "squeezenet": "SqueezeNet"}


def _run_label(run) -> str:
    s = run.summary
    quick = " (quick: CPU-sized)" if s.preset == "quick" else " (CPU-budget)" if s.preset.startswith("cifar10_") else ""
    return f"{s.method}, {s.dataset}, {s.preset}{quick}, seed {s.seed}"


def _runs_rows(runs) -> list[list[str]]:
    rows = []
    for run in runs:
        s, e = run.summary, run.summary.extra
        int8 = e.get("int8_top1")
        ratio = (e["fp32_state_dict_bytes"] / e["int8_state_dict_bytes"]) if int8 is not None else None
        rows.append([_run_label(run), f"{s.value:.2f}", f"{s.params / 1e6:.3f}", f"{e['macs'] / 1e6:.2f}",
                     _fmt(e.get("latency_ms_batch1"), 2), _fmt(int8, 2),
                     "—" if ratio is None else f"{ratio:.1f}×", _fmt(e.get("int8_latency_ms_batch1"), 2),
                     f"{e.get('latency_threads', '—')}"])
    return rows


RUN_HEADER = ["Run", "Test top-1 (%)", "Params (M)", "MACs (M)", "Latency b=1 (ms)", "Int8 top-1 (%)",
              "fp32/int8 bytes", "Int8 latency (ms)", "Threads"]


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the params/MACs table, the figures and the deck; return the paths."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    pm_rows = params_macs_rows()
    md = markdown_table(PM_HEADER, pm_rows)
    (out / "params_macs.md").write_text(md + "\n")
    written["params_macs"] = out / "params_macs.md"
    written["params_macs_csv"] = write_csv(out / "params_macs.csv", PM_HEADER, pm_rows)
    run_md = markdown_table(RUN_HEADER, _runs_rows(runs)) if runs else "No approved run yet."
    (out / "runs.md").write_text(run_md + "\n")
    written["runs"] = out / "runs.md"
    written["width_curves"] = _width_figure(out)
    written["accuracy_vs_macs"] = _accuracy_figure(out)

    paper_src = Source("the papers' tables (paper_numbers.py) · ours: counted from the networks",
                       (f"{CODE}/paper_numbers.py", f"{CODE}/models.py"))
    counted = Source("counted from our networks: parameters, MACs by torch's FLOP counter", (f"{CODE}/models.py",))
    figures = [Figure("Width multipliers: cost of each family", written["width_curves"], counted),
               Figure("Accuracy vs multiply-adds (papers' ImageNet top-1)", written["accuracy_vs_macs"], paper_src)]
    bench = _bench()
    bench_tables: list[tuple[str, list[str], list[list[str]], str]] = []
    if bench is not None:
        bench_src = file_source(BENCH, what="benchmark")
        if BENCH_AVX2_CPU.is_file():
            bench_src = combine(bench_src, file_source(BENCH_AVX2_CPU, what="benchmark"))
        if bench["isa"]["default"].get("latency"):
            written["latency_vs_macs"] = _latency_figure(out, bench)
            figures.append(Figure("MACs are not latency (CPU, this machine)", written["latency_vs_macs"], bench_src))
            bench_tables.append(("Latency: median of interleaved repeats, 224×224, float32, eval",
                                 *_latency_rows(bench), "latency"))
        if bench["isa"]["default"].get("guidelines"):
            bench_tables.append(("ShuffleNet V2's guidelines on this CPU: equal MACs, batch 1, 56×56",
                                 *_guideline_rows(bench), "guidelines"))
        if bench["isa"]["default"].get("int8"):
            bench_tables.append(("Int8 post-training quantization (FX): bytes and latency, batch 1, 1 thread",
                                 *_int8_rows(bench), "int8"))
        for title, header, rows, name in bench_tables:
            (out / f"{name}.md").write_text(markdown_table(header, rows) + "\n")
            written[name] = out / f"{name}.md"
    appendix = [Table("Parameters and multiply-adds, ours vs the papers", PM_HEADER, pm_rows, paper_src,
                      legend="Ours counted at the input size shown; 'w/o BN' leaves BatchNorm's γ, β out")]
    for title, header, rows, _ in bench_tables:
        appendix.append(Table(title, header, rows, bench_src))
    if runs:
        appendix.append(Table("Approved runs (quick = CPU minutes on 8×8 digits, not ImageNet)", RUN_HEADER,
                              _runs_rows(runs), runs_source(runs)))
    cite = Source(CITATION, (f"{CODE}/paper_numbers.py",))
    written["deck"] = build_paper_deck(
        out / "efficient_cnns_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The ideas", IDEA, cite),
        idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours: parameters and multiply-adds (ImageNet configurations)", HEADLINE_HEADER,
                       _headline_rows(), paper_src,
                       legend="Ours: torch FLOP counter; SqueezeNet's 1700 (MobileNets Table 9) is FLOPs, 2 per MAC"),
        figures=figures, deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", KNOWN_GAPS, cite),
        takeaways=Bullets("Takeaways", _takeaways(runs), combine(paper_src, runs_source(runs)) if runs else paper_src),
        appendix=appendix)
    if default_out:
        update_readme_block(README, "headline", markdown_table(HEADLINE_HEADER, _headline_rows()))
        both = " and efficient_cnns_avx2_cpu.json" if BENCH_AVX2_CPU.is_file() else ""
        bench_md = "".join(f"\n\n{title} (benchmarks/results/efficient_cnns.json{both if name == 'int8' else ''}):"
                           f"\n\n" + markdown_table(header, rows) for title, header, rows, name in bench_tables)
        update_readme_block(README, "results", md + "\n\n" + run_md + bench_md)
    return written


def _takeaways(runs) -> list[str]:
    out = [
        "Counts reproduce the papers: MobileNet 569 M MACs / 4.2 M params, MobileNetV2 300.8 M / 3,504,872 "
        "(= torchvision), ShuffleNet Table 1 once its FC is left out, SqueezeNet 1,248,424 (= torchvision).",
        "torchvision's MobileNetV2, ShuffleNet V2 and SqueezeNet weights load into our networks through a key map "
        "and give the same outputs: the architectures are the same networks.",
        "Depthwise and group convs cut MACs 8–9×, but MACs are not latency (ShuffleNet V2's point): see the "
        "measured latency column.",
    ]
    data = _bench()
    if data is not None:
        lat = data["isa"]["default"].get("latency", [])
        b1 = next((st["median_ms"] for st in lat if st["batch"] == 1 and st["threads"] == 1), None)
        if b1 and {"MobileNet 1.0", "MobileNetV2 1.0"} <= set(b1):
            macs = {k: v["macs"] / 1e6 for k, v in data["networks"].items()}
            fastest = min(b1, key=b1.get)
            out.append(f"On this CPU (1 thread, batch 1) MobileNetV2 ({macs['MobileNetV2 1.0']:.0f} M MACs) takes "
                       f"{b1['MobileNetV2 1.0']:.1f} ms, MobileNet ({macs['MobileNet 1.0']:.0f} M) "
                       f"{b1['MobileNet 1.0']:.1f} ms; the fastest is {fastest} ({b1[fastest]:.1f} ms).")
    if data is not None and data["isa"]["default"].get("guidelines"):
        spread = {}
        for r in data["isa"]["default"]["guidelines"]:
            spread.setdefault(r["guideline"], []).append(r["ms"]["1"])
        out.append("Equal MACs, unequal time (1 thread, batch 1): the slowest variant of each guideline takes "
                   + ", ".join(f"{g} {max(v) / min(v):.2f}×" for g, v in spread.items()) + " the fastest's.")
    if data is not None and data["isa"]["default"].get("int8"):
        isas = _int8_settings(data)
        for isa, engine in (("default", "x86"), ("avx2", "onednn"), ("avx2_cpu", "x86"), ("avx2_cpu", "onednn")):
            rows = [r["ms"]["1"] for r in isas.get(isa, {}).get("int8", {}).values()
                    if f"int8_{engine}" in r["ms"].get("1", {})]
            if rows:
                faster = sum(r[f"int8_{engine}"] < r["fp32"] for r in rows)
                out.append(f"Int8 ({engine} engine, {ISA_LABEL[isa]}, batch 1, "
                           f"1 thread) beats fp32 on {faster} of {len(rows)} networks.")
    for run in runs:
        s = run.summary
        int8 = s.extra.get("int8_top1")
        out.append(f"{_run_label(run)}: {s.value:.2f}% with {s.params / 1e6:.2f} M parameters and "
                   f"{s.extra['macs'] / 1e6:.2f} M MACs per image"
                   + (f"; int8 (x86 PTQ) {int8:.2f}%." if int8 is not None else "."))
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
