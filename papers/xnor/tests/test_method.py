"""XNOR-Net / BWN math (Eq. (6), (10), (11), Fig. 2, the Sec. 3.1 gradients) and the packed kernel's exactness."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from common.errors import NnqError
from common.evaluate import save_fp32
from papers.xnor import kernel
from papers.xnor.models import build
from papers.xnor.packed import PackedXnorConv2d, binary_layer_bytes, convert_to_packed, load_packed, save_packed
from papers.xnor.xnor import (BwnConv2d, BwnLinear, XnorConv2d, XnorLinear, binarize, binarize_model_, bwn_alpha,
                              input_beta, scaling_map_k, sign_ste)


def test_alpha_is_mean_abs_per_filter_by_hand():
    w = torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]], [[[0.5, 0.5], [-0.5, 0.0]]]])  # [2, 1, 2, 2]
    assert bwn_alpha(w).tolist() == [2.5, 0.375]
    conv = BwnConv2d(1, 2, 2, bias=False)
    conv.weight.data.copy_(w)
    x = torch.randn(3, 1, 2, 2)
    # Eq. (1): I * W ~= (I (+) sign(W)) alpha, and the effective weights take the values {-alpha, +alpha}
    expected = torch.einsum("bchw,ochw->bo", x, binarize(w) * torch.tensor([2.5, 0.375]).view(2, 1, 1, 1))
    assert torch.allclose(conv(x).flatten(1), expected, rtol=1e-5, atol=1e-6)


def test_scaling_map_k_by_hand():
    # I: 2 channels, 3x3; A = mean_c |I|; K = 2x2 box average of A (stride 1, no padding)
    i0 = torch.tensor([[1.0, -2.0, 3.0], [0.0, 4.0, -1.0], [2.0, 2.0, -6.0]])
    i1 = torch.tensor([[-3.0, 0.0, 1.0], [2.0, -2.0, 1.0], [0.0, 4.0, 2.0]])
    # A = (|i0| + |i1|) / 2 = [[2,1,2],[1,3,1],[1,3,4]]
    expected = torch.tensor([[(2 + 1 + 1 + 3) / 4, (1 + 2 + 3 + 1) / 4], [(1 + 3 + 1 + 3) / 4, (3 + 1 + 3 + 4) / 4]])
    k = scaling_map_k(torch.stack([i0, i1]).unsqueeze(0), (2, 2), (1, 1), (0, 0))
    assert k.shape == (1, 1, 2, 2)
    assert torch.allclose(k[0, 0], expected)
    assert input_beta(torch.tensor([[1.0, -3.0], [0.0, 0.5]])).flatten().tolist() == [2.0, 0.25]


def test_sign_ste_gradient_is_the_mask_on_a_hand_built_tensor():
    r = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.01], requires_grad=True)
    sign_ste(r).backward(torch.arange(1.0, 8.0))
    assert r.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]
    assert binarize(torch.tensor([-1e-9, 0.0, 1e-9])).tolist() == [-1.0, 1.0, 1.0]


def test_weight_gradient_has_the_alpha_term_of_sec_3_1():
    w = torch.tensor([[0.5, -1.5, 0.25, -0.75], [2.0, 0.1, -0.2, 0.3]], requires_grad=True)
    lin = BwnLinear(4, 2, bias=False)
    lin.weight = nn.Parameter(w.detach().clone())
    x, g = torch.randn(3, 4), torch.randn(3, 2)
    (lin(x) * g).sum().backward()
    alpha = w.detach().abs().mean(dim=1, keepdim=True)
    g_wtilde = g.T @ x  # dC/dW~ for y = x W~^T
    # Sec. 3.1: dC/dW_i = dC/dW~_i (1/n + dsign/dW_i alpha), dsign/dW = 1_{|W|<=1}, n = 4
    expected = g_wtilde * (1 / 4 + (w.detach().abs() <= 1).float() * alpha)
    assert torch.allclose(lin.weight.grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("b,c,o,h,w,k,s,p", [
    (2, 3, 5, 7, 6, 3, 1, 1), (1, 65, 8, 9, 9, 3, 2, 1), (2, 130, 17, 5, 8, 3, 1, 1), (3, 16, 16, 8, 8, 3, 2, 1),
    (1, 64, 10, 6, 7, 5, 2, 2), (2, 7, 4, 6, 6, 1, 1, 0), (1, 33, 9, 5, 5, 3, 1, 0), (1, 128, 64, 8, 8, 3, 1, 1),
    # channel counts that divide 64 use the dense tap layout (several taps per word)
    (2, 32, 12, 9, 7, 3, 2, 1), (1, 8, 5, 6, 6, 5, 1, 2), (3, 2, 4, 5, 9, 3, 1, 1), (1, 1, 3, 7, 7, 3, 2, 1)])
def test_packed_conv_counts_equal_float_conv_of_signs(b, c, o, h, w, k, s, p):
    g = torch.Generator().manual_seed(b * 1000 + c * 10 + k)
    x = torch.randn(b, c, h, w, generator=g)
    x[0, 0, 0, 0] = 0.0  # sign(0) = +1 on both paths
    wpm = binarize(torch.randn(o, c, k, k, generator=g))
    ref = F.conv2d(binarize(x), wpm, stride=s, padding=p)  # the float reference pads sign(I) with 0
    words = kernel.pack_conv_weight(wpm)
    assert torch.equal(kernel.unpack_conv_weight(words, wpm.shape), wpm)
    out = kernel.xnor_conv2d_counts(x, words, c, (k, k), (s, s), (p, p), w_pm1=wpm)
    assert out.dtype == torch.int32 and out.is_contiguous()
    assert torch.equal(out.float(), ref)
    # the fused path (implicit GEMM + alpha/K epilogue) equals the same float ops on the exact counts
    alpha, kmap = torch.rand(o, generator=g) + 0.1, torch.rand(b, 1, *ref.shape[2:], generator=g)
    fused = kernel.xnor_conv2d(x, words, c, (k, k), (s, s), (p, p), alpha, kmap, w_pm1=wpm)
    assert torch.equal(fused, (ref * alpha.view(1, -1, 1, 1)) * kmap)


def test_torch_fallback_gives_the_same_integers(monkeypatch):
    x = torch.randn(2, 65, 6, 5)
    wpm = binarize(torch.randn(7, 65, 3, 3))
    fast = kernel.xnor_conv2d_counts(x, kernel.pack_conv_weight(wpm), 65, (3, 3), (2, 2), (1, 1), w_pm1=wpm)
    monkeypatch.setenv("NNQ_XNOR_BACKEND", "torch")
    assert kernel.backend_name() == "torch"
    slow = kernel.xnor_conv2d_counts(x, kernel.pack_conv_weight(wpm), 65, (3, 3), (2, 2), (1, 1), w_pm1=wpm)
    assert torch.equal(fast, slow)
    a, bb = binarize(torch.randn(5, 130)), binarize(torch.randn(9, 130))
    assert torch.equal(kernel.binary_gemm(kernel.pack_bits(a), kernel.pack_bits(bb), 130), (a @ bb.T).int())


def test_without_a_compiler_a_warning_and_the_fallback(monkeypatch, tmp_path):
    monkeypatch.setattr(kernel, "_LIBS", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("NNQ_CACHE_DIR", str(tmp_path))
    with pytest.warns(UserWarning, match="pure-PyTorch fallback"):
        assert kernel.backend_name() == "torch"
    x, wpm = torch.randn(1, 5, 4, 4), binarize(torch.randn(3, 5, 3, 3))
    out = kernel.xnor_conv2d_counts(x, kernel.pack_conv_weight(wpm), 5, (3, 3), (1, 1), (1, 1), w_pm1=wpm)
    assert torch.equal(out.float(), F.conv2d(binarize(x), wpm, padding=1))


# 16700 bits = 261 words: full Harley-Seal blocks, the byte-counter flush (every 31 blocks) and a tail
@pytest.mark.parametrize("m,n,bits", [(1, 1, 1), (5, 7, 63), (33, 17, 64), (13, 40, 700), (64, 100, 4096),
                                      (3, 9, 16700)])
def test_binary_gemm_equals_float_matmul_of_pm1(m, n, bits):
    a, bb = binarize(torch.randn(m, bits)), binarize(torch.randn(n, bits))
    c = kernel.binary_gemm(kernel.pack_bits(a), kernel.pack_bits(bb), bits)
    assert torch.equal(c, (a @ bb.T).to(torch.int32))


def test_pack_unpack_exact_and_bit_layout():
    t = binarize(torch.randn(4, 3, 130))
    words = kernel.pack_bits(t)
    assert words.shape == (4, 3, 3) and words.dtype == torch.int64
    assert torch.equal(kernel.unpack_bits(words, 130), t)
    assert torch.equal(kernel.pack_signs(t), words)  # the C packer agrees with the torch packer
    one = torch.ones(1, 64)
    one[0, 0] = one[0, 63] = -1  # bit 1 = -1: bits 0 and 63 set
    assert kernel.pack_bits(one).item() == 1 - 2 ** 63


def test_packing_a_non_binary_tensor_raises():
    with pytest.raises(NnqError, match="exact"):
        kernel.pack_bits(torch.tensor([1.0, -1.0, 0.5]))
    with pytest.raises(NnqError, match="exact"):
        kernel.pack_bits(torch.tensor([[1.0, 0.0]]))


def test_xnor_layers_equal_their_packed_twins_exactly():
    torch.manual_seed(0)
    conv = XnorConv2d(65, 12, 3, stride=2, padding=1, bias=True)
    x = torch.randn(3, 65, 9, 7)
    assert torch.equal(conv(x), PackedXnorConv2d(binarize(conv.weight), bwn_alpha(conv.weight), conv.bias,
                                                  (2, 2), (1, 1))(x))
    model = nn.Sequential(nn.Flatten(), XnorLinear(70, 9), BwnLinear(9, 4))
    xl = torch.randn(5, 70)
    packed = convert_to_packed(model)
    with torch.no_grad():
        assert torch.equal(model(xl), packed(xl))


@pytest.mark.parametrize("arch,shape", [("smallconv", (1, 8, 8)), ("bnnconv", (3, 8, 8))])
def test_converted_model_and_reloaded_artifact_equal_simulated_forward(arch, shape, tmp_path):
    torch.manual_seed(0)
    model = build(arch, "xnor", shape, 10)
    with torch.no_grad():
        model(torch.randn(32, *shape))  # non-trivial BN statistics
    model.eval()
    x = torch.randn(20, *shape)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(convert_to_packed(model)(x), ref)
        path = save_packed(model, tmp_path / "m.safetensors")
        assert torch.equal(load_packed(path, model)(x), ref)


def test_unsupported_layer_for_conversion_raises():
    class TwoBitLinear(nn.Linear):
        weight_bits = 2

    with pytest.raises(NnqError, match="no packed implementation"):
        convert_to_packed(nn.Sequential(XnorLinear(4, 4), TwoBitLinear(4, 2)))


def test_packed_binary_layer_is_at_least_31x_smaller_on_disk(tmp_path):
    conv = XnorConv2d(256, 256, 3, padding=1, bias=False)
    fp32 = tmp_path / "fp32.safetensors"
    save_file({"weight": conv.weight.detach().contiguous()}, str(fp32))
    packed = save_packed(nn.Sequential(conv), tmp_path / "packed.safetensors")
    assert fp32.stat().st_size / packed.stat().st_size >= 31


def test_first_and_last_layers_stay_real_and_every_parameter_gets_a_gradient():
    for mode in ("bwn", "xnor"):
        model = build("smallconv", mode, (1, 8, 8), 10)
        weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert type(weighted[0]) is nn.Conv2d and type(weighted[-1]) is nn.Linear
        assert all(getattr(m, "weight_bits", 32) == 1 for m in weighted[1:-1])
        model(torch.randn(8, 1, 8, 8)).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert binarize_model_(nn.Sequential(nn.Linear(3, 3)), "xnor")[0].__class__ is nn.Linear


def _fp32_and_packed(model: nn.Module, tmp_path):
    return save_fp32(model, tmp_path / "fp32.safetensors"), save_packed(model, tmp_path / "packed.safetensors")


def test_alpha_is_on_disk_and_caps_short_filters_below_31x(tmp_path):
    model = build("lenet5", "xnor", (1, 32, 32), 10).eval()
    fp32, packed = _fp32_and_packed(model, tmp_path)
    rows = binary_layer_bytes(packed, fp32)
    assert [r["layer"] for r in rows] == ["convnet.c3", "convnet.c5", "fc.f6"]
    for r in rows:
        c_out, n = r["shape"][0], r["filter_weights"]
        assert r["alpha_bytes"] == 4 * c_out and r["sign_bytes"] == -(-c_out * n // 8)  # alpha counted, 1 bit/weight
        assert r["fp32_weight_bytes"] == 4 * c_out * n
        assert r["ratio"] == pytest.approx(r["bound"], rel=1e-3) and r["ratio"] < 31  # 32n/(n+32) < 31 for n < 992


def test_resnet18_binarized_layers_reach_31x_with_alpha_counted(tmp_path):
    model = build("resnet18", "xnor", (3, 224, 224), 1000).eval()
    fp32, packed = _fp32_and_packed(model, tmp_path)
    rows = binary_layer_bytes(packed, fp32)
    assert len(rows) == 16 and all(r["alpha_bytes"] > 0 for r in rows)
    fp32_bytes = sum(r["fp32_weight_bytes"] for r in rows)
    assert fp32_bytes / sum(r["sign_bytes"] + r["alpha_bytes"] for r in rows) >= 31


def test_folding_alpha_into_the_next_batchnorm_is_not_bit_exact():
    # alpha > 0 per channel commutes with the BN that follows in real arithmetic (gamma' = gamma alpha,
    # mu' = mu / alpha), but float32 rounds ((c alpha) K - mu) gamma/sigma and (c K - mu/alpha) (gamma alpha)/sigma
    # differently: folding would break the packed == simulated bit-identity, so the artifact keeps alpha.
    torch.manual_seed(0)
    conv, bn = XnorConv2d(16, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8).eval()
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    x = torch.randn(4, 16, 8, 8)
    alpha = bwn_alpha(conv.weight)
    with torch.no_grad():
        ref = bn(conv(x))
        counts = F.conv2d(binarize(x), binarize(conv.weight), padding=1)
        z = counts * scaling_map_k(x, (3, 3), (1, 1), (1, 1))
        folded = F.batch_norm(z, bn.running_mean / alpha, bn.running_var, bn.weight * alpha, bn.bias, eps=bn.eps)
    assert torch.allclose(folded, ref, rtol=1e-4, atol=1e-5)
    assert not torch.equal(folded, ref)


def test_bnn_paper_convnet_reaches_31x_with_alpha_counted(tmp_path):
    # at CIFAR size every binarized filter has >= 1024 weights (>= 992 needed), so >= 31x with alpha counted
    fp32, packed = _fp32_and_packed(build("bnnconv", "xnor", (3, 32, 32), 10).eval(), tmp_path)
    rows = binary_layer_bytes(packed, fp32)
    assert len(rows) == 7 and min(r["filter_weights"] for r in rows) == 1024
    assert all(r["ratio"] >= 31 for r in rows)


@pytest.mark.parametrize("backend", ["c", "torch"])
def test_zero_inputs_binarize_to_plus_one_in_every_packer_and_path(backend, monkeypatch):
    """Sec. 3.1 maps W_i >= 0 to +1; inputs of exactly 0 (and -0.0) take the same rule in every packer: the C
    row packer (XnorLinear), the C NCHW packer (XnorConv2d), and the PyTorch fallback of both."""
    if backend == "torch":
        monkeypatch.setenv("NNQ_XNOR_BACKEND", "torch")
    elif kernel.library() is None:
        pytest.skip("no C compiler: only the fallback exists")
    assert kernel.backend_name() != "torch" if backend == "c" else kernel.backend_name() == "torch"
    torch.manual_seed(3)
    x = torch.randn(6, 130)
    x[:, ::3] = 0.0
    x[0, 1] = -0.0
    plus = torch.where(x >= 0, 1.0, -1.0)
    assert bool((plus[:, ::3] == 1).all()) and plus[0, 1] == 1
    assert torch.equal(kernel.pack_signs(x), kernel.pack_bits(plus))  # the row packer
    lin = XnorLinear(130, 7, bias=True)
    with torch.no_grad():
        assert torch.equal(convert_to_packed(nn.Sequential(lin))(x), lin(x))  # packed XnorLinear == float layer
    xc = torch.randn(2, 65, 5, 6)
    xc[:, :, ::2, :] = 0.0
    xc[1, 3, 1, 1] = -0.0
    conv = XnorConv2d(65, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        packed = PackedXnorConv2d(binarize(conv.weight), bwn_alpha(conv.weight), None, (1, 1), (1, 1))
        assert torch.equal(packed(xc), conv(xc))  # the NCHW packer and the fused convolution
    counts = kernel.xnor_conv2d_counts(xc, kernel.pack_conv_weight(binarize(conv.weight)), 65, (3, 3), (1, 1),
                                       (1, 1), w_pm1=binarize(conv.weight))
    assert torch.equal(counts.float(), F.conv2d(torch.where(xc >= 0, 1.0, -1.0), binarize(conv.weight), padding=1))


def test_paper_numbers_are_the_v4_text():
    """The figures of arXiv 1603.05279 v4 this package compares with (Sec. 4.2 CIFAR-10; Sec. 4.1; Tables 1-2)."""
    from papers.xnor.paper_numbers import CIFAR10_ERROR, CLAIMS, IMAGENET_ACCURACY

    assert CIFAR10_ERROR[("bnnconv", "BWN")][0] == 9.88
    assert CIFAR10_ERROR[("bnnconv", "XNOR-Net")][0] == 10.17
    assert all("Sec. 4.2" in ref for _, ref in CIFAR10_ERROR.values())
    assert CLAIMS["conv_speedup_x"][0] == 58 and "Sec. 4.1" in CLAIMS["conv_speedup_x"][1]
    # Sec. 4.1: S = 64 c N_W / (c N_W + 64) with c = 256, N_W = 3 x 3 gives the 62.27x theoretical speed-up
    assert CLAIMS["conv_speedup_theory_x"][0] == round(64 * 256 * 9 / (256 * 9 + 64), 2)
    assert IMAGENET_ACCURACY[("AlexNet", "BWN")][:2] == (56.8, 79.4)  # Table 1 (v4: BWN equals full precision)
    assert IMAGENET_ACCURACY[("ResNet-18", "XNOR-Net")][:2] == (51.2, 73.2)  # Table 2
