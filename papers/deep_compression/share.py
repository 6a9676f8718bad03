"""Stage 2 of Deep Compression: trained quantization by k-means weight sharing.

Han, Mao, Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR 2016, arXiv 1510.00149 (Sec. 3).

Idea: the surviving weights of each layer are clustered with 1-D k-means; every weight is replaced
by its cluster's centroid, so a layer stores only a small codebook and one log2(k)-bit index per
weight. The centroids are then fine-tuned: the gradient of a centroid is the sum of the gradients
of the weights that share it (Eq. 3), while the assignment of weights to centroids stays fixed.
Where the centroids start matters: linear initialisation over [min, max] keeps the rare large
weights represented and works best (Sec. 3.2; measured in Sec. 6.2, Fig. 8).

Implements: Eq. (2) (k-means objective, Lloyd's algorithm), random / density-based / linear
initialisation (Sec. 3.2, Fig. 4), Eq. (3) (centroid gradient), the shared layers. Not implemented: shared
weights across layers (the paper does not share across layers either).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError

INIT_METHODS = ("linear", "density", "random")


def init_centroids(w: torch.Tensor, k: int, method: str = "linear",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Initial centroids of 1-D k-means (Sec. 3.2, Fig. 4).

    Args:
        w: the weights to cluster, [n] (the survivors of a pruned layer).
        k: number of clusters (k = 2**bits).
        method: "linear" spaces the centroids evenly over [min w, max w]; "density" spaces them
            evenly on the CDF of w (y-axis) and maps them back to w; "random" (Forgy) picks k
            weights at random.
        generator: random source of "random".

    Returns:
        The centroids, [k], sorted ascending.
    """
    if k < 1:
        raise NnqError(f"k-means needs k >= 1 clusters, got {k}")
    if w.numel() == 0:
        raise NnqError("cannot cluster an empty layer (every weight is pruned); keep a higher density")
    w = w.flatten().float()
    if method == "linear":
        # Sec. 3.2: linear initialisation spaces the centroids over [min, max] of the weights
        c = torch.linspace(float(w.min()), float(w.max()), k, dtype=w.dtype, device=w.device)
    elif method == "density":
        # Sec. 3.2: linearly space the CDF in y, then find the weight at each CDF value
        # DEVIATION: CDF levels at bin centres (i + 0.5) / k, which the paper does not fix
        probs = (torch.arange(k, dtype=w.dtype, device=w.device) + 0.5) / k
        c = torch.quantile(w, probs)
    elif method == "random":
        # Sec. 3.2: Forgy - k observations chosen at random from the data
        pick = torch.randperm(w.numel(), generator=generator, device="cpu")[:k].to(w.device)
        c = w[pick]
        if c.numel() < k:  # fewer weights than clusters: repeat some
            c = c[torch.arange(k, device=w.device) % c.numel()]
    else:
        raise NnqError(f"unknown centroid initialisation {method!r}; choose one of {INIT_METHODS}")
    return c.sort().values


def assign(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of each weight.

    Args:
        w: weights, any shape.
        centroids: [k], sorted ascending.

    Returns:
        int64 indices, shape of `w`.
    """
    # 1-D: nearest centroid <=> bucket between the midpoints of neighbouring centroids
    mid = (centroids[1:] + centroids[:-1]) / 2  # [k-1]
    return torch.bucketize(w.contiguous(), mid)


@torch.no_grad()
def kmeans_1d(w: torch.Tensor, k: int, init: str = "linear", *, max_iter: int = 100,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in one dimension.

    Args:
        w: the weights to cluster, [n].
        k: number of clusters.
        init: centroid initialisation, one of INIT_METHODS.
        max_iter: iteration limit; stops earlier once the assignment no longer changes.
        generator: random source of init="random".

    Returns:
        (centroids [k] sorted ascending, idx [n] int64) minimising Eq. (2).
    """
    w = w.flatten().float()
    c = init_centroids(w, k, init, generator)
    idx = assign(w, c)
    for _ in range(max_iter):
        # Eq. (2): argmin_C sum_i sum_{w in c_i} |w - c_i|^2 -> each centroid is its members' mean
        sums = torch.zeros(k, dtype=w.dtype, device=w.device).index_add_(0, idx, w)
        counts = torch.bincount(idx, minlength=k)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)  # an empty cluster keeps its centroid
        c = c.sort().values
        new_idx = assign(w, c)
        if torch.equal(new_idx, idx):
            break
        idx = new_idx
    return c, idx


def kmeans_error(w: torch.Tensor, centroids: torch.Tensor, idx: torch.Tensor) -> float:
    """The k-means objective of Eq. (2), sum |w - c_idx|^2, over the clustered weights."""
    return float(((w.flatten().float() - centroids[idx.flatten()]) ** 2).sum())


class CodebookLookup(torch.autograd.Function):
    """W = codebook[idx] * mask, with the centroid gradient of Eq. (3).

    Forward gathers the shared weights; backward returns, for centroid k, the sum of the
    gradients of every (unpruned) weight whose index is k.
    """

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx, mask)
        ctx.k = codebook.numel()
        # W_ij = C[I_ij], pruned positions held at exactly 0
        return codebook[idx] * mask

    @staticmethod
    def backward(ctx, grad_w: torch.Tensor):
        idx, mask = ctx.saved_tensors
        g = (grad_w * mask).flatten()  # [n]
        # Eq. (3): dL/dC_k = sum_ij dL/dW_ij * 1(I_ij = k)
        grad_c = torch.zeros(ctx.k, dtype=grad_w.dtype, device=grad_w.device).index_add_(0, idx.flatten(), g)
        return grad_c, None, None


codebook_lookup = CodebookLookup.apply


class _SharedMixin:
    """State and behaviour shared by SharedLinear and SharedConv2d.

    A shared layer holds `codebook` (the only trainable weight tensor, [k]), `idx` (int64, shape of
    the weight) and `mask` (bool, shape of the weight). `weight` is kept as a buffer holding
    codebook[idx] * mask so the state dict keeps its `weight`/`bias` keys.
    """

    def _setup_shared(self, w: torch.Tensor, k: int, init: str, mask: torch.Tensor | None,
                      generator: torch.Generator | None, max_iter: int) -> None:
        mask = torch.ones_like(w, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        if mask.shape != w.shape:
            raise NnqError(f"mask shape {tuple(mask.shape)} differs from weight shape {tuple(w.shape)}")
        alive = w[mask]
        if alive.numel() == 0:
            raise NnqError("cannot share the weights of a layer that is fully pruned; keep a higher density")
        c, idx_alive = kmeans_1d(alive, k, init, max_iter=max_iter, generator=generator)
        # DEVIATION: centroids left without members (k > distinct survivors) are dropped, so the
        # stored codebook holds only centroids in use
        used = torch.bincount(idx_alive, minlength=c.numel()) > 0
        remap = torch.cumsum(used.long(), 0) - 1
        c, idx_alive = c[used], remap[idx_alive]
        idx = torch.zeros_like(w, dtype=torch.int64)
        idx[mask] = idx_alive
        del self.weight  # the float Parameter becomes a derived buffer
        self.codebook = nn.Parameter(c.to(w.dtype))
        self.register_buffer("idx", idx)
        self.register_buffer("mask", mask)
        self.register_buffer("weight", self.shared_weight().detach())
        self.weight_bits = max(1, math.ceil(math.log2(c.numel())))
        self.act_bits = 32
        self.init = init

    def shared_weight(self) -> torch.Tensor:
        """codebook[idx] * mask, differentiable w.r.t. the codebook (Eq. 3)."""
        return codebook_lookup(self.codebook, self.idx, self.mask)

    def _current_weight(self) -> torch.Tensor:
        w = self.shared_weight()
        with torch.no_grad():
            self.weight.copy_(w)  # keep the `weight` buffer in step with the codebook
        return w


class SharedLinear(_SharedMixin, nn.Linear):
    """nn.Linear whose weight is codebook[idx] * mask (Sec. 3)."""

    @classmethod
    def from_float(cls, m: nn.Linear, k: int, init: str = "linear", mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, max_iter: int = 100) -> "SharedLinear":
        """Cluster the alive weights of `m` into k shared values.

        Args:
            m: the float (possibly pruned) layer.
            k: codebook size (2**bits).
            init: centroid initialisation ("linear", "density", "random").
            mask: alive connections (bool, weight shape); default all.
            generator: random source of init="random".
            max_iter: k-means iteration limit.
        """
        new = cls(m.in_features, m.out_features, bias=m.bias is not None,
                  device=m.weight.device, dtype=m.weight.dtype)
        if m.bias is not None:
            new.bias.data.copy_(m.bias.data)
        new._setup_shared(m.weight.data, k, init, mask, generator, max_iter)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._current_weight(), self.bias)


class SharedConv2d(_SharedMixin, nn.Conv2d):
    """nn.Conv2d whose weight is codebook[idx] * mask (Sec. 3)."""

    @classmethod
    def from_float(cls, m: nn.Conv2d, k: int, init: str = "linear", mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, max_iter: int = 100) -> "SharedConv2d":
        """Cluster the alive weights of `m` into k shared values (arguments as SharedLinear)."""
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                  dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                  padding_mode=m.padding_mode, device=m.weight.device, dtype=m.weight.dtype)
        if m.bias is not None:
            new.bias.data.copy_(m.bias.data)
        new._setup_shared(m.weight.data, k, init, mask, generator, max_iter)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._current_weight(), self.bias)


SHARED_LAYERS = (SharedLinear, SharedConv2d)


def share_weights_(model: nn.Module, bits: dict[str, int], *, init: str = "linear",
                   masks: dict[str, torch.Tensor] | None = None,
                   generator: torch.Generator | None = None) -> dict[str, nn.Module]:
    """Replace the named Linear/Conv2d layers of `model` by shared layers, in place.

    Args:
        model: the (pruned) float model.
        bits: layer name -> index bits (k = 2**bits centroids).
        init: centroid initialisation.
        masks: layer name -> alive mask (default: the nonzero weights).
        generator: random source of init="random".

    Returns:
        layer name -> the new shared layer.
    """
    out = {}
    for name, b in bits.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        m = getattr(parent, child)
        mask = masks[name] if masks is not None and name in masks else m.weight.data != 0
        if isinstance(m, nn.Conv2d):
            new = SharedConv2d.from_float(m, 2 ** b, init, mask, generator)
        elif isinstance(m, nn.Linear):
            new = SharedLinear.from_float(m, 2 ** b, init, mask, generator)
        else:
            raise NnqError(f"layer {name!r} is {type(m).__name__}; only Linear/Conv2d weights can be shared")
        setattr(parent, child, new)
        out[name] = new
    return out
