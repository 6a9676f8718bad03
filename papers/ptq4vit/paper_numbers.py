"""Figures reported for PTQ4ViT (Yuan, Xue, Chen, Wu, Sun, ECCV 2022, arXiv 2111.12293), ImageNet top-1 (%).

Each entry was checked against the official README of github.com/hahnyuan/PTQ4ViT (its "Results of BasePTQ",
"Results of PTQ4ViT" and "Results of Ablation" tables, which the README gives for the paper's setting: 32
calibration images, parallel quantization). Values are copied with the README's digits. The paper's own Table
numbers are not yet checked against the paper's text (see the README's Known gaps); re-runs by others do not
match them exactly (official issues #9 and #21).
"""

README = "official README (github.com/hahnyuan/PTQ4ViT), tables 'Results of BasePTQ' and 'Results of PTQ4ViT'"
ABLATION_REF = "official README (github.com/hahnyuan/PTQ4ViT), table 'Results of Ablation'"

TOP1: dict[str, dict[str, float]] = {
    "ViT-S/224": {"fp": 81.39, "base_w8a8": 80.468, "base_w6a6": 70.244, "ptq4vit_w8a8": 81.002,
                  "ptq4vit_w6a6": 78.63},
    "ViT-B/224": {"fp": 84.54, "base_w8a8": 83.896, "base_w6a6": 75.668, "ptq4vit_w8a8": 84.25,
                  "ptq4vit_w6a6": 81.65},
    "DeiT-S/224": {"fp": 79.80, "base_w8a8": 77.654, "base_w6a6": 72.268, "ptq4vit_w8a8": 79.474,
                   "ptq4vit_w6a6": 76.282},
    "DeiT-B/224": {"fp": 81.80, "base_w8a8": 80.946, "base_w6a6": 78.786, "ptq4vit_w8a8": 81.482,
                   "ptq4vit_w6a6": 80.25},
}
"""model -> {fp, base_w8a8, base_w6a6, ptq4vit_w8a8, ptq4vit_w6a6}: ImageNet top-1 (%), source ``README``."""

TIMM_NAMES = {"ViT-S/224": "vit_small_patch16_224", "ViT-B/224": "vit_base_patch16_224",
              "DeiT-S/224": "deit_small_patch16_224", "DeiT-B/224": "deit_base_patch16_224"}

ABLATION: dict[str, list[tuple[bool, bool, bool, float, float]]] = {
    "ViT-S/224": [(False, False, False, 80.47, 70.24), (True, False, False, 80.93, 77.20),
                  (True, True, False, 81.11, 78.57), (True, False, True, 80.84, 76.93),
                  (False, True, True, 79.25, 74.07), (True, True, True, 81.00, 78.63)],
    "ViT-B/224": [(False, False, False, 83.90, 75.67), (True, False, False, 83.97, 79.90),
                  (True, True, False, 84.07, 80.76), (True, False, True, 84.10, 80.82),
                  (False, True, True, 83.40, 78.86), (True, True, True, 84.25, 81.65)],
}
"""model -> rows (Hessian guided, softmax twin, GELU twin, W8A8, W6A6), source ``ABLATION_REF``."""

CALIB_IMAGES: dict[str, dict[int, tuple[float, float]]] = {
    "ViT-S/224": {32: (81.00, 78.63), 128: (80.99, 78.44)},
    "ViT-B/224": {32: (84.25, 81.65), 128: (84.27, 81.84)},
}
"""model -> {calibration images: (W8A8, W6A6)}, official README table 'Number of Calibration Images'."""
