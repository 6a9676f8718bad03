"""Bytes on disk of the packed BWN / XNOR artifacts of every papers/xnor builder, per binarized layer and per model.

Issue 5's target: packed weights of the binarized layers >= 31x smaller than fp32. Size needs no training:
each model is built with random weights (BatchNorm statistics included), written as an fp32 safetensors
file (its state dict) and as the packed artifact (papers.xnor.packed.save_packed), and every byte is read
back from the two files' headers. alpha (one fp32 per output filter) is counted with the sign bits.

    python -m benchmarks.xnor_size
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks._meta import write_result
from common.evaluate import file_size, save_fp32
from papers.xnor.models import build
from papers.xnor.packed import binary_layer_bytes, save_packed

# (label, arch, input shape, classes): every builder of papers/xnor/models.py, at its preset's input
MODELS = (
    ("SmallConvNet (quick, digits 8x8)", "smallconv", (1, 8, 8), 10),
    ("LeNet-5 (mnist_lenet5, 32x32)", "lenet5", (1, 32, 32), 10),
    ("BNN-paper ConvNet (CIFAR-10)", "bnnconv", (3, 32, 32), 10),
    ("ResNet-20 (cifar10_resnet20)", "resnet20", (3, 32, 32), 10),
    ("ResNet-32 (CIFAR-10)", "resnet32", (3, 32, 32), 10),
    ("ResNet-44 (CIFAR-10)", "resnet44", (3, 32, 32), 10),
    ("ResNet-56 (CIFAR-10)", "resnet56", (3, 32, 32), 10),
    ("ResNet-18 (paper, ImageNet)", "resnet18", (3, 224, 224), 1000),
)


@torch.no_grad()
def measure(label: str, arch: str, shape: tuple[int, int, int], classes: int, mode: str, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = build(arch, mode, shape, classes).eval()
    fp32 = save_fp32(model, tmp / f"{arch}_{mode}_fp32.safetensors")
    packed = save_packed(model, tmp / f"{arch}_{mode}_packed.safetensors")
    layers = binary_layer_bytes(packed, fp32)
    tot = {k: sum(r[k] for r in layers) for k in ("fp32_weight_bytes", "sign_bytes", "alpha_bytes", "bias_bytes")}
    return {"model": label, "arch": arch, "mode": mode, "input_shape": list(shape), "num_classes": classes,
            "fp32_file_bytes": file_size(fp32), "packed_file_bytes": file_size(packed),
            "file_ratio": file_size(fp32) / file_size(packed), "binarized_layers": len(layers), **tot,
            "binarized_ratio": tot["fp32_weight_bytes"] / (tot["sign_bytes"] + tot["alpha_bytes"]),
            "binarized_ratio_sign_bits_only": tot["fp32_weight_bytes"] / tot["sign_bytes"],
            "layer_ratio_min": min(r["ratio"] for r in layers), "layer_ratio_max": max(r["ratio"] for r in layers),
            "layers": layers}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for label, arch, shape, classes in MODELS:
            for mode in ("xnor", "bwn"):
                r = measure(label, arch, shape, classes, mode, Path(d))
                rows.append(r)
                print(f"{label:36s} {mode:4s} binarized {r['binarized_ratio']:.2f}x "
                      f"(layers {r['layer_ratio_min']:.2f}-{r['layer_ratio_max']:.2f}x), file {r['file_ratio']:.2f}x")
    print(write_result("xnor_size", {
        "models": rows,
        "note": ("bytes read from the safetensors headers of an fp32 file and of the packed artifact of a randomly "
                 "initialised model; binarized_ratio = fp32 weights / (sign bits + alpha), alpha = one fp32 per "
                 "output filter, counted; bias is fp32 in both files and listed apart; file_ratio = whole files "
                 "(first/last layers, BatchNorm and the JSON header included).")}))


if __name__ == "__main__":
    main()
