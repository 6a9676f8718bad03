"""Bit-operation-compatible inference of LQ-Nets (Sec. 3.1): inner products from popcounts of bit-planes.

A weight vector quantized with basis v^w (K_w bits, codes in {-1, 1}) and an activation vector quantized with
basis v^a (K_a bits, codes in {0, 1}) are w_hat = sum_i v^w_i b^w_i and a_hat = sum_j v^a_j b^a_j, where b^w_i
is the i-th bit-plane of the weights read as +-1 and b^a_j the j-th plane of the activations. Hence (Eq. (3))

    w_hat . a_hat = sum_i sum_j v^w_i v^a_j (b^w_i . b^a_j),

and with the planes stored as bits (weight bit 1 = +1, bit 0 = -1; activation bit 1 = 1) each plane product is

    b^w_i . b^a_j = #(a_j AND w_i) - #(a_j AND NOT w_i) = 2 popcount(a_j AND w_i) - popcount(a_j).

This file does exactly that: it packs every plane into bytes (8 values a byte), ANDs the packed planes,
counts bits with a 256-entry popcount table, and weights the K_w * K_a integer plane products by the bases.
It is a readable reference (torch tensors, no SIMD kernel): correct to the last bit, not fast.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from papers.lqnets.lqnets import LqConv2d, LqLinear, code_bits, lq_layers

POPCOUNT8 = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)
"""popcount of every byte value."""


def pack_planes(bits: torch.Tensor) -> torch.Tensor:
    """Bit-planes packed 8 to a byte: bits [..., n, K] in {0, 1} -> words [..., K, ceil(n / 8)] uint8.

    Value m of a plane is bit (m mod 8) of byte m // 8 (little-endian bit order); padding bits are 0.
    """
    n = bits.shape[-2]
    planes = bits.transpose(-1, -2).to(torch.int64)  # [..., K, n]
    pad = (-n) % 8
    if pad:
        planes = F.pad(planes, (0, pad))
    planes = planes.reshape(*planes.shape[:-1], -1, 8)  # [..., K, n/8, 8]
    weights = 1 << torch.arange(8, device=bits.device)
    return (planes * weights).sum(-1).to(torch.uint8)


def unpack_planes(words: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_planes`: [..., K, ceil(n / 8)] uint8 -> bits [..., n, K] uint8."""
    shifts = torch.arange(8, device=words.device)
    bits = (words.to(torch.int64)[..., None] >> shifts) & 1  # [..., K, n/8, 8]
    return bits.reshape(*words.shape[:-1], -1)[..., :n].transpose(-1, -2).to(torch.uint8)


def popcount(words: torch.Tensor) -> torch.Tensor:
    """Number of set bits over the last axis: [..., nbytes] uint8 -> [...] int64."""
    return POPCOUNT8.to(words.device)[words.to(torch.int64)].sum(-1)


def plane_products(a_words: torch.Tensor, w_words: torch.Tensor) -> torch.Tensor:
    """Every plane product b^w_i . b^a_j from packed planes, in integers.

    Args:
        a_words: activation planes, [R, K_a, nbytes] (R input vectors).
        w_words: weight planes, [O, K_w, nbytes] (O output channels), bit 1 = +1, bit 0 = -1.

    Returns:
        P [R, O, K_w, K_a] int64: P[r, o, i, j] = 2 popcount(a_rj AND w_oi) - popcount(a_rj).
    """
    both = a_words[:, None, None, :, :] & w_words[None, :, :, None, :]  # [R, O, K_w, K_a, nbytes]
    ones_a = popcount(a_words)[:, None, None, :]  # [R, 1, 1, K_a]
    return 2 * popcount(both) - ones_a


def bitwise_inner(a_words: torch.Tensor, w_words: torch.Tensor, v_a: torch.Tensor, v_w: torch.Tensor,
                  chunk: int = 1024) -> torch.Tensor:
    """Eq. (3): out[r, o] = sum_i sum_j v^w_oi v^a_j (b^w_oi . b^a_rj), in float64.

    Args:
        a_words: [R, K_a, nbytes]; w_words: [O, K_w, nbytes] (see :func:`plane_products`).
        v_a: activation basis [K_a]; v_w: weight bases [O, K_w] (one per output channel).
        chunk: input vectors per step (bounds the memory of the AND tensor).

    Returns:
        [R, O] float64.
    """
    outs = []
    vw, va = v_w.double(), v_a.double()
    for start in range(0, a_words.shape[0], chunk):
        p = plane_products(a_words[start:start + chunk], w_words).double()  # [r, O, K_w, K_a]
        outs.append(torch.einsum("roij,oi,j->ro", p, vw, va))
    return torch.cat(outs) if outs else torch.zeros(0, w_words.shape[0], dtype=torch.float64)


def weight_planes(layer: LqConv2d | LqLinear) -> torch.Tensor:
    """The layer's weight bit-planes, packed: [O, K_w, ceil(n / 8)] with n = in-features (C * kh * kw)."""
    _, code = layer.w_quant.encode(layer.weight)
    return pack_planes(code_bits(code.reshape(layer.weight.shape[0], -1), layer.weight_bits))


def activation_planes(layer: LqConv2d | LqLinear, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as packed bit-planes, one row per inner product: [R, K_a, ceil(n / 8)].

    Linear: R = batch. Conv2d: R = batch * output positions; each row is an input patch (im2col) in the weight's
    (C, kh, kw) order; the zero padding is the all-zero code, whose value is 0 exactly.
    """
    _, code = layer.a_quant.encode(x)
    bits = code_bits(code, layer.act_bits)  # [..., K_a]
    if isinstance(layer, LqLinear):
        return pack_planes(bits.reshape(-1, x.shape[-1], layer.act_bits))
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str) or layer.groups != 1:
        raise NnqError("the bitwise path supports zero-padded, ungrouped convolutions")
    cols = [F.unfold(bits[..., j].double(), layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                     stride=layer.stride) for j in range(layer.act_bits)]  # each [B, C*kh*kw, L], exact 0/1
    rows = torch.stack(cols, -1).transpose(1, 2)  # [B, L, n, K_a]
    return pack_planes(rows.reshape(-1, rows.shape[-2], layer.act_bits).to(torch.uint8))


@torch.no_grad()
def bitwise_forward(layer: LqConv2d | LqLinear, x: torch.Tensor) -> torch.Tensor:
    """One LQ layer computed from bit-planes and popcounts only (plus the bases and the bias)."""
    if layer.weight_bits is None or layer.act_bits is None:
        raise NnqError("the bitwise path needs quantized weights and activations (no --a-bits none)")
    out = bitwise_inner(activation_planes(layer, x), weight_planes(layer), layer.a_quant.basis[0],
                        layer.w_quant.basis)  # [R, O]
    if isinstance(layer, LqConv2d):
        b, _, h, w = x.shape
        oh = (h + 2 * layer.padding[0] - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1) // layer.stride[0] + 1
        ow = (w + 2 * layer.padding[1] - layer.dilation[1] * (layer.kernel_size[1] - 1) - 1) // layer.stride[1] + 1
        out = out.reshape(b, oh, ow, -1).permute(0, 3, 1, 2)
    else:
        out = out.reshape(*x.shape[:-1], -1)
    if layer.bias is not None:
        out = out + layer.bias.double().reshape(1, -1, *([1] * (out.dim() - 2)))
    return out.to(x.dtype)


@contextlib.contextmanager
def bitwise_layers(model: nn.Module):
    """Within the block every LQ layer of ``model`` (weights and activations quantized) outputs its bitwise result.

    The float layers (first, last) and everything between layers (BatchNorm, ReLU, shortcuts) run as usual.
    """
    handles = [m.register_forward_hook(lambda mod, args, out: bitwise_forward(mod, args[0]))
               for m in lq_layers(model).values() if m.weight_bits is not None and m.act_bits is not None]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
