"""Scaffolding several papers' smoke tests share: the quick path on a tiny budget and its run folder, the study
preset's dry run, and the rebuild of the figures, tables and deck from the approved runs.

Each function asserts what every paper's run must satisfy; the paper's test asserts its own method's properties
(learning signal, artifact checks, per-method files) on what the function returns. Used only by tests (pytest).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from common.errors import NnqError

RUN_FILES = ("config.json", "env.json", "metrics.jsonl", "summary.json")
"""Files every finished run folder holds."""


def run_main(main: Callable[[Any], Any], cfg: Any, out_dir: str | Path, **overrides) -> tuple[dict, Path]:
    """``main`` on ``cfg`` with ``overrides`` (a tiny budget), its run folder made under ``out_dir``.

    Returns:
        (the summary as a dict, the run folder ``out_dir/<paper>/<run>``).
    """
    summary = main(dataclasses.replace(cfg, out_dir=str(out_dir), **overrides)).to_dict()
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == Path(out_dir) / summary["paper"], run_dir
    return summary, run_dir


def quick_run_fixture(main: Callable[[Any], Any], cfg: Any, **overrides):
    """A module-scoped pytest fixture ``quick_run``: :func:`run_main` of ``main`` on ``cfg`` with ``overrides`` in a
    temporary folder, run once for the module's tests; it gives (the summary as a dict, the run folder)."""
    import pytest

    @pytest.fixture(scope="module")
    def quick_run(tmp_path_factory):
        """(the summary as a dict, the run folder) of the module's quick run."""
        return run_main(main, cfg, tmp_path_factory.mktemp("runs"), **overrides)

    return quick_run


def assert_finished_run(summary: dict, run_dir: Path, artifact: str, files: Iterable[str] = ()) -> None:
    """The run folder holds the standard files, ``files`` and the ``artifact``; its summary.json is ``summary``,
    finished and valid, and ``size_bytes`` is the artifact's size on disk."""
    from common.summary import validate

    for name in (*RUN_FILES, artifact, *files):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert validate(summary) == []
    assert summary["status"] == "finished"
    assert summary["size_bytes"] == (run_dir / artifact).stat().st_size


def study_dry_run(main: Callable[[Any], Any], cfg: Any, out_dir: str | Path, **overrides) -> Any:
    """A 2-step dry run of the study preset ``cfg`` (256 training, 64 test images, one thread) with ``overrides``;
    skips the test when the shared CIFAR-10 copy or the setting's float weights are not on this machine.

    Asserts what every study row must be: a dry run of the setting whose LR is one of the grid, chosen by one
    validation pilot per LR of the grid.

    Returns:
        the summary.
    """
    import pytest

    from common.data import find_weights
    from common.settings import get_setting

    try:
        find_weights(get_setting(cfg.setting).weights)
        cfg = dataclasses.replace(cfg, max_steps=2, limit_train=256, limit_test=64, out_dir=str(out_dir), threads=1,
                                  **overrides)
        summary = main(cfg)
    except NnqError as exc:  # the shared CIFAR-10 copy or ResNet-20 weights are not on this machine
        pytest.skip(str(exc))
    assert summary.dry_run and summary.setting == cfg.setting
    assert summary.extra["lr"] in cfg.lr_grid
    piloted = cfg.lr_grid if len(cfg.lr_grid) > 1 else ()  # a grid of one LR is used as given, without a pilot
    assert set(summary.extra["lr_pilots_val_top1"]) == {str(lr) for lr in piloted}
    return summary


def rebuild_results(paper: str, build: Callable[[Path], dict], readme: Path, out_dir: Path, table: str,
                    value_format: str = ".2f") -> tuple[dict, list]:
    """``build(out_dir)`` of a paper's results script, and what every paper's results must show.

    Asserts: at least one approved run; the headline value of every approved run (``value_format``) in the
    table ``out_dir/table``; a deck of at least 8 slides; the package's README untouched (``--out-dir``).

    Returns:
        (what ``build`` wrote, the approved runs).
    """
    from pptx import Presentation

    from common.results import load_approved

    readme_before = readme.read_text()
    written = build(out_dir)
    runs = load_approved(paper)
    assert runs, f"papers/{paper}/results/runs/ holds at least one approved run"
    text = (out_dir / table).read_text()
    for run in runs:
        assert format(run.summary.value, value_format) in text, run.dir.name
    assert len(Presentation(str(written["deck"])).slides) >= 8
    assert readme.read_text() == readme_before  # --out-dir leaves the package's README alone
    return written, runs
