"""The quick path of the LSQ package on a tiny budget: it learns and leaves a complete, valid run folder."""

import dataclasses
import json

import pytest

from common.summary import validate
from papers.lsq.config import PRESETS
from papers.lsq.train import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = dataclasses.replace(PRESETS["quick"], epochs=3, baseline_epochs=3, out_dir=str(out), threads=1,
                              log_every=5)
    summary = main(cfg).to_dict()
    return summary, out / "lsq" / summary["run_dir"].split("/lsq/")[1]


def test_quick_path_learns_and_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "lsq.ckpt.pt", "float.ckpt.pt",
                 "lsq_packed.safetensors", "step_sizes.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert validate(summary) == []
    assert summary["status"] == "finished" and summary["method"] == "LSQ"
    assert (summary["w_bits"], summary["a_bits"]) == (3, 3)
    assert summary["value"] > 60.0  # chance is 10% on digits
    assert summary["fp_value"] > 60.0
    assert summary["extra"]["artifact_reproduces_predictions"] is True
    assert summary["size_bytes"] == (run_dir / "lsq_packed.safetensors").stat().st_size
    assert summary["compression_ratio"] > 4  # 3-bit inner layers, 8-bit first/last, fp32 BN and steps


def test_integer_forward_of_the_trained_model_matches_the_simulated_layer(quick_run):
    summary, _ = quick_run
    assert summary["extra"]["integer_vs_simulated_max_rel"] < 1e-5


def test_step_sizes_are_learned(quick_run):
    _, run_dir = quick_run
    rows = json.loads((run_dir / "step_sizes.json").read_text())
    assert rows[0]["step"] == 1 and rows[-1]["step"] > rows[0]["step"]
    names = [k for k in rows[0] if k != "step"]
    assert {"conv2.w", "conv2.a", "conv1.w", "fc.a"} <= set(names)
    moved = [n for n in names if abs(rows[-1][n] - rows[0][n]) > 1e-4 * abs(rows[0][n])]
    assert len(moved) >= len(names) // 2  # the step sizes are trained, not frozen at their init


def test_results_rebuild_table_figures_and_deck_from_the_approved_runs(tmp_path):
    from pptx import Presentation

    from common.results import load_approved
    from papers.lsq.results import README, build

    readme_before = README.read_text()
    written = build(tmp_path)
    runs = load_approved("lsq")
    assert runs, "papers/lsq/results/runs/ holds at least one approved run"
    table = (tmp_path / "accuracy.md").read_text()
    for run in runs:
        assert f"{run.summary.value:.2f}" in table
        s = run.summary
        if run.config["grad_scale"] == "nqp" and run.config["init"] == "paper" and not run.config["distill"]:
            assert (tmp_path / f"step_sizes_{s.preset}_w{s.w_bits}a{s.a_bits}_s{s.seed}.png").stat().st_size > 10_000
    assert len(Presentation(str(written["deck"])).slides) >= 8
    assert README.read_text() == readme_before  # --out-dir leaves the package's README alone
