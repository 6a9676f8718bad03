"""LSQ math: Eq. (1)-(3), the gradient scale of Sec. 2.2, the init of Sec. 2.1, layers and conversion."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.lsq import (LsqConv2d, LsqLinear, LsqQuantizer, grad_scale_factor, init_step, lsq_layers, lsq_quantize,
                        quant_range, quantize_model_)


def test_quant_range_signed_and_unsigned_have_2_to_the_b_levels():
    assert quant_range(2, signed=True) == (2, 1)
    assert quant_range(3, signed=False) == (0, 7)
    for b in (2, 3, 4, 8):
        for signed in (True, False):
            q_n, q_p = quant_range(b, signed)
            assert q_n + q_p + 1 == 2 ** b


def test_grad_of_s_equals_eq3_inside_below_and_above_the_range():
    # 2-bit signed: Q_N = 2, Q_P = 1; s = 0.5 -> v/s = [-3, -2, -1.4, -0.2, 0.3, 0.8, 1.0, 2.6]
    s = torch.tensor(0.5, requires_grad=True)
    v = torch.tensor([-1.5, -1.0, -0.7, -0.1, 0.15, 0.4, 0.5, 1.3], requires_grad=True)
    out = lsq_quantize(v, s, 2, 1, 1.0)
    assert out.tolist() == [-1.0, -1.0, -0.5, -0.0, 0.0, 0.5, 0.5, 0.5]
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    out.backward(upstream)
    # Eq. (3) per element: below (<= -Q_N): -2; inside: round(x) - x; above (>= Q_P): +1
    per_elem = [-2.0, -2.0, -1.0 + 1.4, 0.0 + 0.2, 0.0 - 0.3, 1.0 - 0.8, 1.0, 1.0]
    expected = sum(u * d for u, d in zip(upstream.tolist(), per_elem))
    assert s.grad.item() == pytest.approx(expected, abs=1e-5)
    # STE for v: pass inside, zero where clipped (v/s = -3, -2 and 1.0, 2.6 are clipped)
    assert v.grad.tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0]


def test_grad_scale_multiplies_only_the_gradient_of_s():
    torch.manual_seed(0)
    v0 = torch.randn(50)
    res = {}
    for g in (1.0, 0.125):
        s = torch.tensor(0.3, requires_grad=True)
        v = v0.clone().requires_grad_()
        out = lsq_quantize(v, s, 4, 3, g)
        out.pow(2).sum().backward()
        res[g] = (out.detach(), s.grad.item(), v.grad.clone())
    assert torch.equal(res[1.0][0], res[0.125][0])          # forward unchanged
    assert torch.equal(res[1.0][2], res[0.125][2])          # v's gradient unchanged
    assert res[0.125][1] == pytest.approx(0.125 * res[1.0][1], rel=1e-6)


def test_grad_scale_factor_is_one_over_sqrt_n_qp():
    assert grad_scale_factor("nqp", 100, 7) == pytest.approx(1 / math.sqrt(700))
    assert grad_scale_factor("n", 100, 7) == pytest.approx(0.1)
    assert grad_scale_factor("one", 100, 7) == 1.0
    with pytest.raises(NnqError):
        grad_scale_factor("bogus", 1, 1)


def test_layer_applies_n_w_times_q_p_to_the_weight_step():
    torch.manual_seed(0)
    lin = LsqLinear(6, 5, w_bits=3, a_bits=3)
    ref = LsqLinear(6, 5, w_bits=3, a_bits=3, grad_scale="one")
    ref.load_state_dict(lin.state_dict())
    x = torch.rand(4, 6)
    for m in (lin, ref):
        m(x).sum().backward()
    q_p = 3  # signed 3-bit weights: Q_P = 2^2 - 1
    assert lin.w_quant.s.grad.item() == pytest.approx(ref.w_quant.s.grad.item() / math.sqrt(30 * q_p), rel=1e-5)
    # activations: N_F = 6 features per sample, unsigned Q_P = 7
    assert lin.a_quant.s.grad.item() == pytest.approx(ref.a_quant.s.grad.item() / math.sqrt(6 * 7), rel=1e-5)
    assert torch.equal(lin.weight.grad, ref.weight.grad)


def test_init_is_twice_mean_abs_over_sqrt_qp():
    v = torch.tensor([-3.0, 1.0, 2.0, -2.0])
    assert init_step(v, 7).item() == pytest.approx(2 * 2.0 / math.sqrt(7))
    assert init_step(v, 7, "naive").item() == pytest.approx(3.0 / 7)
    q = LsqQuantizer(3, signed=True)
    q.train()(v)
    assert q.s.item() == pytest.approx(2 * 2.0 / math.sqrt(3)) and bool(q.initialized)
    s_before = q.s.item()
    q(v * 10)  # initialised once, from the first batch only
    assert q.s.item() == s_before


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_quantizer_has_exactly_2_to_the_b_levels_and_is_idempotent(bits, signed):
    q = LsqQuantizer(bits, signed=signed)
    q.initialize(torch.ones(1))
    with torch.no_grad():
        q.s.fill_(0.01)
        v = torch.linspace(-20, 20, 20001)
        out = q.train()(v)
        levels = torch.unique(out)
        assert len(levels) == 2 ** bits
        q_n, q_p = quant_range(bits, signed)
        assert torch.allclose(levels, torch.arange(-q_n, q_p + 1) * 0.01)
        assert torch.equal(q(out), out)


def test_bits_none_is_the_identity():
    q = LsqQuantizer(None, signed=True)
    v = torch.randn(10)
    assert q(v) is v


def test_uninitialised_quantizer_in_eval_mode_is_a_clear_error():
    with pytest.raises(NnqError, match="initialised"):
        LsqQuantizer(4, signed=True).eval()(torch.randn(3))


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def test_at_8_bits_a_layer_is_within_its_step_size_bound_of_float():
    torch.manual_seed(0)
    fp = nn.Linear(64, 16)
    x = torch.rand(32, 64)
    q = LsqLinear.from_float(fp, w_bits=8, a_bits=8).train()
    q(x)  # initialise both step sizes
    s_w, s_a = q.w_quant.s.item(), q.a_quant.s.item()
    assert (q.weight.abs() / s_w).max() < 128 and (x / s_a).max() < 255  # nothing clipped at 8 bits
    err = (q(x) - fp(x)).abs()
    # |x_hat w_hat - x w| <= s_a/2 |w|_1 + s_w/2 |x|_1 + n s_a s_w / 4, per output (rounding errors <= s/2)
    bound = s_a / 2 * fp.weight.abs().sum(1)[None] + s_w / 2 * x.abs().sum(1, keepdim=True) + 64 * s_a * s_w / 4
    assert (err <= bound + 1e-6).all()


def test_model_error_to_float_shrinks_with_bits():
    torch.manual_seed(0)
    fp = _net().eval()
    x = torch.randn(16, 3, 6, 6)
    errs = {}
    for bits in (2, 4, 8):
        q = quantize_model_(_net(), bits, bits, first="0", last="5", edge_bits=None)
        q.load_state_dict(fp.state_dict(), strict=False)
        q.train()(x)  # initialise the step sizes on one batch
        errs[bits] = (fp(x) - q.eval()(x)).abs().max().item()
    assert errs[8] < errs[4] < errs[2]
    assert errs[8] < 0.1 * fp(x).abs().max().item()


def test_conversion_keeps_state_dict_keys_and_edge_layers():
    fp = _net()
    keys = set(fp.state_dict())
    q = quantize_model_(_net(), 3, 3, first="0", last="5", edge_bits=None)
    assert set(lsq_layers(q)) == {"2"}
    assert keys <= set(q.state_dict())
    q8 = quantize_model_(_net(), 3, 3, first="0", last="5", edge_bits=8)
    layers = lsq_layers(q8)
    assert layers["0"].weight_bits == 8 and layers["0"].a_quant.signed
    assert layers["2"].weight_bits == 3 and not layers["2"].a_quant.signed and layers["5"].act_bits == 8
    assert isinstance(layers["0"], nn.Conv2d) and isinstance(layers["5"], nn.Linear)
    with pytest.raises(NnqError):
        quantize_model_(_net(), 3, 3, first="nope", last="5")


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    q = quantize_model_(_net(), 3, 3, first="0", last="5", edge_bits=8)
    q(torch.randn(4, 3, 6, 6)).logsumexp(1).sum().backward()
    missing = [n for n, p in q.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_conv_from_float_computes_with_quantized_weights_and_inputs():
    torch.manual_seed(0)
    conv = LsqConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1, bias=False), w_bits=4, a_bits=4)
    x = torch.rand(2, 2, 5, 5)
    y = conv.train()(x)
    w_hat = conv.w_quant.codes(conv.weight).float() * conv.w_quant.s
    x_hat = conv.a_quant.codes(x).float() * conv.a_quant.s
    torch.testing.assert_close(y, nn.functional.conv2d(x_hat, w_hat, padding=1))


def test_an_ablation_run_is_its_own_method_so_the_study_never_pools_it_with_lsq():
    from papers.lsq.config import PRESETS
    from papers.lsq.train import method_name

    base = PRESETS["cifar10_resnet20"]
    variants = [replace(base, grad_scale="one"), replace(base, grad_scale="n"), replace(base, init="naive"),
                replace(base, distill=True)]
    names = {method_name(base), *map(method_name, variants)}
    assert method_name(base) == "LSQ" and len(names) == 5


def test_the_ablation_lines_compare_each_seed_with_the_paper_choices_on_the_same_seed():
    from types import SimpleNamespace

    from papers.lsq.results import _ablation_findings, _ablations

    def run(seed, value, grad_scale="nqp", distill=False):
        summary = SimpleNamespace(seed=seed, value=value, w_bits=2, a_bits=2, setting="cifar10_resnet20",
                                  preset="cifar10_resnet20", extra={"lr": 0.003})
        return SimpleNamespace(summary=summary, config={"grad_scale": grad_scale, "init": "paper", "distill": distill,
                                                        "arch": "resnet20"})

    paper = [run(0, 73.0), run(1, 74.0), run(2, 72.0)]
    no_scale = [run(2, 72.5, "one"), run(0, 71.0, "one"), run(1, 73.5, "one")]  # seed 2 worse with the paper's g
    runs = [*no_scale, *paper, run(0, 99.0, distill=True)]
    cells = _ablations(runs)
    assert list(cells) == [("cifar10_resnet20", "resnet20")]
    assert [[r.summary.seed for r in cell] for cell in cells[("cifar10_resnet20", "resnet20")].values()] == \
           [[0, 1, 2], [0, 1, 2], [0]]  # the paper's choices first, seeds in order
    no_scale_line, distill_line = _ablation_findings(runs).splitlines()
    assert "s0 +2.00, s1 +0.50, s2 -0.50 (mean +0.67 pts)" in no_scale_line
    assert "ahead on 2 of 3 seeds" in no_scale_line
    assert "s0 -26.00" in distill_line and "ahead on 0 of 1 seed;" in distill_line
