"""Int8 post-training quantization of the trained networks with PyTorch's own x86 backend (FX graph mode).

Not a paper's method: the deployment step the architecture papers assume (MobileNets and ShuffleNet V2 time their
networks on phones, where they run in 8 bits). torch 2.14 keeps FX graph-mode quantization in ``torch.ao``
(``prepare_fx``/``convert_fx`` with the "x86" QConfigMapping: per-channel symmetric int8 weights, per-tensor
affine uint8 activations, observers calibrated on training batches); the PT2E flow with ``X86InductorQuantizer``
has moved to the separate ``torchao`` package, which is not a dependency here.
"""

from __future__ import annotations

import copy
import io
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from common.errors import NnqError


@torch.no_grad()
def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor,
                  engine: str = "x86") -> nn.Module:
    """A converted int8 copy of ``model`` (CPU, eval), calibrated on the batches of ``calibration``.

    Args:
        model: the trained float network (left unchanged).
        calibration: input batches [B, C, H, W] that the observers see (training data, never the test split).
        example: one input batch, for tracing.
        engine: PyTorch's quantized engine and its QConfigMapping: "x86" (FBGEMM and oneDNN, chosen per op)
            or "onednn" (oneDNN only, whose instruction set ONEDNN_MAX_CPU_ISA can cap).
    """
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if engine not in torch.backends.quantized.supported_engines:
        raise NnqError(f"quantized engine {engine!r} is not in this torch build "
                       f"({', '.join(torch.backends.quantized.supported_engines)})")
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():  # torch.ao announces its move to torchao on every call
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).cpu().eval(), get_default_qconfig_mapping(engine),
                              (example.cpu(),))
        for x in calibration:
            prepared(x.cpu())
        return convert_fx(prepared)


@torch.no_grad()
def top1(model: nn.Module, data, split: str = "test", batch_size: int = 256) -> float:
    """Top-1 accuracy (%) of a CPU model (a converted int8 graph has no float parameters to find a device by)."""
    correct = n = 0
    for xb, yb in data.eval_batches(split, batch_size):
        correct += (model(xb.cpu()).argmax(1) == yb.cpu()).sum().item()
        n += len(yb)
    return 100.0 * correct / max(n, 1)


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (int8 weights are packed; the fp32 model for comparison)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _pack(name: str, t: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
    """One state-dict tensor into safetensors entries: a quantized one as int8 codes, fp32 scales, int32 zeros."""
    if not t.is_quantized:
        out[name] = t.detach().contiguous().clone()
        return
    out[f"{name}.int8"] = t.int_repr().contiguous()
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        out[f"{name}.scales"] = t.q_per_channel_scales().float().contiguous()
        zero_points = t.q_per_channel_zero_points()
        if zero_points.any():  # symmetric weights (the x86 and oneDNN defaults) have none to store
            out[f"{name}.zero_points"] = zero_points.int().contiguous()
        out[f"{name}.axis"] = torch.tensor([t.q_per_channel_axis()], dtype=torch.int32)
    else:
        out[f"{name}.scales"] = torch.tensor([t.q_scale()], dtype=torch.float32)
        out[f"{name}.zero_points"] = torch.tensor([t.q_zero_point()], dtype=torch.int32)


def _unpack(name: str, stored: dict[str, torch.Tensor], like: torch.Tensor, path) -> torch.Tensor:
    """The inverse of :func:`_pack` for the entry ``name`` of the state dict (``like`` its current value)."""
    key = f"{name}.int8" if like.is_quantized else name
    if key not in stored:
        raise NnqError(f"{path}: no tensor {name!r}; the file is not of this network")
    if not like.is_quantized:
        return stored[name]
    codes, scales = stored[key], stored[f"{name}.scales"]
    zps = stored.get(f"{name}.zero_points", torch.zeros(scales.shape, dtype=torch.int32))
    if f"{name}.axis" in stored:
        return torch._make_per_channel_quantized_tensor(codes, scales.double(), zps.long(),
                                                        int(stored[f"{name}.axis"]))
    return torch._make_per_tensor_quantized_tensor(codes, float(scales), int(zps))


def save_int8(model: nn.Module, path) -> int:
    """Writes a converted int8 model's state as a safetensors file; returns its bytes.

    Every quantized tensor is stored as its int8 codes (``int_repr``) with its scales in fp32 and its zero points
    in int32 (one per output channel for per-channel weights; none where all are 0, as for symmetric weights);
    every other tensor (fp32 biases, activation scales
    and zero points) as it is; a quantized linear layer's packed (weight, bias) pair as its two tensors.
    ``torch.save`` of the same state dict spends a container record on every tensor and keeps scales and zero
    points in 64 bits, which dominates the file of a network of many narrow convolutions; this file holds the
    same information.
    """
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {}
    for name, v in model.state_dict().items():
        if isinstance(v, torch.Tensor):
            _pack(name, v, out)
        elif isinstance(v, tuple):  # quantized Linear: _packed_params = (weight, bias or None)
            for i, t in enumerate(v):
                if isinstance(t, torch.Tensor):
                    _pack(f"{name}.{i}", t, out)
    save_file(out, str(path))
    return Path(path).stat().st_size


def load_int8(model: nn.Module, path) -> nn.Module:
    """Loads a file of :func:`save_int8` into ``model``, a converted int8 model of the same network (in place)."""
    from safetensors.torch import load_file

    stored = load_file(str(path))
    current = model.state_dict()
    state = OrderedDict()
    state._metadata = current._metadata  # the modules' state versions: quantized Linear reads its weight by them
    for name, v in current.items():
        if isinstance(v, torch.Tensor):
            state[name] = _unpack(name, stored, v, path)
        elif isinstance(v, tuple):
            state[name] = tuple(_unpack(f"{name}.{i}", stored, t, path) if isinstance(t, torch.Tensor) else t
                                for i, t in enumerate(v))
        else:
            state[name] = v
    model.load_state_dict(state)
    return model
