"""Configuration and presets of the DoReFa-Net package (``python -m papers.dorefa.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig, check_shared_fields
from common.errors import NnqError
from papers.dorefa.models import ARCHS

STUDY_LR_GRID = (1e-4, 3e-4, 1e-3)
"""Adam LRs a study run tries on the validation split (fine-tuning the shared float ResNet-20)."""
GRID_W = (1, 2, 32)
"""Weight bits of the W x A grid of the ``svhn_convnet_mnist`` preset (32: full precision)."""
GRID_A = (1, 2, 4, 32)
"""Activation bits of that grid."""
GRID_G = (2, 4, 8)
"""Gradient bits tried at W1A2 (the paper's headline weights and activations) beside G = 32."""
STUDY_POINTS = ((1, 1), (1, 32), (2, 2), (4, 4))
"""(W, A) points of the study setting ``cifar10_resnet20`` (G = 32), those the other methods of the study share."""
GRID_SEEDS = {(1, 2, 2): 3, (1, 2, 4): 3, (1, 2, 8): 3, (1, 2, 32): 3, (1, 1, 32): 3, (32, 32, 32): 3}
"""(W, A, G) cells run with 3 seeds: those that decide the ordering (G at W1A2, A at W1, the float cell)."""


@dataclass
class Config(BaseConfig):
    """Train a DoReFa-Net (k-bit weights, activations and gradients); save and check the packed k-bit artifact."""

    arch: str = "smallconv"
    """Network: smallconv (8x8 digits), svhn_convnet (the paper's SVHN net, 40x40), alexnet or resnet18 (ImageNet folders), resnet20 (the study setting)."""
    width: float = 1.0
    """Channel multiplier of svhn_convnet's seven convolutions (1.0: the official example's widths)."""
    w_bits: int = 1
    """W: bits of the weights of every layer but the first and last (1: sign(w) E|w|; 32: full precision)."""
    a_bits: int = 2
    """A: bits of the input activations of those layers (clipped to [0, 1], then quantize_k; 32: not quantized)."""
    g_bits: int = 6
    """G: bits of the gradients of those layers' outputs in the backward pass (f_g^k with uniform noise; 32: exact)."""
    resize: int | None = None
    """Resize the images to SIZE x SIZE when loading (svhn_convnet needs 40); none: as stored."""
    optimizer: str = "adam"
    """adam (the paper's and the official example's) or sgd (momentum 0.9)."""
    weight_decay: float = 0.0
    """L2 weight decay."""
    lr_decay_epochs: int = 0
    """Halve the LR every N epochs (the official SVHN example halves it every 100 epochs); 0: cosine decay to 0."""
    weights: str | None = None
    """Trained float weights to start from (a relative path is looked up in $NNQ_WEIGHTS_DIR); none: train from scratch, as the paper does."""
    baseline_epochs: int = 0
    """Epochs of a float twin (W32A32G32, same recipe) trained from scratch only for fp_value; 0: none."""
    normalize: str = "default"
    """Input normalisation passed to common.data.load_dataset: default, imagenet or none."""
    setting: str | None = None
    """Study setting (common.settings) of a study run: its data, float start, batch, steps, schedule and float layers replace dataset, arch, weights, epochs and batch_size; the LR is chosen on the validation split."""
    lr_grid: tuple[float, ...] = ()
    """LRs a study run tries on the validation split (empty: config.STUDY_LR_GRID; one LR: used as given, no pilot)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not 0 < self.width <= 4:
            raise NnqError(f"--width must be in (0, 4], got {self.width}")
        if self.w_bits not in (1, 2, 3, 4, 8, 32):
            raise NnqError(f"--w-bits must be 1, 2, 3, 4, 8 or 32, got {self.w_bits}")
        for name in ("a_bits", "g_bits"):
            k = getattr(self, name)
            if not (1 <= k <= 16 or k == 32):
                raise NnqError(f"--{name.replace('_', '-')} must be between 1 and 16, or 32, got {k}")
        if self.resize is not None and self.resize < 1:
            raise NnqError(f"--resize must be positive or none, got {self.resize}")
        if self.optimizer not in ("adam", "sgd"):
            raise NnqError(f"--optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.weight_decay < 0:
            raise NnqError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if self.lr_decay_epochs < 0:
            raise NnqError(f"--lr-decay-epochs must be 0 or more, got {self.lr_decay_epochs}")
        check_shared_fields(self, "baseline_epochs", "normalize", "setting", "lr_grid")


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits: DoReFa W1A2G6 (the paper's headline bits) trained from scratch with Adam, and a
    # float twin of the same recipe for fp_value; well under a minute.
    "quick": Config(preset="quick", dataset="digits", arch="smallconv", w_bits=1, a_bits=2, g_bits=6,
                    baseline_epochs=20, epochs=20, batch_size=64, lr=1e-3),
    # The paper's SVHN setting (Sec. 3.1) as the official example runs it: the 7-conv net on 40x40 SVHN, Adam
    # 1e-3 halved every 100 epochs, batch 128, 200 epochs. Needs the SVHN .mat files (not on this machine).
    "svhn": Config(preset="svhn", dataset="svhn", arch="svhn_convnet", resize=40, w_bits=1, a_bits=2, g_bits=4,
                   epochs=200, lr_decay_epochs=100, batch_size=128, lr=1e-3),
    # The same network and W/A/G grid on data this machine has: MNIST resized to 40x40, a quarter of the
    # channels, 20,000 training images, 3 epochs (about one CPU-minute per grid cell). CPU-budget numbers.
    "svhn_convnet_mnist": Config(preset="svhn_convnet_mnist", dataset="mnist", arch="svhn_convnet", width=0.25,
                                 resize=40, limit_train=20000, w_bits=1, a_bits=2, g_bits=4, epochs=3,
                                 batch_size=128, lr=1e-3),
    # The study setting cifar10_resnet20 (common/settings.py): ResNet-20 fine-tuned from the shared float weights,
    # first conv and last linear float, the setting's steps, batch and per-step cosine; Adam LR chosen on
    # validation. Its points: STUDY_POINTS (G = 32).
    "cifar10_resnet20": Config(preset="cifar10_resnet20", setting="cifar10_resnet20", dataset="cifar10_jpeg",
                               arch="resnet20", normalize="imagenet", w_bits=2, a_bits=2, g_bits=32,
                               batch_size=128),
    # The paper's ImageNet AlexNet (Sec. 3.2): an ImageNet-style folder, W1A2G6 trained from scratch with Adam.
    # Epochs, batch and LR follow the official example as we read it, not yet checked against the paper's text.
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", arch="alexnet", normalize="imagenet",
                    w_bits=1, a_bits=2, g_bits=6, epochs=100, batch_size=256, lr=1e-4),
}
