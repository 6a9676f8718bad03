"""Configuration and presets of Deep Compression (``python -m papers.deep_compression.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError
from common.settings import SETTINGS

from papers.deep_compression.share import INIT_METHODS

ARCHS = ("mlp", "lenet300", "lenet5", "lenet5_caffe", "resnet20")


@dataclass
class Config(BaseConfig):
    """Prune, retrain, share weights, fine-tune centroids, Huffman-code: write the compressed file."""

    arch: str = "lenet300"
    """Network: mlp, lenet300 (LeNet-300-100), lenet5_caffe (the paper's 431K Caffe LeNet-5, 28x28), lenet5 (the
    classic 61.7K LeNet-5 of the shared weights, 32x32), resnet20 (CIFAR)."""
    baseline_epochs: int = 10
    """Epochs of the float baseline: from scratch, or fine-tuning --weights when given (0: --weights as they are)."""
    weights: str | None = None
    """Float checkpoint to start from; a relative path is looked up in --weights-dir."""
    weights_dir: str | None = None
    """Folder of shared pretrained weights; default $NNQ_WEIGHTS_DIR, else $NNQ_DATA_DIR/../weights."""
    normalize: str = "default"
    """Input normalisation for load_dataset: default, imagenet (ResNet-20 weights), none (LeNet-5 weights)."""
    resize: int | None = None
    """Resize images to this square size (LeNet-5 needs 32)."""
    density: tuple[float, ...] = (0.08,)
    """Fraction of weights kept per prunable layer, in layer order (one value: every layer)."""
    prune_iterations: int = 3
    """Prune -> retrain rounds (Han 2015 Sec. 3.4); densities fall geometrically to --density."""
    bits: tuple[int, ...] = (6,)
    """Weight-sharing bits per prunable layer (k = 2**bits centroids); one value: every layer."""
    index_bits: int = 5
    """Bits of a relative sparse index (Sec. 2, Fig. 2) in the fixed-width files (pruned, shared_fixed)."""
    auto_index_bits: bool = True
    """Huffman file: give each layer the relative-index width (1..10 bits) whose coded stream is smallest;
    off: --index-bits for every layer, as in Tables 2-3."""
    init: str = "linear"
    """Centroid initialisation: linear, density, random (Sec. 3.2)."""
    share_epochs: int = 3
    """Epochs of centroid fine-tuning (Eq. 3)."""
    optimizer: str = "adam"
    """Optimizer of every stage: adam or sgd (momentum 0.9; a centroid's step is then its members' summed gradient,
    Eq. 3, so keep --share-lr small)."""
    retrain_lr: float = 1e-4
    """Learning rate of retraining after each pruning round (the paper retrains at a lower rate)."""
    share_lr: float = 1e-4
    """Learning rate of centroid fine-tuning."""
    weight_decay: float = 1e-5
    """L2 regularisation of the float and retraining stages (Han 2015 Sec. 3.1 uses L2 for pruning)."""
    setting: str | None = None
    """Study setting (common.settings) the run belongs to; it fixes data, start weights and step budget."""
    steps: int | None = None
    """Step budget of the whole compression (replaces --epochs/--share-epochs): split evenly over the
    --prune-iterations retraining rounds and the centroid fine-tuning, each with a per-step cosine to 0."""
    keep_float: tuple[str, ...] = ()
    """Layers left dense and float (neither pruned nor shared), e.g. the first conv and last linear."""
    lr_grid: tuple[float, ...] = ()
    """Retraining LRs tried by pilot runs on the validation split (empty: use --retrain-lr); --share-lr
    scales with the chosen LR (it keeps its ratio to --retrain-lr)."""
    pilot_steps: int | None = None
    """Steps of each LR pilot (the whole compression within them); default: the study setting's pilot budget,
    else a quarter of --steps."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.baseline_epochs < 0:
            raise NnqError(f"--baseline-epochs must be 0 or more, got {self.baseline_epochs}")
        if self.baseline_epochs == 0 and not self.weights:
            raise NnqError("--baseline-epochs 0 needs --weights FILE (a float baseline to start from)")
        if not self.density or any(not 0 < d <= 1 for d in self.density):
            raise NnqError(f"--density values must be in (0, 1], got {self.density}")
        if self.prune_iterations < 1:
            raise NnqError(f"--prune-iterations must be at least 1, got {self.prune_iterations}")
        if not self.bits or any(not 1 <= b <= 16 for b in self.bits):
            raise NnqError(f"--bits values must be in 1..16, got {self.bits}")
        if not 1 <= self.index_bits <= 16:
            raise NnqError(f"--index-bits must be in 1..16, got {self.index_bits}")
        if self.init not in INIT_METHODS:
            raise NnqError(f"--init must be one of {', '.join(INIT_METHODS)}, got {self.init!r}")
        if self.share_epochs < 0:
            raise NnqError(f"--share-epochs must be 0 or more, got {self.share_epochs}")
        if self.optimizer not in ("adam", "sgd"):
            raise NnqError(f"--optimizer must be adam or sgd, got {self.optimizer!r}")
        if not (self.retrain_lr > 0 and self.share_lr > 0 and self.weight_decay >= 0):
            raise NnqError("--retrain-lr and --share-lr must be positive and --weight-decay >= 0")
        if self.setting is not None and self.setting not in SETTINGS:
            raise NnqError(f"--setting must be one of {', '.join(SETTINGS)} or none, got {self.setting!r}")
        if self.steps is not None and self.steps < self.prune_iterations + 1:
            raise NnqError(f"--steps must be at least --prune-iterations + 1 ({self.prune_iterations + 1})")
        if self.pilot_steps is not None and self.pilot_steps < 1:
            raise NnqError(f"--pilot-steps must be >= 1, got {self.pilot_steps}")
        if self.lr_grid and not self.setting and not (self.pilot_steps or self.steps):
            raise NnqError("--lr-grid needs a pilot budget: give --pilot-steps (or --steps)")
        if any(not lr > 0 for lr in self.lr_grid):
            raise NnqError(f"--lr-grid values must be positive, got {self.lr_grid}")
        if self.normalize not in ("default", "imagenet", "none"):
            raise NnqError(f"--normalize must be default, imagenet or none, got {self.normalize!r}")


def _study_preset(name: str) -> Config:
    """The study setting ``name``'s row: data, start weights, budget and float layers from common.settings."""
    st = SETTINGS[name]
    return Config(preset=name, setting=name, dataset=st.dataset, arch=st.arch, weights=st.weights, baseline_epochs=0,
                  normalize=st.normalize, batch_size=st.batch_size, val_size=st.val_size, steps=st.steps,
                  keep_float=st.keep_float, optimizer="sgd", lr=st.float_recipe.lr_grid[0],
                  lr_grid=st.float_recipe.lr_grid, retrain_lr=0.01, share_lr=3e-5, weight_decay=5e-4,
                  density=(0.5,), prune_iterations=3, bits=(5,), index_bits=4)


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits, an MLP 64-300-100-10 (LeNet-300-100 shape), under a minute.
    "quick": Config(preset="quick", dataset="digits", arch="lenet300", baseline_epochs=30, epochs=4,
                    batch_size=64, lr=1e-3, retrain_lr=3e-4, share_lr=3e-4, density=(0.25, 0.25, 0.5),
                    prune_iterations=2, bits=(5,), index_bits=4, share_epochs=4),
    # Table 2: LeNet-300-100 on MNIST, 8%/9%/26% kept, 5-bit index; 5-bit weights (Table 2: 6; README dev. 10).
    # SGD + momentum + L2 as in Caffe; 8 prune -> retrain rounds of 10 epochs; Eq. 3 fine-tuning at a small lr.
    "lenet300_mnist": Config(preset="lenet300_mnist", dataset="mnist", arch="lenet300", baseline_epochs=40,
                             epochs=10, batch_size=128, optimizer="sgd", lr=0.05, retrain_lr=0.01, share_lr=1e-5,
                             weight_decay=5e-4, density=(0.08, 0.09, 0.26), prune_iterations=8, bits=(5,),
                             index_bits=5, share_epochs=10),
    # Table 3: the Caffe LeNet-5 (431K) on MNIST, 66%/12%/8%/19% kept, 8-bit conv / 5-bit fc weights, 5-bit index.
    # Each retraining round restarts at the LR chosen among 0.002/0.01/0.02 by pilots on the validation split
    # (5,000 training images held out, a fixed random choice; each pilot is the whole compression in 2,800 steps).
    "lenet5_mnist": Config(preset="lenet5_mnist", dataset="mnist", arch="lenet5_caffe", baseline_epochs=20,
                           epochs=8, batch_size=128, optimizer="sgd", lr=0.02, retrain_lr=0.02, share_lr=1e-5,
                           lr_grid=(0.002, 0.01, 0.02), pilot_steps=2800,
                           weight_decay=5e-4, density=(0.66, 0.12, 0.08, 0.19), prune_iterations=6,
                           bits=(8, 8, 5, 5), index_bits=5, share_epochs=4),
    # The study row: the setting's ResNet-20, prune -> retrain x3 -> share -> fine-tune within the setting's 1,400 steps
    # (4 stages x 350), SGD + momentum as in the paper, retraining LR chosen on validation by pilot runs.
    "cifar10_resnet20": _study_preset("cifar10_resnet20"),
    # The paper's LeNet-300-100 setting (Table 2, 6-bit weights) on lenet300_mnist's schedule.
    "paper": Config(preset="paper", dataset="mnist", arch="lenet300", baseline_epochs=40, epochs=10,
                    batch_size=128, optimizer="sgd", lr=0.05, retrain_lr=0.01, share_lr=1e-5, weight_decay=5e-4,
                    density=(0.08, 0.09, 0.26), prune_iterations=8, bits=(6,), index_bits=5, share_epochs=10),
}
