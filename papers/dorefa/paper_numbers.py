"""Figures reported in Zhou et al., "DoReFa-Net", arXiv 1606.06160 (2016), and by its official tensorpack example.

Each entry is entered only after it was checked against the text it cites. Checked so far: the abstract's ImageNet
figure. The paper's SVHN table (Table 1: accuracy over W/A/G configurations) and its ImageNet AlexNet table are not
entered: their text could not be read here, so the package's tables show "—" in their paper column (see the
README's Known gaps).

The official example (tensorpack ``examples/DoReFa-Net``, by the paper's authors) is a re-run of the paper on
TensorFlow, not the paper: its docstrings give their own SVHN and AlexNet figures, as errors. They are kept apart
here and always shown as "official example", never as the paper's.
"""

TOP1: dict[tuple[str, int, int, int], tuple[float, str]] = {
    ("alexnet", 1, 2, 6): (46.1, "abstract"),
}
"""(network, W, A, G) -> (ImageNet validation top-1 %, where the paper reports it)."""

SVHN_TABLE1: dict[tuple[int, int, int], float] = {}
"""(W, A, G) -> SVHN accuracy of the paper's Table 1; empty until checked against the text."""

_SVHN_EXAMPLE = ("tensorpack examples/DoReFa-Net/svhn-digit-dorefa.py, docstring "
                 "(commit 0774ec66e66075486f6a36aba63cc2a151b9fec8)")
_ALEXNET_EXAMPLE = ("tensorpack examples/DoReFa-Net/alexnet-dorefa.py, docstring "
                    "(commit 03f1897677b7dc5d530764b8183fe2815a8826e7)")

OFFICIAL_EXAMPLE_ERROR: dict[tuple[str, int, int, int], tuple[float, float, str]] = {
    # SVHN test error (%), the example's ConvNet at 40x40, without its optional GaussianDeform augmentation.
    ("svhn", 1, 1, 4): (3.1, 3.2, _SVHN_EXAMPLE + ": '3.1~3.2% error after 150 epochs'"),
    ("svhn", 1, 2, 4): (3.0, 3.1, _SVHN_EXAMPLE + ": 'error is 3.0~3.1%'"),
    ("svhn", 32, 32, 32): (2.9, 2.9, _SVHN_EXAMPLE + ": 'error is about 2.9%'"),
    # ImageNet AlexNet top-1 single-crop validation error (%); the example says its (1,2,6) beats the paper's
    # figure because of stronger augmentation.
    ("alexnet", 32, 32, 32): (41.4, 41.4, _ALEXNET_EXAMPLE + ": 'full precision baseline, 41.4% error'"),
    ("alexnet", 1, 32, 32): (44.3, 44.3, _ALEXNET_EXAMPLE + ": '(1,32,32) -- BWN, 44.3% error'"),
    ("alexnet", 1, 1, 32): (53.4, 53.4, _ALEXNET_EXAMPLE + ": '(1,1,32) -- BNN, 53.4% error'"),
    ("alexnet", 1, 2, 6): (47.6, 47.6, _ALEXNET_EXAMPLE + ": '(1,2,6), 47.6% error'"),
    ("alexnet", 1, 2, 4): (58.4, 58.4, _ALEXNET_EXAMPLE + ": '(1,2,4), 58.4% error'"),
}
"""(data set or network, W, A, G) -> (lowest error %, highest error %, where the official example gives it)."""


def official_top1(net: str, w: int, a: int, g: int) -> str | None:
    """The official example's figure as top-1 accuracy (100 − error), a range where it gives one; None if absent.

    >>> official_top1("svhn", 1, 2, 4), official_top1("alexnet", 1, 2, 6), official_top1("svhn", 2, 2, 32)
    ('96.9–97.0', '52.4', None)
    """
    if (net, w, a, g) not in OFFICIAL_EXAMPLE_ERROR:
        return None
    lo, hi, _ = OFFICIAL_EXAMPLE_ERROR[(net, w, a, g)]
    return f"{100 - hi:.1f}" if lo == hi else f"{100 - hi:.1f}–{100 - lo:.1f}"
