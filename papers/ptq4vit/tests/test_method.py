"""PTQ4ViT's math: the twin uniform quantizers' levels, the Hessian-guided metric against a hand computation, the
searches never worse than their start, the scales and packed artifacts' round trips, and W8A8 close to float."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.ptq4vit import models as pm
from papers.ptq4vit import ptq4vit as P
from papers.ptq4vit.artifact import load_packed, pack_codes, save_packed, unpack_codes


@pytest.mark.parametrize("bits", [6, 8])
@pytest.mark.parametrize("m", [0, 3, 7])
def test_twin_softmax_two_ranges_with_the_2m_relation_and_exact_ends(bits, m):
    big_l = 2 ** (bits - 1) - 1
    d2 = P.softmax_delta_r2(bits)
    d1 = d2 / 2**m
    levels = P.twin_softmax_levels(m, bits)
    assert levels.numel() <= 2**bits  # a range flag + k-1 bits
    r1, r2 = torch.arange(big_l + 1) * d1, torch.arange(big_l + 1) * d2
    assert torch.allclose(levels, torch.unique(torch.cat([r1, r2])))
    assert d2 / d1 == 2**m and d2 == pytest.approx(1 / big_l)
    # 0, the end of R1 (L Delta_R1) and the end of R2 (1) are levels, and each level maps to itself
    ends = torch.tensor([0.0, big_l * d1, 1.0])
    assert torch.equal(P.twin_softmax(ends, m, bits), ends)
    assert torch.allclose(P.twin_softmax(levels, m, bits), levels)
    x = torch.rand(10_000) ** 4  # mostly small, like attention probabilities
    q = P.twin_softmax(x, m, bits)
    small, big = x <= big_l * d1, x > big_l * d1
    assert ((q[small] - x[small]).abs() <= d1 / 2 + 1e-7).all()  # R1: rounding error at most Delta_R1 / 2
    assert ((q[big] - x[big]).abs() <= d2 / 2 + 1e-7).all()
    assert torch.equal(P.twin_softmax(q, m, bits), q)  # idempotent


@pytest.mark.parametrize("bits", [6, 8])
def test_twin_gelu_negative_and_positive_ranges(bits):
    big_l = 2 ** (bits - 1) - 1
    d2 = torch.tensor(0.05)
    m = P.gelu_m(d2, bits)
    d1 = float(d2) / 2**m
    assert big_l * d1 >= abs(P.GELU_MIN) and big_l * d1 / 2 < abs(P.GELU_MIN)  # the finest R1 that reaches min GELU
    assert P.GELU_MIN == pytest.approx(-0.16997, abs=1e-5)
    levels = P.twin_gelu_levels(float(d2), bits)
    assert levels.numel() <= 2**bits
    assert (levels[levels < 0].diff() - d1).abs().max() < 1e-6 and (levels[levels > 0].diff() - float(d2)).abs().max() < 1e-6
    ends = torch.tensor([-big_l * d1, 0.0, big_l * float(d2)])
    assert torch.allclose(P.twin_gelu(ends, d2, bits), ends, atol=1e-7)
    x = nn.functional.gelu(torch.randn(10_000) * 2)
    q = P.twin_gelu(x, d2, bits)
    assert ((q - x)[x < 0].abs() <= d1 / 2 + 1e-7).all()  # the negative tail keeps its fine step
    assert torch.allclose(P.twin_gelu(q, d2, bits), q, atol=1e-7)


def test_uniform_quantizer_levels_and_zero():
    d = torch.tensor(0.1)
    x = torch.randn(1000) * 10
    q = P.quantize_uniform(x, d, 6)
    assert q.unique().numel() <= 64 and float(q.max()) == pytest.approx(31 * 0.1) and float(q.min()) == pytest.approx(-3.2)
    assert float(P.quantize_uniform(torch.tensor(0.0), d, 6)) == 0.0
    assert torch.equal(P.quantize_uniform(q, d, 6), q)


def test_hessian_metric_equals_a_hand_computation_on_a_tiny_layer():
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [1.5, 0.0, -0.5]]))
        lin.bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 2.0]])
    # the task loss: L = sum_r sum_j c_rj O_rj^2 / 2  =>  dL/dO = c * O
    c = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    xr = x.clone().requires_grad_(False)
    out = lin(xr).detach()
    g = c * out
    w_hat = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.0, -0.5]])  # one weight quantized away
    o_hat = nn.functional.linear(x, w_hat, lin.bias).detach()
    hand = 0.0
    for r in range(2):
        for j in range(2):
            hand += (g[r, j] * (o_hat[r, j] - out[r, j])) ** 2
    hand = float(hand) / 4  # mean over the 2 x 2 outputs
    got = P.linear_distance(lin.weight.detach(), lin.bias.detach(), P.LinearData(x, g), w_hat, x, "hessian")
    assert float(got) == pytest.approx(hand, rel=1e-6)
    # and the capture computes that very gradient
    plan = P.Plan(linears={"0": ("plain", 1)})
    seq = nn.Sequential(lin)
    cap = P.capture(seq, plan, lambda mdl: (c * mdl(x) ** 2).sum() / 2, need_grad=True)
    assert torch.allclose(cap.grads["0"][0], g, atol=1e-6)


def _data(seed=0, n=256, c_in=32, c_out=24):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, generator=gen)
    x[:, :2] *= 8  # outlier channels
    return x, torch.randn(c_out, c_in, generator=gen) / 4, torch.randn(c_out, generator=gen), \
        torch.randn(n, c_out, generator=gen)


@pytest.mark.parametrize("metric", P.METRICS)
@pytest.mark.parametrize("kind", ["uniform", "twin_gelu"])
def test_linear_search_never_worse_than_its_start(metric, kind):
    x, w, b, g = _data()
    if kind == "twin_gelu":
        x = nn.functional.gelu(x)
    st = P.SearchSettings(metric=metric, n=15, rounds=2)
    res = P.search_linear(w, b, P.LinearData(x, g), 6, 6, kind, st, groups=3)
    assert res["error"] <= res["start"] + 1e-12
    assert all(a >= b_ - 1e-12 for a, b_ in zip(res["curve"], res["curve"][1:]))  # monotone over the steps
    assert res["w_delta"].shape == (3,)


@pytest.mark.parametrize("metric", P.METRICS)
@pytest.mark.parametrize("a_kind", ["uniform", "twin_softmax"])
def test_matmul_search_never_worse_than_its_start(metric, a_kind):
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 10, 8, generator=gen)
    if a_kind == "twin_softmax":
        a = (a * 3).softmax(-1)
    b = torch.randn(2, 3, 8, 5, generator=gen)
    g = torch.randn(2, 3, 10, 5, generator=gen)
    res = P.search_matmul(P.MatMulData([a], [b], [g]), 6, a_kind, P.SearchSettings(metric=metric, n=10, rounds=2))
    assert res["error"] <= res["start"] + 1e-12
    assert all(x >= y - 1e-12 for x, y in zip(res["curve"], res["curve"][1:]))


def test_twin_softmax_beats_uniform_on_attention_probabilities_at_6_bits():
    gen = torch.Generator().manual_seed(4)
    probs = (torch.randn(4, 2, 16, 16, generator=gen) * 4).softmax(-1)
    v = torch.randn(4, 2, 16, 8, generator=gen)
    data = P.MatMulData([probs], [v])
    st = P.SearchSettings(metric="mse", n=20, rounds=1)
    assert P.search_matmul(data, 6, "twin_softmax", st)["error"] < P.search_matmul(data, 6, "uniform", st)["error"]


def _tiny_vit(seed=0):
    torch.manual_seed(seed)
    return pm.SmallViT(pm.ViTConfig(8, 2, 1, 10, 32, 2, 4, 4.0)).eval()


def test_scales_and_packed_artifacts_reproduce_the_quantized_model(tmp_path):
    model = _tiny_vit()
    x = torch.randn(16, 1, 8, 8)
    plan = pm.build_plan(model)
    assert len(plan.matmuls) == 4 and plan.convs == ["patch_embed"]
    assert plan.linears["blocks.0.mlp.fc2"][0] == "gelu"
    cap = P.capture(model, plan, lambda m: nn.functional.cross_entropy(m(x), m(x).argmax(1).detach()), True)
    st = P.SearchSettings(n=5, rounds=1)
    scales = P.search_model(model, plan, cap, 6, 6, st)
    q1 = P.apply_scales_(copy.deepcopy(model), scales, 6, 6)
    P.save_scales(scales, tmp_path / "s.safetensors")
    q2 = P.apply_scales_(copy.deepcopy(model), P.load_scales(tmp_path / "s.safetensors"), 6, 6)
    with torch.no_grad():
        y1, y2 = q1(x), q2(x)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, model(x))  # it is quantized
    save_packed(q1, tmp_path / "p.safetensors")
    q3 = load_packed(tmp_path / "p.safetensors", _tiny_vit(seed=1))  # another float init: everything is stored
    with torch.no_grad():
        assert torch.equal(q3(x), y1)
    assert isinstance(q3.blocks[0].mlp.fc2, P.PtqLinear) and q3.blocks[0].mlp.fc2.act_kind == "twin_gelu"
    assert q3.blocks[0].attn.matmul_av.a_kind == "twin_softmax"


@pytest.mark.parametrize("bits", [6, 8])
def test_pack_unpack_is_exact(bits):
    codes = torch.randint(-(2 ** (bits - 1)), 2 ** (bits - 1), (7, 13), dtype=torch.int8)
    stream = pack_codes(codes, bits)
    assert stream.numel() == -(-codes.numel() * bits // 8)
    assert torch.equal(unpack_codes(stream, bits, codes.shape), codes)


def test_timm_attention_with_matmul_modules_equals_timm():
    import timm

    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
        assert pm.attach_timm_matmuls_(m) == 2
        assert torch.allclose(m(x), ref, atol=1e-5)
    plan = pm.build_plan(m)
    assert plan.linears["blocks.0.attn.qkv"] == ("plain", 3) and plan.linears["blocks.0.mlp.fc2"][0] == "gelu"


def test_w8a8_on_a_tiny_trained_vit_stays_close_to_float():
    from common.data import load_dataset

    recipe = pm.TrainRecipe(dataset="digits", arch=pm.ViTConfig(8, 2, 1, 10, 32, 2, 4, 4.0), epochs=12,
                            batch_size=64, lr=3e-3)
    model, info = pm.train_small_vit(recipe, save=False, log=lambda *_: None)
    data = load_dataset("digits")
    x_cal = data.x_train[:32]
    plan = pm.build_plan(model)
    cap = P.capture(model, plan, lambda m: nn.functional.cross_entropy(m(x_cal), m(x_cal).argmax(1).detach()), True)
    q = P.apply_scales_(copy.deepcopy(model), P.search_model(model, plan, cap, 8, 8, P.SearchSettings(n=20, rounds=1)),
                        8, 8)
    with torch.no_grad():
        fp, qp = model(data.x_test).argmax(1), q(data.x_test).argmax(1)
    acc = lambda p: 100.0 * float((p == data.y_test).float().mean())
    assert acc(fp) > 70  # it learned
    assert abs(acc(qp) - acc(fp)) <= 1.5
    assert float((qp == fp).float().mean()) >= 0.97


def test_bad_input_is_one_clear_error(tmp_path):
    from papers.ptq4vit.config import PRESETS

    with pytest.raises(NnqError, match="metric"):
        P.distance(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), None, "kl")
    with pytest.raises(NnqError, match="gradients"):
        P.distance(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), None, "hessian")
    with pytest.raises(NnqError, match="bits"):
        dataclasses.replace(PRESETS["quick"], w_bits=3).validate()
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(NnqError, match="scales artifact"):
        P.load_scales(tmp_path / "x.safetensors")


def test_hugging_face_vit_attention_through_matmul_modules_equals_transformers():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    conf = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
                     patch_size=8, num_labels=5)
    m = ViTForImageClassification(conf).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = m(pixel_values=x).logits
        assert pm.attach_hf_matmuls_(m) == 2
        assert torch.allclose(m(pixel_values=x).logits, ref, atol=1e-5)
    plan = pm.build_plan(m)
    assert len(plan.matmuls) == 4 and plan.linears["vit.layers.0.mlp.fc2"][0] == "gelu"
    assert plan.linears["vit.layers.0.attention.o_proj"][0] == "plain" and len(plan.convs) == 1
    cap = P.capture(m, plan, lambda mdl: nn.functional.cross_entropy(mdl(pixel_values=x).logits, ref.argmax(1)), True)
    assert all(g is not None for gs in cap.grads.values() for g in gs) and cap.grads
    q = P.apply_scales_(copy.deepcopy(m), P.search_model(m, plan, cap, 8, 8, P.SearchSettings(n=5, rounds=1)), 8, 8)
    with torch.no_grad():
        out = q(pixel_values=x).logits
    assert not torch.equal(out, ref) and (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


def _tiny_quantized_vit():
    torch.manual_seed(0)
    model = pm.SmallViT(pm.ViTConfig(8, 2, 1, 10, 16, 2, 2, 2.0)).eval()
    x = torch.randn(8, 1, 8, 8)
    plan = pm.build_plan(model)
    cap = P.capture(model, plan, lambda m: nn.functional.cross_entropy(m(x), m(x).argmax(1).detach()), True)
    return model, x, P.search_model(model, plan, cap, 4, 4, P.SearchSettings(n=4, rounds=1))


def test_sites_one_at_a_time_equal_the_quantized_layers_they_name():
    from papers.ptq4vit import sites as S

    model, x, scales = _tiny_quantized_vit()
    sites = S.all_sites(scales)
    assert len(sites) == 2 * 13 + 2 * 4 + 1  # 2 blocks x 6 linears + the head (W, X), 4 matmuls (A, B), patch conv
    with torch.no_grad():
        ref = model(x)
        full = P.apply_scales_(copy.deepcopy(model), scales, 4, 4)(x)
        assert torch.equal(S.quantize_sites(model, scales, sites, 4, 4)(x), full)  # every site: the method's model
        assert torch.equal(S.quantize_sites(model, scales, [], 4, 4)(x), ref)  # no site: the float model
        # one weight alone: the float model with that layer's weight replaced by its dequantized codes
        name = "blocks.1.mlp.fc2"
        one = S.quantize_sites(model, scales, [(name, "W")], 4, 4)
        hand = copy.deepcopy(model)
        w = hand.get_submodule(name).weight
        w.copy_(P.quantize_uniform(w, scales[name]["w_delta"].reshape(-1, 1), 4))
        assert torch.equal(one(x), hand(x)) and not torch.equal(one(x), ref)
        # one input alone: the float layer fed the quantized input (twin GELU at the MLP's second layer)
        one = S.quantize_sites(model, scales, [(name, "X")], 4, 4)
        hand = copy.deepcopy(model)
        e = scales[name]
        hand.get_submodule("blocks.1.mlp").fc2.register_forward_pre_hook(
            lambda m, a: (P.quantize_act(a[0], e["act_kind"], e["a_delta"], 4),))
        assert e["act_kind"] == "twin_gelu" and torch.equal(one(x), hand(x))
    assert S.site_kind(("blocks.1.mlp.fc2", "W")) == "blocks.*.mlp.fc2 W"
    assert S.site_kind(("encoder.layer.11.attention.self.query", "X")) == "encoder.layer.*.attention.self.query X"


def test_site_errors_measure_every_site_and_partition_them_into_kinds():
    from papers.ptq4vit import sites as S

    model, x, scales = _tiny_quantized_vit()
    with torch.no_grad():
        ref = model(x)
    # a metric with an oracle: the mean cosine of the logits to the float model's (1 for the float model)
    evaluate = lambda m: {"value": float(nn.functional.cosine_similarity(m(x).detach(), ref, dim=-1).mean())}
    out = S.site_errors(model, scales, 4, 4, evaluate, 1.0)
    sites = S.all_sites(scales)
    assert [s["site"] for s in out["sites"]] == [f"{n} {p}" for n, p in sites]
    assert sum(k["n_sites"] for k in out["kinds"]) == len(sites)
    assert out["all"]["value"] == pytest.approx(evaluate(P.apply_scales_(copy.deepcopy(model), scales, 4, 4))["value"])
    assert out["all"]["drop"] > 0 and all(s["drop"] == pytest.approx(1.0 - s["value"], abs=1e-6) for s in out["sites"])
    kinds = {k["kind"]: k for k in out["kinds"]}
    assert kinds["blocks.*.mlp.fc2 W"]["n_sites"] == 2 and kinds["patch_embed W"]["n_sites"] == 1
    spread = S.weight_row_spread(model, ["blocks.0.mlp.fc2"])[0]
    w = model.blocks[0].mlp.fc2.weight.abs()
    w = w.detach()
    assert spread["max_abs"] == pytest.approx(float(w.max()), abs=1e-4) and spread["row_of_max"] == int(w.amax(1).argmax())


def test_step_granularity_is_the_official_configuration():
    """Layer-wise steps as configs/PTQ4ViT.py (n_V = n_H = n_a = 1; fused qkv: n_V = 3): one weight step per linear
    layer and one input step per linear layer (twin GELU: [Delta_R2, m]); one shift m per post-softmax tensor;
    the patch embedding per output channel. Matmul inputs Q, K, V: one step per head (README, Deviations 4)."""
    model, x, scales = _tiny_quantized_vit()
    heads = model.blocks[0].attn.heads
    for name, e in scales.items():
        if name.startswith("_"):
            continue
        if e["kind"] == "linear":
            assert e["w_delta"].numel() == 1 and e["a_delta"].numel() == (2 if e["act_kind"] == "twin_gelu" else 1)
        elif e["kind"] == "matmul":
            assert e["b_delta"].numel() == heads
            assert e["a_delta"].numel() == (1 if e["a_kind"] == "twin_softmax" else heads)
        else:
            assert e["w_delta"].numel() == model.patch_embed.out_channels
    qkv = nn.Linear(6, 3 * 6)
    data = P.LinearData(torch.randn(10, 6))
    assert P.search_linear(qkv.weight, qkv.bias, data, 8, 8, "uniform", P.SearchSettings("mse", n=2, rounds=1),
                           groups=3)["w_delta"].numel() == 3
