"""The real artifact of a PTQ4ViT model: k-bit weight codes packed k bits each, with their steps and every
activation quantizer's steps.

``save_packed(model, path)`` writes one safetensors file (format ``nnq-ptq4vit-packed/1``): for each
:class:`~papers.ptq4vit.ptq4vit.PtqLinear` / ``PtqConv2d`` its signed codes as a bit stream (``<name>.codes``,
code + 2^(k-1) in k bits, least significant bit first), Delta_W per output group / channel (fp32), the input
quantizer's steps (``<name>.a_delta``: Delta_X, or [Delta_R2, m] of the post-GELU twin quantizer) and the bias;
for each :class:`~papers.ptq4vit.ptq4vit.PtqMatMul` the steps of A (head-wise Delta_A, or the post-softmax twin
shift m) and of B; every other tensor of the state dict (embeddings, LayerNorms, positions) in fp32; the kinds
and bit widths in the metadata. ``load_packed(path, float_model)`` rebuilds the quantized model on a float
skeleton with the same matmul modules; it computes exactly what the saved model computed (tests and runs check).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.evaluate import StoredField, read_safetensors
from common.paths import atomic_path
from papers.ptq4vit.ptq4vit import PtqConv2d, PtqLinear, PtqMatMul, replace_module_

FORMAT = "nnq-ptq4vit-packed/1"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes in [-2^(k-1), 2^(k-1) - 1] of any shape -> a flat uint8 stream of ceil(numel k / 8) bytes."""
    u = (codes.reshape(-1).to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8).numpy()
    planes = (u[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # [numel, bits], least significant bit first
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little").copy())


def unpack_codes(stream: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: the stream -> int8 codes of ``shape``."""
    n = int(np.prod(shape))
    planes = np.unpackbits(stream.numpy(), bitorder="little")[: n * bits].reshape(n, bits)
    u = (planes.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(1)
    return torch.from_numpy((u.astype(np.int16) - 2 ** (bits - 1)).astype(np.int8).reshape(shape).copy())


def quantized_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (PtqLinear, PtqConv2d, PtqMatMul))}


def _own_keys(mods: dict[str, nn.Module]) -> set[str]:
    return {f"{n}.{k}" for n, m in mods.items() for k in m.state_dict()}


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The stored representation: codes at k bits, steps and biases at 32, every other float tensor at 32."""
    mods = quantized_modules(model)
    fields = []
    for n, m in mods.items():
        if isinstance(m, PtqMatMul):
            fields += [StoredField.fixed(f"{n}.a_delta", m.a_delta.numel(), 32),
                       StoredField.fixed(f"{n}.b_delta", m.b_delta.numel(), 32)]
            continue
        fields += [StoredField.fixed(f"{n}.codes", m.codes.numel(), m.w_bits),
                   StoredField.fixed(f"{n}.w_delta", m.w_delta.numel(), 32)]
        if isinstance(m, PtqLinear) and m.a_bits is not None:
            fields.append(StoredField.fixed(f"{n}.a_delta", m.a_delta.numel(), 32))
        if m.bias is not None:
            fields.append(StoredField.fixed(f"{n}.bias", m.bias.numel(), 32))
    skip = _own_keys(mods)
    fields += [StoredField.fixed(k, v.numel(), 32) for k, v in model.state_dict().items()
               if k not in skip and v.is_floating_point()]
    return fields


@torch.no_grad()
def save_packed(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the packed artifact of ``model`` (a model with PTQ4ViT layers); returns the path."""
    from safetensors.torch import save_file

    mods = quantized_modules(model)
    tensors: dict[str, torch.Tensor] = {}
    layout = {}
    for n, m in mods.items():
        if isinstance(m, PtqMatMul):
            tensors[f"{n}.a_delta"], tensors[f"{n}.b_delta"] = m.a_delta.cpu().float(), m.b_delta.cpu().float()
            layout[n] = {"kind": "matmul", "bits": m.bits, "a_kind": m.a_kind}
            continue
        tensors[f"{n}.codes"] = pack_codes(m.codes.cpu(), m.w_bits)
        tensors[f"{n}.w_delta"] = m.w_delta.cpu().float()
        if m.bias is not None:
            tensors[f"{n}.bias"] = m.bias.detach().cpu().float()
        if isinstance(m, PtqConv2d):
            layout[n] = {"kind": "conv", "bits": m.w_bits, "shape": list(m.codes.shape)}
        else:
            tensors[f"{n}.a_delta"] = m.a_delta.cpu().float()
            layout[n] = {"kind": "linear", "bits": m.w_bits, "a_bits": m.a_bits, "act_kind": m.act_kind,
                         "shape": list(m.codes.shape)}
    skip = _own_keys(mods)
    for k, v in model.state_dict().items():
        if k not in skip and v.is_floating_point():
            tensors[f"float::{k}"] = v.detach().cpu().float()
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    md = {"format": FORMAT, "layout": json.dumps(layout), **{k: str(v) for k, v in (meta or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=md)
    return Path(path)


@torch.no_grad()
def load_packed(path: str | Path, float_model: nn.Module) -> nn.Module:
    """The quantized model of ``path``, built in place on ``float_model`` (same architecture and matmul modules)."""
    meta, t = read_safetensors(path, FORMAT, "packed PTQ4ViT file")
    for n, e in json.loads(meta["layout"]).items():
        m = float_model.get_submodule(n)
        if e["kind"] == "matmul":
            replace_module_(float_model, n, PtqMatMul(e["bits"], e["a_kind"], t[f"{n}.a_delta"], t[f"{n}.b_delta"]))
            continue
        codes = unpack_codes(t[f"{n}.codes"], e["bits"], tuple(e["shape"]))
        if e["kind"] == "conv":
            q = PtqConv2d(m, e["bits"])
        else:
            q = PtqLinear(m.in_features, m.out_features, m.bias is not None, e["bits"], e["a_bits"], e["act_kind"],
                          groups=t[f"{n}.w_delta"].numel())
            q.a_delta.copy_(t[f"{n}.a_delta"])
        q.codes.copy_(codes)
        q.w_delta.copy_(t[f"{n}.w_delta"])
        q.refresh_weight_()
        if f"{n}.bias" in t:
            q.bias.copy_(t[f"{n}.bias"])
        replace_module_(float_model, n, q.to(m.weight.device))
    rest = {k.split("::", 1)[1]: v for k, v in t.items() if k.startswith("float::")}
    _, unexpected = float_model.load_state_dict(rest, strict=False)
    if unexpected:
        raise ValueError(f"{path}: tensors {unexpected[:3]} do not belong to this model")
    return float_model
