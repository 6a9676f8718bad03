"""Bit-operation-compatible inference: plane products from popcounts are exact integers, and the weighted sum
equals the float product of the quantized tensors (a layer, and a whole quantized ResNet-20)."""

import pytest
import torch
from torch import nn

from papers.lqnets import LqConv2d, LqLinear, code_bits, encode, level_codes, lq_layers, quantize_model_
from papers.lqnets.bitwise import (bitwise_forward, bitwise_inner, bitwise_layers, pack_planes, plane_products,
                                   popcount, unpack_planes)
from papers.lqnets.models import KEEP_FLOAT, build_float


@pytest.mark.parametrize("n", [1, 7, 8, 9, 100])
def test_pack_unpack_is_exact_and_popcount_counts_bits(n):
    g = torch.Generator().manual_seed(n)
    bits = torch.randint(0, 2, (3, n, 2), generator=g, dtype=torch.uint8)
    words = pack_planes(bits)
    assert words.shape == (3, 2, -(-n // 8)) and words.dtype == torch.uint8
    assert torch.equal(unpack_planes(words, n), bits)
    assert torch.equal(popcount(words), bits.sum(1).T.to(torch.int64).T)


@pytest.mark.parametrize("k_w,k_a", [(1, 1), (2, 2), (3, 2), (2, 4)])
def test_plane_products_are_the_exact_integer_dot_products(k_w, k_a):
    g = torch.Generator().manual_seed(10 * k_w + k_a)
    n = 77
    a = torch.randint(0, 2, (5, n, k_a), generator=g, dtype=torch.uint8)
    w = torch.randint(0, 2, (4, n, k_w), generator=g, dtype=torch.uint8)
    p = plane_products(pack_planes(a), pack_planes(w))  # [5, 4, K_w, K_a]
    # reference: {0,1} activation planes times +-1 weight planes (bit 1 = +1), in integers
    ref = torch.einsum("rnj,oni->roij", a.long(), 2 * w.long() - 1)
    assert p.dtype == torch.int64 and torch.equal(p, ref)


def test_weighted_plane_products_equal_the_float_inner_product_of_the_quantized_vectors():
    torch.manual_seed(0)
    k_w, k_a, n = 2, 3, 50
    v_w, v_a = torch.rand(6, k_w) + 0.1, torch.rand(k_a) + 0.1
    x, w = torch.rand(9, n) * 3, torch.randn(6, n)
    x_hat, a_code = encode(x.reshape(1, -1), v_a[None], level_codes(k_a, signed=False))
    w_hat, w_code = encode(w, v_w, level_codes(k_w, signed=True))
    a_words = pack_planes(code_bits(a_code.reshape(9, n), k_a))
    w_words = pack_planes(code_bits(w_code, k_w))
    out = bitwise_inner(a_words, w_words, v_a, v_w, chunk=4)
    # the same quantized vectors in float64 (levels v^T e computed in float64): equal to rounding
    a_val = level_codes(k_a, signed=False).double()[a_code.reshape(9, n)] @ v_a.double()  # [9, n]
    w_val = (level_codes(k_w, signed=True).double()[w_code] * v_w.double()[:, None, :]).sum(-1)  # [6, n]
    assert torch.allclose(out, a_val @ w_val.T, rtol=1e-12, atol=1e-12)
    # and the float32 quantized tensors of the simulated layer, to float32 rounding
    assert torch.allclose(out, x_hat.reshape(9, n).double() @ w_hat.double().T, rtol=1e-6, atol=1e-6)


def _trained_like(layer):
    layer.train()(torch.rand(4, *([3, 7, 7] if isinstance(layer, LqConv2d) else [20])))  # set the bases
    return layer.eval()


def test_a_layer_computed_bitwise_equals_the_simulated_layer():
    torch.manual_seed(0)
    conv = _trained_like(LqConv2d.from_float(nn.Conv2d(3, 5, 3, stride=2, padding=1), w_bits=2, a_bits=3))
    lin = _trained_like(LqLinear.from_float(nn.Linear(20, 7), w_bits=3, a_bits=2))
    for layer, x in ((conv, torch.rand(2, 3, 7, 7) * 1.5), (lin, torch.rand(5, 20) * 1.5)):
        sim, bit = layer(x), bitwise_forward(layer, x)
        assert sim.shape == bit.shape
        torch.testing.assert_close(bit, sim, rtol=1e-5, atol=1e-5)
        # against the float64 product of the quantized tensors: equal to rounding of the last bit
        x_hat = layer.a_quant.encode(x)[0].double()
        w_hat = layer.w_quant.encode(layer.weight)[0].double()
        ref = (nn.functional.conv2d(x_hat, w_hat, layer.bias.double(), stride=2, padding=1)
               if isinstance(layer, LqConv2d) else nn.functional.linear(x_hat, w_hat, layer.bias.double()))
        assert torch.allclose(bit.double(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 3])
def test_a_whole_quantized_resnet20_forward_is_reproduced_bitwise(bits):
    torch.manual_seed(bits)
    model = quantize_model_(build_float("resnet20", (3, 8, 8), 10), bits, bits, keep_float=KEEP_FLOAT["resnet20"])
    model.train()(torch.randn(8, 3, 8, 8))  # set every basis on one batch, as training starts
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    sim = model(x)
    with bitwise_layers(model):
        bit = model(x)
    assert len(lq_layers(model)) == 18  # every conv of the 9 blocks runs bitwise
    torch.testing.assert_close(bit, sim, rtol=1e-4, atol=1e-4)
    assert torch.equal(bit.argmax(1), sim.argmax(1))
