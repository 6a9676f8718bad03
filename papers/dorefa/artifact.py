"""The real low-bit artifact of a DoReFa-Net: k-bit packed weight codes (and, at one bit, the layer's scale).

File format (safetensors, metadata ``format = nnq-dorefa-packed-v1``): for every quantized layer ``L`` with
k < 32 weight bits, ``L.weight.packed`` (uint8: the codes of :func:`papers.dorefa.dorefa.weight_levels`, k bits
each, little-endian bit order) and, at k = 1, ``L.weight.scale`` (fp32: E(|w|) of the layer); every other
state-dict tensor as it is (BatchNorm, biases, the full-precision first and last layers). The metadata holds
each packed layer's bits and shape. For k > 1 the codes c give w_q = 2 c / (2^k - 1) - 1 without any scale
(Sec. 2.3: the weights live in [-1, 1]); at k = 1, w_q = +-E(|w|).

Loading puts the k-bit weights themselves into the layers (``weight_is_quantized``), so the reloaded model
computes with exactly the weights the trained one computed with and predicts exactly as it does; it is an
inference model (training it further would need the float weights, which the artifact does not keep).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField, module_fields, read_safetensors
from papers.dorefa.dorefa import codes_to_weights, dorefa_layers, weight_levels

FORMAT = "nnq-dorefa-packed-v1"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned integer codes in [0, 2^bits) -> a uint8 stream of ``bits`` bits per code."""
    c = codes.detach().flatten().cpu().numpy().astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= 2 ** bits):
        raise NnqError(f"a code does not fit in {bits} bits")
    # c: [n] -> [n, bits] (bit j of each code) -> ceil(n * bits / 8) bytes
    planes = ((c[:, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` int64 codes."""
    flat = np.unpackbits(packed.cpu().numpy(), bitorder="little")[: count * bits]
    if flat.size != count * bits:
        raise NnqError(f"a packed stream holds {flat.size} bits, {count * bits} expected; the file is truncated")
    planes = flat.reshape(count, bits).astype(np.int64)
    return torch.from_numpy((planes << np.arange(bits, dtype=np.int64)).sum(1))


def _packed_layers(model: nn.Module) -> dict:
    return {n: m for n, m in dorefa_layers(model).items() if m.weight_bits is not None}


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The fields the artifact stores, for ``model_bits``: each quantized layer's weight codes at k bits, its
    scale E(|w|) in fp32 at k = 1, every other parameter and float buffer in fp32."""
    fields = module_fields(model)  # DoReFa layers declare ``weight_bits``
    fields += [StoredField.fixed(f"{n}.weight.scale", 1, 32) for n, m in _packed_layers(model).items()
               if m.weight_bits == 1]
    return fields


def save_packed(model: nn.Module, path: str | Path) -> Path:
    """Writes the packed artifact of a DoReFa-Net (see the module docstring)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {}
    for name, m in _packed_layers(model).items():
        if m.weight_is_quantized:
            raise NnqError(f"{name} already holds its k-bit weights (a reloaded model); save the trained model")
        codes, scale = weight_levels(m.weight, m.w_bits)
        state.pop(f"{name}.weight")
        state[f"{name}.weight.packed"] = pack_codes(codes, m.w_bits)
        if m.w_bits == 1:
            state[f"{name}.weight.scale"] = scale.detach().cpu().float().reshape(())
        meta[name] = {"bits": m.w_bits, "shape": list(m.weight.shape)}
    save_file(state, str(path), metadata={"format": FORMAT, "layers": json.dumps(meta)})
    return Path(path)


def load_packed(path: str | Path, model: nn.Module) -> nn.Module:
    """Loads a packed artifact into ``model`` (a DoReFa-Net of the same architecture and bits); returns it."""
    meta, tensors = read_safetensors(path, FORMAT, "packed DoReFa file")
    layers = json.loads(meta.get("layers", "{}"))
    own = _packed_layers(model)
    if set(layers) != set(own):
        raise NnqError(f"{path} packs the layers {sorted(layers)}, this model quantizes {sorted(own)}; build the "
                       "model with the run's --arch and --w-bits")
    state = dict(tensors)
    for name, info in layers.items():
        k = info["bits"]
        if own[name].w_bits != k:
            raise NnqError(f"{path} holds {name} at {k} bits, this model at {own[name].w_bits}; build the model "
                           "with the run's --w-bits")
        count = int(np.prod(info["shape"]))
        codes = unpack_codes(state.pop(f"{name}.weight.packed"), k, count)
        scale = state.pop(f"{name}.weight.scale") if k == 1 else torch.ones((), dtype=torch.float32)
        state[f"{name}.weight"] = codes_to_weights(codes, scale, k).reshape(info["shape"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NnqError(f"{path} does not match this model ({str(exc).splitlines()[0][:200]})") from None
    for m in own.values():
        m.weight_is_quantized = True
    return model
