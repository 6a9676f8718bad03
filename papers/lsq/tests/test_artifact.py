"""The real artifact: exact b-bit packing, exact reload, integer-only layer arithmetic, stored bits."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.lsq import LsqConv2d, LsqLinear, lsq_layers, quantize_model_
from papers.lsq.artifact import integer_forward, load_packed, pack_codes, save_packed, stored_fields, unpack_codes
from papers.lsq.train import distillation_loss


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_pack_unpack_is_exact_and_takes_b_bits_per_code(bits):
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2 ** bits, (1001,), generator=g)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_codes(packed, bits, 1001), codes)


def test_a_code_that_does_not_fit_is_refused():
    with pytest.raises(NnqError):
        pack_codes(torch.tensor([0, 4]), 2)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 10))


def _trained_like(edge_bits, bits=3):
    torch.manual_seed(0)
    model = quantize_model_(_net(), bits, bits, first="0", last="6", edge_bits=edge_bits)
    model.train()(torch.randn(8, 3, 6, 6))  # initialise every step size
    with torch.no_grad():  # move the step sizes and weights off their init, as training would
        for m in lsq_layers(model).values():
            m.w_quant.s.mul_(1.3)
            m.weight.add_(0.01 * torch.randn_like(m.weight))
    return model.eval()


@pytest.mark.parametrize("edge_bits", [8, None])
def test_reloaded_artifact_predicts_exactly_as_the_model(tmp_path, edge_bits):
    model = _trained_like(edge_bits)
    path = save_packed(model, tmp_path / "m.safetensors")
    fresh = quantize_model_(_net(), 3, 3, first="0", last="6", edge_bits=edge_bits)
    reloaded = load_packed(path, fresh).eval()
    x = torch.randn(32, 3, 6, 6)
    assert torch.equal(model(x), reloaded(x))
    for name, m in lsq_layers(model).items():  # the same integer codes, not just close weights
        r = lsq_layers(reloaded)[name]
        assert torch.equal(m.w_quant.codes(m.weight), r.w_quant.codes(r.weight))


def test_reloading_into_other_bits_is_a_clear_error(tmp_path):
    path = save_packed(_trained_like(8), tmp_path / "m.safetensors")
    with pytest.raises(NnqError, match="bits"):
        load_packed(path, quantize_model_(_net(), 4, 4, first="0", last="6", edge_bits=8))


def test_integer_forward_equals_the_simulated_layer():
    torch.manual_seed(0)
    conv = LsqConv2d.from_float(nn.Conv2d(4, 6, 3, stride=2, padding=1), w_bits=4, a_bits=4)
    lin = LsqLinear.from_float(nn.Linear(20, 7), w_bits=3, a_bits=3)
    for layer, x in ((conv, torch.rand(3, 4, 9, 9)), (lin, torch.rand(5, 20))):
        layer.train()(x)
        layer.eval()
        x = x * 1.5  # some inputs above the top level: clipped the same way in both paths
        sim, real = layer(x), integer_forward(layer, x)
        assert torch.allclose(sim, real, rtol=1e-5, atol=1e-6)


def test_integer_accumulator_holds_only_integers():
    torch.manual_seed(0)
    lin = LsqLinear.from_float(nn.Linear(16, 4, bias=False), w_bits=2, a_bits=2)
    x = torch.rand(3, 16)
    lin.train()(x)
    lin.eval()
    s = (lin.w_quant.s * lin.a_quant.s).item()
    acc = integer_forward(lin, x).double() / s
    assert torch.allclose(acc, acc.round(), atol=1e-4)
    assert acc.abs().max() <= 16 * 3 * 2  # |x_bar| <= Q_P = 3, |w_bar| <= Q_N = 2


def test_stored_fields_count_codes_at_their_width():
    model = _trained_like(8, bits=3)
    fields = {f.name: f for f in stored_fields(model)}
    assert fields["3.weight"].bits == 3 * model[3].weight.numel()
    assert fields["0.weight"].bits == 8 * model[0].weight.numel()
    assert fields["3.w_quant.s"].bits == 32 and fields["1.running_mean"].bits == 32 * 8
    float_model = _net()
    float_bits = sum(p.numel() for p in float_model.parameters()) * 32
    assert sum(f.bits for f in fields.values()) < float_bits


def test_distillation_loss_is_cross_entropy_at_weight_0_and_kl_at_weight_1():
    torch.manual_seed(0)
    student, teacher = nn.Linear(5, 3), nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    loss0 = distillation_loss(student, teacher, 0.0, 2.0)
    logits = student.train()(x)
    assert torch.allclose(loss0(logits, y), F.cross_entropy(logits, y))
    same = distillation_loss(student, student, 1.0, 2.0)  # a student equal to its teacher: zero KL
    assert same(student.train()(x), y).abs().item() < 1e-6
    loss1 = distillation_loss(student, teacher, 1.0, 2.0)
    logits = student.train()(x)
    t = teacher(x).detach()
    kl = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(t / 2, 1), reduction="batchmean") * 4
    assert torch.allclose(loss1(logits, y), kl, atol=1e-6)
