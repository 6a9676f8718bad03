"""Configuration and presets of the QLoRA-on-CLIP package (``python -m papers.qlora_clip.train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import BaseConfig
from common.errors import NnqError

VARIANTS = ("zero_shot", "full_ft", "lora", "qlora_nf4", "qlora_fp4", "int4_lora")


@dataclass
class Config(BaseConfig):
    """Fine-tune CLIP as a zero-shot-headed classifier: zero-shot, full FT, LoRA, QLoRA (NF4/FP4 + DQ), Int4."""

    model: str = "nnq-small-clip"
    """CLIP: nnq-small-clip (common.clip: ViT 32x32 + MiniLM text tower), an open_clip name (ViT-B-32) or a saved folder."""
    pretrained: str | None = None
    """nnq-small-clip: none (random image tower, pretrained MiniLM text tower), 'quick' (our cached CIFAR-10 JPEG contrastive pretraining; built once when missing, its one-time cost printed first), a cache key or folder. open_clip: a tag ('openai') or a checkpoint file; none = random init."""
    variants: tuple[str, ...] = VARIANTS
    """Variants to run on the same budget: zero_shot, full_ft, lora, qlora_nf4, qlora_fp4, int4_lora."""
    lora_r: int = 8
    """LoRA rank r."""
    lora_alpha: float = 16.0
    """LoRA scale numerator alpha (the update is alpha / r * B A)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (paper: 0.1 up to 13B, 0.05 above)."""
    full_ft_lr: float = 1e-4
    """Learning rate of full fine-tuning (adapters use --lr)."""
    double_quant: bool = True
    """Double quantization of the absmax constants (Sec. 3)."""
    quantize_text: bool = True
    """Also store the text tower in 4 bit (it builds the class head once; never adapted)."""
    compute_dtype: str = "fp32"
    """Matmul dtype of the 4-bit layers and autocast: fp32 (CPU) or bf16 (GPU only; the paper's choice)."""
    optimizer: str = "adamw"
    """adamw (torch) or paged_adamw (bitsandbytes paged optimizer; needs CUDA, else falls back to adamw)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""

    def validate(self) -> None:
        super().validate()
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise NnqError(f"--variants: unknown {bad or 'empty list'}; choose from {', '.join(VARIANTS)}")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise NnqError(f"--lora-r must be >= 1 and --lora-alpha > 0, got {self.lora_r}, {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise NnqError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.full_ft_lr > 0:
            raise NnqError(f"--full-ft-lr must be positive, got {self.full_ft_lr}")
        if self.compute_dtype not in ("fp32", "bf16"):
            raise NnqError(f"--compute-dtype must be fp32 or bf16, got {self.compute_dtype!r}")
        if self.optimizer not in ("adamw", "paged_adamw"):
            raise NnqError(f"--optimizer must be adamw or paged_adamw, got {self.optimizer!r}")
        if self.pretrained is not None and self.pretrained.lower() == "none":
            self.pretrained = None


PRESETS: dict[str, Config] = {
    # CPU, embedded data (sklearn digits, upsampled to 32x32), no download and no pretraining: the small CLIP with
    # a random image tower and the pretrained MiniLM text tower; all six variants in a few minutes.
    "quick": Config(preset="quick", dataset="digits", pretrained=None, epochs=5, batch_size=64, lr=5e-3,
                    full_ft_lr=5e-4),
    # The small CLIP pretrained contrastively on CIFAR-10 JPEG (common.clip; cached, built once when missing)
    # fine-tuned on MNIST: a fixed random 24000 of the training images, one epoch = 375 steps per variant; the
    # full test set; CPU.
    "mnist": Config(preset="mnist", dataset="mnist", pretrained="quick", epochs=1, batch_size=64, lr=2e-3,
                    full_ft_lr=5e-4, limit_train=24000),
    # ViT-B/32 with OpenAI's weights on CIFAR-10 (JPEG q75), GPU, bf16 compute, paged AdamW,
    # the paper's LoRA hyper-parameters for models up to 13B (r 64, alpha 16, dropout 0.1, lr 2e-4; App. B.2).
    "paper": Config(preset="paper", dataset="cifar10_jpeg", model="ViT-B-32", pretrained="openai", epochs=3,
                    batch_size=128, lr=2e-4, full_ft_lr=1e-5, lora_r=64, lora_alpha=16.0, lora_dropout=0.1,
                    compute_dtype="bf16", optimizer="paged_adamw"),
}
