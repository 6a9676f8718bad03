"""Evaluation and cost accounting: accuracy, confusion matrix, parameters, bits, bytes, MACs, latency.

Bit accounting reads what each method declares: a list of :class:`StoredField` (codes at their width,
streams at their length, codebooks, scales, fp32 tensors at 32 bits), summed by :func:`model_bits`;
:func:`module_fields` declares them for models whose quantized modules carry an integer ``weight_bits``.
Sizes on disk are measured from real files, never computed from a formula.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError


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
def evaluate_split(model: nn.Module, data, split: str, *, batch_size: int = 1000,
                   topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (percent) and mean cross-entropy on a data source's ``split`` ("val" or "test").

    ``data`` is an in-memory :class:`common.data.DataBundle` or a streaming folder set; batches are moved
    to the model's device. The test split is read once per reported number: call this for "test" only
    for a model whose number a summary reports.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = {k: 0 for k in topk}
    loss_sum, n = 0.0, 0
    for xb, yb in data.eval_batches(split, batch_size):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hit = top == yb[:, None]
        for k in topk:
            correct[k] += hit[:, :k].any(dim=1).sum().item()
        n += len(yb)
    model.train(was_training)
    out = {f"top{k}": 100.0 * correct[k] / max(n, 1) for k in topk}
    out["loss"] = loss_sum / max(n, 1)
    out["n"] = n
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


@dataclass(frozen=True)
class StoredField:
    """One field of a method's stored representation, as the method declares it.

    Attributes:
        name: What is stored, e.g. ``"conv1.weight.codes"``, ``"conv1.codebook"``, ``"bn1.bias"``.
        count: How many values the field holds (codes, indices, scales, ...).
        bits: Bits of the whole field: ``count * width`` for fixed-width values, the stream's length for a
            variable-length (Huffman) stream.
    """

    name: str
    count: int
    bits: int

    @classmethod
    def fixed(cls, name: str, count: int, width: int) -> "StoredField":
        """``count`` values at ``width`` bits each (e.g. fp32 tensors at 32, 1-bit signs at 1)."""
        return cls(name, int(count), int(count) * int(width))

    @classmethod
    def stream(cls, name: str, count: int, bits: int) -> "StoredField":
        """A variable-length coded stream of ``count`` symbols taking ``bits`` bits in all."""
        return cls(name, int(count), int(bits))


def module_fields(model: nn.Module) -> list[StoredField]:
    """The stored fields of a model whose quantized modules declare an integer ``weight_bits``.

    Such a module stores its ``weight`` at that width; every other parameter and every floating-point buffer
    that the state dict keeps (BatchNorm's running statistics) counts 32 bits. A method with scales, codebooks
    or streams declares those fields itself and passes them to :func:`model_bits`.
    """
    fields = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, p in module.named_parameters(recurse=False):
            bits = getattr(module, "weight_bits", None) if p_name == "weight" else None
            fields.append(StoredField.fixed(prefix + p_name, p.numel(), 32 if bits is None else int(bits)))
        for b_name, b in module.named_buffers(recurse=False):
            if b.is_floating_point() and b_name in module.state_dict():
                fields.append(StoredField.fixed(prefix + b_name, b.numel(), 32))
    return fields


def model_bits(fields: Iterable[StoredField]) -> int:
    """Bits of a method's stored representation: the sum of its declared fields, without file-format overhead
    (headers, names, padding). ``Summary.model_bits`` is this number, for every paper."""
    return sum(f.bits for f in fields)


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size


def tensor_bytes(path: str | Path) -> dict[str, int]:
    """Bytes each tensor occupies in the data section of a safetensors file, read from its header
    (the rest of the file is the JSON header: names, dtypes, shapes, metadata)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}


def read_safetensors(path: str | Path, fmt: str, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors artifact whose metadata says ``format == fmt``.

    Raises:
        NnqError: one line, for an unreadable or truncated file (``what`` names it, e.g. "packed XNOR file")
            or a file of another format.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the same error for the user
        raise NnqError(f"{path} is not a readable {what} ({type(exc).__name__}); re-run training") from None
    if meta.get("format") != fmt:
        raise NnqError(f"{path} is not a {fmt} file (format={meta.get('format')!r})")
    return meta, tensors


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


@torch.no_grad()
def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Wall time in ms of every call of each function, the functions called in turn (a, b, c, a, b, c, ...) so
    that a slow moment of a shared machine falls on all of them alike; ``warmup`` untimed rounds first."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return times
