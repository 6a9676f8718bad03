"""Figures the papers report, each with its table and where it was checked.

Each entry is (value, reference). Only figures checked against the paper's text (a full-text transcription of the
arXiv paper) or the authors' official README are entered; the README's Known gaps lists the rest.
Units: params and MACs in millions ("Million Parameters", "Million Mult-Adds"; ShuffleNet's "MFLOPs" are
multiply-adds too, its Table 1 caption says so); top-1 in percent (accuracy, or 100 - the printed error).
"""

MOBILENET = "Howard et al. 2017, arXiv 1704.04861"
MOBILENET_V2 = "Sandler et al., CVPR 2018, arXiv 1801.04381"
SHUFFLENET = "Zhang et al., CVPR 2018, arXiv 1707.01083"
SHUFFLENET_V2 = "Ma et al., ECCV 2018, arXiv 1807.11164"
SQUEEZENET_README = "official README, github.com/forresti/SqueezeNet (SqueezeNet_v1.1/README.md)"
MEGVII_README = "official README, github.com/megvii-model/ShuffleNet-Series"

# key: (arch, variant, input size) -> {"params": (M, ref), "macs": (M, ref), "top1": (%, ref)}
PAPER: dict[tuple[str, str, int], dict[str, tuple[float, str]]] = {
    # MobileNets, Table 6 (width multiplier, 224) and Table 7 (resolution, alpha = 1)
    ("mobilenet_v1", "1.0", 224): {"params": (4.2, "Table 6"), "macs": (569, "Table 6"), "top1": (70.6, "Table 6")},
    ("mobilenet_v1", "0.75", 224): {"params": (2.6, "Table 6"), "macs": (325, "Table 6"), "top1": (68.4, "Table 6")},
    ("mobilenet_v1", "0.5", 224): {"params": (1.3, "Table 6"), "macs": (149, "Table 6"), "top1": (63.7, "Table 6")},
    ("mobilenet_v1", "0.25", 224): {"params": (0.5, "Table 6"), "macs": (41, "Table 6"), "top1": (50.6, "Table 6")},
    ("mobilenet_v1", "1.0", 192): {"params": (4.2, "Table 7"), "macs": (418, "Table 7"), "top1": (69.1, "Table 7")},
    ("mobilenet_v1", "1.0", 160): {"params": (4.2, "Table 7"), "macs": (290, "Table 7"), "top1": (67.2, "Table 7")},
    ("mobilenet_v1", "1.0", 128): {"params": (4.2, "Table 7"), "macs": (186, "Table 7"), "top1": (64.4, "Table 7")},
    ("mobilenet_v1", "0.5", 160): {"params": (1.32, "Table 9"), "macs": (76, "Table 9"), "top1": (60.2, "Table 9")},
    # MobileNetV2, Table 4
    ("mobilenet_v2", "1.0", 224): {"params": (3.4, "Table 4"), "macs": (300, "Table 4"), "top1": (72.0, "Table 4")},
    ("mobilenet_v2", "1.4", 224): {"params": (6.9, "Table 4"), "macs": (585, "Table 4"), "top1": (74.7, "Table 4")},
    # ShuffleNet, Table 1 (complexity of 1x per g), Table 2 (error vs g at 1x, 0.5x, 0.25x), Table 5 (2x, 1.5x)
    ("shufflenet_v1", "1.0x g1", 224): {"macs": (143, "Table 1"), "top1": (100 - 33.6, "Table 2")},
    ("shufflenet_v1", "1.0x g2", 224): {"macs": (140, "Table 1"), "top1": (100 - 32.7, "Table 2")},
    ("shufflenet_v1", "1.0x g3", 224): {"macs": (137, "Table 1"), "top1": (100 - 32.6, "Table 2")},
    ("shufflenet_v1", "1.0x g4", 224): {"macs": (133, "Table 1"), "top1": (100 - 32.8, "Table 2")},
    ("shufflenet_v1", "1.0x g8", 224): {"macs": (137, "Table 1"), "top1": (100 - 32.4, "Table 2")},
    ("shufflenet_v1", "0.5x g3", 224): {"macs": (38, "Table 2"), "top1": (100 - 43.2, "Table 2")},
    ("shufflenet_v1", "0.5x g8", 224): {"macs": (38, "Table 2"), "top1": (100 - 42.3, "Table 2")},
    ("shufflenet_v1", "1.5x g3", 224): {"macs": (292, "Table 5"), "top1": (100 - 28.5, "Table 5")},
    ("shufflenet_v1", "2.0x g3", 224): {"macs": (524, "Table 5"), "top1": (100 - 26.3, "Table 5")},
    # ShuffleNet V2, Table 5 (FLOPs, weights); top-1 error from the official README (Table 8 of the paper)
    ("shufflenet_v2", "0.5x", 224): {"params": (1.4, "Table 5"), "macs": (41, "Table 5"),
                                     "top1": (100 - 38.9, "official README")},
    ("shufflenet_v2", "1.0x", 224): {"params": (2.3, "Table 5"), "macs": (146, "Table 5"),
                                     "top1": (100 - 30.6, "official README")},
    ("shufflenet_v2", "1.5x", 224): {"params": (3.5, "Table 5"), "macs": (299, "Table 5"),
                                     "top1": (100 - 27.4, "official README")},
    ("shufflenet_v2", "2.0x", 224): {"params": (7.4, "Table 5"), "macs": (591, "Table 5"),
                                     "top1": (100 - 25.0, "official README")},
    # SqueezeNet, as other papers of this package report it (MobileNets Table 9), and the official v1.1 README
    ("squeezenet", "1.0", 224): {"params": (1.25, "MobileNets Table 9"), "macs": (1700, "MobileNets Table 9"),
                                 "top1": (57.5, "MobileNets Table 9")},
}
"""The papers' rows, keyed like ``results.py``'s rows (variant = the multiplier, or "s x g" for ShuffleNet)."""

SOURCES = {"mobilenet_v1": MOBILENET, "mobilenet_v2": MOBILENET_V2, "shufflenet_v1": SHUFFLENET,
           "shufflenet_v2": SHUFFLENET_V2, "squeezenet": MOBILENET}

SQUEEZENET_V11_GFLOPS = ((1.72, 0.72), SQUEEZENET_README)
"""(v1.0, v1.1) GFLOPS per image, the README's "2.4x less computation"."""

MEGVII_SHUFFLENET_V1 = {  # the official ShuffleNetV1 README: retrained models (FLOPs M, params M)
    "2.0x g3": (524, 5.4), "2.0x g8": (522, 6.5), "1.5x g3": (292, 3.4), "1.5x g8": (290, 4.3),
    "1.0x g3": (138, 1.9), "1.0x g8": (138, 2.4), "0.5x g3": (38, 0.7), "0.5x g8": (40, 1.0)}
"""ShuffleNet v1 parameters are not in the paper; the authors' README gives them for their released models."""
