"""The models PTQ4ViT quantizes here, each with its attention matmuls as :class:`~papers.ptq4vit.ptq4vit.MatMul`
modules so that both inputs of Q K^T and of softmax(.) V can be hooked and quantized.

- :class:`SmallViT`: a small ViT (patch-embedding conv, class token, pre-norm blocks, GELU MLP), trained here on
  digits (seconds), MNIST (minutes) or CIFAR-10 JPEG q75 (about an hour of one CPU core) and cached as
  safetensors + config JSON in ``$NNQ_CACHE_DIR/ptq4vit/<key>/`` (``python -m papers.ptq4vit.models train``).
- timm ViT / DeiT by name (``timm:vit_small_patch16_224``; weights from the hub when it is reachable, else a
  random-init real configuration for dry runs): :func:`attach_timm_matmuls_` swaps each attention block's class
  for one that computes attention with explicit matmul modules (same output as timm's eager path).
- Hugging Face models (MiniLM's BertModel, ``hf:google/vit-base-patch16-224``): :func:`attach_hf_matmuls_`
  registers an attention function that calls the modules' matmuls.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.paths import atomic_path, atomic_write_text, cache_dir
from papers.ptq4vit.ptq4vit import MatMul, Plan

# ------------------------------------------------------------------------------ the small ViT


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections and matmul modules."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.matmul_qk, self.matmul_av = MatMul(), MatMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        split = lambda t: t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # [b, h, n, d]
        q, k, v = split(self.q(x)) * self.scale, split(self.k(x)), split(self.v(x))
        attn = self.matmul_qk(q, k.transpose(-2, -1)).softmax(-1)  # [b, h, n, n]
        return self.proj(self.matmul_av(attn, v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@dataclass
class ViTConfig:
    """Architecture of a :class:`SmallViT`."""

    image_size: int = 28
    patch_size: int = 7
    in_chans: int = 1
    num_classes: int = 10
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0


class SmallViT(nn.Module):
    """ViT (Dosovitskiy et al., 2021) at a small size: conv patch embedding, class token, learned positions,
    pre-norm blocks, the class token's final LayerNorm into a linear head."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size or cfg.dim % cfg.heads:
            raise NnqError(f"patch size {cfg.patch_size} must divide image size {cfg.image_size} and heads "
                           f"{cfg.heads} the width {cfg.dim}")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [b, n, dim]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


@dataclass
class TrainRecipe:
    """How a cached small ViT is trained (all fields enter the cache key)."""

    dataset: str = "mnist"
    arch: ViTConfig = None  # type: ignore[assignment]
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    limit_train: int | None = None
    budget: str = ""
    """Human label of the budget (e.g. '5 epochs, about 5 CPU-minutes')."""

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return f"smallvit-{self.dataset}-e{self.epochs}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


RECIPES: dict[str, TrainRecipe] = {
    # 8x8 scikit-learn digits, 2x2 patches (16 tokens): trains in seconds; the tests and the digits preset.
    "digits": TrainRecipe(dataset="digits", arch=ViTConfig(8, 2, 1, 10, 48, 3, 4, 4.0), epochs=40, batch_size=64,
                          lr=3e-3, budget="40 epochs on 1,250 digits, seconds on one CPU core"),
    # MNIST 28x28, 7x7 patches (16 tokens + class): a few CPU-minutes.
    "mnist": TrainRecipe(dataset="mnist", arch=ViTConfig(28, 7, 1, 10, 64, 4, 4, 4.0), epochs=4, batch_size=128,
                         lr=2e-3, budget="4 epochs, about 5 minutes on one CPU core"),
    # CIFAR-10 JPEG q75, 4x4 patches (64 tokens + class), crop + flip: about an hour of one CPU core.
    "cifar10_jpeg": TrainRecipe(dataset="cifar10_jpeg", arch=ViTConfig(32, 4, 3, 10, 128, 6, 4, 2.0), epochs=20,
                                batch_size=128, lr=1e-3, budget="20 epochs, about an hour on one CPU core"),
}


def cache_root() -> Path:
    return cache_dir("ptq4vit")


def cached(recipe: TrainRecipe) -> Path | None:
    d = cache_root() / recipe.key()
    return d if (d / "model.safetensors").is_file() and (d / "config.json").is_file() else None


def load_cached(path: Path) -> tuple[SmallViT, dict]:
    from safetensors.torch import load_file

    info = json.loads((path / "config.json").read_text())
    model = SmallViT(ViTConfig(**info["arch"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), info


def train_small_vit(recipe: TrainRecipe, data_dir: str | None = None, *, save: bool = True,
                    max_steps: int | None = None, log=print) -> tuple[SmallViT, dict]:
    """Train the small ViT of ``recipe`` (AdamW, per-step cosine, crop + flip on CIFAR); cache it unless ``save``
    is off or ``max_steps`` truncates it. Returns (model, info with the validation and test top-1)."""
    from common.data import load_dataset
    from common.evaluate import accuracy
    from common.train import cosine_per_step, fit, seed_everything

    seed_everything(recipe.seed)
    data = load_dataset(recipe.dataset, data_dir, limit_train=recipe.limit_train)
    model = SmallViT(recipe.arch)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
    steps = recipe.epochs * math.ceil(len(data.x_train) / recipe.batch_size)
    t0 = time.time()
    val = fit(model, data, optimizer=opt, batch_size=recipe.batch_size, epochs=recipe.epochs,
              scheduler=cosine_per_step(opt, steps), scheduler_interval="step", seed=recipe.seed,
              max_steps=max_steps, desc=f"small ViT on {recipe.dataset}")
    model.eval()
    test = accuracy(model, data.x_test, data.y_test, topk=(1,))
    info = {"arch": asdict(recipe.arch), "recipe": {k: v for k, v in asdict(recipe).items() if k != "arch"},
            "key": recipe.key(), "data_label": data.label, "val_top1": (val.get("val") or {}).get("top1"),
            "test_top1": test["top1"],
            "train_time_s": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
            "dry_run": max_steps is not None}
    log(f"small ViT on {data.label}: test top-1 {test['top1']:.2f}% ({info['train_time_s']} s)")
    if save and max_steps is None:
        from safetensors.torch import save_file

        d = cache_root() / recipe.key()
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        atomic_write_text(d / "config.json", json.dumps(info, indent=2))
        log(f"cached in {d}")
    return model, info


def ensure_small_vit(name: str, data_dir: str | None = None, log=print) -> tuple[SmallViT, dict]:
    """The cached small ViT of recipe ``name``; trains and caches it once when missing."""
    if name not in RECIPES:
        raise NnqError(f"no small ViT recipe {name!r}; known: {', '.join(RECIPES)}")
    found = cached(RECIPES[name])
    if found is not None:
        return load_cached(found)
    log(f"no cached small ViT {RECIPES[name].key()} in {cache_root()}: training it once ({RECIPES[name].budget})")
    return train_small_vit(RECIPES[name], data_dir, log=log)


# ------------------------------------------------------------------------------ timm and Hugging Face adapters


def attach_timm_matmuls_(model: nn.Module) -> int:
    """Give every timm ``Attention`` block matmul modules and an explicit forward (timm's eager path); returns
    how many blocks were changed. The output equals timm's own (a test checks it)."""
    from timm.models.vision_transformer import Attention as TimmAttention

    n = 0
    for m in model.modules():
        if isinstance(m, TimmAttention) and not isinstance(m, MatMulTimmAttention):
            m.matmul_qk, m.matmul_av = MatMul(), MatMul()
            m.__class__ = MatMulTimmAttention
            n += 1
    return n


def _timm_attention_base():
    from timm.models.vision_transformer import Attention as TimmAttention

    return TimmAttention


class MatMulTimmAttention(_timm_attention_base()):
    """timm's ViT attention computed with explicit matmul modules: softmax(q s K^T) V."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = self.matmul_qk(q * self.scale, k.transpose(-2, -1))
        if attn_mask is not None:
            attn = attn + attn_mask if attn_mask.dtype != torch.bool else attn.masked_fill(~attn_mask, float("-inf"))
        x = self.matmul_av(self.attn_drop(attn.softmax(-1)), v)
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(x))


HF_ATTENTION = "nnq_ptq4vit_matmul"


def _hf_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention through ``module.matmul_qk`` and ``module.matmul_av`` (Hugging Face attention interface)."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    attn = module.matmul_qk(query * scaling, key.transpose(2, 3))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attn = attn.masked_fill(~attention_mask, torch.finfo(attn.dtype).min)
        else:
            attn = attn + attention_mask[..., : key.shape[-2]]
    probs = F.dropout(attn.softmax(-1), p=dropout, training=module.training)
    return module.matmul_av(probs, value).transpose(1, 2).contiguous(), probs


def attach_hf_matmuls_(model: nn.Module) -> int:
    """Route a Hugging Face model's self-attention through matmul modules; returns how many modules."""
    from transformers import AttentionInterface

    AttentionInterface.register(HF_ATTENTION, _hf_attention)
    n = 0
    for m in model.modules():
        qkv = all(hasattr(m, a) for a in ("query", "key", "value")) or all(hasattr(m, a) for a in
                                                                           ("q_proj", "k_proj", "v_proj"))
        if qkv and hasattr(m, "config"):
            m.matmul_qk, m.matmul_av = MatMul(), MatMul()
            n += 1
    try:
        from transformers import masking_utils

        masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register(HF_ATTENTION,
                                                            masking_utils.ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    except Exception:  # noqa: BLE001 - older transformers: the eager mask is the default
        pass
    for m in model.modules():
        if hasattr(m, "config") and hasattr(m.config, "_attn_implementation"):
            m.config._attn_implementation = HF_ATTENTION
    return n


# ------------------------------------------------------------------------------ what is quantized

_POST_GELU = re.compile(r"(^|\.)(mlp\.fc2|layer\.\d+\.output\.dense)$")


def build_plan(model: nn.Module, include=lambda name: True) -> Plan:
    """Every Linear (the input of the MLP's second layer marked post-GELU; timm's fused qkv with 3 weight
    groups), every MatMul (Q K^T: 'qk', probabilities times V: 'av') and patch-embedding Conv2d of ``model``
    whose name passes ``include`` (the official code quantizes all of them, head and first projection too)."""
    plan = Plan()
    for name, m in model.named_modules():
        if not name or not include(name):
            continue
        if isinstance(m, nn.Linear):
            plan.linears[name] = ("gelu" if _POST_GELU.search(name) else "plain", 3 if name.endswith(".qkv") else 1)
        elif isinstance(m, MatMul):
            plan.matmuls[name] = "av" if name.endswith("matmul_av") else "qk"
        elif isinstance(m, nn.Conv2d):
            plan.convs.append(name)
    return plan


def main(argv: list[str] | None = None) -> int:
    """``python -m papers.ptq4vit.models train --recipe mnist`` (train and cache) | ``info``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m papers.ptq4vit.models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train a small ViT and cache it")
    p.add_argument("--recipe", default="mnist", choices=sorted(RECIPES))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-steps", type=int, default=None, help="dry run: stop after N steps, cache nothing")
    sub.add_parser("info", help="list the cached small ViTs")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "info":
            for name, r in RECIPES.items():
                d = cached(r)
                info = json.loads((d / "config.json").read_text()) if d else {}
                print(f"{name}: {r.key()} {'test top-1 %.2f%%' % info['test_top1'] if d else 'not cached'}")
            return 0
        train_small_vit(RECIPES[args.recipe], args.data_dir, max_steps=args.max_steps)
        return 0
    except NnqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
