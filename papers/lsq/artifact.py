"""The real integer artifact of an LSQ model: b-bit packed weight codes and one step size per layer.

File format (safetensors, metadata ``format = nnq-lsq-packed-v1``): for every quantized layer ``L``,
``L.weight.packed`` (uint8: the codes v_bar + Q_N of Eq. (1), ``bits`` bits each, little-endian bit order)
and its step sizes ``L.w_quant.s`` / ``L.a_quant.s`` (fp32 scalars); every other state-dict tensor as it is
(BatchNorm, the float first/last layers in the study setting, biases). The metadata holds each packed
layer's bits, Q_N and shape. Loading rebuilds ``weight = v_bar * s_w`` exactly, so the reloaded model
quantizes to the same codes and predicts exactly as the trained one.

:func:`integer_forward` runs one quantized layer the way Fig. 1 of the paper envisions it: integer
activations times integer weights accumulated in int64, then one multiplication by s_w * s_a.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField, module_fields, read_safetensors
from papers.lsq.lsq import LsqConv2d, LsqLinear, lsq_layers

FORMAT = "nnq-lsq-packed-v1"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned integer codes in [0, 2^bits) -> a uint8 stream of ``bits`` bits per code."""
    c = codes.detach().flatten().cpu().numpy().astype(np.uint16)
    if c.size and (c.max() >= 2 ** bits):
        raise NnqError(f"a code does not fit in {bits} bits")
    # c: [n] -> [n, bits] (bit k of each code) -> packed bytes
    planes = ((c[:, None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int64 codes, ``count`` of them."""
    flat = np.unpackbits(packed.cpu().numpy(), bitorder="little")[: count * bits]
    planes = flat.reshape(count, bits).astype(np.int64)
    return torch.from_numpy((planes << np.arange(bits, dtype=np.int64)).sum(1))


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The fields the artifact stores, for ``model_bits``: each quantized layer's weight codes at its bits, its
    step sizes s_w and s_a in fp32, every other parameter and float buffer in fp32 (BatchNorm, biases, the float
    first/last layers of the study setting)."""
    return module_fields(model)  # LSQ layers declare ``weight_bits``; the step sizes are fp32 parameters


def save_packed(model: nn.Module, path: str | Path) -> Path:
    """Writes the packed artifact of an LSQ model (see the module docstring)."""
    from safetensors.torch import save_file

    layers = {n: m for n, m in lsq_layers(model).items() if m.weight_bits is not None}
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {}
    for name, m in layers.items():
        q = m.w_quant
        codes = q.codes(m.weight).to(torch.int64) + q.q_n  # Eq. (1), shifted to [0, 2^b)
        state.pop(f"{name}.weight")
        state[f"{name}.weight.packed"] = pack_codes(codes, q.bits)
        meta[name] = {"bits": q.bits, "q_n": q.q_n, "shape": list(m.weight.shape)}
    save_file(state, str(path), metadata={"format": FORMAT, "layers": json.dumps(meta)})
    return Path(path)


def load_packed(path: str | Path, model: nn.Module) -> nn.Module:
    """Loads a packed artifact into ``model`` (an LSQ model of the same architecture and bits); returns it."""
    meta, tensors = read_safetensors(path, FORMAT, "packed LSQ file")
    layers = json.loads(meta.get("layers", "{}"))
    own = lsq_layers(model)
    state = dict(tensors)
    for name, info in layers.items():
        if name not in own or own[name].weight_bits != info["bits"]:
            raise NnqError(f"{path} holds {name} at {info['bits']} bits, which this model does not have; "
                           "build the model with the run's --w-bits/--edge-bits")
        count = int(np.prod(info["shape"]))
        codes = unpack_codes(state.pop(f"{name}.weight.packed"), info["bits"], count) - info["q_n"]
        s_w = state[f"{name}.w_quant.s"]
        state[f"{name}.weight"] = (codes.to(torch.float32) * s_w).reshape(info["shape"])  # Eq. (2)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NnqError(f"{path} does not match this model ({str(exc).splitlines()[0][:200]})") from None
    return model


@torch.no_grad()
def integer_forward(layer: LsqConv2d | LsqLinear, x: torch.Tensor) -> torch.Tensor:
    """One quantized layer computed with integers: (x_int * w_int accumulated in int64) * s_w * s_a (+ bias)."""
    x_int = layer.a_quant.codes(x).to(torch.int64)  # Eq. (1) of the input
    w_int = layer.w_quant.codes(layer.weight).to(torch.int64)  # Eq. (1) of the weights
    scale = layer.w_quant.s.double() * layer.a_quant.s.double()
    if isinstance(layer, LsqLinear):
        acc = x_int @ w_int.T  # [B, in] x [in, out] -> [B, out], int64
        out = acc.double() * scale
    else:
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise NnqError("integer_forward supports zero-padded, ungrouped convolutions")
        b, _, h, w = x.shape
        # x: [B, C, H, W] -> columns [B, C*kh*kw, L]; exact, the values are small integers
        cols = F.unfold(x_int.double(), layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                        stride=layer.stride).to(torch.int64)
        acc = w_int.reshape(layer.out_channels, -1) @ cols  # [out, C*kh*kw] x [B, C*kh*kw, L] -> [B, out, L]
        oh = (h + 2 * layer.padding[0] - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1) // layer.stride[0] + 1
        ow = (w + 2 * layer.padding[1] - layer.dilation[1] * (layer.kernel_size[1] - 1) - 1) // layer.stride[1] + 1
        out = (acc.double() * scale).reshape(b, layer.out_channels, oh, ow)
    if layer.bias is not None:
        out = out + layer.bias.double().reshape(1, -1, *([1] * (out.dim() - 2)))
    return out.to(x.dtype)
