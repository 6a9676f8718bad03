"""Evaluation and cost accounting: accuracy, confusion matrix, parameters, bits, bytes, MACs, latency.

Bit accounting reads what each layer declares: a module with an integer ``weight_bits``
attribute stores its ``weight`` parameter at that width; every other parameter counts 32 bits.
Sizes on disk are measured from real files, never computed from a formula.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
             topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (percent) and mean cross-entropy of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    correct = {k: 0 for k in topk}
    loss_sum = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hit = top == yb[:, None]
        for k in topk:
            correct[k] += hit[:, :k].any(dim=1).sum().item()
    model.train(was_training)
    n = max(len(x), 1)
    out = {f"top{k}": 100.0 * correct[k] / n for k in topk}
    out["loss"] = loss_sum / n
    return out


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Arg-max class of every sample, in eval mode."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` of shape (num_classes, num_classes)."""
    pred = predictions(model, x).cpu()
    idx = y.cpu() * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_bits(model: nn.Module) -> list[dict]:
    """Per parameter: name, numel and the bit width its module declares (32 if none)."""
    rows = []
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            bits = getattr(module, "weight_bits", None) if p_name == "weight" else None
            bits = 32 if bits is None else int(bits)
            rows.append({"name": f"{mod_name}.{p_name}".lstrip("."), "numel": p.numel(), "bits": bits})
    return rows


def model_bits(model: nn.Module) -> int:
    """Total bits of the model's parameters at their declared widths."""
    return sum(r["numel"] * r["bits"] for r in layer_bits(model))


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size


def tensor_bytes(path: str | Path) -> dict[str, int]:
    """Bytes each tensor occupies in the data section of a safetensors file, read from its header
    (the rest of the file is the JSON header: names, dtypes, shapes, metadata)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}


def save_fp32(model: nn.Module, path: str | Path) -> Path:
    """Writes the model's state dict with every float tensor in fp32 as a safetensors file (the baseline file)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return Path(path)


def fp32_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's fp32 state dict written as a safetensors file (the baseline of every ratio)."""
    with tempfile.TemporaryDirectory() as tmp:
        return file_size(save_fp32(model, Path(tmp) / "fp32.safetensors"))


def macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example_input)
    model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def latency_ms(fn: Callable[[torch.Tensor], object], example_input: torch.Tensor, *, repeats: int = 20,
               warmup: int = 3) -> float:
    """Median wall time in ms of ``fn(example_input)`` over ``repeats`` runs after ``warmup`` runs."""
    if isinstance(fn, nn.Module):
        fn.eval()
    sync = torch.cuda.synchronize if example_input.is_cuda else (lambda: None)
    for _ in range(warmup):
        fn(example_input)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(example_input)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
