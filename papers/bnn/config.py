"""Configuration and presets of the BNN package (``python -m papers.bnn.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError


@dataclass
class Config(BaseConfig):
    """Train a Binarized Neural Network and its float twin; save the 1-bit artifact."""

    arch: str = "mlp"
    """Network: "mlp" (Flatten, hidden Linear-BN-Sign blocks, Linear-BN), "convnet" (the paper's CIFAR ConvNet) or
    "resnet20" (the study setting's ResNet-20 with Sign activations and binary block weights)."""
    hidden: tuple[int, ...] = (512, 512, 512)
    """Hidden layer widths of the MLP (paper: 3 x 4096 Theano, 3 x 2048 Torch7)."""
    dropout_in: float = 0.0
    """Dropout probability on the MLP input."""
    dropout: float = 0.0
    """Dropout probability after each hidden block of the MLP."""
    loss: str = "sq_hinge"
    """Loss: "sq_hinge" (the paper's square hinge loss) or "ce" (cross-entropy)."""
    lr_end: float = 3e-7
    """Learning rate after the last epoch; the rate decays exponentially from --lr to it (as in the paper's MNIST experiments)."""
    baseline_epochs: int = 10
    """Epochs of the float twin that gives fp_value (0: no float baseline)."""
    setting: str | None = None
    """Study setting (common.settings) of a study run: its data, float start, batch, steps and schedule replace
    dataset, arch, epochs and batch_size; the LR is chosen on the validation split from --lr-grid."""
    lr_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    """Adam learning rates a study run tries on the validation split (pilot runs)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ("mlp", "convnet", "resnet20"):
            raise NnqError(f"--arch must be mlp, convnet or resnet20, got {self.arch!r}")
        if (self.arch == "resnet20") != (self.setting is not None):
            raise NnqError("--arch resnet20 is the study setting's network: use --preset cifar10_resnet20")
        if self.setting is not None:
            from common.settings import get_setting

            get_setting(self.setting)
        if not self.lr_grid or any(lr <= 0 for lr in self.lr_grid):
            raise NnqError(f"--lr-grid needs positive learning rates, got {self.lr_grid}")
        if self.loss not in ("sq_hinge", "ce"):
            raise NnqError(f"--loss must be sq_hinge or ce, got {self.loss!r}")
        for name in ("dropout_in", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise NnqError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.lr_end <= self.lr:
            raise NnqError(f"--lr-end must be in (0, lr={self.lr}], got {self.lr_end}")
        if self.baseline_epochs < 0:
            raise NnqError(f"--baseline-epochs must be 0 or more, got {self.baseline_epochs}")
        if any(h < 1 for h in self.hidden):
            raise NnqError(f"--hidden widths must be positive, got {self.hidden}")


PRESETS: dict[str, Config] = {
    # CPU, embedded data, about a minute.
    "quick": Config(preset="quick", dataset="digits", arch="mlp", hidden=(512, 512, 512), epochs=40,
                    batch_size=64, lr=3e-3, lr_end=3e-5, baseline_epochs=20),
    # MNIST MLP sized for this 2-core CPU within 30 minutes (benchmarks/results/bnn_mnist_mlp.json).
    "mnist_mlp": Config(preset="mnist_mlp", dataset="mnist", arch="mlp", hidden=(1536, 1536, 1536),
                        dropout_in=0.2, dropout=0.2, epochs=30, batch_size=100, lr=3e-3, lr_end=3e-5,
                        baseline_epochs=3),
    # The paper's CIFAR-10 ConvNet; our CIFAR-10 is the JPEG q75 copy (labelled so).
    "cifar10_convnet": Config(preset="cifar10_convnet", dataset="cifar10_jpeg", arch="convnet", epochs=500,
                              batch_size=50, lr=3e-3, lr_end=2e-6, baseline_epochs=100),
    # The study setting cifar10_resnet20 (common/settings.py): the shared float ResNet-20 with Sign activations
    # and binary block weights (W1A1; first conv and last linear float), the setting's steps, batch and per-step
    # cosine; Adam (the paper's optimizer) with its LR chosen on the validation split; cross-entropy like every study row.
    "cifar10_resnet20": Config(preset="cifar10_resnet20", setting="cifar10_resnet20", dataset="cifar10_jpeg",
                               arch="resnet20", loss="ce", baseline_epochs=0, batch_size=128, lr=1e-3),
    # The paper's MNIST setting (Theano): 3 x 4096 MLP, 1000 epochs, batch 100, LR 0.003 -> 3e-7.
    "paper": Config(preset="paper", dataset="mnist", arch="mlp", hidden=(4096, 4096, 4096), dropout_in=0.2,
                    dropout=0.5, epochs=1000, batch_size=100, lr=3e-3, lr_end=3e-7, baseline_epochs=100),
}
