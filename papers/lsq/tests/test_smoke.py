"""The quick path of the LSQ package on a tiny budget: it learns and leaves a complete, valid run folder."""

import json

from common.testing import assert_finished_run, quick_run_fixture, rebuild_results
from papers.lsq.config import PRESETS
from papers.lsq.train import main

quick_run = quick_run_fixture(main, PRESETS["quick"], epochs=3, baseline_epochs=3, threads=1, log_every=5)


def test_quick_path_learns_and_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    assert_finished_run(summary, run_dir, "lsq_packed.safetensors", ("lsq.ckpt.pt", "float.ckpt.pt", "step_sizes.json"))
    assert summary["method"] == "LSQ"
    assert (summary["w_bits"], summary["a_bits"]) == (3, 3)
    assert summary["value"] > 60.0  # chance is 10% on digits
    assert summary["fp_value"] > 60.0
    assert summary["extra"]["artifact_reproduces_predictions"] is True
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
    from common.report import readme_block
    from papers.lsq.results import README, _ablation_findings, _findings, _known_gaps, build

    _, runs = rebuild_results("lsq", build, README, tmp_path, "accuracy.md")
    assert readme_block(README, "findings") == _findings(runs)  # the README's figures are the approved runs'
    assert readme_block(README, "ablation_findings") == _ablation_findings(runs)
    assert readme_block(README, "known_gaps") == "\n".join(f"- {g}" for g in _known_gaps(runs))
    for run in runs:
        s = run.summary
        if run.config["grad_scale"] == "nqp" and run.config["init"] == "paper" and not run.config["distill"]:
            assert (tmp_path / f"step_sizes_{s.preset}_w{s.w_bits}a{s.a_bits}_s{s.seed}.png").stat().st_size > 10_000
