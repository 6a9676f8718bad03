"""The real artifact: bit-planes + bases, exact reload, stored bits."""

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.lqnets import lq_layers, quantize_model_
from papers.lqnets.artifact import load_planes, save_planes, stored_fields
from papers.lqnets.bitwise import bitwise_layers, weight_planes


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(12, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 10))


def _trained_like(w_bits=2, a_bits=2, uniform=False):
    torch.manual_seed(0)
    model = quantize_model_(_net(), w_bits, a_bits, keep_float=("0", "8"), uniform=uniform)
    model.train()(torch.randn(8, 3, 6, 6))  # set every basis
    with torch.no_grad():  # move weights off the init, as training would
        for m in lq_layers(model).values():
            m.weight.add_(0.05 * torch.randn_like(m.weight))
    return model.eval()


@pytest.mark.parametrize("w_bits,a_bits,uniform", [(2, 2, False), (3, 3, False), (1, 2, False), (2, None, False),
                                                   (2, 2, True)])
def test_reloaded_artifact_predicts_exactly_as_the_model(tmp_path, w_bits, a_bits, uniform):
    model = _trained_like(w_bits, a_bits, uniform)
    path = save_planes(model, tmp_path / "m.safetensors")
    fresh = quantize_model_(_net(), w_bits, a_bits, keep_float=("0", "8"), uniform=uniform)
    reloaded = load_planes(path, fresh).eval()
    x = torch.randn(16, 3, 6, 6)
    assert torch.equal(model(x), reloaded(x))
    for name, m in lq_layers(model).items():  # the same codes and quantized weights, bit for bit
        r = lq_layers(reloaded)[name]
        assert torch.equal(m.w_quant.encode(m.weight)[1], r.w_quant.encode(r.weight)[1])
        assert torch.equal(m.w_quant.encode(m.weight)[0], r.weight)
        assert torch.equal(weight_planes(m), weight_planes(r))
    if a_bits is not None:  # and the reloaded planes run bitwise to the same predictions
        with bitwise_layers(reloaded):
            assert torch.equal(reloaded(x).argmax(1), model(x).argmax(1))


def test_the_file_holds_planes_and_bases_not_float_weights(tmp_path):
    from safetensors import safe_open

    model = _trained_like(2, 2)
    path = save_planes(model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        planes = f.get_tensor("3.weight.planes")
    assert "3.weight" not in keys and "5.weight" not in keys and "0.weight" in keys  # first layer stays float
    assert planes.dtype == torch.uint8 and planes.shape == (12, 2, 9)  # [C_out, K_w, ceil(8*9 / 8)]
    assert {"3.w_quant.basis", "3.a_quant.basis"} <= keys


def test_reloading_into_other_bits_is_a_clear_error(tmp_path):
    path = save_planes(_trained_like(2, 2), tmp_path / "m.safetensors")
    with pytest.raises(NnqError, match="bits"):
        load_planes(path, quantize_model_(_net(), 3, 3, keep_float=("0", "8")))


def test_stored_fields_count_weights_at_k_bits_and_bases_in_fp32():
    model = _trained_like(2, 2)
    fields = {f.name: f for f in stored_fields(model)}
    assert fields["3.weight"].bits == 2 * model[3].weight.numel()
    assert fields["3.w_quant.basis"].bits == 32 * 12 * 2 and fields["3.a_quant.basis"].bits == 32 * 2
    assert fields["0.weight"].bits == 32 * model[0].weight.numel()  # float first layer
