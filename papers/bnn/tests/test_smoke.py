"""The quick path of the BNN package on a tiny budget: it learns and leaves a complete run folder; the study
path runs end to end (dry run); results.py rebuilds every table, figure and the deck from the approved runs."""

import dataclasses
import json

import pytest

from common.summary import read_summary
from papers.bnn.config import PRESETS
from papers.bnn.train import main


def test_quick_path_learns_and_writes_the_run_folder(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], epochs=4, baseline_epochs=1, hidden=(128, 128), out_dir=str(tmp_path))
    summary = main(cfg)
    run_dir = tmp_path / "bnn" / summary.run_dir.split("/bnn/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "bnn.ckpt.pt", "bnn_packed.safetensors"):
        assert (run_dir / name).is_file(), name
    assert read_summary(run_dir) == summary
    assert summary.status == "finished" and summary.method == "BNN" and (summary.w_bits, summary.a_bits) == (1, 1)
    assert summary.value > 60.0  # chance is 10% on digits
    assert summary.fp_value is not None and summary.fp_recipe
    assert summary.extra["artifact_reproduces_predictions"] is True
    assert summary.size_bytes == (run_dir / "bnn_packed.safetensors").stat().st_size
    assert summary.model_bits < 8 * summary.size_bytes and summary.compression_ratio > 10
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    bnn = [r for r in lines if r["tag"] == "bnn"]
    assert [r["epoch"] for r in bnn] == [1, 2, 3, 4]
    assert bnn[-1]["train_loss"] < bnn[0]["train_loss"]


def test_study_path_dry_run_writes_a_valid_study_row(tmp_path):
    from common.data import find_weights
    from common.errors import NnqError
    from common.settings import get_setting

    setting = get_setting("cifar10_resnet20")
    try:
        find_weights(setting.weights)
        cfg = dataclasses.replace(PRESETS["cifar10_resnet20"], max_steps=2, limit_train=256, limit_test=128,
                                  out_dir=str(tmp_path))
        summary = main(cfg)
    except NnqError as exc:  # the shared CIFAR-10 copy or ResNet-20 weights are not on this machine
        pytest.skip(str(exc))
    assert summary.dry_run and summary.setting == "cifar10_resnet20" and summary.extra["lr"] in cfg.lr_grid
    assert set(summary.extra["lr_pilots_val_top1"]) == {str(lr) for lr in cfg.lr_grid}
    assert summary.extra["artifact_reproduces_predictions"] is True
    assert summary.model_bits < 8 * summary.size_bytes


def test_results_rebuild_figures_tables_and_deck_from_the_approved_runs(tmp_path):
    from pptx import Presentation

    from common.results import load_approved
    from papers.bnn.results import README, build

    readme_before = README.read_text()
    written = build(tmp_path)
    runs = load_approved("bnn")
    assert runs, "papers/bnn/results/runs/ holds at least one approved run"
    for run in runs:
        if run.summary.setting is None:
            assert (tmp_path / f"curves_{run.summary.preset}.png").stat().st_size > 10_000
            assert (tmp_path / f"curves_{run.summary.preset}.pdf").read_bytes().startswith(b"%PDF")
        assert f"{100 - run.summary.value:.2f}" in (tmp_path / "accuracy.md").read_text()  # test error
    deck = Presentation(str(written["deck"]))
    assert any(shape.has_table for slide in deck.slides for shape in slide.shapes)
    assert README.read_text() == readme_before  # --out-dir leaves the package's README alone


def test_the_training_path_clips_latent_weights_at_a_high_learning_rate(tmp_path):
    # Alg. 1: after every update the latent weights are clipped to [-1, 1]. At LR 10 an unclipped weight leaves
    # that range in the first steps, so this fails if the training path drops the clipping callback.
    from common.train import Callback
    from papers.bnn.bnn import binary_layers

    class MaxAbsLatent(Callback):
        def __init__(self):
            self.seen: list[float] = []

        def after_step(self, ctx):
            self.seen.append(max(m.weight.abs().max().item() for m in binary_layers(ctx.model)))

    probe = MaxAbsLatent()
    cfg = dataclasses.replace(PRESETS["quick"], epochs=1, baseline_epochs=0, hidden=(32,), lr=10.0, max_steps=5,
                              out_dir=str(tmp_path))
    main(cfg, callbacks=[probe])
    assert len(probe.seen) == 5
    assert max(probe.seen) <= 1.0 and max(probe.seen) == 1.0  # clipped, and the LR did push weights to the bound
