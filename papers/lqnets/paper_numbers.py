"""Figures reported for LQ-Nets (Zhang, Yang, Ye, Hua, ECCV 2018, arXiv 1807.10029).

Each entry is (value, reference) and is added only after it was checked against the source text. The ImageNet
ResNet-18 top-1 accuracies below were checked against the official repository's README (Microsoft/LQ-Nets,
"Results" > "ImageNet Experiments"), which reports the paper's models. Not entered yet (not yet checked against
the paper text here): the paper's CIFAR-10 tables (ResNet-20 and VGG-Small, learned vs uniform quantizers).
"""

README_REF = "official README, ImageNet results"

TOP1: dict[tuple[str, int, int | None], tuple[float, str]] = {
    ("resnet18", 2, 2): (64.9, f"{README_REF}, W/A 2/2"),
    ("resnet18", 3, 3): (68.2, f"{README_REF}, W/A 3/3"),
    ("resnet18", 4, 4): (69.3, f"{README_REF}, W/A 4/4"),
    ("resnet18", 2, None): (68.0, f"{README_REF}, weight only, W/A 2/32"),
    ("resnet18", 3, None): (69.3, f"{README_REF}, weight only, W/A 3/32"),
    ("resnet18", 4, None): (70.0, f"{README_REF}, weight only, W/A 4/32"),
}
"""(network, weight bits, activation bits or None for 32) -> (ImageNet top-1 %, reference)."""
