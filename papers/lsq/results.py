"""Tables, figures and deck of the LSQ package from its approved runs.

``python -m papers.lsq.results`` rebuilds them from ``papers/lsq/results/runs/`` (no training);
``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/lsq/results/``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from common.data import load_dataset
from common.deck import Bullets, Figure, Formula, Source, Table, build_paper_deck, mean_sd, runs_source
from common.report import markdown_table, save_figure, slide_figure, summary_footer, update_readme_block
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from common.study import lr_provenance
from papers.lsq.config import PRESETS
from papers.lsq.paper_numbers import TOP1
from papers.lsq.train import main

PAPER = "lsq"
GRID = ("quick",)  # presets run by --run on a CPU; the study and paper presets are run by hand
README = Path(__file__).with_name("README.md")
TITLE = "Learned Step Size Quantization"
CITATION = "Esser, McKinstry, Bablani, Appuswamy, Modha — ICLR 2020 (arXiv 1902.08153)"

IDEA = [
    "Each quantized layer learns one step size s for its weights and one for its input activations.",
    "Forward: round v/s to an integer in [−Q_N, Q_P], multiply back by s; the layer then runs on integer "
    "multiply-accumulates and one rescale by s_w·s_a.",
    "Backward: the rounding is passed straight through for v; s gets Eq. (3), largest near a transition "
    "between levels, times g = 1/√(N·Q_P) so that s learns at the pace of the weights.",
    "Training starts from a trained float network, with s = 2⟨|v|⟩/√Q_P.",
]
FORMULAS = [
    Formula("Eq. (1)", r"$\bar v = \lfloor \mathrm{clip}(v/s,\,-Q_N,\,Q_P) \rceil$",
            "papers/lsq/lsq.py: LsqQuantizeSTE.forward", "weights signed: Q_N = 2^(b−1); activations: Q_N = 0"),
    Formula("Eq. (2)", r"$\hat v = \bar v \times s$", "papers/lsq/lsq.py: LsqQuantizeSTE.forward"),
    Formula("Eq. (3)", r"$\frac{\partial \hat v}{\partial s} = -v/s + \lfloor v/s \rceil$ inside, "
            r"$-Q_N$ below, $Q_P$ above", "papers/lsq/lsq.py: LsqQuantizeSTE.backward"),
    Formula("Sec. 2.2", r"$g = 1/\sqrt{N\,Q_P}$  (on the gradient of $s$ only)",
            "papers/lsq/lsq.py: grad_scale_factor", "N: weights of the layer, or features of one sample"),
    Formula("Sec. 2.1", r"$s_0 = 2\,\langle |v| \rangle / \sqrt{Q_P}$", "papers/lsq/lsq.py: init_step"),
]
DEVIATIONS = [
    "No weight decay on the step sizes (ours: the paper does not say).",
    "Quick preset: a float twin trained here on 8×8 digits, then 20 epochs of LSQ on the CPU (quick numbers).",
    "Study setting: first conv and last linear float (the study's rule; the paper: 8 bits), "
    "the setting's steps and cosine, LR chosen on the validation split.",
    "Distillation weights and temperature, the naive init and the other gradient scales are our options.",
    "CIFAR-10 is the JPEG q75 copy of the study.",
]
KNOWN_GAPS = [
    "The paper's ImageNet figures are not yet entered (only after checking against its text).",
    "The paper preset (ImageNet ResNet-18) has only been dry-run.",
    "The paper preset's schedule (90 epochs, batch 256, LR 0.01, cosine) is still to be checked against Sec. 3 of "
    "the paper's text.",
]


def _known_gaps(runs) -> list[str]:
    from common.settings import get_setting

    setting = get_setting("cifar10_resnet20")  # LSQ's points: those with 2 to 8 bits for W and A
    points = {(w, a): setting.seeds_for(w, a) for w, a in setting.bit_points if 2 <= w <= 8 and 2 <= a <= 8}
    have = {(r.summary.w_bits, r.summary.a_bits, r.summary.seed) for r in runs
            if r.summary.setting == "cifar10_resnet20" and _is_main(r)}
    missing = [f"W{w}A{a} s{seed}" for (w, a), n in points.items() for seed in range(n)
               if (w, a, seed) not in have]
    study = [f"Study setting cifar10_resnet20 not yet run: {', '.join(missing)}."] if missing else []
    ran = {(r.summary.seed, _variant_key(r)) for r in runs
           if r.summary.setting == "cifar10_resnet20" and (r.summary.w_bits, r.summary.a_bits) == (2, 2)}
    for key in STUDY_ABLATIONS:
        seeds = [seed for seed in range(setting.seeds_for(2, 2)) if (seed, key) not in ran]
        if seeds:
            study.append(f"Ablation {_one_line(VARIANTS[key])} on W2A2 cifar10_resnet20 not yet run: "
                         f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}.")
    for (where, _, w, a), cell in _cells(runs).items():
        fp = cell[0].summary.fp_value
        if where == "cifar10_resnet20" and w == a and w in (3, 4) and fp is not None \
                and statistics.mean(r.summary.value for r in cell) < fp - 1:
            study.append(f"W{w}A{a} on cifar10_resnet20 ends more than a point below its float reference (the "
                         "paper: 3 and 4 bits match full precision).")
    return study + KNOWN_GAPS


def _findings(runs) -> str:
    """The README's findings, each figure read from the approved runs: per study cell (the paper's choices), the
    top-1 of each seed, their mean, the distance to the float reference and how the LR was set."""
    study = {key: [r.summary for r in cell] for key, cell in _cells(runs).items() if cell[0].summary.setting}
    lines = []
    for (setting, _, w, a), rows in sorted(study.items(), key=lambda kv: (kv[0][0], -kv[0][2], -kv[0][3])):
        values = [r.value for r in rows]
        fp = rows[0].fp_value
        mean, several = statistics.mean(values), len(values) > 1
        spread = f" ± {statistics.stdev(values):.2f}" if several else ""
        near = "" if fp is None else (f"; float {fp:.2f}%, {'mean ' if several else ''}{mean - fp:+.2f} pts; "
                                      f"within 1 point of float on {sum(v >= fp - 1 for v in values)} of "
                                      f"{len(values)} seed{'s' if several else ''}")
        lr = lr_provenance(rows)
        lines.append(f"- W{w}A{a}, study {setting}: top-1 per seed "
                     + ", ".join(f"s{r.seed} {r.value:.2f}" for r in rows)
                     + (f"% (mean {mean:.2f}{spread})" if several else "%") + near + (f"; {lr}" if lr else "") + ".")
    return "\n".join(lines)


def _ablation_findings(runs) -> str:
    """The README's ablation lines, read from the approved runs: per study W2A2 cell and choice beside the paper's,
    each seed's top-1 and its difference to the paper's choices on the same seed."""
    lines = []
    for (where, arch), variants in _ablations(runs).items():
        if where == "quick" or PAPER_CHOICES not in variants:
            continue
        for key, cell in variants.items():
            if key == PAPER_CHOICES:
                continue
            values = [r.summary.value for r in cell]
            paired = _paired(variants, cell)
            mean = f" (mean {statistics.mean(values):.2f} ± {statistics.stdev(values):.2f})" if len(values) > 1 else ""
            line = (f"- {_one_line(VARIANTS[key])}, W2A2, {arch}, study {where}: top-1 per seed "
                    + ", ".join(f"s{r.summary.seed} {r.summary.value:.2f}" for r in cell) + f"%{mean}")
            if paired:
                ahead = sum(d > 0 for _, d in paired)
                line += ("; the paper's choices minus this, same seed: "
                         + ", ".join(f"s{seed} {d:+.2f}" for seed, d in paired)
                         + f" (mean {statistics.mean(d for _, d in paired):+.2f} pts); the paper's choices ahead on "
                         f"{ahead} of {len(paired)} seed{'s' if len(paired) > 1 else ''}")
            lr = lr_provenance([r.summary for r in cell])
            lines.append(line + (f"; {lr}" if lr else "") + ".")
    return "\n".join(lines)


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def _variant(run) -> str:
    """The non-paper choices of a run (gradient scale, init, distillation), or "" for the paper's own."""
    c = run.config
    parts = [f"g={c['grad_scale']}" if c.get("grad_scale", "nqp") != "nqp" else "",
             f"init={c['init']} (ours)" if c.get("init", "paper") != "paper" else "",
             "distilled" if c.get("distill") else ""]
    return ", ".join(p for p in parts if p)


def _label(run) -> str:
    s = run.summary
    where = f"study setting {s.setting}" if s.setting else f"{s.preset} preset"
    quick = " (quick: CPU-sized)" if s.preset == "quick" else ""
    variant = f", {_variant(run)}" if _variant(run) else ""
    return f"{s.dataset}, {run.config.get('arch')}, W{s.w_bits}A{s.a_bits}{variant}, {where}{quick}, seed {s.seed}"


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the accuracy/size table and the step-size trajectories from the approved runs; return the paths."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}
    header = ["Run", "Test top-1 (%)", "Float (%)", "Δ", "Paper (ref)", "Model bits", "File (B)", "× vs fp32 file"]
    rows = []
    for run in runs:
        s = run.summary
        paper = TOP1.get((run.config.get("arch"), s.w_bits)) if s.w_bits == s.a_bits else None
        rows.append([_label(run), f"{s.value:.2f}", "—" if s.fp_value is None else f"{s.fp_value:.2f}",
                     "—" if s.fp_value is None else f"{s.value - s.fp_value:+.2f}",
                     "—" if paper is None else f"{paper[0]:.1f} ({paper[1]})", s.model_bits, s.size_bytes,
                     f"{s.compression_ratio:.1f}×"])
    md = markdown_table(header, rows)
    (out / "accuracy.md").write_text(md + "\n")
    written["accuracy"] = out / "accuracy.md"

    for run in runs:
        if not _is_main(run) or not (run.dir / "step_sizes.json").is_file():
            continue
        traj = run.json("step_sizes.json")
        fig, ax = slide_figure()
        names = [k for k in traj[0] if k != "step"]
        for name in names:
            base = traj[0][name]
            many = len(names) > 12  # a ResNet: one thin line per quantizer, no legend
            ax.plot([r["step"] for r in traj], [r[name] / base for r in traj], lw=0.8 if many else 1.5,
                    marker="" if many else "o", markersize=4, ls="-" if name.endswith(".w") else "--",
                    label=None if many else name)
        ax.set(xlabel="optimizer step", ylabel="s / s at step 1",
               title=f"Learned step sizes (weights solid, activations dashed): {run.summary.preset}")
        if len(names) > 12:
            ax.text(0.01, 0.98, f"{len(names)} quantizers, one line each", transform=ax.transAxes, va="top",
                    fontsize=13)
        else:
            ax.legend(fontsize=9, ncol=3)
        name = _traj_name(run)
        png, _ = save_figure(fig, out, name, footer=summary_footer(run.summary.to_dict()))
        written[name] = png
    firsts = [min(cell, key=lambda r: r.summary.seed) for cell in _cells(runs).values()]  # other seeds: on disk
    figures = [Figure(f"Learned step sizes: {_short(run)}", written[_traj_name(run)], runs_source([run]))
               for run in firsts if _traj_name(run) in written]
    for i, (title, picked, png) in enumerate(_ablation(runs, out)):
        written[png.stem] = png
        figures.insert(i, Figure(title, png, runs_source(picked)))
    abl_table = _ablation_table(runs)
    head = ["Setting", "Ours top-1 (%)", "Our float (%)", "Paper (ref)"]
    head_rows = [[_cell_label(cell), mean_sd([r.summary.value for r in cell]),
                  "—" if cell[0].summary.fp_value is None else f"{cell[0].summary.fp_value:.2f}", "—"]
                 for cell in _cells(runs).values()]
    cite = Source(CITATION, ("papers/lsq/paper_numbers.py",))
    gaps = _known_gaps(runs)
    written["deck"] = build_paper_deck(
        out / "lsq_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, cite),
        idea_figure=None, formulas=FORMULAS,
        headline=Table("Paper vs ours", head, head_rows, runs_source([r for r in runs if _is_main(r)]),
                       legend="Paper column: not yet entered (added only once checked against the text)"),
        figures=figures, deviations=Bullets("Deviations", DEVIATIONS, cite, numbered=True),
        known_gaps=Bullets("Known gaps", gaps, cite),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(runs)),
        appendix=[*([abl_table] if abl_table else []),
                  Table("Every approved run (quick = CPU minutes, not paper scale)", header, rows, runs_source(runs))])
    if default_out:
        update_readme_block(README, "results", md)
        update_readme_block(README, "findings", _findings(runs))
        update_readme_block(README, "ablation_findings", _ablation_findings(runs))
        update_readme_block(README, "known_gaps", "\n".join(f"- {g}" for g in gaps))
    return written


def _traj_name(run) -> str:
    s = run.summary
    return f"step_sizes_{s.preset}_w{s.w_bits}a{s.a_bits}_s{s.seed}"


def _is_main(run) -> bool:
    """The run of a preset with the paper's choices (gradient scale, init, no distillation)."""
    c = run.config
    return c.get("grad_scale") == "nqp" and c.get("init") == "paper" and not c.get("distill")


def _what(run) -> str:
    """Bits, network and setting (or preset) of a run: "W4A4, resnet20, study cifar10_resnet20"."""
    s = run.summary
    where = f"study {s.setting}" if s.setting else f"{s.preset} preset"
    return f"W{s.w_bits}A{s.a_bits}, {run.config.get('arch')}, {where}"


def _short(run) -> str:
    return f"{_what(run)}, s{run.summary.seed}"


def _cells(runs) -> dict[tuple, list]:
    """The runs with the paper's choices, by cell (setting or preset, network, bits), seeds in order."""
    cells: dict[tuple, list] = {}
    for run in sorted((r for r in runs if _is_main(r)), key=lambda r: r.summary.seed):
        s = run.summary
        cells.setdefault((s.setting or s.preset, run.config.get("arch"), s.w_bits, s.a_bits), []).append(run)
    return cells


def _cell_label(cell: list) -> str:
    """A cell's name and its seeds: "W4A4, resnet20, study cifar10_resnet20, seeds 0, 1, 2"."""
    seeds = [r.summary.seed for r in cell]
    return f"{_what(cell[0])}, " + (f"s{seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}")


PAPER_CHOICES = ("nqp", "paper", False)  # (gradient scale, init, distillation) as the paper has them
VARIANTS = {PAPER_CHOICES: "g = 1/√(N·Q_P)\n(paper)", ("n", "paper", False): "g = 1/√N",
            ("one", "paper", False): "g = 1\n(no scale)", ("nqp", "naive", False): "init max|v|/Q_P\n(ours)",
            ("nqp", "paper", True): "distilled\nfrom float"}
STUDY_ABLATIONS = (("one", "paper", False), ("nqp", "paper", True))  # the study's: no gradient scale; distillation


def _variant_key(run) -> tuple:
    c = run.config
    return c.get("grad_scale", "nqp"), c.get("init", "paper"), bool(c.get("distill"))


def _one_line(label: str) -> str:
    return label.replace("\n", " ")


def _ablations(runs) -> dict[tuple, dict[tuple, list]]:
    """The W2A2 cells (setting or preset, network) with a run beside the paper's choices: cell -> choices -> runs
    (choices in the order of VARIANTS, seeds in order)."""
    cells: dict[tuple, dict[tuple, list]] = {}
    for run in sorted(runs, key=lambda r: r.summary.seed):
        s = run.summary
        if (s.w_bits, s.a_bits) == (2, 2) and _variant_key(run) in VARIANTS:
            cells.setdefault((s.setting or s.preset, run.config.get("arch")), {}) \
                .setdefault(_variant_key(run), []).append(run)
    order = list(VARIANTS)
    return {cell: dict(sorted(v.items(), key=lambda kv: order.index(kv[0])))
            for cell, v in cells.items() if len(v) > 1}


def _paired(variants: dict[tuple, list], cell: list) -> list[tuple[int, float]]:
    """(seed, top-1 of the paper's choices − top-1 of ``cell``) for each seed of ``cell`` that both have."""
    base = {r.summary.seed: r.summary.value for r in variants.get(PAPER_CHOICES, [])}
    return [(r.summary.seed, base[r.summary.seed] - r.summary.value) for r in cell if r.summary.seed in base]


def _ablation(runs, out: Path) -> list[tuple[str, list, Path]]:
    """One bar chart per W2A2 cell whose runs differ only in gradient scale, init or distillation: the mean of the
    seeds as a bar, each seed as a dot. Returns (title, runs, png) per chart, the study's first."""
    charts = []
    for (where, arch), variants in _ablations(runs).items():
        picked = [r for cell in variants.values() for r in cell]
        values = [r.summary.value for r in picked]
        fig, ax = slide_figure()
        for i, cell in enumerate(variants.values()):
            vals = [r.summary.value for r in cell]
            ax.bar(i, statistics.mean(vals), color="#0072B2", alpha=0.85)
            if len(vals) > 1:
                ax.scatter([i] * len(vals), vals, color="black", s=24, zorder=3)
            ax.annotate(f"{statistics.mean(vals):.2f}", (i + 0.1, statistics.mean(vals)), textcoords="offset points",
                        xytext=(0, 6), ha="left", fontsize=14)  # beside the seeds' dots, not on them
        ax.set_xticks(range(len(variants)), [VARIANTS[key] for key in variants])
        if where == "quick":
            n_test = len(load_dataset(PRESETS["quick"].dataset).y_test)
            title = f"LSQ W2A2 on digits (quick, one seed; one test image = {100 / n_test:.2f} pts)"
            name = "quick, digits, W2A2"
            ax.set(ylim=(max(0.0, min(values) - 5), 100))
        else:
            seeds = ", ".join(map(str, sorted({r.summary.seed for r in picked})))
            title = f"LSQ W2A2, {arch}, {picked[0].summary.dataset}: bar = mean of seeds {seeds}, dots = seeds"
            name = f"{arch}, study {where}, W2A2"
            ax.set(ylim=(max(0.0, min(values) - 3), max(values) + 2))
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(title, fontsize=16 if len(title) > 60 else None)
        png, _ = save_figure(fig, out, f"ablation_{where}_w2a2", footer=runs_source(picked).footer)
        charts.append((f"Gradient scale, init and distillation ({name})", picked, png))
    return sorted(charts, key=lambda c: c[1][0].summary.preset == "quick")


def _ablation_table(runs) -> Table | None:
    """Every ablation cell as a row: choices, seeds, top-1 mean ± sd, difference to the paper's choices."""
    rows, picked = [], []
    for (where, arch), variants in _ablations(runs).items():
        for key, cell in variants.items():
            paired = [d for _, d in _paired(variants, cell)]
            rows.append([f"W2A2, {arch}, {'quick preset' if where == 'quick' else 'study ' + where}",
                         _one_line(VARIANTS[key]), ", ".join(str(r.summary.seed) for r in cell),
                         mean_sd([r.summary.value for r in cell]),
                         "—" if key == PAPER_CHOICES or not paired else f"{statistics.mean(paired):+.2f}"])
            picked += cell
    if not rows:
        return None
    return Table("Ablations: each choice beside the paper's (quick = CPU minutes)",
                 ["Cell", "Choice", "Seeds", "Top-1 (%)", "Paper's − this (pts, same seeds)"], rows,
                 runs_source(picked))


def _takeaways(runs) -> list[str]:
    out = []
    for cell in _cells(runs).values():
        fp = cell[0].summary.fp_value
        if fp is not None:
            mean = statistics.mean(r.summary.value for r in cell)
            out.append(f"{_cell_label(cell)}: top-1 (%) {mean_sd([r.summary.value for r in cell])} vs float "
                       f"{fp:.2f} ({mean - fp:+.2f} pts), file {cell[0].summary.compression_ratio:.1f}× smaller "
                       "than fp32.")
    out.append("The trained model is stored as b-bit codes plus one fp32 step size per quantizer; reloaded, it "
               "predicts exactly as the trained model, and a layer computed with integers matches the simulated one.")
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
