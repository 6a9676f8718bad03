"""Stage 1 of Deep Compression: magnitude pruning with retraining.

Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015 (arXiv 1506.02626), used as stage 1 of Han, Mao, Dally, "Deep Compression",
ICLR 2016 (arXiv 1510.00149). Official code: none released for training (the Caffe models of
github.com/songhan/Deep-Compression-AlexNet hold only the compressed weights).

Idea: train a dense network, remove every connection whose magnitude is below a per-layer
threshold, retrain the survivors, and iterate. The threshold of a layer is a quality parameter
times the standard deviation of that layer's weights (Han 2015, Sec. 4). A pruned connection stays
pruned: its weight is held at exactly zero by a binary mask applied to the gradient and re-applied
after every optimizer step.

Implements: the threshold rule (Han 2015 Sec. 4), iterative pruning (Han 2015 Sec. 3.4, Fig. 2),
the mask kept through training. Not implemented: dropout-ratio adjustment during retraining
(Han 2015 Sec. 3.2), pruning of neurons left without connections (Han 2015 Sec. 3.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from common.errors import NnqError

try:  # the training loop's callback base class, when common.train is there
    from common.train import Callback as _CallbackBase
except ImportError:  # pragma: no cover - only while common/ is being written
    _CallbackBase = object

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear/Conv2d layer of `model`, by qualified name (their `weight` is pruned)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def layer_threshold(w: torch.Tensor, quality: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pruning threshold of one layer.

    Args:
        w: the layer's weight, any shape.
        quality: the quality parameter (Han 2015 Sec. 4), a float >= 0.
        mask: the connections still alive (bool, shape of `w`); the std is taken over them.

    Returns:
        A 0-d tensor: weights with |w| <= threshold are pruned.
    """
    alive = w if mask is None else w[mask]
    # Han 2015 Sec. 4: threshold = quality parameter x the layer's weight standard deviation
    return quality * alive.float().std()


def prune_mask(w: torch.Tensor, quality: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The new mask of a layer after one pruning step: survivors with |w| > quality * std."""
    keep = w.abs() > layer_threshold(w, quality, mask)
    return keep if mask is None else keep & mask


def quality_for_density(w: torch.Tensor, density: float, mask: torch.Tensor | None = None) -> float:
    """The quality parameter whose threshold keeps `density` of all weights of a layer.

    The paper chooses the quality parameter per layer by a sensitivity analysis; we solve for the
    one that reaches a target fraction of kept weights (the paper's Tables 2-3 "Weights%").

    Args:
        w: the layer's weight.
        density: fraction of all of the layer's weights to keep, in (0, 1].
        mask: the connections still alive; weights outside it stay pruned.

    Returns:
        The quality parameter (threshold / std of the alive weights).
    """
    if not 0.0 < density <= 1.0:
        raise NnqError(f"pruning density {density} is outside (0, 1]; give the fraction of weights to keep")
    alive = (w if mask is None else w[mask]).flatten().float()
    std = alive.std()
    mag = alive.abs()
    n_keep = max(1, round(density * w.numel()))
    if n_keep >= alive.numel():
        return 0.0 if alive.numel() == w.numel() else float(mag.min() / std * 0.999999)
    # the threshold is the largest pruned magnitude: the (n_alive - n_keep)-th smallest |w|
    thr = torch.kthvalue(mag, alive.numel() - n_keep).values
    # DEVIATION: quality solved from a target density instead of hand-tuned per layer (Han 2015 Sec. 4)
    return float(thr / std)


def density_schedule(target: float, iterations: int) -> list[float]:
    """Densities of the iterative prune -> retrain rounds, geometric from 1 down to `target`.

    Han 2015 Sec. 3.4 prunes and retrains repeatedly (Fig. 2); it gives no schedule, so the
    per-round fraction kept is equal: density_t = target ** (t / iterations).
    """
    if iterations < 1:
        raise NnqError(f"pruning iterations must be >= 1, got {iterations}")
    # DEVIATION: a geometric schedule; the paper names no per-iteration densities
    return [target ** (t / iterations) for t in range(1, iterations + 1)]


class PruneMasks(_CallbackBase):
    """The binary masks of a pruned model, kept applied through training.

    Use it as a callback of `common.train.fit`: `after_step` re-applies the masks after every
    optimizer step, so momentum or weight decay can never revive a pruned weight, and
    `attach()` zeroes the gradients of pruned weights (Han 2015 Sec. 3: pruned connections
    are removed for good; Sec. 3.3: the survivors keep their trained values).
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None):
        mods = prunable_layers(model)
        names = list(mods) if layers is None else list(layers)
        unknown = [n for n in names if n not in mods]
        if unknown:
            raise NnqError(f"cannot prune {unknown}: not Linear/Conv2d layers; choose from {list(mods)}")
        self.params: dict[str, nn.Parameter] = {n: mods[n].weight for n in names}
        self.masks: dict[str, torch.Tensor] = {
            n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        self._hooks: list = []

    @torch.no_grad()
    def prune_(self, densities: Mapping[str, float]) -> dict[str, float]:
        """One pruning step: per layer, threshold at quality x std and AND into the mask.

        Args:
            densities: layer name -> target fraction of the layer's weights kept after this step.

        Returns:
            layer name -> the quality parameter used.
        """
        qualities = {}
        for name, d in densities.items():
            if name not in self.params:
                raise NnqError(f"no prunable layer {name!r}; choose from {list(self.params)}")
            w, m = self.params[name], self.masks[name]
            q = quality_for_density(w, d, m)
            self.masks[name] = prune_mask(w, q, m)
            qualities[name] = q
        self.apply_()
        return qualities

    @torch.no_grad()
    def apply_(self) -> None:
        """Set every pruned weight to exactly zero."""
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    def attach(self) -> "PruneMasks":
        """Register gradient hooks that zero the gradient of every pruned weight."""
        self.detach()
        for name, p in self.params.items():
            self._hooks.append(p.register_hook(lambda g, n=name: g * self.masks[n]))
        return self

    def detach(self) -> None:
        """Remove the gradient hooks."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def density(self) -> dict[str, float]:
        """layer name -> fraction of its weights alive."""
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def total_density(self) -> float:
        """Fraction of all prunable weights alive."""
        alive = sum(int(m.sum()) for m in self.masks.values())
        return alive / max(1, sum(m.numel() for m in self.masks.values()))

    # callback interface of common.train.fit
    def on_train_start(self, ctx) -> None:
        self.apply_()

    def after_step(self, ctx) -> None:
        self.apply_()
