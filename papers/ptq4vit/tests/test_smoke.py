"""The quantize path on a tiny budget: a complete, valid run folder; PTQ4ViT's layer distances never above their
start; the packed artifact reproduces the model; the paper preset dry-runs on a tiny image folder; the results
rebuild from the approved runs."""

import dataclasses
import json

import pytest

from common.summary import read_points, validate
from papers.ptq4vit.config import PRESETS
from papers.ptq4vit.quantize import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = dataclasses.replace(PRESETS["quick"], out_dir=str(out), threads=1, n_grid=4, rounds=1, calib_samples=6,
                              compare_bits=(6,), histograms=True, sites=False)  # sites: test_method (tiny ViT)
    cfg.validate()
    summary = main(cfg).to_dict()
    return summary, out / "ptq4vit" / summary["run_dir"].split("/ptq4vit/")[1]


def test_quick_path_writes_a_valid_run_folder(quick_run):
    summary, run_dir = quick_run
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "points.json", "search_curves.json",
                 "ptq4vit_scales_w6a6.safetensors", "ptq4vit_scales_w6a6_base.safetensors",
                 "ptq4vit_packed_w6a6.safetensors", "histograms.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert validate(summary) == []
    assert summary["status"] == "finished" and summary["w_bits"] == 6 and summary["a_bits"] == 6
    assert summary["size_bytes"] == (run_dir / "ptq4vit_packed_w6a6.safetensors").stat().st_size
    assert summary["extra"]["artifact_reproduces_outputs"] is True
    assert summary["extra"]["quantized_linears"] == 36 and summary["extra"]["quantized_matmuls"] == 12
    assert 0.5 < summary["value"] <= 1.0 and summary["fp_value"] == 1.0
    for p in read_points(run_dir):
        assert p.extra["layer_distance_final"] <= p.extra["layer_distance_start"] + 1e-9
    hist = json.loads((run_dir / "histograms.json").read_text())
    assert hist["post_softmax"]["fraction_below_0.01"] > 0.2  # many attention probabilities are tiny (12-token sentences)
    assert hist["post_gelu"]["fraction_negative"] > 0.1


def test_paper_preset_dry_runs_on_a_tiny_folder(tmp_path):
    """The paper's path (timm ViT by name, ImageNet-style folder) on a random-init real configuration."""
    from common.data import make_image_folder

    root = tmp_path / "imagenet"
    make_image_folder(root, classes=3, per_class=2, test_per_class=1, corrupt=False)
    cfg = dataclasses.replace(PRESETS["paper"], dataset=f"imagefolder:{root}", model="timm:vit_tiny_patch16_224",
                              pretrained=None, out_dir=str(tmp_path / "runs"), threads=1, n_grid=2, rounds=1,
                              calib_samples=2, compare_bits=(8,), w_bits=8, a_bits=8, ablations=False, max_steps=1,
                              batch_size=3, histograms=False)
    cfg.validate()
    s = main(cfg).to_dict()
    assert validate(s) == [] and s["dry_run"] is True and s["metric"] == "test_top1"
    assert s["extra"]["quantized_matmuls"] == 24 and s["extra"]["quantized_convs"] == 1
    assert s["extra"]["artifact_reproduces_outputs"] is True


def test_results_rebuild_tables_figures_and_deck(tmp_path):
    from pptx import Presentation

    from common.report import readme_block
    from common.results import load_approved
    from papers.ptq4vit.results import README, _findings, build

    runs = load_approved("ptq4vit")
    if not runs:
        pytest.skip("no approved run yet")
    before = README.read_text()
    assert readme_block(README, "findings") == _findings(runs)  # the README's figures are the approved runs'
    written = build(tmp_path)
    table = (tmp_path / "paper_table.md").read_text()
    for run in runs:
        assert f"{run.summary.value:.4f}"[:5] in table or f"{run.summary.value:.2f}" in table
    assert len(Presentation(str(written["deck"])).slides) >= 8
    sites = (tmp_path / "sites_table.md").read_text()
    for run in runs:  # every approved per-site measurement is in the table, its full-model drop first
        for f in run.dir.glob("sites_w*a*.json"):
            s = json.loads(f.read_text())
            scale = 100.0 if run.summary.metric == "test_embedding_cosine" else 1.0
            assert f"{scale * s['all']['drop']:.2f}" in sites and all(k["kind"] in sites for k in s["kinds"])
    assert README.read_text() == before
