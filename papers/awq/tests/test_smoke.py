"""The quick path of the AWQ package on the real MiniLM encoder, on a reduced grid: it runs, leaves a complete and
valid run folder, AWQ's error is not above RTN's, the packed artifact reproduces the model, and int4 matches."""

import dataclasses
import json

import pytest

from common.summary import read_points, validate
from papers.awq.config import PRESETS
from papers.awq.quantize import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = dataclasses.replace(PRESETS["quick"], out_dir=str(out), threads=1, n_grid=5, calib_samples=12,
                              compare_bits=(4, 3), ablations=False, latency_repeats=2, int4_bench=False)
    summary = main(cfg).to_dict()
    return summary, out / "awq" / summary["run_dir"].split("/awq/")[1]


def test_quick_path_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "points.json", "alpha_curves.json",
                 "awq_search_w4.safetensors", "awq_search_w3.safetensors", "awq_packed_w4.safetensors"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert validate(summary) == []
    assert summary["status"] == "finished" and summary["method"] == "AWQ W4 g128"
    assert summary["w_bits"] == 4 and summary["a_bits"] is None
    assert summary["model_bits"] < 8 * summary["size_bytes"]
    assert summary["size_bytes"] == (run_dir / "awq_packed_w4.safetensors").stat().st_size
    assert summary["extra"]["artifact_reproduces_outputs"] is True
    assert 0.9 < summary["value"] <= 1.0 and summary["fp_value"] == 1.0
    assert summary["extra"]["linear_bits_ratio"] > 6  # 4-bit codes + fp16 steps + zero points + fp32 1/s, bias


def test_awq_error_is_not_above_rtn_at_w4_and_w3(quick_run):
    summary, run_dir = quick_run
    rows = {p.method: p for p in read_points(run_dir)}
    for bits in (4, 3):
        rtn, awq = rows[f"RTN W{bits} g128"], rows[f"AWQ W{bits} g128"]
        assert awq.extra["layer_error_sum"] <= rtn.extra["layer_error_sum"]  # the search includes alpha = 0 (RTN)
        assert awq.value >= rtn.value  # and on the real encoder it shows in the embeddings
    assert rows["AWQ W3 g128"].value < rows["AWQ W4 g128"].value


@pytest.mark.parametrize("kernel,tol", [("ours", 1e-5), ("aten", 2e-2)])  # ours: fp32; ATen: bf16 activations
def test_int4_kernels_match_the_pseudo_quantized_model(quick_run, kernel, tol):
    from papers.awq import int4

    summary, _ = quick_run
    rep = summary["extra"]["int4"]
    if kernel == "aten" and not int4.available():
        pytest.skip("this torch has no aten._weight_int4pack_mm_for_cpu")
    k = rep["kernels"][kernel]
    assert len(k["layers"]) == 36 and k["max_rel_diff_vs_pseudo"] < tol
    assert abs(k["int4_metrics"]["value"] - rep["pseudo_metrics"]["value"]) < tol / 10
    assert k["linear_bytes_ratio"] > 6


def test_clip_path_quantizes_both_towers(tmp_path):
    """The CLIP path on common's small CLIP (random image tower: no cached pretraining needed) on digits."""
    cfg = dataclasses.replace(PRESETS["clip_small"], pretrained=None, dataset="digits", limit_test=40,
                              calib_samples=8, out_dir=str(tmp_path), threads=1, n_grid=3, compare_bits=(4,),
                              ablations=False, int4=False)
    cfg.validate()
    s = main(cfg).to_dict()
    assert validate(s) == [] and s["metric"] == "test_top1"
    assert s["extra"]["quantized_layers"] == 4 * 6 + 6 * 6  # ViT: 4 blocks x (q, k, v, out, fc, proj); MiniLM: 6 x 6
    assert s["extra"]["awq_layer_error_sum"] <= s["extra"]["rtn_layer_error_sum"]
    assert s["extra"]["artifact_reproduces_outputs"] is True


def test_results_rebuild_table_figures_and_deck_from_the_approved_runs(tmp_path):
    from pptx import Presentation

    from common.results import load_approved
    from papers.awq.results import README, build

    readme_before = README.read_text()
    written = build(tmp_path)
    runs = load_approved("awq")
    assert runs, "papers/awq/results/runs/ holds at least one approved run"
    table = (tmp_path / "rtn_vs_awq.md").read_text()
    for run in runs:
        assert f"{run.summary.value:.4f}" in table and f"{run.summary.extra['rtn_value']:.4f}" in table
    assert (tmp_path / "ablation_quick_w4.png").stat().st_size > 10_000
    assert len(Presentation(str(written["deck"])).slides) >= 8
    assert README.read_text() == readme_before  # --out-dir leaves the package's README alone


def test_llm_path_on_a_tiny_llama_shaped_model(tmp_path):
    """The paper's own setting's path (causal LM, perplexity) on a 2-layer toy with the offline tokenizer."""
    cfg = dataclasses.replace(PRESETS["paper_llm"], model="hf:nnq/tiny-llama", pretrained=None, out_dir=str(tmp_path),
                              threads=1, n_grid=3, compare_bits=(4,), calib_samples=8, max_tokens=128,
                              latency_repeats=2, int4_bench=False)
    cfg.validate()
    s = main(cfg).to_dict()
    assert validate(s) == [] and s["metric"] == "test_perplexity"
    assert s["extra"]["quantized_layers"] == 2 * 7
    assert s["extra"]["awq_layer_error_sum"] <= s["extra"]["rtn_layer_error_sum"]
    assert s["extra"]["artifact_reproduces_outputs"] is True
    assert s["extra"]["int4"]["kernels"]["ours"]["max_rel_diff_vs_pseudo"] < 1e-5
