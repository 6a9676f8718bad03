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
