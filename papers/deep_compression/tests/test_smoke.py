"""The quick path of Deep Compression on a tiny budget: it learns, prunes to the target, writes a decodable file."""

import dataclasses

import torch

from common.data import load_dataset
from common.evaluate import model_bits
from common.summary import read_summary
from papers.deep_compression.config import PRESETS
from papers.deep_compression.format import decode, load_into, stored_fields
from papers.deep_compression.train import build_model, main


def test_quick_path_compresses_and_writes_the_run_folder(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], baseline_epochs=6, epochs=1, prune_iterations=2, share_epochs=1,
                              density=(0.2, 0.2, 0.5), out_dir=str(tmp_path), threads=1)
    summary = main(cfg)
    run_dir = tmp_path / "deep_compression" / summary.run_dir.split("/deep_compression/")[1]
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "stages.json", "histograms.json",
                 "model.nqdc", "pruned.nqdc", "shared_fixed.nqdc"):
        assert (run_dir / name).is_file(), name
    assert read_summary(run_dir) == summary
    assert summary.status == "finished" and summary.extra["artifact_reproduces_predictions"] is True
    assert summary.size_bytes == (run_dir / "model.nqdc").stat().st_size
    assert summary.value > 60.0  # chance is 10% on digits
    assert summary.fp_value is not None and summary.fp_recipe and summary.setting is None
    assert summary.w_bits == cfg.bits[0] and summary.a_bits is None  # one weight-sharing width for every layer
    # model_bits: the stored fields without the file's own overhead (heads, names, lengths, CRC)
    assert 0.5 * 8 * summary.size_bytes < summary.model_bits < 8 * summary.size_bytes
    assert model_bits(stored_fields(run_dir / "model.nqdc")) == summary.model_bits  # the file declares the same

    extra = summary.extra
    stages = extra["stages"]
    # sparsity reached equals the target per layer (and overall)
    for name, target in zip(stages["pruned"]["layer_density"], cfg.density):
        assert abs(stages["pruned"]["layer_density"][name] - target) < 0.005
    # every stage shrinks the real file
    sizes = [stages[k]["size_bytes"] for k in ("float", "pruned", "shared", "huffman")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert summary.compression_ratio == round(extra["fp32_bytes"] / summary.size_bytes, 3)

    # the file alone rebuilds a float model with the same test accuracy
    data = load_dataset("digits")
    model = load_into(build_model(cfg, data), decode(run_dir / "model.nqdc")).eval()
    with torch.no_grad():
        acc = 100.0 * (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert abs(acc - summary.value) < 1e-3
    w = model.get_submodule("1").weight
    assert abs((w != 0).float().mean().item() - cfg.density[0]) < 0.005
    assert len(torch.unique(w[w != 0])) <= 2 ** cfg.bits[0]


def test_bad_per_layer_flags_fail_before_any_training(tmp_path):
    import pytest

    from common.errors import NnqError

    cfg = dataclasses.replace(PRESETS["quick"], density=(0.1, 0.2), out_dir=str(tmp_path))
    with pytest.raises(NnqError, match="3 prunable layers"):
        main(cfg)
    assert not (tmp_path / "deep_compression").exists()  # no run folder was started


def test_mnist_presets_fit_the_papers_networks():
    from types import SimpleNamespace

    from papers.deep_compression.prune import prunable_layers
    from papers.deep_compression.train import per_layer

    mnist = SimpleNamespace(input_shape=(1, 28, 28), num_classes=10)
    for preset, params, kept in (("lenet300_mnist", 266_610, {"1": 0.08, "3": 0.09, "5": 0.26}),
                                 ("lenet5_mnist", 431_080,  # Table 3: the Caffe LeNet-5
                                  {"conv1": 0.66, "conv2": 0.12, "ip1": 0.08, "ip2": 0.19})):
        cfg = PRESETS[preset]
        model = build_model(cfg, mnist)
        assert sum(p.numel() for p in model.parameters()) == params
        layers = list(prunable_layers(model))
        assert per_layer(cfg.density, layers, "density") == kept
        assert cfg.baseline_epochs > 0 and cfg.weights is None  # the float baseline is trained by our code
    assert per_layer(PRESETS["lenet5_mnist"].bits, ["conv1", "conv2", "ip1", "ip2"], "bits") == {
        "conv1": 8, "conv2": 8, "ip1": 5, "ip2": 5}  # Table 3: 8-bit conv, 5-bit fc


def test_baseline_epochs_with_weights_fine_tunes_the_loaded_net(tmp_path):
    from papers.deep_compression.train import float_baseline

    data = load_dataset("digits")
    start = build_model(PRESETS["quick"], data)
    torch.save(start.state_dict(), tmp_path / "float.pt")
    # at LR 0 a fine-tuning epoch keeps the loaded weights: the float stage starts from --weights
    cfg = dataclasses.replace(PRESETS["quick"], weights=str(tmp_path / "float.pt"), baseline_epochs=1, lr=0.0)
    model, _ = float_baseline(cfg, data, None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    # without --weights the same stage starts from a fresh random net
    scratch, _ = float_baseline(dataclasses.replace(cfg, weights=None), data, None)
    assert not torch.equal(scratch.state_dict()["1.weight"], start.state_dict()["1.weight"])
