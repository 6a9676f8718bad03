"""The quick path on a tiny budget (it learns, QEM moves the bases, the run folder is complete and valid), the
study preset's dry run, and the results script. (The paper preset's dry run on an image folder is the repository's
tests/test_paper_presets.py, which runs every such preset.)"""

import dataclasses
import json

from common.testing import assert_finished_run, quick_run_fixture, rebuild_results, study_dry_run
from papers.lqnets.config import PRESETS
from papers.lqnets.train import main

quick_run = quick_run_fixture(main, PRESETS["quick"], epochs=3, baseline_epochs=3, threads=1, log_every=5)


def test_quick_path_learns_and_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    assert_finished_run(summary, run_dir, "lqnets_planes.safetensors",
                        ("lqnets.ckpt.pt", "float.ckpt.pt", "bases.json", "levels.json"))
    assert summary["method"] == "LQ-Nets"
    assert (summary["w_bits"], summary["a_bits"]) == (2, 2)
    assert summary["value"] > 60.0 and summary["fp_value"] > 60.0  # chance is 10% on digits
    extra = summary["extra"]
    assert extra["artifact_reproduces_predictions"] is True and extra["bitwise_net_same_predictions"] is True
    assert extra["bitwise_vs_simulated_max_rel"] < 1e-5 and extra["bitwise_net_vs_simulated_max_rel"] < 1e-4
    assert summary["compression_ratio"] > 5


def test_qem_moves_the_bases_during_training(quick_run):
    _, run_dir = quick_run
    rows = json.loads((run_dir / "bases.json").read_text())
    assert rows[0]["step"] == 1 and rows[-1]["step"] > rows[0]["step"]
    names = [k for k in rows[0] if k != "step"]
    assert {"conv2.w_quant", "conv2.a_quant", "conv3.w_quant", "conv3.a_quant"} == set(names)
    moved = [n for n in names if max(abs(a - b) for a, b in zip(rows[-1][n], rows[0][n])) > 1e-4]
    assert len(moved) == len(names)
    levels = json.loads((run_dir / "levels.json").read_text())
    assert len(levels) == 4 and all(len(r["levels"]) == 4 for r in levels)
    # QEM's fit to the final weights beats evenly spaced levels fitted the same way
    assert all(r["rel_err_qem"] <= r["rel_err_uniform"] + 1e-9 for r in levels)


def test_uniform_ablation_keeps_evenly_spaced_levels(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], epochs=1, baseline_epochs=1, quantizer="uniform",
                              out_dir=str(tmp_path), threads=1)
    summary = main(cfg)
    assert summary.method == "LQ-Nets (uniform levels)" and summary.value > 30.0
    for row in json.loads((tmp_path / "lqnets" / summary.run_dir.split("/lqnets/")[1] / "levels.json").read_text()):
        gaps = [b - a for a, b in zip(row["levels"], row["levels"][1:])]
        assert max(gaps) - min(gaps) < 1e-5 * max(gaps)


def test_study_path_dry_run_writes_a_valid_study_row(tmp_path):
    summary = study_dry_run(main, PRESETS["cifar10_resnet20"], tmp_path, lr_grid=(0.01, 0.03))
    assert summary.setting == "cifar10_resnet20"
    assert summary.extra["artifact_reproduces_predictions"] is True
    assert summary.extra["bitwise_net_same_predictions"] is True
    assert (summary.w_bits, summary.a_bits) == (2, 2)


def test_results_rebuild_tables_figures_and_deck_from_the_approved_runs(tmp_path):
    from common.report import readme_block
    from papers.lqnets.results import README, _findings, build

    _, runs = rebuild_results("lqnets", build, README, tmp_path, "accuracy.md")
    assert readme_block(README, "findings") == _findings(runs)  # the README's figures are the approved runs'
    assert "Uniform top-1" in (tmp_path / "accuracy.md").read_text()  # the learned-vs-uniform comparison over seeds
    assert (tmp_path / "accuracy_vs_bits.png").stat().st_size > 10_000
    assert any(p.name.startswith("levels_w_") for p in tmp_path.glob("*.png"))
