"""The quick path on a tiny budget (it learns, leaves a valid run folder), the SVHN loader, the study dry run."""

import dataclasses
import json

import numpy as np

from common.testing import assert_finished_run, quick_run_fixture, rebuild_results, study_dry_run
from papers.dorefa.config import PRESETS
from papers.dorefa.train import main

quick_run = quick_run_fixture(main, PRESETS["quick"], epochs=3, baseline_epochs=1, threads=1)


def test_quick_path_learns_and_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    assert_finished_run(summary, run_dir, "dorefa_packed.safetensors", ("dorefa.ckpt.pt", "float.ckpt.pt"))
    assert summary["method"] == "DoReFa-Net"
    assert (summary["w_bits"], summary["a_bits"], summary["g_bits"]) == (1, 2, 6)
    assert summary["value"] > 60.0  # chance is 10% on digits
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dorefa = [r for r in lines if r["tag"] == "dorefa"]
    assert dorefa[-1]["train_loss"] < 0.5 * dorefa[0]["train_loss"]
    assert summary["extra"]["artifact_reproduces_predictions"] is True
    assert summary["extra"]["artifact_logits_identical"] is True
    assert summary["model_bits"] < 8 * summary["size_bytes"] and summary["compression_ratio"] > 5


def _write_svhn_mat(path, n, seed):
    """A small file in SVHN's format-2 layout: X uint8 (32, 32, 3, N), y (N, 1) in 1..10 (10 is the digit 0)."""
    import scipy.io as sio

    rng = np.random.default_rng(seed)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    x = np.zeros((32, 32, 3, n), dtype=np.uint8)
    for i in range(n):  # the label written into the image: brightness = 20 * label, so it is learnable
        x[:, :, :, i] = 20 * int(y[i, 0]) + rng.integers(0, 10, size=(32, 32, 3))
    sio.savemat(str(path), {"X": x, "y": y})
    return x, y


def test_svhn_loader_reads_the_mat_format_and_maps_label_10_to_0(tmp_path):
    from common.data import load_dataset

    (tmp_path / "svhn").mkdir()
    x_tr, y_tr = _write_svhn_mat(tmp_path / "svhn" / "train_32x32.mat", 60, 0)
    _write_svhn_mat(tmp_path / "svhn" / "test_32x32.mat", 20, 1)
    data = load_dataset("svhn", tmp_path, normalize="none", val_size=10, resize=40)
    assert data.input_shape == (3, 40, 40) and data.num_classes == 10
    assert len(data.x_train) == 50 and len(data.x_val) == 10 and len(data.x_test) == 20
    labels = np.concatenate([data.y_train.numpy(), data.y_val.numpy()])
    expect = np.where(y_tr[:, 0] == 10, 0, y_tr[:, 0])
    assert sorted(labels.tolist()) == sorted(expect.tolist())
    assert 10 not in labels and labels.min() >= 0
    raw = load_dataset("svhn", tmp_path, normalize="none", val_size=0)
    assert np.allclose(raw.x_train[0].numpy(), np.transpose(x_tr[:, :, :, 0], (2, 0, 1)) / 255.0)


def test_svhn_preset_runs_the_paper_network_on_a_mat_file(tmp_path):
    (tmp_path / "svhn").mkdir()
    _write_svhn_mat(tmp_path / "svhn" / "train_32x32.mat", 64, 0)
    _write_svhn_mat(tmp_path / "svhn" / "test_32x32.mat", 16, 1)
    cfg = dataclasses.replace(PRESETS["svhn"], data_dir=str(tmp_path), out_dir=str(tmp_path / "runs"), val_size=8,
                              max_steps=2, batch_size=16, threads=1)
    summary = main(cfg)
    assert summary.dry_run and summary.dataset == "SVHN" and summary.extra["arch"] == "svhn_convnet"
    assert summary.extra["artifact_reproduces_predictions"] is True


def test_study_path_dry_run_writes_a_valid_study_row(tmp_path):
    summary = study_dry_run(main, PRESETS["cifar10_resnet20"], tmp_path, w_bits=1, a_bits=1, lr_grid=(1e-4, 1e-3))
    assert summary.setting == "cifar10_resnet20"
    assert (summary.w_bits, summary.a_bits, summary.g_bits) == (1, 1, None)
    assert summary.extra["artifact_reproduces_predictions"] is True


def test_results_rebuild_tables_figures_and_deck_from_the_approved_runs(tmp_path):
    from common.report import readme_block
    from papers.dorefa.results import GRID_PRESET, README, _missing_study_seeds, build

    _, runs = rebuild_results("dorefa", build, README, tmp_path, "runs.md")
    if any(r.summary.preset == GRID_PRESET for r in runs):
        assert (tmp_path / "grid_wa_heatmap.png").stat().st_size > 10_000
    measured = (tmp_path / "gradient_quantizer.md").read_text()
    assert "| 2 | 4 | 4 |" in measured  # 2-bit gradients: 4 levels per sample, the bound 2^k
    # the README's study rows and what is still to run are the approved runs'
    assert readme_block(README, "study") == (tmp_path / "study.md").read_text().strip()
    for point in _missing_study_seeds(runs):
        assert point in readme_block(README, "missing")
    for r in runs:
        if r.summary.setting:
            assert f"s{r.summary.seed} {r.summary.value:.2f}" in (tmp_path / "study.md").read_text()
