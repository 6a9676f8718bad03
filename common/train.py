"""The one training loop of the study, on Hugging Face ``accelerate``.

``fit`` trains a model for a budget of epochs or of optimizer steps on a data source — in-memory tensors
(:class:`common.data.DataBundle`) or a streaming folder data set — and evaluates it on the **validation**
split after every epoch (and at the end); ``fit`` never reads the test split: a paper's ``train.py`` reads
it once per reported model (:func:`common.evaluate.evaluate_split`), as :func:`float_start` does for the float
reference it reports (``fp_value``). Each evaluation is appended to the run's ``metrics.jsonl``; an atomic
checkpoint is written after every epoch and every ``ckpt_every`` steps, so that ``--resume RUN_DIR`` continues
exactly where the last checkpoint was taken, in the middle of an epoch too (model, optimizer, schedule,
callbacks, random state and the position in the epoch's data order are restored; the order and augmentation
are functions of seed, epoch and batch index).
Papers hook their per-step work (weight clipping, pruning masks, basis updates) into :class:`Callback`.
A run in a paper's own setting starts from :func:`float_start` (given float weights, or a float twin trained
here, e.g. by :func:`sgd_float_twin`); the ``main`` of a paper with both a paper and a study path can be
:func:`run_paper_or_study`.

Options for paper-scale runs: a step budget with a per-step schedule (:func:`cosine_per_step`), gradient
accumulation, mixed precision through accelerate (``bf16`` on GPUs; fp32 stays the CPU default because
bf16 is far slower on CPUs without AMX), ``channels_last`` on GPUs, images/s in the metrics and on the
progress bar, and a dry-run truncation ``max_steps`` (from ``--max-steps``; every stage stops after that
many optimizer steps, then evaluates; the summary says ``dry_run: true``).

A non-finite loss raises NnqError (``Run.guard`` marks the run ``failed``); Ctrl-C leaves the last
checkpoint on disk (``Run.guard`` marks the run ``cancelled``).

Several processes: on GPUs ``accelerate launch -m papers.<name>.train ...``; on CPUs
``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m papers.<name>.train ...``. Each process trains on
its shard of every epoch's permutation; gradients are averaged by DDP; only the main process writes files.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from common.distributed import accelerator
from common.errors import NnqError
from common.evaluate import evaluate_split
from common.runs import Run
from common.settings import cosine_lr_factor

_GUARD_EVERY = 50


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainContext:
    """What a callback sees: the (unwrapped) model, the optimizer, and where training is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    """Optimizer steps taken so far in this stage (over all epochs)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None


class Callback:
    """Hooks into :func:`fit`. Override what you need; keep state in ``state_dict`` for resume."""

    def on_train_start(self, ctx: TrainContext) -> None: ...

    def on_epoch_start(self, ctx: TrainContext) -> None: ...

    def after_step(self, ctx: TrainContext) -> None:
        """Called after every optimizer step (clip latent weights, re-apply masks, ...)."""

    def on_epoch_end(self, ctx: TrainContext) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def cosine_per_step(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``; step it every
    optimizer step (``fit(..., scheduler_interval="step")``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr_factor(s, total_steps, warmup_steps))


def fit(model: nn.Module, data: Any, *, optimizer: torch.optim.Optimizer, batch_size: int,
        epochs: int | None = None, steps: int | None = None, scheduler: Any = None,
        scheduler_interval: str = "epoch",
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        callbacks: Iterable[Callback] = (), run: Run | None = None, tag: str = "main", seed: int = 0,
        desc: str | None = None, eval_batch_size: int = 1000, grad_accum: int | None = None,
        ckpt_every: int | None = None, max_steps: int | None = None, precision: str | None = None,
        channels_last: bool | None = None) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs or ``steps`` optimizer steps; return its validation metrics.

    Args:
        model: the network; trained in place.
        data: a data source: ``common.data.DataBundle`` or a streaming folder set (same methods).
        optimizer: built over ``model.parameters()``.
        batch_size: samples per micro-batch per process (an optimizer step takes ``grad_accum`` of them).
        epochs: budget in epochs (a resumed run trains only the missing part).
        steps: budget in optimizer steps instead of epochs (the last epoch may be partial).
        scheduler: an LR scheduler, stepped per ``scheduler_interval``, or None.
        scheduler_interval: "epoch" or "step" (after every optimizer step).
        loss_fn: ``loss_fn(logits, labels) -> scalar``.
        callbacks: :class:`Callback` objects, called in order.
        run: the run folder for metrics and checkpoints; None trains without files.
        tag: names this training stage's checkpoint (``<tag>.ckpt.pt``) and metric lines, so one
            run can hold several stages (float baseline, binary model, retraining ...).
        seed: seeds the data order and augmentation (with the epoch and batch index).
        desc: progress-bar label.
        eval_batch_size: batch size of the validation evaluation.
        grad_accum: micro-batches whose gradients are summed into one optimizer step.
        ckpt_every: also checkpoint every this many optimizer steps (paper-scale epochs take hours).
        max_steps: dry-run truncation: stop after this many optimizer steps of this stage. Not a budget:
            budgets are ``epochs`` / ``steps``.
        precision: "fp32", "bf16" or "fp16" (autocast through accelerate; keep fp32 on CPUs).
        channels_last: convert the model and the inputs to channels-last memory format; default: on a GPU.

    ``grad_accum``, ``ckpt_every``, ``max_steps`` and ``precision`` default to the run's configuration
    (the ``BaseConfig`` fields ``--grad-accum``, ``--ckpt-every``, ``--max-steps``, ``--precision``), so every
    paper's stages honour those flags; without a run: 1, none, none, "fp32".

    Returns:
        dict with ``val`` (the validation metrics of the final model, or None without a validation split),
        ``history`` (one record per evaluation), ``steps`` (optimizer steps taken), ``train_time_s`` (time in
        training steps) and ``truncated`` (whether ``max_steps`` stopped the stage early).
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one budget: epochs or steps")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    given = run.config if run is not None else {}
    grad_accum = grad_accum or given.get("grad_accum") or 1
    ckpt_every = ckpt_every or given.get("ckpt_every")
    max_steps = max_steps or given.get("max_steps")
    precision = precision or given.get("precision") or "fp32"
    if grad_accum < 1:
        raise NnqError(f"--grad-accum must be at least 1, got {grad_accum}")
    callbacks = list(callbacks)
    acc = accelerator(precision)
    if channels_last is None:
        channels_last = acc.device.type == "cuda"
    world, rank = acc.num_processes, acc.process_index
    per_epoch = max(data.train_steps_per_epoch(batch_size, world) // grad_accum, 1)  # a last partial group is dropped
    budget = steps if steps is not None else epochs * per_epoch
    stop_at = budget if max_steps is None else min(budget, max_steps)
    n_epochs = -(-budget // per_epoch)
    ckpt_name = f"{tag}.ckpt.pt"

    history: list[dict[str, Any]] = []
    start_epoch, start_batch, start_step, train_time = 1, 0, 0, 0.0
    if run is not None and run.has_checkpoint(ckpt_name):
        state = run.load_checkpoint(ckpt_name)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise NnqError(f"checkpoint {run.dir / ckpt_name} does not match this model/optimizer "
                           f"({str(exc).splitlines()[0][:200]}); start a new run") from None
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        for cb, cb_state in zip(callbacks, state.get("callbacks", [])):
            cb.load_state_dict(cb_state)
        torch.set_rng_state(state["rng"])
        start_epoch, start_batch = int(state["epoch"]), int(state["batch"])
        start_step, train_time = int(state["step"]), float(state["train_time_s"])
        history = list(state["history"])
        if acc.is_main_process:  # drop metric lines written after that checkpoint
            kept = [r for r in run.metrics() if r.get("tag") != tag or r.get("step", 0) <= start_step]
            run.rewrite_metrics(kept)

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)
    device = acc.device
    if not data.streaming:
        data = data.to(device)  # small sets live on the training device as tensors
    ctx = TrainContext(model=raw_model, optimizer=optimizer, epoch=start_epoch, step=start_step, run=run)
    for cb in callbacks:
        cb.on_train_start(ctx)

    def checkpoint(epoch: int, batch: int) -> None:
        if run is not None and acc.is_main_process:
            run.save_checkpoint({
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "callbacks": [cb.state_dict() for cb in callbacks], "rng": torch.get_rng_state(),
                "epoch": epoch, "batch": batch, "step": ctx.step, "train_time_s": train_time,
                "history": history}, ckpt_name)

    def evaluate(epoch: int) -> None:
        val = evaluate_split(model, data, "val", batch_size=eval_batch_size) if data.has_split("val") else None
        record = {"tag": tag, "epoch": epoch, "step": ctx.step, "train_loss": seen_loss(),
                  "val_top1": None if val is None else val["top1"], "val_top5": None if val is None else val["top5"],
                  "val_loss": None if val is None else val["loss"], "lr": optimizer.param_groups[0]["lr"],
                  "train_time_s": round(train_time, 3), "images_per_s": round(images / max(window_s, 1e-9), 1)}
        ctx.metrics = record
        for cb in callbacks:
            cb.on_epoch_end(ctx)
        history.append(record)
        if acc.is_main_process:
            shown = "no validation split" if val is None else f"val top-1 {val['top1']:.2f}%"
            tqdm.write(f"[{tag}] epoch {epoch}, step {ctx.step}/{budget}  loss {record['train_loss']:.4f}  {shown}  "
                       f"({record['images_per_s']:.0f} img/s)", file=sys.stderr)
        if run is not None and acc.is_main_process:
            run.log_metrics(record)

    autocast = acc.autocast if precision != "fp32" else contextlib.nullcontext
    bar = tqdm(total=stop_at, initial=min(start_step, stop_at), desc=desc or tag, unit="step", dynamic_ncols=True,
               mininterval=1.0, disable=not acc.is_main_process or os.environ.get("NNQ_PROGRESS") == "0")
    loss_sum = torch.zeros((), device=device)
    n_seen = images = 0
    window_s = 0.0

    def seen_loss() -> float:
        return (loss_sum / max(n_seen, 1)).item()

    try:
        epoch = start_epoch
        while ctx.step < stop_at and epoch <= n_epochs:
            ctx.epoch = epoch
            skip = start_batch if epoch == start_epoch else 0
            if skip == 0:
                for cb in callbacks:
                    cb.on_epoch_start(ctx)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss_sum.zero_()
            n_seen = images = 0
            window_s = 0.0
            micro = skip
            t0 = time.perf_counter()
            for xb, yb in data.train_batches(epoch=epoch, seed=seed, batch_size=batch_size, rank=rank, world=world,
                                             skip=skip):
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                if channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                last_micro = (micro + 1) % grad_accum == 0
                with (contextlib.nullcontext() if last_micro else acc.no_sync(model)), autocast():
                    loss = loss_fn(model(xb), yb)
                    acc.backward(loss / grad_accum)
                micro += 1
                loss_sum.add_(loss.detach().float(), alpha=len(xb))
                n_seen += len(xb)
                if not last_micro:
                    continue
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ctx.step += 1
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                for cb in callbacks:
                    cb.after_step(ctx)
                # NaN/inf guard; checked every _GUARD_EVERY steps so a GPU is not synchronised each step
                if ctx.step % _GUARD_EVERY == 0 and not torch.isfinite(loss_sum):
                    raise _Diverged(epoch, ctx.step)
                dt = time.perf_counter() - t0
                train_time += dt
                window_s += dt
                images += len(xb) * grad_accum * world
                bar.update(1)
                if ctx.step % 10 == 0:
                    bar.set_postfix(loss=f"{seen_loss():.3f}", img_s=f"{images / max(window_s, 1e-9):.0f}")
                if ctx.step >= stop_at or micro >= per_epoch * grad_accum:
                    break
                if ckpt_every and ctx.step % ckpt_every == 0 and micro < per_epoch * grad_accum:
                    checkpoint(epoch, micro)
                t0 = time.perf_counter()
            if not torch.isfinite(loss_sum):  # never checkpoint a diverged epoch
                raise _Diverged(epoch, ctx.step)
            epoch_done = ctx.step < stop_at or micro >= per_epoch * grad_accum
            if scheduler is not None and scheduler_interval == "epoch" and epoch_done:
                scheduler.step()
            evaluate(epoch)
            checkpoint(epoch + 1, 0) if epoch_done else checkpoint(epoch, micro)
            epoch += 1
    except _Diverged as exc:
        raise NnqError(str(exc)) from None
    finally:
        bar.close()
    if not history or history[-1]["step"] != ctx.step:  # a resumed stage that had nothing left to do
        evaluate(max(epoch - 1, 1))
    last = history[-1]
    val = None if last["val_top1"] is None else {"top1": last["val_top1"], "top5": last["val_top5"],
                                                  "loss": last["val_loss"]}
    return {"val": val, "history": history, "steps": ctx.step, "train_time_s": round(train_time, 3),
            "truncated": stop_at < budget}


def run_paper_or_study(cfg: Any, callbacks: Iterable[Callback], paper_main: Callable[..., Any],
                       study_main: Callable[..., Any]) -> Any:
    """A paper's ``main``: ``study_main(cfg, callbacks)`` for a study run (``cfg.setting`` set), else
    ``paper_main(cfg, callbacks)``; ``cfg.threads`` torch threads when given (``main`` called from Python)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return study_main(cfg, callbacks) if cfg.setting else paper_main(cfg, callbacks)


def float_start(data: Any, build: Callable[[], nn.Module], *, weights: str | None = None,
                data_dir: str | None = None, name: str = "network", twin: Callable[[nn.Module], str] | None = None,
                twin_is_start: bool = True,
                weights_recipe: str = "as given (not fine-tuned)") -> tuple[nn.Module, dict[str, Any]]:
    """The float network a run in a paper's own setting starts from, and its float reference for the summary.

    Given ``weights``, the start is ``build()`` holding them and ``fp_value`` their test top-1. Else the start is
    ``build()`` at its random initialisation and, with ``twin``, a float twin of it trained here gives ``fp_value``.

    Args:
        data: the run's data source (its test split gives fp_value).
        build: makes the float network at its random initialisation.
        weights: trained float weights, a path (a relative one is looked up in $NNQ_WEIGHTS_DIR); ``twin`` is then
            not used.
        data_dir: passed to :func:`common.data.find_weights`.
        name: the network in a loading error ("the float NAME").
        twin: trains a float network in place (the paper's float recipe) and returns that recipe in words (the
            summary's fp_recipe); None: no float reference (empty fp fields).
        twin_is_start: the trained twin is the start (methods that quantize a trained float network); False: the
            twin is trained on a copy and the start stays at its random initialisation (methods trained from
            scratch, the twin only for fp_value).
        weights_recipe: fp_recipe of given weights, after "the float weights WEIGHTS, ".

    Returns:
        (the float start, in train mode; ``{"fp_value": test top-1, "fp_recipe": how it was made}`` or {}).
    """
    from common.data import find_weights
    from common.models import load_float_weights

    def reference(model: nn.Module, recipe: str) -> dict[str, Any]:
        return {"fp_value": round(evaluate_split(model, data, "test")["top1"], 4), "fp_recipe": recipe}

    if weights:
        model = load_float_weights(build(), find_weights(weights, data_dir=data_dir), f"the float {name}")
        return model, reference(model, f"the float weights {weights}, {weights_recipe}")
    model = build()
    if twin is None:
        return model, {}
    trained = model if twin_is_start else copy.deepcopy(model)
    return model, reference(trained, twin(trained))


def sgd_float_twin(cfg: Any, data: Any, run: Run | None,
                   optimizer: Callable[[nn.Module, float, float, float], torch.optim.Optimizer]
                   ) -> Callable[[nn.Module], str] | None:
    """The float twin recipe of :func:`float_start` for papers that fine-tune a trained float network: SGD at
    ``cfg.baseline_lr`` with momentum ``cfg.momentum`` and weight decay 1e-4, cosine per epoch over
    ``cfg.baseline_epochs`` epochs of batch ``cfg.batch_size`` (stage "float" of ``run``); None when
    ``cfg.baseline_epochs`` is 0.

    Args:
        cfg: the run's Config (baseline_epochs, baseline_lr, momentum, batch_size, seed).
        data: the run's data source.
        run: the run (the twin's checkpoints and metrics), or None.
        optimizer: ``optimizer(model, lr, momentum, weight_decay)``, the paper's SGD (its parameter groups).
    """
    if not cfg.baseline_epochs:
        return None

    def train(model: nn.Module) -> str:
        opt = optimizer(model, cfg.baseline_lr, cfg.momentum, 1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.baseline_epochs)
        fit(model, data, epochs=cfg.baseline_epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
            run=run, tag="float", seed=cfg.seed, desc="float twin")
        return (f"float twin, {cfg.baseline_epochs} epochs, SGD momentum {cfg.momentum}, LR {cfg.baseline_lr:g}, "
                "weight decay 1e-4, cosine")

    return train


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int):
        super().__init__(f"training diverged: the loss is not finite in epoch {epoch} (by step {step}); "
                         "lower --lr (the run folder keeps the last finite checkpoint)")
