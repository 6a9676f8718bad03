"""The study settings: one protocol on which every method of the study is compared.

A setting fixes the data set, the float starting point and the fine-tuning budget, so that rows of
different papers stand in one chart (``python -m common.study``). Each method brings only what its paper
defines: its quantizer, its optimizer family and learning rate (chosen on the setting's validation split,
never on the test split). A paper's own presets (its ``paper`` preset, its CPU-budget presets) come in
addition, never instead.

``cifar10_resnet20`` (the primary setting):

* data: CIFAR-10 (JPEG q75) — our lossy copy of CIFAR-10, the only one these machines have; its numbers are
  labelled so. Training on the official 50,000 training images less a validation split of 5,000 (a fixed
  random choice, ``common.data.VAL_SEED``); the test split (10,000) is read once per reported number.
  The shared float ResNet-20 was trained on all 50,000 training images, so it has seen the validation images:
  a validation accuracy of a model fine-tuned from it is optimistic, and serves only to rank choices.
* model: ResNet-20 (He et al. 2016, option-A shortcuts) from ``../shared/weights`` (akamaster, 91.7% on the
  official test set, 81.0% on the JPEG copy), ImageNet normalisation as it was trained; the first conv and the
  last linear layer stay float for every method.
* recipe: random crop (pad 4) + horizontal flip, batch 128, ``steps`` optimizer steps (about 4 epochs of the
  45,000 training images; one run takes about 20 minutes on one core of this study's CPU) with a per-step
  cosine decay from the method's LR to 0 and no warm-up; 1 seed per grid cell, 3 seeds for W4A4 and W2A2.
* ``fp_value``: the float ResNet-20 fine-tuned by the same recipe (``python -m common.study float``), SGD with
  Nesterov momentum 0.9, weight decay 5e-4, LR chosen on the validation split.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from common.errors import NnqError


@dataclass(frozen=True)
class FloatRecipe:
    """How a setting's float reference is fine-tuned (its ``fp_value``)."""

    optimizer: str
    """Optimizer family of the float reference."""
    momentum: float
    """Momentum of SGD."""
    nesterov: bool
    """Nesterov momentum."""
    weight_decay: float
    """L2 weight decay."""
    lr_grid: tuple[float, ...]
    """Learning rates tried on the validation split; the best one is the recipe's LR."""


@dataclass(frozen=True)
class StudySetting:
    """One study setting: data, starting point and budget shared by every method compared on it."""

    name: str
    """Key of the setting (``Summary.setting``)."""
    title: str
    """How figures and slides name it."""
    dataset: str
    """``common.data.load_dataset`` name."""
    arch: str
    """Float architecture (``common.models.build_model`` name)."""
    weights: str
    """Pretrained float weights, relative to the shared weights folder (``common.data.find_weights``)."""
    normalize: str
    """Input normalisation the pretrained weights were trained with."""
    augment: str
    """Training augmentation (``common.data`` augment mode)."""
    batch_size: int
    """Mini-batch size of every method."""
    steps: int
    """Optimizer steps of every method's fine-tuning (the budget)."""
    schedule: str
    """Learning-rate schedule over the ``steps`` (``common.train.cosine_per_step``)."""
    val_size: int
    """Training images held out as the validation split (hyper-parameters are chosen on it)."""
    keep_float: tuple[str, ...]
    """Module names that stay float for every method (first conv, last linear)."""
    bit_points: tuple[tuple[int, int], ...]
    """(weight bits, activation bits) points the study compares; 32 means float."""
    seeds: dict[str, int]
    """Seeds per point ("w4a4": 3, ...); a point not listed runs with 1 seed."""
    float_recipe: FloatRecipe
    """How the float reference (fp_value) is fine-tuned."""
    lr_pilot_steps: int
    """Steps of the pilot runs that choose a method's LR on the validation split (a fraction of ``steps``)."""

    def seeds_for(self, w_bits: float | None, a_bits: int | None) -> int:
        """How many seeds the point (w_bits, a_bits) is run with."""
        return self.seeds.get(point_name(w_bits, a_bits), 1)

    def describe(self) -> dict[str, Any]:
        """The whole recipe as a JSON-able dict (written into study outputs)."""
        return dataclasses.asdict(self)


def point_name(w_bits: float | None, a_bits: int | None) -> str:
    """``w4a4``, ``w1a32``, ... (``32`` for float); a fractional width prints with one decimal."""
    def part(b: float | None) -> str:
        if b is None:
            return "32"
        return str(int(b)) if float(b).is_integer() else f"{b:.1f}"
    return f"w{part(w_bits)}a{part(a_bits)}"


def cosine_lr_factor(step: int, total: int, warmup: int = 0) -> float:
    """Factor of the base LR after ``step`` optimizer steps: linear warm-up, then cosine decay to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


SETTINGS: dict[str, StudySetting] = {
    "cifar10_resnet20": StudySetting(
        name="cifar10_resnet20",
        title="CIFAR-10 (JPEG q75), ResNet-20 fine-tuned from the shared float weights",
        dataset="cifar10_jpeg",
        arch="resnet20",
        weights="akamaster-pytorch_resnet_cifar10/resnet20-12fca82f.th",
        normalize="imagenet",
        augment="crop_flip",
        batch_size=128,
        steps=1400,
        schedule="cosine per step from the method's LR to 0, no warm-up",
        val_size=5000,
        keep_float=("conv1", "linear"),
        bit_points=((1, 1), (1, 32), (2, 2), (3, 3), (4, 4), (8, 8)),
        seeds={"w4a4": 3, "w2a2": 3},
        float_recipe=FloatRecipe(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 lr_grid=(0.003, 0.01, 0.03)),
        lr_pilot_steps=350,
    ),
}


def get_setting(name: str) -> StudySetting:
    """The study setting ``name``; NnqError naming the known ones otherwise."""
    try:
        return SETTINGS[name]
    except KeyError:
        raise NnqError(f"unknown study setting {name!r}; known: {', '.join(SETTINGS)}") from None
