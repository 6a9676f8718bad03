"""Fine-tune CLIP with QLoRA and its baselines: ``python -m papers.qlora_clip.train [--preset NAME] [flags]``.

CLIP becomes a classifier through its zero-shot head (class-prompt text embeddings); the image tower is
fine-tuned on a labelled set. Every variant starts from the same float model and trains on the same budget:
zero-shot (no tuning), full fine-tuning (fp32), LoRA on the fp32 base, QLoRA with an NF4 or FP4 base
(bitsandbytes ``Linear4bit``, double quantization) and LoRA on our simulated Int4 base. For each variant the
run records accuracy, trainable parameters, the bytes of the base linear weights measured from their
storage, bits per base parameter, memory and time per step; plus the data-type errors (NF4 vs FP4 vs Int4)
on the pretrained weights and on N(0, 1).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import re
import time
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common import clip as cclip
from common.cli import cli_main
from common.data import load_dataset
from common.errors import NnqError
from common.evaluate import count_params, evaluate_split, file_size, fp32_size_bytes, model_bits
from common.runs import Run
from common.train import Callback, fit, seed_everything
from papers.qlora_clip import lora, nf4
from papers.qlora_clip.config import PRESETS, Config

PAPER = "qlora_clip"
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")
VARIANT_BASE = {"zero_shot": "fp32", "full_ft": "fp32", "lora": "fp32", "qlora_nf4": "nf4", "qlora_fp4": "fp4",
                "int4_lora": "int4"}
VARIANT_METHOD = {"zero_shot": "Zero-shot CLIP", "full_ft": "Full fine-tuning (fp32)", "lora": "LoRA (fp32 base)",
                  "qlora_nf4": "QLoRA (NF4 + DQ)", "qlora_fp4": "QLoRA (FP4 + DQ)", "int4_lora": "LoRA (Int4 + DQ base)"}
VARIANT_LABEL = {"zero_shot": "Zero-shot (no tuning)", "full_ft": "Full fine-tuning (fp32)",
                 "lora": "LoRA, fp32 base", "qlora_nf4": "QLoRA, NF4 + DQ base", "qlora_fp4": "QLoRA, FP4 + DQ base",
                 "int4_lora": "LoRA, Int4 + DQ base (ours, simulated)"}


def class_prompts(dataset: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Class names and prompt templates of a data set's zero-shot head."""
    if dataset in ("digits", "mnist"):
        return cclip.DIGIT_CLASSES, cclip.DIGIT_TEMPLATES
    if dataset in ("cifar10", "cifar10_jpeg"):
        return cclip.CIFAR10_CLASSES, cclip.TEMPLATES
    if dataset == "fashion_mnist":
        return FASHION_CLASSES, cclip.TEMPLATES
    raise NnqError(f"no class names for data set {dataset!r}; use digits, mnist, fashion_mnist, cifar10 or cifar10_jpeg")


def recorded_pretraining_cost(key: str) -> str:
    """What the one-time pretraining of cache entry ``key`` took when an approved run recorded it."""
    for summary in sorted((Path(__file__).parent / "results" / "runs").glob("*/summary.json")):
        info = json.loads(summary.read_text()).get("extra", {}).get("pretraining") or {}
        pre = info.get("pretraining") or {}
        if pre.get("key") == key and info.get("train_time_s"):
            return (f"it took {info['train_time_s'] / 60:.0f} min on {pre.get('threads', '?')} CPU threads in "
                    f"{summary.parent.name}")
    return "its time was not recorded by an approved run"


def load_base(cfg: Config, log=print) -> cclip.ClipBundle:
    """The float CLIP every variant starts from.

    ``pretrained="quick"`` on the small CLIP is our cached contrastive pretraining on CIFAR-10 JPEG; when the cache
    lacks it, its one-time cost is printed before it is built. Under ``--max-steps`` (a dry run, never a result)
    open_clip weights that cannot be fetched here are replaced by a random init, and the log says so.
    """
    if cfg.model == cclip.SMALL_CLIP and cfg.pretrained == "quick":
        key = cclip.QUICK_PRETRAIN.key()
        if cclip.cached_pretraining(key) is None:
            log(f"one-time cost first: the small CLIP is pretrained on CIFAR-10 JPEG and cached as {key} in "
                f"{cclip.cache_root()} ({recorded_pretraining_cost(key)}); later runs load it in seconds")
        return cclip.ensure_pretrained(cfg.data_dir, log=log)
    try:
        return cclip.load_clip(cfg.model, cfg.pretrained)
    except NnqError as exc:
        if cfg.max_steps is None or cfg.pretrained is None or cfg.model == cclip.SMALL_CLIP:
            raise
        log(f"dry run: {exc}; continuing with a random init of {cfg.model} (a dry run is never a result)")
        return cclip.load_clip(cfg.model, None)


def _optimizer(cfg: Config, params: list[nn.Parameter], lr: float) -> tuple[torch.optim.Optimizer, str]:
    if cfg.optimizer == "paged_adamw" and torch.cuda.is_available():
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(params, lr=lr, weight_decay=cfg.weight_decay), "paged_adamw (bitsandbytes)"
    # DEVIATION: paged optimizers page optimizer state through CUDA unified memory (Sec. 3); without a GPU
    # there is nothing to page to, so the CPU run uses torch's AdamW and says so in the summary.
    note = "adamw (torch)" if cfg.optimizer == "adamw" else "adamw (torch; paged_adamw needs CUDA)"
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay), note


def prepare_variant(variant: str, float_clf: cclip.ClipClassifier, cfg: Config,
                    compute_dtype: str | None = None) -> tuple[nn.Module, list[str], list[str]]:
    """A fresh copy of the float classifier set up for ``variant`` (``compute_dtype`` overrides the config's).

    Returns:
        (model, names of the quantized base layers, names of the LoRA-adapted layers).
    """
    clf = copy.deepcopy(float_clf)
    base = VARIANT_BASE[variant]
    targets = lora.ALL_LINEAR if cfg.quantize_text else lora.IMAGE_TOWER_TARGETS
    dtype = torch.bfloat16 if (compute_dtype or cfg.compute_dtype) == "bf16" else torch.float32
    quantized = lora.quantize_linears_(clf, base, targets=targets, double_quant=cfg.double_quant,
                                       backend="ours" if base == "int4" else "bnb", compute_dtype=dtype)
    if quantized and cfg.quantize_text:
        clf.refresh_head()  # the head comes from the (now 4-bit) text tower
    adapted: list[str] = []
    for p in clf.parameters():
        p.requires_grad_(False)
    if variant == "full_ft":
        for p in clf.model.visual.parameters():
            p.requires_grad_(True)
    elif variant != "zero_shot":
        adapted = lora.add_lora_(clf, lora.IMAGE_TOWER_TARGETS, r=cfg.lora_r, alpha=cfg.lora_alpha,
                                 dropout=cfg.lora_dropout)
    return clf, quantized, adapted


@torch.no_grad()
def datatype_errors(float_clf: nn.Module, groups: dict[str, list[str]], seed: int = 0) -> dict:
    """Quantization error of NF4 / FP4 / Int4 (all blockwise, block 64, with DQ) — the data-type comparison.

    For each group of linear layers: relative MSE (sum of squared errors over sum of squared weights, so that
    large layers do not hide small ones) and MAE; for N(0, 1) (2^20 samples): the MSE.

    Returns:
        {group: {quant_type: {"rel_mse", "mae"}}, "N(0,1)": {quant_type: {"mse"}}}.
    """
    out: dict = {}
    for group, names in groups.items():
        weights = [float_clf.get_submodule(n).weight.detach().float() for n in names]
        if not weights:
            continue
        n_all = sum(w.numel() for w in weights)
        den = sum(w.pow(2).sum().item() for w in weights)
        out[group] = {}
        for qt in ("nf4", "fp4", "int4"):
            errs = [nf4.quantization_error(w, qt) for w in weights]
            out[group][qt] = {"rel_mse": sum(e["mse"] * w.numel() for e, w in zip(errs, weights)) / den,
                              "mae": sum(e["mae"] * w.numel() for e, w in zip(errs, weights)) / n_all}
    normal = torch.randn(1 << 20, generator=torch.Generator().manual_seed(seed))
    out["N(0,1)"] = {qt: {"mse": nf4.quantization_error(normal, qt)["mse"]} for qt in ("nf4", "fp4", "int4")}
    return out


@torch.no_grad()
def weight_shape_stats(float_clf: nn.Module, groups: dict[str, list[str]]) -> dict:
    """How Gaussian each group's weights are, which decides the data-type order (Sec. 3: NF4 assumes N(0, sigma)).

    Per group, averaged over its layers weighted by size: the excess kurtosis (uniform -1.2, normal 0, heavy
    tails > 0) and the mean of |w| / absmax within blocks of 64 (uniform ~0.49, normal ~0.33).
    """
    out = {}
    for group, names in groups.items():
        weights = [float_clf.get_submodule(n).weight.detach().double().flatten() for n in names]
        if not weights:
            continue
        n_all = sum(w.numel() for w in weights)
        kurt = mean_abs = 0.0
        for w in weights:
            z = (w - w.mean()) / w.std()
            kurt += (z.pow(4).mean().item() - 3) * w.numel()
            blocks = F.pad(w, (0, -w.numel() % nf4.BLOCKSIZE)).view(-1, nf4.BLOCKSIZE)
            mean_abs += (blocks.abs() / blocks.abs().amax(1, keepdim=True).clamp_min(1e-30)).sum().item()
        out[group] = {"excess_kurtosis": kurt / n_all, "mean_abs_over_absmax": mean_abs / n_all}
    return out


class _StepTimer(Callback):
    """Wall time of each optimizer step (forward + backward + update), for time per step."""

    def __init__(self):
        self.times: list[float] = []
        self._t = None

    def on_epoch_start(self, ctx) -> None:
        self._t = time.perf_counter()

    def after_step(self, ctx) -> None:
        now = time.perf_counter()
        self.times.append(now - self._t)
        self._t = now

    def on_epoch_end(self, ctx) -> None:
        self._t = None


class _VariantPeakMemory:
    """The peak memory of one variant, not the process's running maximum.

    GPU: the allocator's peak since a reset. CPU (Linux): the resident set's high-water mark (VmHWM), reset to the
    current resident set through ``/proc/self/clear_refs`` after freed heap is handed back (``malloc_trim``), so a
    variant's peak counts what it holds (the shared float model and data included), not what earlier variants did.
    Elsewhere the kind is None and the peak is not measured.
    """

    def __init__(self):
        self.kind: str | None = None

    def reset(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            self.kind = "cuda max allocated (this variant)"
            return
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.kind = "peak resident set of this variant (VmHWM reset before it)"
        except OSError:
            self.kind = None

    def peak_mb(self) -> float | None:
        if self.kind is None:
            return None
        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None


def run_key(cfg: Config) -> str:
    pre = cfg.pretrained or "rand"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.model}-{pre}-{cfg.dataset}-r{cfg.lora_r}").strip("-")


def _train_variant(variant: str, clf: nn.Module, data, cfg: Config, compute_dtype: str,
                   callbacks: Iterable[Callback]) -> dict:
    """Trains one variant in place (constant learning rate, as in the paper, App. B.2); returns its facts."""
    lr = cfg.full_ft_lr if variant == "full_ft" else cfg.lr
    opt, opt_note = _optimizer(cfg, [p for p in clf.parameters() if p.requires_grad], lr)
    timer = _StepTimer()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=compute_dtype == "bf16")
    with autocast:
        # run=None: bitsandbytes' Params4bit does not load back through torch.load(weights_only=True), so the
        # per-epoch checkpoints of fit are not written; --resume restarts a half-trained variant.
        res = fit(clf, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, loss_fn=F.cross_entropy,
                  callbacks=[timer, *callbacks], run=None, tag=variant, seed=cfg.seed, desc=VARIANT_LABEL[variant],
                  max_steps=cfg.max_steps)
    times = sorted(timer.times)
    return {"history": res["history"], "val_top1": res["val"]["top1"] if res["val"] else None,
            "train_time_s": res["train_time_s"], "steps": res["steps"], "lr": lr,
            "time_per_step_s": round(times[len(times) // 2], 4) if times else None, "optimizer": opt_note,
            "state_bytes": lora.state_bytes(clf, opt)["total"]}


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Run every variant of ``cfg``; return the summary (also in summary.json).

    The summary is the QLoRA NF4 model (or the last variant when it did not run); every other variant is a row of
    points.json; variants.json holds the per-variant table (storage, time, memory), datatypes.json the data-type
    errors.

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for each variant's training.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    on_gpu = torch.cuda.is_available()
    compute_dtype = cfg.compute_dtype
    if compute_dtype == "bf16" and not on_gpu:
        if cfg.max_steps is None:
            raise NnqError("--compute-dtype bf16 needs a GPU (bf16 matmuls are ~50x slower on this CPU); use fp32")
        print("dry run on a CPU: the 4-bit layers compute in fp32 instead of bf16")
        compute_dtype = "fp32"
    classes, templates = class_prompts(cfg.dataset)
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize="none", limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, val_size=cfg.val_size)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        bundle = load_base(cfg)
        float_clf = cclip.ClipClassifier(bundle, classes, templates).eval()
        split = lora.split_attention_(float_clf)
        base_names = lora.select_modules(float_clf, lora.ALL_LINEAR if cfg.quantize_text else lora.IMAGE_TOWER_TARGETS)
        image_names = lora.select_modules(float_clf, lora.IMAGE_TOWER_TARGETS)
        text_names = [n for n in lora.linear_names(float_clf) if n not in image_names and ".visual." not in n]
        dt = datatype_errors(float_clf, {"image tower": image_names, "text tower": text_names}, cfg.seed)
        shape = weight_shape_stats(float_clf, {"image tower": image_names, "text tower": text_names})
        run.write_json("datatypes.json", {"blocksize": nf4.BLOCKSIZE, "double_quant": True, "errors": dt,
                                          "weight_shape": shape})
        float_params = count_params(float_clf)
        # --resume continues with the variants that have no row yet (a variant is minutes long; a half-trained
        # one restarts).
        rows = run.read_json("variants.json") if cfg.resume and (run.dir / "variants.json").is_file() else []
        done = {r["variant"] for r in rows}
        if done:
            run.rewrite_metrics([m for m in run.metrics() if m.get("tag") in done])
        artifact = run.dir / "qlora_nf4_model.safetensors"
        memory = _VariantPeakMemory()
        for variant in cfg.variants:
            if variant in done:
                continue
            memory.reset()
            seed_everything(cfg.seed)
            clf, quantized, adapted = prepare_variant(variant, float_clf, cfg, compute_dtype)
            storage = lora.base_weight_storage(clf, base_names)
            before = evaluate_split(clf, data, "val", batch_size=500)["top1"] if data.has_split("val") else None
            row = {"variant": variant, "label": VARIANT_LABEL[variant], "method": VARIANT_METHOD[variant],
                   "base": VARIANT_BASE[variant], "base_val_top1": None if before is None else round(before, 4),
                   "quantized_layers": len(quantized), "adapted_layers": len(adapted),
                   "trainable_params": lora.trainable_params(clf), "base_params": storage["params"],
                   "base_bytes": storage["bytes"], "base_codebook_bytes": storage["codebook_bytes"],
                   "bits_per_base_param": round(storage["bits_per_param"], 4),
                   "base_ratio_to_fp32": round(storage["ratio_to_fp32"], 4)}
            run.log_metrics({"tag": variant, "epoch": 0, "step": 0, "val_top1": before})
            if variant == "zero_shot":
                row.update(val_top1=row["base_val_top1"], train_time_s=0.0, steps=0, lr=None, time_per_step_s=None,
                           optimizer=None, state_bytes=lora.state_bytes(clf)["total"])
            else:
                trained = _train_variant(variant, clf, data, cfg, compute_dtype, callbacks)
                for record in trained.pop("history"):
                    run.log_metrics(record)
                row.update(trained)
            # the test split, read once for the variant's final model
            row["top1"] = round(evaluate_split(clf, data, "test", batch_size=500)["top1"], 4)
            row["model_bits"] = model_bits(lora.stored_fields(clf))
            row["params"] = float_params + (row["trainable_params"] if adapted else 0)
            if variant == "qlora_nf4":  # the real artifact: 4-bit base (codes + DQ constants) + fp32 rest + adapters
                from safetensors.torch import save_file

                state = {k: v.detach().contiguous().cpu() for k, v in clf.state_dict().items() if torch.is_tensor(v)}
                save_file(state, str(artifact))
                row["size_bytes"] = file_size(artifact)
            row["peak_mem_mb"], row["peak_mem_kind"] = memory.peak_mb(), memory.kind
            rows.append(row)
            run.write_json("variants.json", rows)
            del clf
        by = {r["variant"]: r for r in rows}
        fp = by.get("full_ft")
        fp_recipe = (f"full fine-tuning of the fp32 image tower, same data and budget ({cfg.epochs} epochs, batch "
                     f"{cfg.batch_size}, AdamW lr {cfg.full_ft_lr:g})") if fp else None
        fp32_bytes = fp32_size_bytes(float_clf)

        def point(r: dict) -> dict:
            size = r.get("size_bytes")
            return {
                "method": r["method"], "dataset": data.label, "metric": "test_top1", "value": r["top1"],
                "fp_value": fp["top1"] if fp else None, "fp_recipe": fp_recipe,
                "w_bits": 4 if r["base"] != "fp32" else None, "params": r["params"], "model_bits": r["model_bits"],
                "size_bytes": size, "compression_ratio": round(fp32_bytes / size, 3) if size else None,
                "train_time_s": r["train_time_s"], "peak_mem_mb": r["peak_mem_mb"],
                "extra": {k: r[k] for k in ("variant", "base", "val_top1", "base_val_top1", "trainable_params",
                                            "bits_per_base_param", "base_ratio_to_fp32", "steps", "lr",
                                            "time_per_step_s", "state_bytes", "optimizer", "peak_mem_kind")},
            }

        main_variant = "qlora_nf4" if "qlora_nf4" in by else rows[-1]["variant"]
        headline = point(by[main_variant])
        headline["extra"].update({
            "model": cfg.model, "pretrained": bundle.pretrained,
            "pretraining": {k: v for k, v in bundle.info.items() if k != "loss_curve"},
            "split_attention_modules": len(split), "compute_dtype": compute_dtype,
            "variants_top1": {r["variant"]: r["top1"] for r in rows},
            "datatype_rel_mse": {g: {k: v.get("rel_mse", v.get("mse")) for k, v in d.items()} for g, d in dt.items()},
            "artifact": artifact.name if artifact.is_file() else None,
        })
        return run.finish(headline, points=[point(r) for r in rows if r["variant"] != main_variant])


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.qlora_clip.train")
