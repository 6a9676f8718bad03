"""The quick path of the XNOR package on a tiny budget: it learns, leaves a complete run folder, and its
converted (bit-packed, XNOR-popcount) model predicts exactly what the simulated model predicts."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from common.errors import NnqError
from common.summary import read_points, read_summary
from papers.xnor.config import PRESETS
from papers.xnor.models import build
from papers.xnor.packed import convert_to_packed, load_packed
from papers.xnor.train import main


def test_quick_path_learns_and_writes_the_run_folder(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], epochs=3, bwn_epochs=2, baseline_epochs=1, out_dir=str(tmp_path),
                              threads=1, limit_train=640)
    summary = main(cfg)
    run_dir = tmp_path / "xnor" / summary.run_dir.split("/xnor/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "points.json", "float.ckpt.pt",
                 "bwn.ckpt.pt", "xnor.ckpt.pt", "xnor_packed.safetensors", "bwn_packed.safetensors"):
        assert (run_dir / name).is_file(), name
    assert read_summary(run_dir) == summary
    (bwn,) = read_points(run_dir)
    assert summary.status == "finished" and summary.method == "XNOR-Net" and bwn.method == "BWN"
    assert (summary.w_bits, summary.a_bits, bwn.w_bits, bwn.a_bits) == (1, 1, 1, None)
    assert summary.value > 60.0 and bwn.value > 30.0  # chance is 10% on digits
    assert summary.fp_value is not None and summary.fp_recipe and bwn.fp_value == summary.fp_value
    assert summary.extra["packed_reproduces_predictions"] is True and summary.extra["packed_value"] == summary.value
    assert summary.size_bytes == (run_dir / "xnor_packed.safetensors").stat().st_size
    assert bwn.size_bytes == (run_dir / "bwn_packed.safetensors").stat().st_size
    # model_bits counts the artifact's tensors at their width: the file adds only its header
    header = 8 + int.from_bytes((run_dir / "xnor_packed.safetensors").read_bytes()[:8], "little")
    assert summary.model_bits <= 8 * (summary.size_bytes - header) < summary.model_bits + 8 * 64
    # 1 bit per weight plus one fp32 alpha per filter: below 32x for this net's short filters (288 weights)
    assert 25 < summary.extra["binary_layers_ratio"] < 32 and summary.compression_ratio > 5
    xnor = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["tag"] == "xnor"]
    assert [r["epoch"] for r in xnor] == [1, 2, 3]
    assert xnor[-1]["train_loss"] < xnor[0]["train_loss"]

    # the reloaded packed artifact computes exactly the simulated forward (logits, not only argmax)
    model = build("smallconv", "xnor", (1, 8, 8), 10)
    model.load_state_dict(torch.load(run_dir / "xnor.ckpt.pt", weights_only=True)["model"])
    model.eval()
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_packed(run_dir / "xnor_packed.safetensors", model)(x), model(x))


def test_conversion_of_an_unsupported_layer_is_a_clear_error():
    class TernaryConv2d(nn.Conv2d):
        weight_bits = 2

    model = build("smallconv", "xnor", (1, 8, 8), 10)
    model.features[4] = TernaryConv2d(32, 64, 3, padding=1)
    with pytest.raises(NnqError, match=r"'features.4' \(TernaryConv2d\).*no packed implementation"):
        convert_to_packed(model)
