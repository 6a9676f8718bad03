"""SqueezeNet's last step: Deep Compression of the trained network into a far smaller file.

SqueezeNet (Iandola et al. 2016) ends its abstract by compressing the network with Deep Compression (Han, Mao,
Dally, ICLR 2016) to under 0.5 MB. This module applies the study group's own Deep Compression
(``papers/deep_compression``, through its public API) to a network trained here: iterative magnitude pruning with
retraining (Han 2015 Sec. 3.3-3.4), k-means weight sharing with centroid fine-tuning (Deep Compression Sec. 3), and
the Huffman-coded file (Sec. 4), which is reloaded and must predict exactly what the compressed network predicts.

Our recipe, not a paper's (SqueezeNet's density and bits are still to be checked against its text, see README):
every layer but the first and the last pruned to the same density over ``ITERATIONS`` rounds; ``bits``-bit
codebooks for every layer; the retraining budget split evenly over the rounds and the centroid fine-tuning; SGD
(Nesterov, momentum 0.9) at ``LR_FACTOR`` times the training LR with a per-stage cosine, and no weight decay while
the centroids are fine-tuned (as papers/deep_compression does).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common.evaluate import evaluate_split, file_size
from common.runs import Run
from common.train import cosine_per_step, fit
from papers.deep_compression import PruneMasks, decode, density_schedule, encode, load_into, share_weights_
from papers.deep_compression.prune import prunable_layers

ITERATIONS = 3
"""Prune -> retrain rounds (Han 2015 Sec. 3.4: iterative pruning keeps more accuracy than one step)."""
LR_FACTOR = 0.1
"""Retraining and centroid fine-tuning LR, as a fraction of the training LR (ours)."""


def stage_steps(total: int, stages: int) -> list[int]:
    """``total`` optimizer steps split as evenly as possible over ``stages`` stages (the first ones get the rest)."""
    return [total // stages + (1 if i < total % stages else 0) for i in range(stages)]


def _stage(model: nn.Module, data, run: Run | None, *, steps: int, lr: float, weight_decay: float, batch_size: int,
           callbacks, tag: str, seed: int, desc: str, max_steps: int | None, precision: str | None) -> float:
    """One retraining stage of ``steps`` SGD steps with a per-step cosine; returns its training seconds."""
    if steps <= 0:
        return 0.0
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    res = fit(model, data, steps=steps, batch_size=batch_size, optimizer=opt, scheduler=cosine_per_step(opt, steps),
              scheduler_interval="step", callbacks=callbacks, run=run, tag=tag, seed=seed, desc=desc,
              max_steps=max_steps, precision=precision)
    return res["train_time_s"]


@torch.no_grad()
def _predictions(model: nn.Module, data) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb.cpu()).argmax(1) for xb, _ in data.eval_batches("test", 256)])


def deep_compress(model: nn.Module, data, rebuild: Callable[[], nn.Module], path: str | Path, *, density: float,
                  bits: int, epochs: float, lr: float, weight_decay: float, batch_size: int, seed: int,
                  run: Run | None = None, max_steps: int | None = None, precision: str | None = None) -> dict:
    """Prune, share and Huffman-code a copy of the trained ``model``; return the summary's ``dc_*`` fields.

    Args:
        model: the trained float network (left unchanged).
        data: its data bundle (training for retraining, test for the reported accuracy).
        rebuild: builds a fresh network of the same architecture (the file is reloaded into it).
        path: where the compressed file is written.
        density: fraction of the weights of every layer but the first and last kept after the last pruning round,
            in (0, 1] (``dc_density`` in the result: the fraction kept over those layers).
        bits: codebook bits per layer (2**bits shared values).
        epochs: retraining budget in epochs, split over the pruning rounds and the centroid fine-tuning.
        lr: the training LR; retraining runs at ``LR_FACTOR`` times it.
        weight_decay: weight decay while pruning and retraining (none for the centroids).
        batch_size, seed, max_steps, precision: as for the training of ``model``.
        run: the run folder that keeps the retraining stages' metrics and checkpoints (a killed run resumes).
    """
    net = copy.deepcopy(model).cpu().train()
    layers = list(prunable_layers(net))
    # the first and last layers hold few weights and carry the most per weight: shared, not pruned
    pruned = layers[1:-1] if len(layers) > 2 else layers
    steps = stage_steps(round(epochs * data.train_steps_per_epoch(batch_size, 1)), ITERATIONS + 1)
    common = dict(batch_size=batch_size, max_steps=max_steps, precision=precision)

    # Stage 1 (Han 2015 Sec. 3.3-3.4): prune to density**(t/ITERATIONS), retrain the survivors, repeat.
    masks = PruneMasks(net, pruned).attach()
    schedule = density_schedule(density, ITERATIONS)
    seconds = 0.0
    for t, d in enumerate(schedule):
        masks.prune_({n: d for n in pruned})
        seconds += _stage(net, data, run, steps=steps[t], lr=lr * LR_FACTOR, weight_decay=weight_decay,
                          callbacks=[masks], tag=f"dc_prune{t + 1}", seed=seed + t + 1,
                          desc=f"prune {t + 1}/{ITERATIONS} ({masks.total_density():.1%} kept)", **common)
    masks.detach()
    masks.apply_()
    kept = masks.total_density()

    # Stage 2 (Deep Compression Sec. 3): k-means codebooks over the survivors, then fine-tune the centroids (Eq. 3).
    share_weights_(net, {n: bits for n in layers}, init="linear", masks=masks.masks,
                   generator=torch.Generator().manual_seed(seed))
    seconds += _stage(net, data, run, steps=steps[-1], lr=lr * LR_FACTOR, weight_decay=0.0, callbacks=(),
                      tag="dc_share", seed=seed + 100, desc="centroid fine-tune", **common)
    net.eval()

    # Stage 3 (Sec. 4): the Huffman-coded file, reloaded into a fresh network, must predict what `net` predicts.
    stats = encode(net, path, width=None, huffman=True)
    fresh = load_into(rebuild().cpu(), decode(path))  # a float network whose weights are codebook[idx] * mask
    same = bool(torch.equal(_predictions(net, data), _predictions(fresh, data)))
    test = evaluate_split(net, data, "test")
    return {"dc_top1": round(test["top1"], 4), "dc_file": Path(path).name, "dc_bytes": file_size(path),
            "dc_density": round(kept, 4), "dc_target_density": density, "dc_bits": bits,
            "dc_layers": len(layers), "dc_pruned_layers": len(pruned), "dc_iterations": ITERATIONS, "dc_steps": sum(steps),
            "dc_train_time_s": round(seconds, 1), "dc_dense_bytes": stats.dense_bytes,
            "dc_reproduces_predictions": same}
