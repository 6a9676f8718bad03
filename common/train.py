"""The one training loop of the study, on Hugging Face ``accelerate``.

``fit`` trains a model on an on-device :class:`common.data.DataBundle`, evaluates it after every
epoch, appends the evaluation to the run's ``metrics.jsonl`` and writes an atomic checkpoint, so
that ``--resume RUN_DIR`` continues exactly where the last complete epoch ended (model,
optimizer, schedule, callbacks and random state are restored; shuffling is seeded per epoch).
Papers hook their per-step work (weight clipping, pruning masks, basis updates) into
:class:`Callback`. A non-finite loss raises NnqError (``Run.guard`` marks the run ``failed``); Ctrl-C
leaves the last complete epoch on disk (``Run.guard`` marks the run ``cancelled``).

Several processes: on GPUs ``accelerate launch -m papers.<name>.train ...``; on CPUs
``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m papers.<name>.train ...`` (plain
``accelerate launch --cpu`` starts a single process). Each process trains on its shard of every
epoch's permutation; gradients are averaged by DDP; only the main process writes files.
Compute stays in fp32 on the CPU: bf16/fp16 matmuls are far slower than fp32 there.
"""

from __future__ import annotations

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

from common.data import DataBundle, iterate_batches
from common.errors import NnqError
from common.evaluate import accuracy
from common.runs import Run


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


def accelerator():
    """The process's Accelerator (fp32; multi-process under torchrun / accelerate launch)."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision="no")


def end_training() -> None:
    """Call once when a command's training is over (``cli_main`` does): ends accelerate's
    trackers and process group. No-op when no training ran in this process."""
    from accelerate.state import PartialState

    if PartialState._shared_state:
        accelerator().end_training()


def fit(model: nn.Module, data: DataBundle, *, epochs: int, batch_size: int,
        optimizer: torch.optim.Optimizer, scheduler: Any = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        callbacks: Iterable[Callback] = (), run: Run | None = None, tag: str = "main", seed: int = 0,
        desc: str | None = None, eval_batch_size: int = 1000) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs and return its final test metrics and history.

    Args:
        model: the network; trained in place.
        data: on-device train/test tensors and the augmentation to apply.
        epochs: total epochs (a resumed run trains only the missing ones).
        batch_size: mini-batch size per process.
        optimizer: built over ``model.parameters()``.
        scheduler: stepped once per epoch (``scheduler.step()``), or None.
        loss_fn: ``loss_fn(logits, labels) -> scalar``.
        callbacks: :class:`Callback` objects, called in order.
        run: the run folder for metrics and checkpoints; None trains without files.
        tag: names this training stage's checkpoint (``<tag>.ckpt.pt``) and metric lines, so one
            run can hold several stages (float baseline, binary model, retraining ...).
        seed: seeds the per-epoch shuffle and augmentation.
        desc: progress-bar label.
        eval_batch_size: batch size of the per-epoch evaluation.

    Returns:
        dict with ``top1``, ``top5``, ``loss`` (test, after the last epoch), ``history`` (one
        record per epoch) and ``train_time_s`` (sum of the epochs' training time).
    """
    callbacks = list(callbacks)
    acc = accelerator()
    ckpt_name = f"{tag}.ckpt.pt"
    history: list[dict[str, Any]] = []
    start_epoch = 0

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
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        if acc.is_main_process:  # drop metric lines written after that checkpoint
            kept = [r for r in run.metrics() if r.get("tag") != tag or r.get("epoch", 0) <= start_epoch]
            run.rewrite_metrics(kept)

    model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)
    device = acc.device
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    world, rank = acc.num_processes, acc.process_index
    n_local = len(x_train) // world if world > 1 else len(x_train)
    steps_per_epoch = -(-n_local // batch_size)

    ctx = TrainContext(model=raw_model, optimizer=optimizer, epoch=start_epoch,
                       step=start_epoch * steps_per_epoch, run=run)
    for cb in callbacks:
        cb.on_train_start(ctx)

    bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               desc=desc or tag, unit="step", dynamic_ncols=True, mininterval=1.0,
               disable=not acc.is_main_process or os.environ.get("NNQ_PROGRESS") == "0")
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            ctx.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_start(ctx)
            gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)
            if world > 1:  # same permutation on every process, one shard each
                perm = torch.randperm(len(x_train), generator=gen)[rank::world][:n_local].to(device)
                batches = iterate_batches(x_train[perm], y_train[perm], batch_size, shuffle=False,
                                          generator=gen, augment=data.augment)
            else:
                batches = iterate_batches(x_train, y_train, batch_size, shuffle=True, generator=gen,
                                          augment=data.augment)
            model.train()
            loss_sum = torch.zeros((), device=device)
            n_seen = 0
            t0 = time.perf_counter()
            for xb, yb in batches:
                loss = loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                acc.backward(loss)
                optimizer.step()
                ctx.step += 1
                for cb in callbacks:
                    cb.after_step(ctx)
                loss_sum.add_(loss.detach(), alpha=len(xb))
                n_seen += len(xb)
                bar.update(1)
                # NaN/inf guard; checked every _GUARD_EVERY steps so a GPU is not synchronised each step
                if ctx.step % _GUARD_EVERY == 0 and not torch.isfinite(loss_sum):
                    raise _Diverged(epoch, ctx.step)
            if not torch.isfinite(loss_sum):  # never checkpoint a diverged epoch
                raise _Diverged(epoch, ctx.step)
            train_s = time.perf_counter() - t0
            if scheduler is not None:
                scheduler.step()
            test = accuracy(model, x_test, y_test, batch_size=eval_batch_size)
            record = {"tag": tag, "epoch": epoch, "train_loss": (loss_sum / max(n_seen, 1)).item(),
                      "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                      "lr": optimizer.param_groups[0]["lr"], "epoch_train_s": round(train_s, 4)}
            ctx.metrics = record
            for cb in callbacks:
                cb.on_epoch_end(ctx)
            history.append(record)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", top1=f"{test['top1']:.2f}")
            if acc.is_main_process:
                tqdm.write(f"[{tag}] epoch {epoch}/{epochs}  loss {record['train_loss']:.4f}  "
                           f"test top-1 {test['top1']:.2f}%  ({train_s:.1f} s)", file=sys.stderr)
            if run is not None and acc.is_main_process:
                run.log_metrics(record)
                run.save_checkpoint({
                    "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "callbacks": [cb.state_dict() for cb in callbacks], "rng": torch.get_rng_state(),
                    "epoch": epoch, "history": history}, ckpt_name)
    except _Diverged as exc:
        raise NnqError(str(exc)) from None
    finally:
        bar.close()

    final = accuracy(model, x_test, y_test, batch_size=eval_batch_size) if not history else {
        "top1": history[-1]["test_top1"], "top5": history[-1]["test_top5"], "loss": history[-1]["test_loss"]}
    return {**final, "history": history,
            "train_time_s": round(sum(r["epoch_train_s"] for r in history), 3)}


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int):
        super().__init__(f"training diverged: the loss is not finite in epoch {epoch} (by step {step}); "
                         "lower --lr (the run folder keeps the last finite epoch)")
