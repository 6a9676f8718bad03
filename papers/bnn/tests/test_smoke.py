"""The quick path of the BNN package on a tiny budget: it learns and leaves a complete run folder."""

import dataclasses
import json

from papers.bnn.config import PRESETS
from papers.bnn.train import main


def test_quick_path_learns_and_writes_the_run_folder(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], epochs=4, baseline_epochs=1, hidden=(128, 128), out_dir=str(tmp_path))
    summary = main(cfg)
    run_dir = tmp_path / "bnn" / summary["run_dir"].split("/bnn/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "bnn.ckpt.pt", "bnn_packed.safetensors"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert summary["status"] == "finished"
    assert summary["value"] > 60.0  # chance is 10% on digits
    assert summary["artifact_reproduces_predictions"] is True
    assert summary["size_bytes"] == (run_dir / "bnn_packed.safetensors").stat().st_size
    assert summary["compression_ratio"] > 10
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    bnn = [r for r in lines if r["tag"] == "bnn"]
    assert [r["epoch"] for r in bnn] == [1, 2, 3, 4]
    assert bnn[-1]["train_loss"] < bnn[0]["train_loss"]


def test_results_rebuild_figures_tables_and_deck_from_the_approved_runs(tmp_path):
    from pptx import Presentation

    from common.runs import load_approved
    from papers.bnn.results import README, build

    readme_before = README.read_text()
    written = build(tmp_path)
    runs = load_approved("bnn")
    assert runs, "papers/bnn/results/runs/ holds at least one approved run"
    for run in runs:
        preset = run["summary"]["preset"]
        assert (tmp_path / f"curves_{preset}.png").stat().st_size > 10_000
        assert (tmp_path / f"curves_{preset}.pdf").read_bytes().startswith(b"%PDF")
        assert f"{run['summary']['test_error']:.2f}" in (tmp_path / "accuracy.md").read_text()
    assert len(Presentation(str(written["deck"])).slides) >= 4 + len(runs)
    assert README.read_text() == readme_before  # --out-dir leaves the package's README alone
