"""DoReFa math: quantize_k, f_w^k (and the 1-bit weights), f_a^k, f_g^k, the layers and the conversion."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.dorefa import (DorefaConv2d, DorefaLinear, dorefa_layers, quantize_activation, quantize_grad_ste,
                           quantize_gradient, quantize_k, quantize_k_ste, quantize_model_, quantize_weight)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_quantize_k_has_exactly_2_to_the_k_levels_in_0_1(k):
    r = torch.linspace(0, 1, 100_001)
    q = quantize_k(r, k)
    levels = torch.unique(q)
    n = 2 ** k - 1
    assert len(levels) == 2 ** k
    assert torch.allclose(levels, torch.arange(n + 1) / n)
    assert torch.equal(quantize_k(q, k), q)  # idempotent
    assert (q - r).abs().max() <= 0.5 / n + 1e-7  # nearest level


def test_quantize_k_ste_passes_the_gradient_straight_through():
    r = torch.tensor([0.1, 0.4, 0.6, 0.95], requires_grad=True)
    up = torch.tensor([1.0, -2.0, 3.0, 4.0])
    quantize_k_ste(r, 2).backward(up)
    assert torch.equal(r.grad, up)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_weight_quantizer_lies_in_minus_1_1_on_2_to_the_k_levels(k):
    torch.manual_seed(k)
    w = torch.randn(64, 32, 3, 3) * 0.3
    q = quantize_weight(w, k)
    n = 2 ** k - 1
    assert q.min() >= -1 and q.max() <= 1
    assert q.abs().max() == 1  # the largest |tanh(w)| maps to an end of the range
    levels = torch.unique(q)
    assert len(levels) <= 2 ** k
    assert torch.allclose(levels, torch.round((levels + 1) / 2 * n) / n * 2 - 1, atol=1e-6)  # on the grid
    # the formula of Sec. 2.3, written out
    t = torch.tanh(w)
    ref = 2 * torch.round((t / (2 * t.abs().max()) + 0.5) * n) / n - 1
    assert torch.allclose(q, ref, atol=1e-6)


def test_one_bit_weights_equal_sign_times_mean_abs_and_pass_the_gradient():
    torch.manual_seed(0)
    w = torch.randn(16, 8, requires_grad=True)
    q = quantize_weight(w, 1)
    e = w.detach().abs().mean()
    assert torch.equal(q.detach(), torch.sign(w.detach()) * e)
    assert torch.unique(q.detach()).tolist() == [-e.item(), e.item()]
    up = torch.randn(16, 8)
    q.backward(up)
    assert torch.equal(w.grad, up)  # backward: dc/dr_i = dc/dr_o
    assert quantize_weight(torch.zeros(3), 1).tolist() == [0.0, 0.0, 0.0]  # E|w| = 0: all levels 0


def test_weight_and_activation_bits_32_are_the_identity_and_the_clip():
    w = torch.randn(10)
    assert quantize_weight(w, 32) is w
    x = torch.tensor([-1.0, 0.3, 1.7])
    assert quantize_activation(x, 32).tolist() == pytest.approx([0.0, 0.3, 1.0])


def test_activation_quantizer_clips_to_0_1_quantizes_and_has_the_clip_mask_as_gradient():
    x = torch.tensor([-0.5, 0.1, 0.4, 0.8, 1.5], requires_grad=True)
    q = quantize_activation(x, 2)
    assert q.tolist() == pytest.approx([0.0, 0.0, 1 / 3, 2 / 3, 1.0])
    q.backward(torch.ones(5))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def _exact_std_of_one_draw(dr: torch.Tensor, k: int) -> torch.Tensor:
    """Std of f_g^k(dr) over its noise: dithered rounding of y = n (dr/(2M) + 1/2) has variance frac(y)(1 - frac(y))
    in units of the step 2M/n."""
    n = 2 ** k - 1
    m = dr.abs().amax(dim=1, keepdim=True)
    y = n * (dr / (2 * m) + 0.5)
    f = y - y.floor()
    return (2 * m / n) * (f * (1 - f)).sqrt()


@pytest.mark.parametrize("k", [2, 4])
def test_gradient_quantizer_is_unbiased_within_its_derived_tolerance(k):
    torch.manual_seed(k)
    dr = torch.randn(8, 50) * torch.logspace(-3, 1, 8)[:, None]  # samples of very different scales
    draws = 4000
    q = quantize_gradient(dr.repeat(draws, 1), k).reshape(draws, *dr.shape)  # one sample per row: same max_0
    mean = q.double().mean(0)
    sd_mean = _exact_std_of_one_draw(dr.double(), k) / draws ** 0.5
    err = (mean - dr.double()).abs()
    # 6 standard deviations of the mean of `draws` draws: P(any of 400 elements beyond) ~ 1e-6
    tol = 6 * sd_mean + 1e-6 * dr.abs().amax(1, keepdim=True)
    assert (err <= tol).all()
    z2 = ((mean - dr.double()) / sd_mean.clamp_min(1e-30))[sd_mean > 0].pow(2).mean()
    assert z2 < 1.5  # E[z^2] = 1 for an unbiased estimate with this variance
    # without the noise (plain rounding) the same test fails: the noise is what removes the bias
    plain = quantize_gradient(dr, k, noise=torch.zeros_like(dr)).double()
    assert ((plain - dr.double()).abs() > tol).any()


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_gradient_quantizer_has_at_most_2_to_the_k_levels_per_sample_on_its_grid(k):
    torch.manual_seed(0)
    dr = torch.randn(6, 3, 5, 5) * torch.tensor([1e-4, 1e-2, 1.0, 3.0, 100.0, 0.5])[:, None, None, None]
    q = quantize_gradient(dr, k)
    n = 2 ** k - 1
    m = dr.abs().amax(dim=(1, 2, 3), keepdim=True)
    for i in range(6):
        levels = torch.unique(q[i])
        assert len(levels) <= 2 ** k
        j = (levels / (2 * m[i].flatten()) + 0.5) * n  # the level's index: an integer in [0, n]
        assert torch.allclose(j, j.round(), atol=1e-4) and j.min() >= -1e-4 and j.max() <= n + 1e-4
    assert (q.abs() <= m * (1 + 1e-6)).all()


def test_gradient_bits_32_leave_gradients_unchanged():
    torch.manual_seed(0)
    x = torch.randn(4, 7, requires_grad=True)
    up = torch.randn(4, 7)
    assert quantize_gradient(up, 32) is up
    quantize_grad_ste(x, 32).backward(up)
    assert torch.equal(x.grad, up)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    q32 = DorefaConv2d.from_float(conv, w_bits=2, a_bits=2, g_bits=32)
    inp = torch.rand(2, 3, 6, 6, requires_grad=True)
    q32(inp).pow(2).sum().backward()
    w = conv.weight.detach().clone().requires_grad_()
    ref_in = inp.detach().clone().requires_grad_()
    F.conv2d(quantize_activation(ref_in, 2), quantize_weight(w, 2), conv.bias, padding=1).pow(2).sum().backward()
    assert torch.equal(q32.weight.grad, w.grad) and torch.equal(inp.grad, ref_in.grad)


def test_low_gradient_bits_quantize_the_gradient_of_the_layer_output():
    torch.manual_seed(0)
    x = torch.randn(3, 40, requires_grad=True)
    up = torch.randn(3, 40)
    quantize_grad_ste(x, 2).backward(up)
    assert not torch.equal(x.grad, up)
    for i in range(3):
        assert len(torch.unique(x.grad[i])) <= 4
    assert torch.equal(quantize_grad_ste(x, 2), x)  # the forward pass is the identity


def test_bad_bits_are_a_clear_error():
    with pytest.raises(NnqError, match="bits"):
        quantize_weight(torch.randn(3), 0)
    with pytest.raises(NnqError, match="bits"):
        DorefaLinear(3, 4, w_bits=2, a_bits=2, g_bits=17)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 10))


def test_conversion_keeps_first_and_last_layers_float_and_the_state_dict_keys():
    fp = _net()
    q = quantize_model_(_net(), 1, 2, 6, first="0", last="9")
    assert type(q[0]) is nn.Conv2d and type(q[9]) is nn.Linear  # full precision, not a subclass
    assert set(dorefa_layers(q)) == {"3", "7"}
    assert isinstance(q[3], nn.Conv2d) and isinstance(q[7], nn.Linear)
    assert (q[3].w_bits, q[3].a_bits, q[3].g_bits) == (1, 2, 6) and q[3].weight_bits == 1
    assert set(fp.state_dict()) == set(q.state_dict())
    with pytest.raises(NnqError):
        quantize_model_(_net(), 1, 2, 6, first="nope", last="9")
    # the float first layer computes exactly as nn.Conv2d on its unquantized input
    x = torch.randn(2, 3, 6, 6)
    q[0].load_state_dict(fp[0].state_dict())
    assert torch.equal(q[0](x), fp[0](x))


def test_every_parameter_gets_a_finite_gradient():
    torch.manual_seed(0)
    for bits in ((1, 1, 2), (2, 2, 4), (4, 4, 32), (32, 32, 32)):
        q = quantize_model_(_net(), *bits, first="0", last="9")
        q(torch.randn(4, 3, 6, 6)).logsumexp(1).sum().backward()
        missing = [n for n, p in q.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert missing == [], bits


def test_conv_and_linear_compute_on_quantized_weights_and_inputs():
    torch.manual_seed(0)
    conv = DorefaConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1, bias=False), w_bits=2, a_bits=3)
    x = torch.rand(2, 2, 5, 5) * 1.5
    w_q = quantize_weight(conv.weight, 2)
    x_q = torch.round(torch.clamp(x, 0, 1) * 7) / 7
    torch.testing.assert_close(conv(x), F.conv2d(x_q, w_q, padding=1))
    lin = DorefaLinear.from_float(nn.Linear(6, 4), w_bits=1, a_bits=32)
    x = torch.randn(3, 6)
    w1 = torch.sign(lin.weight) * lin.weight.abs().mean()
    torch.testing.assert_close(lin(x), F.linear(x, w1, lin.bias))  # A = 32: the input as given


def test_official_example_figures_match_their_quotes_and_read_as_top1():
    import re

    from papers.dorefa.paper_numbers import OFFICIAL_EXAMPLE_ERROR, official_top1

    for (net, w, a, g), (lo, hi, ref) in OFFICIAL_EXAMPLE_ERROR.items():
        quoted = re.search(r"'([^']*)'$", ref).group(1)  # the docstring's own words, errors in %
        assert [float(v) for v in re.findall(r"(\d+\.\d)(?=~|%)", quoted)] == ([lo] if lo == hi else [lo, hi])
        assert lo <= hi and "official" not in ref and ref.startswith("tensorpack examples/DoReFa-Net/")
        top1 = official_top1(net, w, a, g)
        assert [float(v) for v in top1.split("–")] == sorted({round(100 - hi, 1), round(100 - lo, 1)})
