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
import re
import time
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common import clip as cclip
from common.cli import cli_main
from common.data import load_dataset
from common.errors import NnqError
from common.evaluate import accuracy, count_params, file_size, fp32_size_bytes
from common.runs import Run, peak_mem_mb
from common.train import Callback, fit, seed_everything
from papers.qlora_clip import lora, nf4
from papers.qlora_clip.config import PRESETS, Config

PAPER = "qlora_clip"
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")
VARIANT_BASE = {"zero_shot": "fp32", "full_ft": "fp32", "lora": "fp32", "qlora_nf4": "nf4", "qlora_fp4": "fp4",
                "int4_lora": "int4"}
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


def load_base(cfg: Config, log=print) -> cclip.ClipBundle:
    """The float CLIP every variant starts from."""
    if cfg.model == cclip.SMALL_CLIP and cfg.pretrained == "quick":
        return cclip.ensure_pretrained(cfg.data_dir, log=log)
    return cclip.load_clip(cfg.model, cfg.pretrained)


def _optimizer(cfg: Config, params: list[nn.Parameter], lr: float) -> tuple[torch.optim.Optimizer, str]:
    if cfg.optimizer == "paged_adamw" and torch.cuda.is_available():
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(params, lr=lr, weight_decay=cfg.weight_decay), "paged_adamw (bitsandbytes)"
    # DEVIATION: paged optimizers page optimizer state through CUDA unified memory (Sec. 3); without a GPU
    # there is nothing to page to, so the CPU run uses torch's AdamW and says so in the summary.
    note = "adamw (torch)" if cfg.optimizer == "adamw" else "adamw (torch; paged_adamw needs CUDA)"
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay), note


def prepare_variant(variant: str, float_clf: cclip.ClipClassifier, cfg: Config) -> tuple[nn.Module, list[str], list[str]]:
    """A fresh copy of the float classifier set up for ``variant``.

    Returns:
        (model, names of the quantized base layers, names of the LoRA-adapted layers).
    """
    clf = copy.deepcopy(float_clf)
    base = VARIANT_BASE[variant]
    targets = lora.ALL_LINEAR if cfg.quantize_text else lora.IMAGE_TOWER_TARGETS
    dtype = torch.bfloat16 if cfg.compute_dtype == "bf16" else torch.float32
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


def run_key(cfg: Config) -> str:
    pre = cfg.pretrained or "rand"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.model}-{pre}-{cfg.dataset}-r{cfg.lora_r}").strip("-")


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Run every variant of ``cfg``; return the summary dict (also in summary.json; per-variant rows in variants.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for each variant's training.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    on_gpu = torch.cuda.is_available()
    if cfg.compute_dtype == "bf16" and not on_gpu:
        raise NnqError("--compute-dtype bf16 needs a GPU (bf16 matmuls are ~50x slower on this CPU); use fp32")
    classes, templates = class_prompts(cfg.dataset)
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize="none", limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test)
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
        # --resume continues with the variants that have no row yet (a variant is minutes long; a half-trained
        # one restarts). Per-epoch checkpoints of 4-bit models are not written: bitsandbytes' Params4bit
        # does not load back through torch.load(weights_only=True).
        rows = run.read_json("variants.json") if cfg.resume and (run.dir / "variants.json").is_file() else []
        done = {r["variant"] for r in rows}
        if done:
            run.rewrite_metrics([m for m in run.metrics() if m.get("tag") in done])
        artifact = run.dir / "qlora_nf4_model.safetensors"
        for variant in cfg.variants:
            if variant in done:
                continue
            seed_everything(cfg.seed)
            clf, quantized, adapted = prepare_variant(variant, float_clf, cfg)
            storage = lora.base_weight_storage(clf, base_names)
            before = accuracy(clf, data.x_test, data.y_test, batch_size=500)["top1"]
            row = {"variant": variant, "label": VARIANT_LABEL[variant], "base": VARIANT_BASE[variant],
                   "zero_shot_top1": round(before, 4), "quantized_layers": len(quantized),
                   "adapted_layers": len(adapted), "trainable_params": lora.trainable_params(clf),
                   "base_params": storage["params"], "base_bytes": storage["bytes"],
                   "base_codebook_bytes": storage["codebook_bytes"],
                   "bits_per_base_param": round(storage["bits_per_param"], 4),
                   "base_ratio_to_fp32": round(storage["ratio_to_fp32"], 4)}
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            run.log_metrics({"tag": variant, "epoch": 0, "test_top1": before})
            if variant == "zero_shot":
                row.update(top1=row["zero_shot_top1"], train_time_s=0.0, steps=0, time_per_step_s=None,
                           optimizer=None, state_bytes=lora.state_bytes(clf)["total"])
            else:
                lr = cfg.full_ft_lr if variant == "full_ft" else cfg.lr
                opt, opt_note = _optimizer(cfg, [p for p in clf.parameters() if p.requires_grad], lr)
                timer = _StepTimer()
                autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.compute_dtype == "bf16")
                with autocast:  # constant learning rate, as in the paper (App. B.2)
                    res = fit(clf, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt,
                              loss_fn=F.cross_entropy, callbacks=[timer, *callbacks], run=None, tag=variant,
                              seed=cfg.seed, desc=VARIANT_LABEL[variant])
                for record in res["history"]:
                    run.log_metrics(record)
                times = sorted(timer.times)
                row.update(top1=round(res["top1"], 4), train_time_s=res["train_time_s"], steps=len(times),
                           time_per_step_s=round(times[len(times) // 2], 4) if times else None, optimizer=opt_note,
                           state_bytes=lora.state_bytes(clf, opt)["total"])
            row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20 if on_gpu else peak_mem_mb(), 1)
            row["peak_mem_kind"] = "cuda max allocated (this variant)" if on_gpu else "process max RSS so far"
            if variant == "qlora_nf4":  # the real artifact: 4-bit base (codes + DQ constants) + fp32 rest + adapters
                from safetensors.torch import save_file

                state = {k: v.detach().contiguous().cpu() for k, v in clf.state_dict().items() if torch.is_tensor(v)}
                save_file(state, str(artifact))
            rows.append(row)
            run.write_json("variants.json", rows)
            del clf
        by = {r["variant"]: r for r in rows}
        main_row = by.get("qlora_nf4") or rows[-1]
        size = fp_size = None
        if artifact.is_file():
            size, fp_size = file_size(artifact), fp32_size_bytes(float_clf)
        fp_row = by.get("lora") or by.get("full_ft")
        return run.finish({
            "dataset": data.label, "metric": "test_top1", "value": main_row["top1"],
            "fp_value": fp_row["top1"] if fp_row else None,
            "params": count_params(float_clf),
            "model_bits": 8 * size if size else None, "size_bytes": size,
            "compression_ratio": round(fp_size / size, 3) if size else None,
            "train_time_s": round(sum(r["train_time_s"] for r in rows), 3),
            "model": cfg.model, "pretrained": bundle.pretrained, "pretraining": bundle.info,
            "split_attention_modules": len(split),
            "variants": {r["variant"]: r["top1"] for r in rows},
            "zero_shot_top1": by["zero_shot"]["top1"] if "zero_shot" in by else None,
            "qlora_minus_lora": round(by["qlora_nf4"]["top1"] - by["lora"]["top1"], 4)
            if {"qlora_nf4", "lora"} <= by.keys() else None,
            "bits_per_base_param": main_row["bits_per_base_param"],
            "base_ratio_to_fp32": main_row["base_ratio_to_fp32"],
            "datatype_rel_mse": {g: {k: v.get("rel_mse", v.get("mse")) for k, v in d.items()} for g, d in dt.items()},
            "fp_value_is": "LoRA on the fp32 base",
        })


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.qlora_clip.train")
