"""Configuration and presets of the LSQ package (``python -m papers.lsq.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig, check_shared_fields
from common.errors import NnqError
from papers.lsq.lsq import GRAD_SCALES, INITS

ARCHS = ("smallconv", "resnet20", "resnet18")
STUDY_LR_GRID = (0.003, 0.01, 0.03)
"""LRs a study run tries on the validation split (fine-tuning from a trained float ResNet-20, SGD as the paper)."""


def paper_weight_decay(bits: int) -> float:
    """Weight decay by weight bits, as Sec. 3 lowers it at 2 and 3 bits (1e-4, 0.5e-4 at 3, 0.25e-4 at 2 bits)."""
    return {2: 0.25e-4, 3: 0.5e-4}.get(bits, 1e-4)


@dataclass
class Config(BaseConfig):
    """Fine-tune a trained float network with Learned Step Size Quantization; save and check the packed integer artifact."""

    arch: str = "smallconv"
    """Network: smallconv (8x8 digits), resnet20 (CIFAR, the study setting) or resnet18 (ImageNet folders, the paper's)."""
    w_bits: int = 3
    """Bits of the weights of every quantized layer but the first and last (signed: Q_N = 2^(b-1), Q_P = 2^(b-1) - 1)."""
    a_bits: int = 3
    """Bits of the input activations of those layers (after ReLU, unsigned: Q_N = 0, Q_P = 2^b - 1)."""
    edge_bits: int | None = 8
    """Bits of the first and last layers' weights and inputs (the paper: 8); none keeps them float (the study setting)."""
    grad_scale: str = "nqp"
    """Gradient scale of the step sizes: nqp (the paper's g = 1/sqrt(N Q_P)), n (1/sqrt(N)) or one (no scale)."""
    init: str = "paper"
    """Step-size initialisation: paper (2<|v|>/sqrt(Q_P), Sec. 2.1) or naive (ours: max|v|/Q_P, the min-max step)."""
    distill: bool = False
    """Add knowledge distillation from the float model (the teacher) to the loss, as the paper's extra result."""
    kd_weight: float = 0.5
    """Weight of the distillation term: loss = (1 - w) CE(student, labels) + w T^2 KL(teacher || student) at temperature T."""
    kd_temperature: float = 1.0
    """Softmax temperature T of the distillation term."""
    momentum: float = 0.9
    """SGD momentum (the paper trains with SGD, momentum 0.9)."""
    weight_decay: float | None = None
    """L2 weight decay; none: the paper's rule by weight bits (1e-4, halved at 3 bits, quartered at 2 bits)."""
    weights: str | None = None
    """Trained float weights to start from (a relative path is looked up in $NNQ_WEIGHTS_DIR); none: the float twin of --baseline-epochs (or, for resnet18, the random initialisation of a dry run)."""
    baseline_epochs: int = 10
    """Epochs of the float twin trained from scratch (the starting point and fp_value) when no --weights are given; 0: none."""
    baseline_lr: float = 0.1
    """SGD learning rate of that float twin (momentum --momentum, weight decay 1e-4, cosine per epoch)."""
    normalize: str = "default"
    """Input normalisation passed to common.data.load_dataset: default, imagenet or none."""
    setting: str | None = None
    """Study setting (common.settings) of a study run: its data, float start, batch, steps, schedule and float layers replace dataset, arch, weights, epochs, batch_size and edge_bits; the LR is chosen on the validation split."""
    lr_grid: tuple[float, ...] = ()
    """LRs a study run tries on the validation split (empty: config.STUDY_LR_GRID; one LR: used as given, no pilot)."""
    log_every: int = 10
    """Record every step size each this many optimizer steps (the step-size trajectories)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        for name in ("w_bits", "a_bits"):
            if not 2 <= getattr(self, name) <= 8:
                raise NnqError(f"--{name.replace('_', '-')} must be between 2 and 8, got {getattr(self, name)}")
        if self.edge_bits is not None and not 2 <= self.edge_bits <= 8:
            raise NnqError(f"--edge-bits must be between 2 and 8 or none, got {self.edge_bits}")
        if self.grad_scale not in GRAD_SCALES:
            raise NnqError(f"--grad-scale must be one of {', '.join(GRAD_SCALES)}, got {self.grad_scale!r}")
        if self.init not in INITS:
            raise NnqError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not 0 <= self.kd_weight <= 1:
            raise NnqError(f"--kd-weight must be in [0, 1], got {self.kd_weight}")
        if not self.kd_temperature > 0:
            raise NnqError(f"--kd-temperature must be positive, got {self.kd_temperature}")
        if not 0 <= self.momentum < 1:
            raise NnqError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise NnqError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        check_shared_fields(self, "baseline_epochs", "baseline_lr", "normalize", "setting", "lr_grid", "log_every")


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits: a float twin (20 epochs) then LSQ W3A3 fine-tuned from it, 8-bit first/last
    # layers as the paper; well under a minute.
    "quick": Config(preset="quick", dataset="digits", arch="smallconv", w_bits=3, a_bits=3, edge_bits=8,
                    baseline_epochs=20, epochs=20, batch_size=64, lr=0.01),
    # The study setting cifar10_resnet20 (common/settings.py): ResNet-20 fine-tuned from the shared float
    # weights, first conv and last linear float, the setting's steps, batch and per-step cosine; LR chosen on
    # validation; --w-bits/--a-bits 2, 3, 4 or 8.
    "cifar10_resnet20": Config(preset="cifar10_resnet20", setting="cifar10_resnet20", dataset="cifar10_jpeg",
                               arch="resnet20", normalize="imagenet", w_bits=4, a_bits=4, edge_bits=None,
                               baseline_epochs=0, batch_size=128),
    # The paper's ImageNet ResNet-18 (Sec. 3): an ImageNet-style folder, fine-tuned from trained float weights
    # (--weights), 8-bit first and last layers, SGD momentum 0.9, cosine decay, 90 epochs, batch 256, LR 0.01.
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", arch="resnet18", normalize="imagenet",
                    w_bits=2, a_bits=2, edge_bits=8, baseline_epochs=0, epochs=90, batch_size=256, lr=0.01),
}
