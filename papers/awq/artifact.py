"""The real artifact of an AWQ model: N-bit packed weight codes with their fp16 steps, zero points and 1/s.

``save_packed(model, path)`` writes one safetensors file (format ``nnq-awq-packed/1``): for each
:class:`~papers.awq.awq.AwqLinear` its codes packed N bits each (``<name>.codes``, a uint8 bit stream),
Delta in fp16, the integer zero point z in uint8, 1/s and the bias in fp32; every other tensor of the model's state
dict (embeddings, LayerNorms, the layers that stay float) in fp32. ``load_packed(path, float_model)`` rebuilds the
quantized model from it on a float skeleton of the same architecture; it computes exactly what the saved model
computed (a test and every run check it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.evaluate import StoredField, read_safetensors
from common.paths import atomic_path
from papers.awq.awq import AwqLinear, replace_module_

FORMAT = "nnq-awq-packed/1"


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (uint8, values < 2^bits) of any shape -> a flat uint8 stream of ceil(numel * bits / 8) bytes."""
    c = codes.reshape(-1).to(torch.uint8).numpy()
    planes = (c[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # [numel, bits], least significant bit first
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little").copy())


def unpack_bits(stream: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the stream -> codes (uint8) of ``shape``."""
    n = int(np.prod(shape))
    planes = np.unpackbits(stream.numpy(), bitorder="little")[: n * bits].reshape(n, bits)
    codes = (planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(1, dtype=np.uint8)
    return torch.from_numpy(codes.reshape(shape).copy())


def awq_layers(model: nn.Module) -> dict[str, AwqLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AwqLinear)}


def _awq_keys(layers: dict[str, AwqLinear]) -> set[str]:
    return {f"{n}.{k}" for n, m in layers.items() for k in m.state_dict()}


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The model's stored representation: each AwqLinear's fields, every other float tensor at 32 bits."""
    layers = awq_layers(model)
    fields = [f for n, m in layers.items() for f in m.stored_fields(n + ".")]
    skip = _awq_keys(layers)
    fields += [StoredField.fixed(k, v.numel(), 32) for k, v in model.state_dict().items()
               if k not in skip and v.is_floating_point()]
    return fields


@torch.no_grad()
def save_packed(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the packed artifact of ``model`` (a model with AwqLinear layers); returns the path."""
    from safetensors.torch import save_file

    layers = awq_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    shapes = {}
    for n, m in layers.items():
        tensors[f"{n}.codes"] = pack_bits(m.codes.cpu(), m.weight_bits)
        tensors[f"{n}.delta"] = m.delta.reshape(m.out_features, -1).cpu().half()
        tensors[f"{n}.zero"] = m.zero.reshape(m.out_features, -1).cpu().to(torch.uint8)
        tensors[f"{n}.inv_scale"] = m.inv_scale.cpu().float()
        if m.bias is not None:
            tensors[f"{n}.bias"] = m.bias.detach().cpu().float()
        shapes[n] = [m.out_features, m.in_features, m.weight_bits, m.group_size]
    skip = _awq_keys(layers)
    for k, v in model.state_dict().items():
        if k not in skip and v.is_floating_point():
            tensors[f"float::{k}"] = v.detach().cpu().float()
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    md = {"format": FORMAT, "layers": json.dumps(shapes), **{k: str(v) for k, v in (meta or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=md)
    return Path(path)


@torch.no_grad()
def load_packed(path: str | Path, float_model: nn.Module) -> nn.Module:
    """The quantized model of ``path``, built in place on ``float_model`` (same architecture); returns it."""
    meta, tensors = read_safetensors(path, FORMAT, "packed AWQ file")
    for n, (c_out, c_in, bits, gs) in json.loads(meta["layers"]).items():
        codes = unpack_bits(tensors[f"{n}.codes"], bits, (c_out, c_in))
        layer = AwqLinear.from_codes(codes, tensors[f"{n}.delta"], tensors[f"{n}.zero"], tensors[f"{n}.inv_scale"],
                                     tensors.get(f"{n}.bias"), bits, gs)
        replace_module_(float_model, n, layer)
    rest = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.startswith("float::")}
    missing, unexpected = float_model.load_state_dict(rest, strict=False)
    if unexpected:
        raise ValueError(f"{path}: tensors {unexpected[:3]} do not belong to this model")
    return float_model
