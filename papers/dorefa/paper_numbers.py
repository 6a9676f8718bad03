"""Figures reported in Zhou et al., "DoReFa-Net", arXiv 1606.06160 (2016).

Each entry is (value, reference) and is entered only after it was checked against the paper's text. Checked so
far: the abstract's ImageNet figure. The SVHN table (Table 1: accuracy over W/A/G configurations) and the
ImageNet AlexNet table are not entered: their text could not be read here, so the
package's tables show "—" in their paper column (see the README's Known gaps).
"""

TOP1: dict[tuple[str, int, int, int], tuple[float, str]] = {
    ("alexnet", 1, 2, 6): (46.1, "abstract"),
}
"""(network, W, A, G) -> (ImageNet validation top-1 %, where the paper reports it)."""

SVHN_TABLE1: dict[tuple[int, int, int], float] = {}
"""(W, A, G) -> SVHN accuracy of the paper's Table 1; empty until checked against the text."""
