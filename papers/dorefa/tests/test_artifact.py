"""The real artifact: exact k-bit packing, exact reload, stored bits counted field by field."""

import math

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.dorefa import dorefa_layers, quantize_model_, quantize_weight, weight_levels
from papers.dorefa.artifact import load_packed, pack_codes, save_packed, stored_fields, unpack_codes


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_pack_unpack_is_exact_and_takes_k_bits_per_code(bits):
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2 ** bits, (1001,), generator=g)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_codes(packed, bits, 1001), codes)


def test_a_code_that_does_not_fit_is_refused():
    with pytest.raises(NnqError):
        pack_codes(torch.tensor([0, 4]), 2)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_codes_reproduce_the_quantized_weights_bit_for_bit(bits):
    from papers.dorefa import codes_to_weights

    torch.manual_seed(bits)
    w = torch.randn(32, 16, 3, 3) * 0.2
    codes, scale = weight_levels(w, bits)
    assert codes.min() >= 0 and codes.max() < 2 ** bits
    assert torch.equal(codes_to_weights(codes, scale, bits), quantize_weight(w, bits))


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 12), nn.ReLU(), nn.Linear(12, 10))


def _trained_like(w_bits):
    torch.manual_seed(0)
    model = quantize_model_(_net(), w_bits, 2, 4, first="0", last="9")
    model.train()(torch.randn(16, 3, 6, 6))  # move the BatchNorm statistics, as training would
    with torch.no_grad():
        for m in dorefa_layers(model).values():
            m.weight.add_(0.05 * torch.randn_like(m.weight))
    return model.eval()


@pytest.mark.parametrize("w_bits", [1, 2, 4, 8])
def test_reloaded_artifact_predicts_exactly_as_the_model(tmp_path, w_bits):
    model = _trained_like(w_bits)
    path = save_packed(model, tmp_path / "m.safetensors")
    reloaded = load_packed(path, quantize_model_(_net(), w_bits, 2, 4, first="0", last="9")).eval()
    x = torch.randn(64, 3, 6, 6)
    assert torch.equal(model(x), reloaded(x))  # identical logits, not only the same predictions
    for name, m in dorefa_layers(model).items():
        assert torch.equal(m.quantized_weight(), dorefa_layers(reloaded)[name].quantized_weight())
    assert type(reloaded[0]) is nn.Conv2d and torch.equal(reloaded[0].weight, model[0].weight)  # float first layer


def test_artifact_stores_k_bits_per_weight(tmp_path):
    from common.evaluate import tensor_bytes

    model = _trained_like(2)
    sizes = tensor_bytes(save_packed(model, tmp_path / "m.safetensors"))
    for name, m in dorefa_layers(model).items():
        assert sizes[f"{name}.weight.packed"] == math.ceil(m.weight.numel() * 2 / 8)
    assert sizes["0.weight"] == 4 * model[0].weight.numel()  # the float first layer in fp32


def test_reloading_into_other_bits_is_a_clear_error(tmp_path):
    path = save_packed(_trained_like(2), tmp_path / "m.safetensors")
    with pytest.raises(NnqError, match="bits"):
        load_packed(path, quantize_model_(_net(), 4, 2, 4, first="0", last="9"))


def test_stored_fields_count_codes_at_their_width_and_the_one_bit_scales():
    model = _trained_like(1)
    fields = {f.name: f for f in stored_fields(model)}
    assert fields["3.weight"].bits == model[3].weight.numel()
    assert fields["3.weight.scale"].bits == 32 and fields["7.weight.scale"].bits == 32
    assert fields["0.weight"].bits == 32 * model[0].weight.numel()
    assert fields["1.running_mean"].bits == 32 * 8
