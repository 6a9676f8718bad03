"""Approved runs: the small files of finished runs committed beside a paper, and the results command.

``approve`` copies a finished run's small files (config, env, metrics, summary, points, per-paper JSON)
into ``papers/<paper>/results/runs/<run-name>/`` (the study settings' float references into
``study/results/runs/``), from where ``results.py`` builds figures, tables and the deck, and
``common.study`` the study-wide comparison. Checkpoints and artifacts stay in the run folder.

Command line::

    python -m common.results approve RUN_DIR [RUN_DIR ...]
    python -m common.results list PAPER
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import NnqError
from common.paths import REPO_ROOT
from common.runs import Run, read_jsonl
from common.summary import Summary, read_points, read_summary

STUDY = "study"
"""The pseudo-paper of the study settings' float references (``python -m common.study float``)."""

# Files an approved run keeps: small, text, reproducible from the run.
_APPROVE_SUFFIXES = (".json", ".jsonl", ".csv", ".md")
_APPROVE_MAX_BYTES = 2_000_000


@dataclass
class ApprovedRun:
    """One approved run folder, read and validated."""

    dir: Path
    summary: Summary
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    points: list[Summary] = field(default_factory=list)

    def json(self, name: str) -> Any:
        """A further JSON file of the run (e.g. ``stages.json``)."""
        return json.loads((self.dir / name).read_text())

    def rows(self) -> list[Summary]:
        """Every typed row of the run: the summary (unless a sweep) and its points."""
        return ([self.summary] if self.summary.kind == "model" else []) + self.points


def results_dir(paper: str) -> Path:
    """Where a paper's (or the study's) approved runs and generated results live."""
    return REPO_ROOT / STUDY / "results" if paper == STUDY else REPO_ROOT / "papers" / paper / "results"


def results_target(paper: str, out_dir: str | Path | None) -> tuple[list[ApprovedRun], Path, bool]:
    """What a paper's ``results.build(out_dir)`` starts from: its approved runs (at least one, else a one-line
    error), the folder to write into (created; ``results_dir(paper)`` by default) and whether that is the default
    (only then may the package's README be updated)."""
    out = Path(out_dir) if out_dir else results_dir(paper)
    out.mkdir(parents=True, exist_ok=True)
    return load_approved(paper, required=True), out, out_dir is None


def approve(run_dir: str | Path) -> Path:
    """Copy a finished run's small files into ``<results_dir(paper)>/runs/<run-name>/``."""
    run = Run.open(run_dir)
    summary = read_summary(run.dir)
    read_points(run.dir)
    if summary.status != "finished":
        raise NnqError(f"{run.dir} has status {summary.status!r}; only finished runs can be approved")
    if summary.dry_run:
        raise NnqError(f"{run.dir} is a dry run (--max-steps); train without it to get a run worth approving")
    if run.paper != STUDY and not (REPO_ROOT / "papers" / run.paper).is_dir():
        raise NnqError(f"no package papers/{run.paper} for this run")
    dest = results_dir(run.paper) / "runs" / run.dir.name
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(run.dir.iterdir()):
        if src.is_file() and src.suffix in _APPROVE_SUFFIXES and src.stat().st_size <= _APPROVE_MAX_BYTES:
            shutil.copy2(src, dest / src.name)
    return dest


def load_approved(paper: str, root: Path | None = None, *, required: bool = False) -> list[ApprovedRun]:
    """Approved runs of a paper, validated against the summary schema (oldest first).

    Args:
        root: the results folder to read instead of :func:`results_dir` (tests).
        required: raise NnqError (saying how to make them) when there is none.
    """
    base = (root or results_dir(paper)) / "runs"
    out = []
    for d in sorted(base.glob("*/")) if base.is_dir() else []:
        if not (d / "summary.json").is_file():
            continue
        out.append(ApprovedRun(dir=d, summary=read_summary(d), config=json.loads((d / "config.json").read_text()),
                               metrics=read_jsonl(d / "metrics.jsonl"), points=read_points(d)))
    if required and not out:
        how = (f"`python -m papers.{paper}.results --run` (or train and `python -m common.results approve RUN_DIR`)"
               if paper != STUDY else "`python -m common.study float` and `python -m common.results approve RUN_DIR`")
        raise NnqError(f"no approved runs in {base}; make them with {how}")
    return out


def run_missing(paper: str, grid: Iterable[str], presets: dict[str, Any], main: Callable[[Any], Any],
                have: set[str] | None = None) -> list[Path]:
    """Train and approve each preset of ``grid`` that has no approved run of ``paper`` yet.

    Args:
        have: presets already covered (default: those of the approved runs).
    """
    have = {r.summary.preset for r in load_approved(paper)} if have is None else have
    approved = []
    for preset in grid:
        if preset not in have:
            summary = main(presets[preset])
            run_dir = summary.run_dir if isinstance(summary, Summary) else summary["run_dir"]
            approved.append(approve(run_dir))
            print(f"approved {approved[-1]}")
    return approved


def results_cli(paper: str, *, build: Callable[[Path | None], dict[str, Path]], run: Callable[[], object],
                grid: Iterable[str], argv: list[str] | None = None) -> None:
    """The command line of every ``papers/<paper>/results.py``: ``[--run] [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(prog=f"python -m papers.{paper}.results",
                                     description=f"Figures, tables and deck of papers/{paper} from its approved runs.")
    parser.add_argument("--run", action="store_true",
                        help=f"first train and approve the missing experiments of the grid {tuple(grid)}")
    parser.add_argument("--out-dir", type=Path, default=None, help=f"write here instead of papers/{paper}/results/")
    args = parser.parse_args(argv)
    try:
        if args.run:
            run()
        for name, path in build(args.out_dir).items():
            print(f"{name}: {path}")
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.results", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("approve", help="copy finished runs into papers/<paper>/results/runs/")
    p.add_argument("run_dirs", nargs="+")
    p = sub.add_parser("list", help="list a paper's approved runs")
    p.add_argument("paper")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "approve":
            for d in args.run_dirs:
                print(f"approved {d} -> {approve(d)}")
        else:
            for r in load_approved(args.paper):
                s = r.summary
                print(f"{r.dir.name}: {s.method} {s.metric}={s.value} size={s.size_bytes} B"
                      + (f" setting={s.setting}" if s.setting else ""))
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    _main()
