"""Configuration and presets of the XNOR-Net package (``python -m papers.xnor.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError

METHODS = ("bwn", "xnor")
STUDY_LR_GRIDS = {
    # LRs tried on the validation split for a study run (Sec. 4.2: SGD with momentum 0.9 for BWN, Adam for
    # XNOR-Net); fine-tuning starts from a trained float ResNet-20, so the grids sit below from-scratch rates.
    "bwn": (0.003, 0.01, 0.03),
    "xnor": (1e-4, 3e-4, 1e-3),
}
ARCHS = ("smallconv", "lenet5", "bnnconv", "resnet20", "resnet32", "resnet44", "resnet56", "resnet18")


@dataclass
class Config(BaseConfig):
    """Train a float twin, a Binary-Weight-Network and an XNOR-Net; save and check the packed artifacts."""

    arch: str = "smallconv"
    """Network: smallconv (8x8 digits), lenet5 (32x32), bnnconv (the BNN paper's CIFAR ConvNet), resnet20/32/44/56 (CIFAR), resnet18 (ImageNet folders)."""
    resize: int | None = None
    """Resize images to this square size when loading (lenet5 wants 32; None: keep)."""
    normalize: str = "default"
    """Input normalisation passed to common.data.load_dataset: default, imagenet or none."""
    baseline_epochs: int = 10
    """Epochs of the float twin that gives fp_value (0: no float baseline)."""
    bwn_epochs: int = 10
    """Epochs of the Binary-Weight-Network (0: skip BWN)."""
    weight_decay: float = 0.0
    """Adam weight decay of the float twin (the binary nets use none, as the paper's code)."""
    init_from: str | None = None
    """Optional float checkpoint (akamaster ResNet-CIFAR .th) whose matching tensors initialise all three nets; a relative path is also looked up in $NNQ_WEIGHTS_DIR and <data dir>/../weights."""
    eval_packed_batch: int = 256
    """Batch size of the packed (XNOR-popcount) evaluation of the converted model."""
    setting: str | None = None
    """Study setting (common.settings) of a study run: its data, float start, batch, steps and schedule replace dataset, arch, epochs and batch_size; one network (--method) is trained, its LR chosen on the validation split."""
    method: str = "xnor"
    """Network of a study run: bwn (W1A32, SGD momentum 0.9) or xnor (W1A1, Adam), as Sec. 4.2 trains them."""
    lr_grid: tuple[float, ...] = ()
    """LRs a study run tries on the validation split (empty: the method's grid, config.STUDY_LR_GRIDS)."""

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise NnqError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.baseline_epochs < 0 or self.bwn_epochs < 0:
            raise NnqError("--baseline-epochs and --bwn-epochs must be 0 or more")
        if self.weight_decay < 0:
            raise NnqError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if self.resize is not None and self.resize < 4:
            raise NnqError(f"--resize must be at least 4, got {self.resize}")
        if self.normalize not in ("default", "imagenet", "none"):
            raise NnqError(f"--normalize must be default, imagenet or none, got {self.normalize!r}")
        if self.method not in METHODS:
            raise NnqError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.setting is not None:
            from common.settings import get_setting

            get_setting(self.setting)
        if any(lr <= 0 for lr in self.lr_grid):
            raise NnqError(f"--lr-grid values must be positive, got {self.lr_grid}")
        if self.eval_packed_batch < 1:
            raise NnqError(f"--eval-packed-batch must be positive, got {self.eval_packed_batch}")


PRESETS: dict[str, Config] = {
    # CPU, embedded 8x8 digits, a 3-conv net; about two minutes for the three nets.
    "quick": Config(preset="quick", dataset="digits", arch="smallconv", epochs=15, bwn_epochs=15,
                    baseline_epochs=15, batch_size=64, lr=3e-3),
    # LeNet-5 on MNIST at 32x32 (needs --data-dir or $NNQ_DATA_DIR).
    "mnist_lenet5": Config(preset="mnist_lenet5", dataset="mnist", arch="lenet5", resize=32, epochs=4,
                           bwn_epochs=4, baseline_epochs=4, batch_size=128, lr=2e-3),
    # The study setting cifar10_resnet20 (common/settings.py): ResNet-20 fine-tuned from the shared float weights,
    # the setting's steps, batch and per-step cosine; --method bwn (W1A32) or xnor (W1A1), one network per run.
    "cifar10_resnet20": Config(preset="cifar10_resnet20", setting="cifar10_resnet20", dataset="cifar10_jpeg",
                               arch="resnet20", normalize="imagenet", method="xnor", baseline_epochs=0,
                               bwn_epochs=0),
    # ResNet-20 on our CIFAR-10 JPEG q75 copy on a CPU budget: all three nets start from the shared float
    # weights; 1 epoch for the float twin, 3 for BWN, 6 for XNOR-Net (tens of minutes on one core).
    "cifar10_resnet20_cpu": Config(preset="cifar10_resnet20_cpu", dataset="cifar10_jpeg", arch="resnet20",
                                   normalize="imagenet", init_from="akamaster-pytorch_resnet_cifar10/resnet20-12fca82f.th",
                                   baseline_epochs=1, bwn_epochs=3, epochs=6, batch_size=128, lr=1e-3),
    # The paper's CIFAR-10 network (Sec. 4.2: "the same network architecture as BC and BNN", our bnnconv) on a CPU
    # budget: 3,000 training images, 2 epochs of BWN and 2 of XNOR-Net from scratch, 2,000 test images, no float
    # twin (about 35 minutes on one core). Far below the paper's budget: its numbers are labelled so.
    "cifar10_bnnconv_cpu": Config(preset="cifar10_bnnconv_cpu", dataset="cifar10_jpeg", arch="bnnconv",
                                  limit_train=3000, limit_test=2000, baseline_epochs=0, bwn_epochs=2, epochs=2,
                                  batch_size=50, lr=1e-3),
    # The paper's ImageNet ResNet-18 (Sec. 4, Table 2): an ImageNet-style folder, GPU.
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", arch="resnet18", normalize="imagenet",
                    resize=224, epochs=60, bwn_epochs=60, baseline_epochs=0, batch_size=256, lr=1e-3),
}
