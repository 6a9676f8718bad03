"""The quick path learns and leaves a complete run folder; every CIFAR-10 preset and the paper preset dry-run."""

import dataclasses
import json

import pytest

from common.errors import NnqError
from common.summary import validate
from papers.efficient_cnns.config import PRESETS
from papers.efficient_cnns.models import ARCHS
from papers.efficient_cnns.train import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = dataclasses.replace(PRESETS["quick"], epochs=3, out_dir=str(out), threads=1, latency_repeats=2)
    summary = main(cfg).to_dict()
    return summary, out / "efficient_cnns" / summary["run_dir"].split("/efficient_cnns/")[1]


def test_quick_path_learns_and_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "train.ckpt.pt", "model_fp32.safetensors"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert validate(summary) == []
    assert summary["status"] == "finished" and summary["method"] == "MobileNetV2 0.5"
    assert summary["value"] > 40.0  # chance is 10 % on digits
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_loss"] < 0.7 * lines[0]["train_loss"]
    extra = summary["extra"]
    assert extra["artifact_reproduces_predictions"] is True and extra["stem"] == "cifar"
    assert extra["macs"] > 0 and extra["latency_ms_batch1"] > 0 and extra["int8_latency_ms_batch1"] > 0
    assert summary["size_bytes"] == (run_dir / "model_fp32.safetensors").stat().st_size
    assert summary["model_bits"] >= 32 * summary["params"]  # fp32 weights plus BN running statistics


def test_int8_post_training_quantization_keeps_the_accuracy_and_shrinks_the_weights(quick_run):
    extra = quick_run[0]["extra"]
    assert extra["int8_top1"] > quick_run[0]["value"] - 10  # x86 int8 (torch.ao FX), calibrated on training batches
    assert extra["int8_state_dict_bytes"] < extra["fp32_state_dict_bytes"] / 2.5


@pytest.mark.parametrize("arch", ARCHS)
def test_cifar10_preset_dry_runs(arch, tmp_path):
    cfg = dataclasses.replace(PRESETS[f"cifar10_{arch}"], max_steps=2, batch_size=16, limit_train=128, limit_test=32,
                              out_dir=str(tmp_path), threads=1, latency_repeats=0, int8=False)  # PTQ: quick run
    try:
        summary = main(cfg)
    except NnqError as exc:  # the shared CIFAR-10 (JPEG q75) copy is not on this machine
        pytest.skip(str(exc))
    assert summary.dry_run and summary.status == "finished" and summary.extra["stem"] == "cifar"
    assert summary.extra["input_shape"] == [3, 32, 32] and summary.extra["steps"] == 2


def test_paper_preset_dry_runs_on_an_image_folder(tmp_path):
    from common.data import make_image_folder

    root = make_image_folder(tmp_path / "imagenet", classes=3, per_class=4, test_per_class=2,
                             sizes=((80, 60), (64, 64)))
    cfg = dataclasses.replace(PRESETS["paper"], dataset=f"imagefolder:{root}", max_steps=2, batch_size=4,
                              out_dir=str(tmp_path / "runs"), threads=1, latency_repeats=0)
    summary = main(cfg)
    assert summary.dry_run and summary.extra["stem"] == "imagenet" and summary.extra["input_shape"] == [3, 224, 224]
    assert summary.extra["macs"] > 290e6  # MobileNetV2 1.0 at 224: 300.8 M


def test_committed_results_match_the_networks_and_the_approved_runs():
    from pptx import Presentation

    from common.results import load_approved
    from papers.efficient_cnns.results import README, _headline_rows

    root = README.parent / "results"
    runs = load_approved("efficient_cnns")
    assert runs, "papers/efficient_cnns/results/runs/ holds at least one approved run"
    table = (root / "runs.md").read_text()
    assert all(f"{run.summary.value:.2f}" in table for run in runs)
    readme = README.read_text()
    for row in _headline_rows():  # the README's headline block is what the networks count today
        assert "| " + " | ".join(row) + " |" in readme
    assert len(Presentation(str(root / "efficient_cnns_deck.pptx")).slides) >= 8
    for name in ("width_curves.png", "accuracy_vs_macs.png", "params_macs.md", "params_macs.csv"):
        assert (root / name).stat().st_size > 100, name
