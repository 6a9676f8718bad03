"""Cost accounting against hand-computed values."""

import time

import pytest
import torch
from torch import nn

from common.evaluate import (StoredField, accuracy, confusion_matrix, count_params, fp32_size_bytes, latency_ms, macs,
                             model_bits, module_fields)


class Fixed(nn.Module):
    """Predicts class (x[:, 0] > 0): a model whose confusion matrix is known."""

    def forward(self, x):
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def test_accuracy_and_confusion_matrix_by_hand():
    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0], [0.5]])
    y = torch.tensor([1, 0, 0, 0, 1])
    cm = confusion_matrix(Fixed(), x, y, 2)
    assert cm.tolist() == [[2, 1], [0, 2]]  # rows: true class, columns: predicted
    assert accuracy(Fixed(), x, y, topk=(1,))["top1"] == pytest.approx(80.0)


def test_bits_follow_each_layers_declared_width():
    model = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[0].weight_bits = 1
    fields = {f.name: f for f in module_fields(model)}
    assert count_params(model) == 44 + 8 + 10
    assert fields["0.weight"] == StoredField("0.weight", 40, 40)
    # BatchNorm's running statistics are stored (32 bits each); its int64 batch counter is not a value of the model
    assert "1.running_mean" in fields and "1.num_batches_tracked" not in fields
    assert model_bits(module_fields(model)) == 40 * 1 + 4 * 32 + (4 + 4 + 4 + 4) * 32 + (8 + 2) * 32


def test_stored_fields_add_fixed_widths_and_coded_streams():
    fields = [StoredField.fixed("codes", 100, 5), StoredField.stream("huffman", 100, 437),
              StoredField.fixed("codebook", 32, 32)]
    assert model_bits(fields) == 500 + 437 + 1024


def test_fp32_file_is_at_least_four_bytes_per_value_and_not_much_more():
    model = nn.Sequential(nn.Linear(100, 50), nn.BatchNorm1d(50))
    n_values = sum(t.numel() for t in model.state_dict().values())
    size = fp32_size_bytes(model)
    assert 4 * (n_values - 1) <= size <= 4 * n_values + 2000  # num_batches_tracked is int64


def test_macs_of_linear_and_conv_layers():
    assert macs(nn.Linear(30, 20), torch.randn(5, 30)) == 5 * 30 * 20
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert macs(conv, torch.randn(1, 3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3


def test_latency_is_the_median_of_measured_runs():
    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.005)
        return x

    ms = latency_ms(slow, torch.zeros(1), repeats=5, warmup=2)
    assert len(calls) == 7 and 5.0 <= ms < 50.0


def test_tensor_bytes_and_save_fp32_read_every_tensor_from_the_file(tmp_path):
    from common.evaluate import save_fp32, tensor_bytes

    model = nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5)).to(torch.float64)
    sizes = tensor_bytes(save_fp32(model, tmp_path / "m.safetensors"))
    state = model.state_dict()
    assert set(sizes) == set(state)
    for k, v in state.items():  # float tensors stored as fp32, the rest (num_batches_tracked) as they are
        assert sizes[k] == v.numel() * (4 if v.is_floating_point() else v.element_size())


def test_read_safetensors_refuses_other_formats_and_broken_files(tmp_path):
    from safetensors.torch import save_file

    from common.errors import NnqError
    from common.evaluate import read_safetensors

    good = tmp_path / "a.safetensors"
    save_file({"w": torch.ones(3)}, str(good), metadata={"format": "nnq-test"})
    meta, tensors = read_safetensors(good, "nnq-test", "test file")
    assert meta["format"] == "nnq-test" and torch.equal(tensors["w"], torch.ones(3))
    with pytest.raises(NnqError, match="is not a other file"):
        read_safetensors(good, "other", "test file")
    broken = tmp_path / "b.safetensors"
    broken.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(NnqError, match="not a readable test file"):
        read_safetensors(broken, "nnq-test", "test file")


def test_interleaved_ms_calls_the_functions_in_turn_and_times_each_call():
    from common.evaluate import interleaved_ms

    calls: list[str] = []
    times = interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed rounds, a and b alternating
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
