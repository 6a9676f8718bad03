"""The study-wide comparison: every method family on the same study setting, in one chart.

MQBench (Li et al., NeurIPS 2021 Datasets and Benchmarks) aligned the training pipeline of a set of QAT
methods on ImageNet; this comparison spans more families — binarization, pruning + weight sharing +
Huffman coding, low-bit QAT, post-training quantization, QLoRA — each row from a real run with its real
artifact, on the settings of :mod:`common.settings`. It imports no paper: it reads every approved summary
(``papers/*/results/runs/*`` and ``study/results/runs/*``) whose ``setting`` is set.

Commands::

    python -m common.study [--out-dir DIR]            # Pareto figure, table and deck per setting
    python -m common.study float [--setting NAME] [--seed S] [--lr LR] [--threads N]
                                                      # the setting's float reference (fp_value), LR chosen on val

For papers, the helpers of a setting: :func:`start_run` (the setting, its data and the run folder of a study
run), :func:`load_data`, :func:`load_float_model`, :func:`fit_setting` (training by the setting's budget),
:func:`float_reference` (the approved float reference that is every study row's ``fp_value``;
:func:`float_reference_fields` gives the summary's fields) and :func:`choose_lr` (pilot runs on the validation
split; :func:`choose_setting_lr` runs them in a study run with the setting's pilot budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import NnqError
from common.settings import SETTINGS, StudySetting, get_setting

# --------------------------------------------------------------------------------------- setting helpers


def load_data(setting: StudySetting, data_dir: str | None = None, *, limit_train: int | None = None,
              limit_test: int | None = None, device: str = "cpu"):
    """The setting's data: training set less its validation split, the validation split, the test split."""
    from common.data import load_dataset

    return load_dataset(setting.dataset, data_dir, normalize=setting.normalize, val_size=setting.val_size,
                        limit_train=limit_train, limit_test=limit_test, device=device)


def load_float_model(setting: StudySetting, data_dir: str | None = None):
    """The setting's pretrained float model (the starting point of every method)."""
    from common.data import find_weights
    from common.models import load_resnet_cifar

    if not setting.arch.startswith("resnet"):
        raise NnqError(f"setting {setting.name}: no loader for {setting.arch}")
    return load_resnet_cifar(int(setting.arch[6:]), find_weights(setting.weights, data_dir=data_dir)).train()


def float_reference(setting: str, seed: int = 0) -> tuple[float, str] | None:
    """(test top-1, recipe) of the setting's approved float reference for ``seed`` (else seed 0), or None.

    Every study row's ``fp_value`` is this number; ``fp_recipe`` names the run it comes from.
    """
    from common.results import STUDY, load_approved

    refs = [r for r in load_approved(STUDY) if r.summary.setting == setting and r.summary.method == "float"]
    if not refs:
        print(f"note: no approved float reference for {setting}; fp_value stays empty "
              f"(make it with `python -m common.study float --setting {setting}`)", file=sys.stderr)
        return None
    ref = next((r for r in refs if r.summary.seed == seed), refs[0])
    return ref.summary.value, f"{setting} float reference, seed {ref.summary.seed} (study/results/runs/{ref.dir.name})"


def choose_lr(train_val: Callable[[float, int], float], grid: Sequence[float], pilot_steps: int,
              *, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
              done: dict[float, float] | None = None,
              record: Callable[[dict[float, float]], None] | None = None) -> tuple[float, dict[float, float]]:
    """Chooses a learning rate on the validation split: a pilot run of ``pilot_steps`` per LR of ``grid``.

    Args:
        train_val: trains a fresh model with (lr, steps) and returns its validation top-1.
        grid: the learning rates tried.
        pilot_steps: optimizer steps of each pilot.
        done: pilots already run (a resumed run), LR -> validation top-1.
        record: called after each pilot with all results so far (to write them to the run folder).

    Returns:
        (the LR with the best validation top-1 — the smaller LR on a tie, all pilots' results).
    """
    results = dict(done or {})
    for lr in grid:
        if lr in results:
            continue
        results[lr] = train_val(lr, pilot_steps)
        log(f"LR pilot: lr {lr:g}, {pilot_steps} steps -> val top-1 {results[lr]:.2f}%")
        if record:
            record(results)
    best = max(sorted(results), key=lambda lr: results[lr])
    return best, results



def choose_lr_in_run(run, train_val: Callable[[float, int], float], grid: Sequence[float],
                     pilot_steps: int) -> tuple[float, dict[float, float]]:
    """:func:`choose_lr` with its pilots kept in the run folder (``pilots.json``): a resumed run skips those done.

    Args:
        run: the ``common.runs.Run`` of the study run.
        train_val: trains a fresh model with (lr, steps) and returns its validation top-1.
        grid: the learning rates tried.
        pilot_steps: optimizer steps of each pilot.
    """
    done = run.read_json("pilots.json") if (run.dir / "pilots.json").is_file() else {}
    return choose_lr(train_val, grid, pilot_steps, done={float(k): v for k, v in done.items()},
                     record=lambda r: run.write_json("pilots.json", {str(k): v for k, v in r.items()}))


def fit_setting(model, data, setting: StudySetting, optimizer, steps: int, *, run, tag: str, seed: int,
                precision: str | None = None, **fit_kw) -> dict[str, Any]:
    """:func:`common.train.fit` by the setting's budget: ``steps`` optimizer steps at the setting's batch, the LR on a
    per-step cosine; ``tag`` names the stage and the progress bar; ``fit_kw`` (callbacks, loss_fn) go to ``fit``."""
    from common.train import cosine_per_step, fit

    return fit(model, data, steps=steps, batch_size=setting.batch_size, optimizer=optimizer,
               scheduler=cosine_per_step(optimizer, steps), scheduler_interval="step", run=run, tag=tag, seed=seed,
               desc=tag, precision=precision, **fit_kw)


def choose_setting_lr(run, setting: StudySetting, grid: Sequence[float], train_val: Callable[[float, int], float],
                      max_steps: int | None = None) -> tuple[float, dict[str, Any]]:
    """:func:`choose_lr_in_run` with the setting's pilots (``lr_pilot_steps``, at most ``max_steps`` on a dry run).

    A grid of one LR (e.g. the LR that seed 0 chose, given to the other seeds) leaves nothing to choose: it is used
    as given and no pilot runs (``pilot_steps`` 0).

    Args:
        run: the ``common.runs.Run`` of the study run.
        setting: the study setting.
        grid: the learning rates tried.
        train_val: trains a fresh model with (lr, steps) and returns its validation top-1.
        max_steps: the run's ``--max-steps`` (a dry run), or None.

    Returns:
        (the chosen LR, the summary's ``extra`` fields that record the choice: lr, lr_grid, pilot_steps,
        lr_pilots_val_top1).
    """
    if len(grid) == 1:
        return grid[0], {"lr": grid[0], "lr_grid": list(grid), "pilot_steps": 0, "lr_pilots_val_top1": {}}
    pilot_steps = min(setting.lr_pilot_steps, max_steps or 10**9)
    lr, pilots = choose_lr_in_run(run, train_val, grid, pilot_steps)
    return lr, {"lr": lr, "lr_grid": list(grid), "pilot_steps": pilot_steps,
                "lr_pilots_val_top1": {str(k): v for k, v in pilots.items()}}


def lr_provenance(rows: Sequence[Any]) -> str:
    """How the LR of one cell's runs was set, read from their summaries' ``extra`` (:func:`choose_setting_lr`).

    Args:
        rows: the summaries (``common.summary.Summary``) of one cell, a seed each.

    Returns:
        e.g. "LR 0.01 (chosen on the validation split by the pilots of seed 0, given to seeds 1, 2)", followed by
        "; the pilots chose the smallest LR of their grid 0.003, 0.01, 0.03" when they chose an end of their grid
        (a wider grid may do better); "" when no row records an LR.
    """
    lrs = sorted({r.extra.get("lr") for r in rows} - {None})
    if not lrs:
        return ""
    text = f"LR {', '.join(f'{v:g}' for v in lrs)}"
    piloted = [r for r in rows if r.extra.get("pilot_steps")]
    if piloted:
        seeds = sorted({r.seed for r in piloted})
        given = sorted({r.seed for r in rows} - set(seeds))
        plural = lambda ss: ("seeds " if len(ss) > 1 else "seed ") + ", ".join(map(str, ss))  # noqa: E731
        text += (f" (chosen on the validation split by the pilots of {plural(seeds)}"
                 + (f", given to {plural(given)}" if given else "") + ")")
        ends = set()
        for r in piloted:
            grid = sorted(r.extra.get("lr_grid") or [])
            if len(grid) > 1 and r.extra["lr"] in (grid[0], grid[-1]):
                end = "smallest" if r.extra["lr"] == grid[0] else "largest"
                ends.add(f"; the pilots chose the {end} LR of their grid {', '.join(f'{v:g}' for v in grid)}")
        text += "".join(sorted(ends))
    return text


def float_reference_fields(setting: str, seed: int = 0) -> dict[str, Any]:
    """The summary's ``fp_value`` and ``fp_recipe`` from :func:`float_reference`; {} when none is approved."""
    ref = float_reference(setting, seed)
    return {"fp_value": ref[0], "fp_recipe": ref[1]} if ref else {}


def start_run(cfg, paper: str, key: str, float_layers: dict[str, Sequence[str]], method: str):
    """The start of a paper's study run (``cfg.setting`` set): the setting, its data and the new run folder.

    Args:
        cfg: the run's Config (setting, data_dir, limit_train, limit_test and what ``Run.start`` records).
        paper: the package name (``runs/<paper>/``).
        key: the run's key settings (the run folder's name).
        float_layers: per architecture, the layers the method keeps float; they must be the setting's
            ``keep_float`` (NnqError otherwise, before any folder is made).
        method: the method's name in that error.

    Returns:
        (the StudySetting, its data from :func:`load_data`, the started ``common.runs.Run``).
    """
    from common.runs import Run

    setting = get_setting(cfg.setting)
    data = load_data(setting, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    layers = tuple(float_layers[setting.arch])
    if layers != tuple(setting.keep_float):
        raise NnqError(f"{setting.name} keeps {setting.keep_float} float; {method} keeps {layers} of "
                       f"{setting.arch} float")
    return setting, data, Run.start(paper, cfg, key)

# --------------------------------------------------------------------------------------- float reference


def _float_config_cls():
    from common.cli import BaseConfig

    @dataclasses.dataclass
    class FloatConfig(BaseConfig):
        """Fine-tune a study setting's float model by the setting's recipe: its fp_value."""

        setting: str = "cifar10_resnet20"
        """Study setting (common.settings)."""
        choose_lr: bool = True
        """Choose the LR on the validation split by pilot runs over the recipe's LR grid (else use --lr)."""

        def validate(self) -> None:
            super().validate()
            get_setting(self.setting)

    return FloatConfig


def float_main(cfg) -> Any:
    """Trains the float reference of ``cfg.setting`` (``python -m common.study float``); returns its summary."""
    import torch

    from common.evaluate import (count_params, evaluate_split, file_size, fp32_size_bytes, model_bits,
                                 module_fields, save_fp32)
    from common.results import STUDY
    from common.runs import Run
    from common.train import seed_everything

    setting = get_setting(cfg.setting)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_data(setting, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    recipe = setting.float_recipe
    run = Run.start(STUDY, cfg, f"float-{setting.arch}")

    def train(lr: float, steps: int, run_: Run | None, tag: str):
        seed_everything(cfg.seed)
        model = load_float_model(setting, cfg.data_dir)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                              weight_decay=recipe.weight_decay)
        res = fit_setting(model, data, setting, opt, steps, run=run_, tag=tag, seed=cfg.seed, precision=cfg.precision)
        return model, res

    with run.guard():
        lr, pilots = cfg.lr, {}
        if cfg.choose_lr:
            pilot_steps = min(setting.lr_pilot_steps, cfg.max_steps or 10**9)
            lr, pilots = choose_lr_in_run(
                run, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[1]["val"]["top1"], recipe.lr_grid,
                pilot_steps)
        model, res = train(lr, setting.steps, run, "float")
        test = evaluate_split(model, data, "test")
        artifact = save_fp32(model, run.dir / "float.safetensors")
        size = file_size(artifact)
        return run.finish({
            "method": "float", "dataset": data.label, "metric": "test_top1", "value": round(test["top1"], 4),
            "setting": setting.name, "params": count_params(model), "model_bits": model_bits(module_fields(model)),
            "size_bytes": size, "compression_ratio": round(fp32_size_bytes(model) / size, 3),
            "train_time_s": res["train_time_s"],
            "extra": {"lr": lr, "lr_pilots_val_top1": {str(k): v for k, v in pilots.items()},
                      "val_top1": res["val"]["top1"] if res["val"] else None, "steps": res["steps"],
                      "optimizer": f"SGD, momentum {recipe.momentum}, nesterov {recipe.nesterov}, "
                                   f"weight decay {recipe.weight_decay}", "schedule": setting.schedule},
        })


# --------------------------------------------------------------------------------------- the comparison


@dataclass
class Cell:
    """One method at one bit-width point of a setting: its rows over seeds."""

    paper: str
    method: str
    w_bits: float | None
    a_bits: int | None
    rows: list

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.rows]

    @property
    def model_mib(self) -> float:
        return statistics.median(r.model_bits for r in self.rows) / 8 / 2**20

    @property
    def file_mib(self) -> float | None:
        sizes = [r.size_bytes for r in self.rows if r.size_bytes]
        return statistics.median(sizes) / 2**20 if sizes else None

    @property
    def label(self) -> str:
        return self.method if self.method == "float" else f"{self.method} {_bits_label(self).replace(' ', '')}"


def collect(setting: str, root: Path | None = None) -> list[Cell]:
    """Every approved row of ``setting`` (summaries and points of all papers and of the study), by cell."""
    from common.paths import REPO_ROOT
    from common.results import load_approved

    root = root or REPO_ROOT
    cells: dict[tuple, Cell] = {}
    folders = sorted(p.parent for p in root.glob("papers/*/results/runs")) + [root / "study" / "results"]
    for results in folders:
        paper = "study" if results.parent.name == "study" else results.parent.name
        for run in load_approved(paper, root=results):
            for row in run.rows():
                if row.setting != setting or row.dry_run:
                    continue
                key = (row.paper, row.method, row.w_bits, row.a_bits)
                cells.setdefault(key, Cell(row.paper, row.method, row.w_bits, row.a_bits, [])).rows.append(row)
    return sorted(cells.values(), key=lambda c: (-c.model_mib, c.paper, c.method))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both size (smaller) and accuracy (higher), by size."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def build(out_dir: str | Path | None = None, root: Path | None = None) -> dict[str, Path]:
    """Writes, per setting with approved rows: the Pareto figure, the table (Markdown + CSV) and the deck."""
    from common.deck import Bullets, Deck, Figure, Source, Table, mean_sd, runs_source
    from common.paths import REPO_ROOT
    from common.report import (markdown_table, reference_line, save_figure, slide_figure, update_readme_block,
                               write_csv)

    out = Path(out_dir) if out_dir else REPO_ROOT / "study" / "results"
    written: dict[str, Path] = {}
    deck = Deck(title="One protocol, every family")
    deck.title_slide("One protocol, every family",
                     "Binarization, pruning + coding, low-bit QAT and post-training quantization on the same "
                     "study settings, each row a real run with its real artifact")
    readme_blocks = []
    for name, setting in SETTINGS.items():
        cells = collect(name, root)
        if not cells:
            continue
        float_cells = [c for c in cells if c.method == "float"]
        fp_top1 = statistics.mean(float_cells[0].values) if float_cells else None
        source = _rows_source([r for c in cells for r in c.rows], runs_source)

        fig, ax = slide_figure()
        pts = [(c.model_mib, statistics.mean(c.values)) for c in cells]
        # labels by size, and of points of one size the higher first: it takes the upper place, the lower one below
        by_size = sorted(range(len(cells)), key=lambda i: (pts[i][0], -pts[i][1]))
        for i, (c, (x, y)) in enumerate(zip(cells, pts)):
            sd = statistics.stdev(c.values) if len(c.values) > 1 else 0.0
            ax.errorbar([x], [y], yerr=[sd] if sd else None, marker="os^DvPX*"[i % 8], markersize=11,
                        linestyle="none", capsize=4, label=f"{c.label} ({c.paper})")
        ax.set_xscale("log")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="grey", lw=1.5, ls=":",
                marker=None, label="Pareto front")
        if fp_top1 is not None:
            reference_line(ax, fp_top1, f"float reference ({fp_top1:.2f}%)", loc="left")
        ax.legend(fontsize=12, loc="lower right")
        _place_labels(fig, ax, [c.label for c in cells], pts, by_size)
        ax.set(xlabel="stored model size (MiB, log scale; model_bits / 8)", ylabel="test top-1 (%)",
               title=f"{setting.title}")
        png, _ = save_figure(fig, out, f"pareto_{name}", footer=source.footer)
        written[f"pareto_{name}"] = png

        header = ["Method", "Paper", "W/A bits", "Seeds", "Test top-1 (%)", "Δ vs float", "Model (MiB)",
                  "File (MiB)", "× vs fp32 file"]
        rows = []
        for c in cells:
            mean = statistics.mean(c.values)
            ratio = statistics.median(r.compression_ratio for r in c.rows if r.compression_ratio) \
                if any(r.compression_ratio for r in c.rows) else None
            rows.append([c.method, c.paper, _bits_label(c),
                         len(c.rows), mean_sd(c.values),
                         "—" if fp_top1 is None or c.method == "float" else f"{mean - fp_top1:+.2f}",
                         f"{c.model_mib:.3f}", "—" if c.file_mib is None else f"{c.file_mib:.3f}",
                         "—" if ratio is None else f"{ratio:.1f}×"])
        md = markdown_table(header, rows)
        (out / f"table_{name}.md").write_text(md)
        write_csv(out / f"table_{name}.csv", header, rows)
        written[f"table_{name}"] = out / f"table_{name}.md"
        (out / f"setting_{name}.json").write_text(json.dumps(setting.describe(), indent=2) + "\n")

        recipe_source = Source(f"recipe: common/settings.py ({name})", ("common/settings.py",))
        deck.bullets_slide(Bullets(f"The setting: {name}", _recipe_bullets(setting), recipe_source))
        deck.figure_slide(Figure("Accuracy against stored size", png, source,
                                 notes="Each point: mean over seeds; bars: ±1 sd. Size = model_bits / 8."))
        deck.table_slides(Table(f"All methods on {name}", header, rows, source,
                                legend="Δ: top-1 minus the float reference fine-tuned by the same recipe; "
                                       "model: stored bits without file overhead; file: the real artifact"))
        deck.bullets_slide(Bullets(f"What {name} shows", _takeaways(cells, fp_top1), source))
        readme_blocks.append(f"### {setting.title}\n\n![Pareto](results/pareto_{name}.png)\n\n{md}")
    if not readme_blocks:
        raise NnqError("no approved rows of any study setting yet; train the `cifar10_resnet20` presets of the "
                       "papers and `python -m common.study float`, then approve the runs")
    written["deck"] = deck.save(out / "study_deck.pptx")
    if out_dir is None:
        update_readme_block(REPO_ROOT / "study" / "README.md", "results", "\n\n".join(readme_blocks))
    return written


def _place_labels(fig, ax, labels: list[str], pts: list[tuple[float, float]], order: list[int]) -> None:
    """Writes each point's label beside it, at the first of a few offsets where it overlaps no label already
    written, no marker and nothing outside the axes (points taken in ``order``); else at the first offset."""
    from matplotlib.transforms import Bbox

    candidates = [(8, 6, "left"), (8, -18, "left"), (-8, 6, "right"), (-8, -18, "right"), (8, 22, "left"),
                  (8, -34, "left"), (-8, 22, "right"), (-8, -34, "right")]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    r = 9  # marker half-size in display pixels (markersize 11 at the slide's dpi, rounded down)
    taken = [Bbox.from_extents(*(ax.transData.transform(p) - r), *(ax.transData.transform(p) + r)) for p in pts]
    taken += [t.get_window_extent(renderer) for t in ax.texts]  # e.g. the float reference's label
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    for i in order:
        first = None
        for dx, dy, ha in candidates:
            ann = ax.annotate(labels[i], pts[i], textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=13)
            box = ann.get_window_extent(renderer)
            inside = axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(o) for o in taken):
                taken.append(box)
                break
            first = first or (dx, dy, ha)
            ann.remove()
        else:
            dx, dy, ha = first
            taken.append(ax.annotate(labels[i], pts[i], textcoords="offset points", xytext=(dx, dy), ha=ha,
                                     fontsize=13).get_window_extent(renderer))


def _rows_source(rows: list, runs_source) -> Any:
    """One Source (footer + files) for the approved rows behind a slide or figure."""
    class _Run:  # runs_source reads .summary and .dir of approved runs
        def __init__(self, row):
            self.summary, self.dir = row, Path(row.run_dir)
    return runs_source([_Run(r) for r in rows])


def _bits_label(c: Cell) -> str:
    if c.w_bits is None and c.a_bits is None:
        return "float"
    def b(x):
        return "32" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:.1f}")
    return f"W{b(c.w_bits)} / A{b(c.a_bits)}"


def _takeaways(cells: list[Cell], fp_top1: float | None) -> list[str]:
    """Sentences computed from the cells: what sits on the Pareto front, the closest to float, the smallest."""
    quant = [c for c in cells if c.method != "float"]
    if not quant:
        return ["Only the float reference has approved runs on this setting so far."]
    pts = [(c.model_mib, statistics.mean(c.values)) for c in cells]
    front = [cells[i] for i in pareto_front(pts)]
    out = ["On the Pareto front (no other row is both smaller and more accurate): "
           + ", ".join(f"{c.label} ({c.paper})" for c in front) + "."]
    if fp_top1 is not None:
        best = max(quant, key=lambda c: statistics.mean(c.values))
        out.append(f"Closest to the float reference ({fp_top1:.2f}%): {best.label}, "
                   f"{statistics.mean(best.values) - fp_top1:+.2f} points at {best.model_mib:.3f} MiB stored.")
    small = min(quant, key=lambda c: c.model_mib)
    out.append(f"Smallest stored model: {small.label}, {small.model_mib:.3f} MiB "
               f"({statistics.mean(small.values):.2f}% top-1).")
    seeds = min(len(c.values) for c in cells)
    out.append(f"Every row comes from the same short fine-tuning budget, at least {seeds} seed(s) each: a gap of a "
               "point or two between rows is within what a second seed could change.")
    return out


def _recipe_bullets(s: StudySetting) -> list[str]:
    r = s.float_recipe
    return [
        f"Data: {s.dataset} — training split less {s.val_size:,} validation images; the test split is read once "
        "per reported number.",
        f"Start: {s.arch} from the shared float weights; {', '.join(s.keep_float)} stay float for every method.",
        f"Budget: {s.steps:,} optimizer steps at batch {s.batch_size}, {s.augment.replace('_', ' + ')} augmentation, "
        f"{s.schedule}.",
        "Each method: its own optimizer family and learning rate (from its paper), the LR chosen on the validation "
        f"split by {s.lr_pilot_steps}-step pilots.",
        f"Float reference (fp_value): SGD{' Nesterov' if r.nesterov else ''} momentum {r.momentum}, weight decay "
        f"{r.weight_decay}, LR from {', '.join(f'{x:g}' for x in r.lr_grid)} on validation.",
        "Seeds: " + ", ".join(f"{k.upper()} × {v}" for k, v in s.seeds.items()) + "; every other point × 1.",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["float"]:
        from common.cli import cli_main

        cls = _float_config_cls()
        presets = {name: cls(preset=name, setting=name, dataset=s.dataset, batch_size=s.batch_size,
                             lr=s.float_recipe.lr_grid[0]) for name, s in SETTINGS.items()}
        rest = argv[1:]
        if "--preset" not in rest:
            setting = rest[rest.index("--setting") + 1] if "--setting" in rest else "cifar10_resnet20"
            rest = ["--preset", setting, *rest]
        cli_main(float_main, cls, presets, rest, prog="python -m common.study float")
        return 0
    parser = argparse.ArgumentParser(prog="python -m common.study", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=None, help="write here instead of study/results/")
    args = parser.parse_args(argv)
    try:
        for key, path in build(args.out_dir).items():
            print(f"{key}: {path}")
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
