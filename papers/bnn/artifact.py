"""The real artifact of a BNN: binary weights stored at one bit each.

File format: one safetensors file. Each binary layer's weight is stored as ``<name>.packed``
(uint8, eight signs per byte, MSB first, bit 1 = +1, zero-padded at the end) with its original
shape in the JSON metadata; every other tensor of the state dict (batch-norm parameters and
statistics, real biases) is stored in fp32 under its own name. Loading rebuilds the weights as
exact ±1 values; since the forward pass binarizes the weights anyway, the reloaded model predicts
exactly what the trained one does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from common.errors import NnqError
from common.evaluate import read_safetensors
from papers.bnn.bnn import binary_layers

FORMAT = "nnq-bnn-packed-v1"


def pack_signs(w: torch.Tensor) -> torch.Tensor:
    """Pack Sign(w) into bytes: bit 1 for w >= 0 (+1), bit 0 for w < 0 (-1). Returns uint8 (ceil(n/8),)."""
    bits = (w.detach().reshape(-1) >= 0).cpu().numpy()
    return torch.from_numpy(np.packbits(bits))


def unpack_signs(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_signs`: a float32 tensor of ±1 with ``shape``."""
    n = math.prod(shape)
    if packed.numel() != math.ceil(n / 8):
        raise NnqError(f"packed tensor has {packed.numel()} bytes, shape {tuple(shape)} needs {math.ceil(n / 8)}")
    bits = np.unpackbits(packed.cpu().numpy(), count=n)
    return torch.from_numpy(bits.astype(np.float32) * 2 - 1).reshape(shape)


def save_packed(model: nn.Module, path: str | Path) -> Path:
    """Write the 1-bit artifact of ``model`` to ``path`` and return the path."""
    path = Path(path)
    binary_names = {name for name, m in model.named_modules() if m in binary_layers(model)}
    tensors, shapes = {}, {}
    for key, value in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if owner in binary_names and leaf == "weight":
            tensors[f"{key}.packed"] = pack_signs(value)
            shapes[key] = list(value.shape)
        else:
            tensors[key] = value.detach().cpu().float().contiguous() if value.is_floating_point() else value.cpu()
    save_file(tensors, str(path), metadata={"format": FORMAT, "binary_shapes": json.dumps(shapes)})
    return path


def load_packed(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_packed` into ``model`` (same architecture), strictly."""
    path = Path(path)
    meta, tensors = read_safetensors(path, FORMAT, "packed BNN file")
    state = {k: v for k, v in tensors.items() if not k.endswith(".packed")}
    for key, shape in json.loads(meta["binary_shapes"]).items():
        state[key] = unpack_signs(tensors[f"{key}.packed"], tuple(shape))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NnqError(f"{path} does not match this model: {str(exc).splitlines()[0]}") from None
    return model
