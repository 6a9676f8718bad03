"""Figures reported in Esser et al., "Learned Step Size Quantization", ICLR 2020 (arXiv 1902.08153).

Each entry is (value, reference) and is added only after it was checked against the paper's text.
None is recorded yet: the ImageNet top-1 accuracies of Table 1 (ResNet-18 at 2/3/4/8 bits) are to be
entered here once checked; until then the package's tables show "—" in the paper column.
"""

TOP1: dict[tuple[str, int], tuple[float, str]] = {}
"""(network, bits of weights and activations) -> (ImageNet top-1 %, table reference)."""
