"""Configuration and presets of the LQ-Nets package (``python -m papers.lqnets.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig, check_shared_fields
from common.errors import NnqError

ARCHS = ("smallconv", "vggsmall", "resnet20", "resnet18")
QUANTIZERS = ("lq", "uniform")
STUDY_LR_GRID = (0.003, 0.01, 0.03)
"""LRs a study run tries on the validation split (fine-tuning a trained float ResNet-20 with SGD)."""


@dataclass
class Config(BaseConfig):
    """Train an LQ-Nets network (learned quantizers fitted by QEM) from a float start; save and check its bit-planes."""

    arch: str = "smallconv"
    """Network: smallconv (8x8 digits), vggsmall (the paper's CIFAR-10 net), resnet20 (CIFAR, the study setting) or resnet18 (ImageNet folders, the paper's)."""
    w_bits: int = 2
    """K_w: bits of the weights of every quantized layer (codes in {-1, 1}^K, one basis per output channel)."""
    a_bits: int | None = 2
    """K_a: bits of the input activations of those layers (codes in {0, 1}^K, one basis per layer); none: float activations (weight-only, e.g. 2/32)."""
    quantizer: str = "lq"
    """lq: the learned basis (the paper); uniform: the ablation with evenly spaced levels of the same bits, fitted by the same QEM on the same schedule."""
    basis_momentum: float = 0.9
    """Moving-average factor of the bases (v <- m v + (1 - m) v_QEM after each step; the official code: 0.9)."""
    momentum: float = 0.9
    """SGD momentum (the official code: 0.9)."""
    weight_decay: float = 5e-5
    """L2 weight decay on the weights (the official ImageNet script's default 5e-5; its CIFAR script: 5e-4)."""
    lr_milestones: tuple[int, ...] = ()
    """Epochs at which the LR is divided by 10 (the official ImageNet schedule); empty: cosine decay."""
    weights: str | None = None
    """Trained float weights to start from (a relative path is looked up in $NNQ_WEIGHTS_DIR); none: the float twin of --baseline-epochs (or the random initialisation when that is 0)."""
    baseline_epochs: int = 10
    """Epochs of the float twin trained from scratch (the starting point and fp_value) when no --weights are given; 0: none."""
    baseline_lr: float = 0.1
    """SGD learning rate of that float twin (momentum --momentum, weight decay 1e-4, cosine per epoch)."""
    normalize: str = "default"
    """Input normalisation passed to common.data.load_dataset: default, imagenet or none."""
    setting: str | None = None
    """Study setting (common.settings) of a study run: its data, float start, batch, steps, schedule and float layers replace dataset, arch, weights, epochs and batch_size; the LR is chosen on the validation split."""
    lr_grid: tuple[float, ...] = ()
    """LRs a study run tries on the validation split (empty: config.STUDY_LR_GRID; one LR: used as given, no pilot)."""
    log_every: int = 10
    """Record every basis each this many optimizer steps (the basis trajectories)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not 1 <= self.w_bits <= 4:
            raise NnqError(f"--w-bits must be between 1 and 4, got {self.w_bits}")
        if self.a_bits is not None and not 1 <= self.a_bits <= 4:
            raise NnqError(f"--a-bits must be between 1 and 4 or none, got {self.a_bits}")
        if self.quantizer not in QUANTIZERS:
            raise NnqError(f"--quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}")
        if not 0 <= self.basis_momentum < 1:
            raise NnqError(f"--basis-momentum must be in [0, 1), got {self.basis_momentum}")
        if not 0 <= self.momentum < 1:
            raise NnqError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise NnqError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if any(m < 1 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(self.lr_milestones):
            raise NnqError(f"--lr-milestones must be increasing positive epochs, got {self.lr_milestones}")
        check_shared_fields(self, "baseline_epochs", "baseline_lr", "normalize", "setting", "lr_grid", "log_every")


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits: a float twin (20 epochs) then LQ W2A2 trained from it (first/last layer float,
    # as the paper); --quantizer uniform is the same run with evenly spaced levels. About a minute.
    "quick": Config(preset="quick", dataset="digits", arch="smallconv", w_bits=2, a_bits=2, baseline_epochs=20,
                    epochs=20, batch_size=64, lr=0.01, weight_decay=5e-5),
    # The study setting cifar10_resnet20 (common/settings.py): ResNet-20 fine-tuned from the shared float
    # weights, first conv and last linear float, the setting's steps, batch and per-step cosine; LR chosen on
    # validation; --w-bits/--a-bits 2/2 (default), 3/3, 4/4, or 2 with --a-bits none (2/32).
    "cifar10_resnet20": Config(preset="cifar10_resnet20", setting="cifar10_resnet20", dataset="cifar10_jpeg",
                               arch="resnet20", normalize="imagenet", w_bits=2, a_bits=2, baseline_epochs=0,
                               batch_size=128),
    # CPU budget (labelled so wherever it appears): the paper's VGG-Small on CIFAR-10 (JPEG q75), 10,000
    # training images, a 2-epoch float twin then 3 epochs of LQ W2A2 (the paper: 400 epochs from scratch);
    # SGD 0.02 and weight decay 5e-4 as the official CIFAR script. About an hour on one core.
    "cifar10_vggsmall": Config(preset="cifar10_vggsmall", dataset="cifar10_jpeg", arch="vggsmall", w_bits=2, a_bits=2,
                               baseline_epochs=2, baseline_lr=0.05, epochs=3, batch_size=100, lr=0.02,
                               weight_decay=5e-4, limit_train=10000),
    # The paper's ImageNet ResNet-18 (official imagenet.py): an ImageNet-style folder, first conv and last FC
    # float, SGD momentum 0.9, LR 0.1 divided by 10 at epochs 30/60/85/95/105, 110 epochs, batch 256, weight
    # decay 5e-5; from --weights when given, else from the random initialisation (as the official script).
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", arch="resnet18", normalize="imagenet",
                    w_bits=2, a_bits=2, baseline_epochs=0, epochs=110, batch_size=256, lr=0.1, weight_decay=5e-5,
                    lr_milestones=(30, 60, 85, 95, 105)),
}
