"""Configuration and presets of the efficient-CNN package (``python -m papers.efficient_cnns.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError
from papers.efficient_cnns.models import ARCHS

OPTIMIZERS = ("sgd", "rmsprop")
SCHEDULES = ("cosine", "exp")
STEMS = ("auto", "imagenet", "cifar")


@dataclass
class Config(BaseConfig):
    """Train one of the efficient architectures from scratch and report its accuracy, parameters, MACs and latency."""

    arch: str = "mobilenet_v2"
    """Architecture: mobilenet_v1, mobilenet_v2, shufflenet_v1, shufflenet_v2, squeezenet or squeezenext."""
    width: float = 1.0
    """The paper's width multiplier: alpha (MobileNets), s or the complexity level (ShuffleNet), w (SqueezeNext); SqueezeNet ignores it."""
    variant: str | None = None
    """ShuffleNet v1 groups (g1..g8), SqueezeNet version and bypass (1.0, 1.1, 1.0+simple, 1.0+complex) or SqueezeNext depth (23, 23v5); none: the paper's default."""
    stem: str = "auto"
    """Stem: imagenet (the paper's strides), cifar (the documented CIFAR-size strides) or auto (cifar for images of 64 px or less)."""
    optimizer: str = "sgd"
    """sgd (momentum --momentum, Nesterov) or rmsprop (decay 0.9 and momentum --momentum, MobileNetV2 Sec. 6.1)."""
    momentum: float = 0.9
    """Momentum of the optimizer."""
    weight_decay: float = 5e-4
    """L2 weight decay on every parameter."""
    schedule: str = "cosine"
    """Learning-rate schedule: cosine (per step, to zero) or exp (times --lr-decay after every epoch, MobileNetV2 Sec. 6.1)."""
    lr_decay: float = 0.98
    """Per-epoch factor of the exp schedule."""
    normalize: str = "default"
    """Input normalisation passed to common.data.load_dataset: default, imagenet or none."""
    int8: bool = False
    """Also quantize the trained network to int8 with PyTorch's x86 backend (FX, calibrated on 8 training batches) and report its test accuracy, size and latency."""
    latency_repeats: int = 20
    """Repeats of the batch-1 latency measurement in the summary (median; 0: not measured)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not self.width > 0:
            raise NnqError(f"--width must be positive, got {self.width}")
        self._validate_variant()
        if self.optimizer not in OPTIMIZERS:
            raise NnqError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise NnqError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.stem not in STEMS:
            raise NnqError(f"--stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if not 0 <= self.momentum < 1:
            raise NnqError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise NnqError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not 0 < self.lr_decay <= 1:
            raise NnqError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.normalize not in ("default", "imagenet", "none"):
            raise NnqError(f"--normalize must be default, imagenet or none, got {self.normalize!r}")
        if self.latency_repeats < 0:
            raise NnqError(f"--latency-repeats must be 0 or more, got {self.latency_repeats}")

    def _validate_variant(self) -> None:
        v, a = self.variant, self.arch
        allowed = {"shufflenet_v1": ("g1", "g2", "g3", "g4", "g8"),
                   "squeezenet": ("1.0", "1.1", "1.0+simple", "1.0+complex", "1.1+simple", "1.1+complex"),
                   "squeezenext": ("23", "23v5")}.get(a, ())
        if v is not None and v not in allowed:
            what = f"one of {', '.join(allowed)}" if allowed else "left out (this architecture has no variants)"
            raise NnqError(f"--variant for {a} must be {what}, got {v!r}")
        if a == "shufflenet_v2" and self.width not in (0.5, 1.0, 1.5, 2.0):
            raise NnqError(f"--width of shufflenet_v2 must be 0.5, 1.0, 1.5 or 2.0 (Table 5), got {self.width}")


def _cifar(arch: str, **kw) -> Config:
    # CPU-budget: CIFAR-10 (JPEG q75), the paper's multiplier 1.0 (SqueezeNet v1.0), the CIFAR-size stem, the same
    # optimizer, schedule and budget for every architecture: 15 epochs of SGD (Nesterov, momentum 0.9, LR 0.1,
    # weight decay 5e-4, batch 128, per-step cosine), crop + flip. Our recipe, not a paper's (they train on ImageNet).
    return Config(preset=f"cifar10_{arch}", dataset="cifar10_jpeg", arch=arch, stem="cifar", epochs=15, batch_size=128,
                  lr=0.1, int8=True, **kw)


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits: MobileNetV2 (alpha 0.5, CIFAR-size stem) from scratch, 20 epochs; one to two minutes on one core.
    "quick": Config(preset="quick", dataset="digits", arch="mobilenet_v2", width=0.5, stem="cifar", epochs=20,
                    batch_size=64, lr=0.05, weight_decay=5e-4, int8=True),
    **{f"cifar10_{a}": _cifar(a) for a in ARCHS},
    # MobileNetV2 on an ImageNet-style folder with the paper's recipe (Sec. 6.1): RMSProp (decay and momentum 0.9),
    # weight decay 4e-5, initial LR 0.045 decayed by 0.98 per epoch, batch 96; the paper gives no epoch count
    # (ours: 300). ImageNet stem, 224 crops.
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", arch="mobilenet_v2", width=1.0, stem="imagenet",
                    optimizer="rmsprop", momentum=0.9, weight_decay=4e-5, schedule="exp", lr_decay=0.98, lr=0.045,
                    batch_size=96, epochs=300, normalize="imagenet"),
}
