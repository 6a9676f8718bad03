"""The real artifact of an LQ-Nets model: packed weight bit-planes and the learned bases.

File format (safetensors, metadata ``format = nnq-lqnets-planes-v1``): for every quantized layer ``L``,
``L.weight.planes`` (uint8 [C_out, K_w, ceil(n / 8)]: bit-plane i of output channel c over its n = C_in*kh*kw
weights, 8 weights a byte, little-endian bit order, bit 1 = +1 and bit 0 = -1, ``bitwise.pack_planes``), its
bases ``L.w_quant.basis`` (fp32 [C_out, K_w]) and ``L.a_quant.basis`` (fp32 [1, K_a], absent weight-only);
every other state-dict tensor as it is (BatchNorm, the float first and last layers, biases). The metadata holds
each layer's bits and weight shape. No float weight of a quantized layer is stored: loading rebuilds
``weight = v^T e`` (Eq. (2)) from the planes and the basis, so the reloaded model encodes to the same codes and
predicts exactly as the trained one; ``bitwise.bitwise_forward`` can run it from the same planes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField, module_fields, read_safetensors
from papers.lqnets.bitwise import pack_planes, unpack_planes
from papers.lqnets.lqnets import code_bits, lq_layers

FORMAT = "nnq-lqnets-planes-v1"


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The fields the artifact stores, for ``model_bits``: each quantized layer's weights at K_w bits (its K_w
    bit-planes), every basis in fp32 (K_w per output channel, K_a per layer), every other parameter and float
    buffer in fp32 (BatchNorm, biases, the float first and last layers)."""
    return module_fields(model)  # LQ layers declare ``weight_bits``; the bases are fp32 buffers


def weight_codes_from_planes(words: torch.Tensor, n: int) -> torch.Tensor:
    """Packed planes [C_out, K, nbytes] -> code indices l = sum_i bit_i 2^i, [C_out, n] int64."""
    bits = unpack_planes(words, n).to(torch.int64)  # [C_out, n, K]
    return (bits << torch.arange(bits.shape[-1])).sum(-1)


def save_planes(model: nn.Module, path: str | Path) -> Path:
    """Writes the artifact of an LQ model (see the module docstring)."""
    from safetensors.torch import save_file

    layers = {n: m for n, m in lq_layers(model).items() if m.weight_bits is not None}
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {}
    for name, m in layers.items():
        _, code = m.w_quant.encode(m.weight)  # Eq. (1): the code of every weight
        state.pop(f"{name}.weight")
        bits = code_bits(code.reshape(m.weight.shape[0], -1).cpu(), m.weight_bits)  # [C_out, n, K_w]
        state[f"{name}.weight.planes"] = pack_planes(bits).contiguous()
        meta[name] = {"w_bits": m.weight_bits, "a_bits": m.act_bits, "shape": list(m.weight.shape)}
    save_file(state, str(path), metadata={"format": FORMAT, "layers": json.dumps(meta)})
    return Path(path)


def load_planes(path: str | Path, model: nn.Module) -> nn.Module:
    """Loads an artifact into ``model`` (an LQ model of the same architecture and bits); returns it."""
    meta, tensors = read_safetensors(path, FORMAT, "LQ-Nets bit-plane file")
    layers = json.loads(meta.get("layers", "{}"))
    own = lq_layers(model)
    state = dict(tensors)
    for name, info in layers.items():
        if name not in own or (own[name].weight_bits, own[name].act_bits) != (info["w_bits"], info["a_bits"]):
            raise NnqError(f"{path} holds {name} at W{info['w_bits']}A{info['a_bits']} bits, which this model does "
                           "not have; build the model with the run's --w-bits/--a-bits")
        shape = info["shape"]
        n = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
        code = weight_codes_from_planes(state.pop(f"{name}.weight.planes"), n)  # [C_out, n]
        basis = state[f"{name}.w_quant.basis"]
        values = basis @ own[name].w_quant.codes.T.to(basis.dtype)  # Eq. (2): v^T e_l for every code, [C_out, 2^K]
        state[f"{name}.weight"] = values.gather(1, code).reshape(shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NnqError(f"{path} does not match this model ({str(exc).splitlines()[0][:200]})") from None
    return model
