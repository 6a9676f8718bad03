"""LQ-Nets math: levels v^T e, nearest-level encoding, QEM (Alg. 1), K = 1 closed form, layers and conversion."""

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.lqnets import (LqConv2d, LqLinear, LqQuantizer, encode, level_codes, lq_layers, lq_quantizers, qem,
                           quantization_error, quantize_model_, sorted_levels, update_bases_)
from papers.lqnets.lqnets import init_basis


def test_level_codes_are_every_k_bit_word():
    w = level_codes(2, signed=True)
    assert w.tolist() == [[-1, -1], [1, -1], [-1, 1], [1, 1]]
    a = level_codes(3, signed=False)
    assert a.shape == (8, 3) and set(a.unique().tolist()) == {0.0, 1.0}
    assert len({tuple(r) for r in a.tolist()}) == 8


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("signed", [True, False])
def test_exactly_2_to_the_k_sorted_levels_and_value_set(k, signed):
    g = torch.Generator().manual_seed(k)
    basis = torch.rand(3, k, generator=g) + 0.1
    codes = level_codes(k, signed)
    levels, order = sorted_levels(basis, codes)
    assert levels.shape == (3, 2 ** k)
    assert (levels[:, 1:] > levels[:, :-1]).all()  # sorted, and 2^K distinct for a generic basis
    assert torch.allclose(levels, (basis @ codes.T).gather(1, order))
    x = torch.linspace(-5, 5, 4001).expand(3, -1)
    x_hat, code = encode(x, basis, codes)
    for c in range(3):
        assert set(x_hat[c].unique().tolist()) == set(levels[c].tolist())  # every level used, nothing else
    # nearest level: no level is closer than the chosen one
    dist = (x[..., None] - levels[:, None, :]).abs()
    assert torch.allclose((x - x_hat).abs(), dist.min(-1).values, atol=1e-6)
    # the code's bits reproduce the value: x_hat = v^T e_code
    assert torch.allclose(x_hat, (basis[:, None, :] * codes[code]).sum(-1), atol=1e-6)
    assert torch.equal(encode(x_hat, basis, codes)[0], x_hat)  # idempotent


@pytest.mark.parametrize("k,signed", [(1, True), (2, True), (3, True), (2, False), (3, False), (4, False)])
def test_qem_never_increases_the_quantization_error(k, signed):
    torch.manual_seed(k)
    x = torch.randn(4, 500) * torch.tensor([[0.1], [1.0], [3.0], [0.5]])
    if not signed:
        x = x.relu()
    codes = level_codes(k, signed)
    basis = torch.rand(4, k) * 0.3 + 0.01  # a poor start
    _, errors = qem(x, basis, codes, 15, momentum=0.0)
    for before, after in zip(errors, errors[1:]):
        assert after <= before * (1 + 1e-9) + 1e-9
    assert errors[-1] < 0.9 * errors[0]  # and it does improve on a poor start


def test_k1_weights_give_the_closed_form_plus_minus_mean_abs():
    torch.manual_seed(0)
    w = torch.randn(5, 64)
    basis, _ = qem(w, torch.full((5, 1), 0.7), level_codes(1, signed=True), 1, eps=0.0)
    assert torch.allclose(basis[:, 0], w.abs().mean(1), atol=1e-6)
    x_hat, _ = encode(w, basis, level_codes(1, signed=True))
    assert torch.allclose(x_hat, torch.sign(w) * w.abs().mean(1, keepdim=True), atol=1e-6)


def test_uniform_ablation_keeps_evenly_spaced_levels_and_fits_worse_than_lq():
    torch.manual_seed(0)
    x = torch.randn(2, 4000) ** 3  # heavy tails: evenly spaced levels are a poor fit
    codes = level_codes(2, signed=True)
    start = init_basis(x, 2, True)
    lq, _ = qem(x, start, codes, 20, eps=0.0)
    uni, uerr = qem(x, start, codes, 20, eps=0.0, uniform=True)
    lv = sorted_levels(uni, codes)[0]
    gaps = lv[:, 1:] - lv[:, :-1]
    assert torch.allclose(gaps, gaps[:, :1].expand_as(gaps), rtol=1e-5)
    assert (quantization_error(x, lq, codes) < quantization_error(x, uni, codes)).all()
    assert all(b >= a - 1e-9 for a, b in zip(uerr[1:], uerr))  # the uniform QEM is monotone too


def test_ridge_keeps_the_basis_when_a_bit_plane_is_unused():
    x = torch.zeros(1, 100)  # every activation at level 0: B B^T = 0, the plain solve is singular
    codes = level_codes(2, signed=False)
    basis, errors = qem(x, torch.tensor([[0.5, 1.0]]), codes, 3)
    assert torch.allclose(basis, torch.tensor([[0.5, 1.0]])) and errors[-1] == 0.0


def test_quantizer_training_step_records_the_b_step_and_moves_the_basis_by_the_moving_average():
    torch.manual_seed(0)
    q = LqQuantizer(2, signed=False, momentum=0.9).train()
    x = torch.rand(64, 8)
    q(x)  # initialise on the first batch (its B-step is recorded too)
    assert q.update_basis_()
    before = q.basis.clone()
    x2 = torch.rand(64, 8) * 2
    q(x2)
    assert q.update_basis_()
    codes = level_codes(2, signed=False)
    one, _ = qem(x2.reshape(1, -1), before, codes, 1)  # what one QEM step on this batch gives
    assert torch.allclose(q.basis, 0.9 * before + 0.1 * one, atol=1e-5)
    assert not q.update_basis_()  # nothing seen since: no change


def test_straight_through_gradients():
    q = LqQuantizer(2, signed=False).train()
    q.initialize(torch.rand(100))
    top = q.levels().max().item()
    x = torch.tensor([0.0, 0.3 * top, 0.9 * top, 1.5 * top, 3.0 * top], requires_grad=True)
    q(x).backward(torch.ones(5))
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # activations: zero above the top level
    w = torch.randn(3, 4, requires_grad=True)
    qw = LqQuantizer(2, signed=True, channels=3).train()
    out = qw(w)
    out.backward(torch.arange(12.0).reshape(3, 4))
    assert torch.equal(w.grad, torch.arange(12.0).reshape(3, 4))  # weights: identity
    assert torch.equal(out.detach(), qw.encode(w)[0])  # forward is exactly the quantized value


def test_bits_none_is_the_identity_and_uninitialised_eval_is_a_clear_error():
    x = torch.randn(4)
    assert LqQuantizer(None, signed=True)(x) is x
    with pytest.raises(NnqError, match="basis"):
        LqQuantizer(2, signed=True).eval()(x)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def test_conversion_keeps_first_and_last_float_and_state_dict_keys():
    fp = _net()
    q = quantize_model_(_net(), 2, 2, keep_float=("0", "5"))
    assert set(lq_layers(q)) == {"2"} and set(fp.state_dict()) <= set(q.state_dict())
    assert isinstance(q[2], nn.Conv2d) and q[2].weight_bits == 2 and q[2].w_quant.channels == 8
    wo = quantize_model_(_net(), 2, None, keep_float=("0", "5"))
    assert set(lq_quantizers(wo)) == {"2.w_quant"}  # weight-only: activations float
    with pytest.raises(NnqError):
        quantize_model_(_net(), 2, 2, keep_float=("nope",))


def test_every_parameter_gets_a_gradient_and_the_callback_updates_every_basis():
    torch.manual_seed(0)
    q = quantize_model_(_net(), 2, 2, keep_float=("0",))
    q(torch.randn(4, 3, 6, 6)).logsumexp(1).sum().backward()
    missing = [n for n, p in q.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert update_bases_(q) == 4  # two layers x (weights, activations)


def test_layers_compute_on_quantized_weights_and_inputs():
    torch.manual_seed(0)
    conv = LqConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1, bias=False), w_bits=2, a_bits=3)
    lin = LqLinear.from_float(nn.Linear(5, 4), w_bits=3, a_bits=2)
    x = torch.rand(2, 2, 5, 5)
    y = conv.train()(x)
    ref = nn.functional.conv2d(conv.a_quant.encode(x)[0], conv.w_quant.encode(conv.weight)[0], padding=1)
    torch.testing.assert_close(y, ref)
    xl = torch.rand(3, 5)
    yl = lin.train()(xl)
    torch.testing.assert_close(yl, nn.functional.linear(lin.a_quant.encode(xl)[0], lin.w_quant.encode(lin.weight)[0],
                                                        lin.bias))


def test_error_to_float_shrinks_with_bits():
    torch.manual_seed(0)
    w = torch.randn(8, 200)
    errs = []
    for k in (1, 2, 3, 4):
        codes = level_codes(k, signed=True)
        basis, _ = qem(w, init_basis(w, k, True), codes, 10)
        errs.append(float(quantization_error(w, basis, codes).sum()))
    assert errs[0] > errs[1] > errs[2] > errs[3]
