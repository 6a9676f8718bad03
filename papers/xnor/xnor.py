"""XNOR-Net and Binary-Weight-Networks.

Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using Binary
Convolutional Neural Networks", ECCV 2016 (arXiv 1603.05279). Official code (Torch7):
github.com/allenai/XNOR-Net.

Idea: a real filter W is approximated by alpha * sign(W), where the scale alpha = mean|W| of that
filter is the closed-form least-squares optimum (Binary-Weight-Networks, BWN). XNOR-Net also
binarizes the layer's input: sign(I) replaces I, and the lost magnitude is put back by a per-
position scaling map K, the channel-mean of |I| averaged over each k x k window; the convolution
of two +-1 tensors is then an XNOR followed by a popcount, scaled by K and alpha. Training keeps
real weights, passes gradients through sign with the straight-through estimator cancelled outside
[-1, 1], and adds the gradient that flows through alpha. A block is reordered to
BN -> BinActiv -> BinConv -> Pool, and the first and last layers stay in full precision.

Implements: Eq. (1)-(6) (BWN: B* = sign(W), alpha* = ||W||_l1 / n), the BWN weight gradient of
Sec. 3.1 ("Training Binary-Weights-Networks", dC/dW_i = dC/dW~_i (1/n + dsign/dW_i * alpha)),
Eq. (7)-(11) (XNOR: beta = ||X||_l1 / n, K = A * k with A = sum_c |I_c| / c, Fig. 2), the sign STE
1_{|r|<=1} of Sec. 3.1, the block order of Sec. 3.2 / Fig. 3, the full-precision first and last
layers (Sec. 4). The real bit-packed inference path is in kernel.py.
Not implemented: the ImageNet data pipeline details of Sec. 4 beyond what common/ provides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, as a tensor of the input's dtype.

    # Sec. 3.1 (after Eq. (4)) sets B_i = +1 for W_i >= 0, so sign(0) = +1 for weights is the paper's; for the
    # inputs (Eq. (9), (11)) the paper does not say: we use the same rule (bit 0 in kernel.py).
    """
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def bwn_alpha(w: torch.Tensor) -> torch.Tensor:
    """Per-output-filter scale alpha of BWN.

    Args:
        w: real weights [c_out, ...] (a conv filter [c_out, c_in, kh, kw] or a linear row [c_out, c_in]).

    Returns:
        alpha [c_out], alpha_o = ||W_o||_l1 / n with n = number of weights per filter.
    """
    # Eq. (6): alpha* = W^T sign(W) / n = sum |W_i| / n = ||W||_l1 / n
    return w.abs().flatten(1).mean(dim=1)


def input_beta(x: torch.Tensor) -> torch.Tensor:
    """beta = ||X||_l1 / n of a linear layer's input, one scalar per sample (Eq. (10)).

    Args:
        x: [batch, n]. Returns [batch, 1].
    """
    # Eq. (10): beta* = sum |X_i| / n
    return x.abs().mean(dim=1, keepdim=True)


def scaling_map_k(x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int]) -> torch.Tensor:
    """The scaling map K of an XNOR convolution (Fig. 2).

    Args:
        x: the layer's real input I [batch, c, h, w].
        kernel_size, stride, padding: those of the convolution; K is aligned with its output.

    Returns:
        K [batch, 1, h_out, w_out].
    """
    # Fig. 2 / Sec. 3.2: A = sum_c |I_{:,:,i}| / c      -> [batch, 1, h, w]
    a = x.abs().mean(dim=1, keepdim=True)
    # Fig. 2: K = A * k, k_ij = 1 / (w h)                -> [batch, 1, h_out, w_out]
    # (a box average: avg_pool2d sums each window and divides by w h, deterministically, so that the
    # simulated and the packed layers get bit-identical K; a conv with 1/(w h) weights may not.)
    # DEVIATION: the paper does not say how K is padded; we zero-pad A like the conv pads I.
    return F.avg_pool2d(a, kernel_size, stride=stride, padding=padding, count_include_pad=True)


class SignSTE(torch.autograd.Function):
    """sign(r) forward; straight-through estimator cancelled outside [-1, 1] backward.

    Sec. 3.1 ("Training Binary-Weights-Networks", following Hubara et al.), also used for the
    inputs in Sec. 3.2: dC/dr = dC/dsign(r) * 1_{|r| <= 1}.
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(r)
        return binarize(r)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        # Sec. 3.1: g_r = g_q 1_{|r|<=1}
        return g * (r.abs() <= 1).to(g.dtype)


sign_ste = SignSTE.apply


class WeightSignSTE(torch.autograd.Function):
    """sign(W) of a BWN/XNOR filter, with the paper's weight gradient through W~ = alpha sign(W).

    The layer computes ``conv(I, sign(W)) * alpha`` (alpha applied after the integer-valued
    convolution, so that the float and packed paths give identical numbers). With g_S = dC/dsign(W)
    and alpha held fixed, dC/dW~ = g_S / alpha, and Sec. 3.1 ("Training Binary-Weights-Networks")
    gives dC/dW_i = dC/dW~_i (1/n + dsign/dW_i alpha) with dsign/dW_i = 1_{|W_i|<=1}, i.e.
    dC/dW_i = g_S,i (1 / (n alpha) + 1_{|W_i|<=1}).
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, alpha)
        return binarize(w)

    @staticmethod
    def backward(ctx, g_s: torch.Tensor):
        w, alpha = ctx.saved_tensors
        n = w[0].numel()
        shape = (-1,) + (1,) * (w.dim() - 1)
        a = alpha.clamp_min(torch.finfo(alpha.dtype).tiny).view(shape)
        g_wt = g_s / a  # dC/dW~ = dC/dsign(W) / alpha
        # Sec. 3.1: dC/dW_i = dC/dW~_i (1/n + dsign/dW_i * alpha), dsign/dW_i = 1_{|W_i|<=1}
        return g_wt * (1.0 / n + (w.abs() <= 1).to(g_s.dtype) * a), None


weight_sign_ste = WeightSignSTE.apply


def _check_conv(m: nn.Conv2d, what: str) -> None:
    if m.padding_mode != "zeros" or m.groups != 1 or m.dilation != (1, 1) or isinstance(m.padding, str):
        raise NnqError(f"{what} supports groups=1, dilation=1, numeric zero padding only; got groups={m.groups}, "
                       f"dilation={m.dilation}, padding={m.padding!r}, padding_mode={m.padding_mode!r}")


class BwnConv2d(nn.Conv2d):
    """Binary-Weight-Network convolution: I * W ~= (I conv sign(W)) alpha (Eq. (1)).

    ``weight`` keeps the real weights the optimizer updates; ``bias`` stays real.
    """

    weight_bits = 1
    act_bits = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = bwn_alpha(self.weight).detach()  # alpha [c_out]; its gradient is in WeightSignSTE
        s = weight_sign_ste(self.weight, alpha)
        # Eq. (1): I * W ~= (I (+) B) alpha
        y = self._conv_forward(x, s, None) * alpha.view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    @classmethod
    def from_float(cls, m: nn.Conv2d) -> "BwnConv2d":
        _check_conv(m, cls.__name__)
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                  bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


class XnorConv2d(nn.Conv2d):
    """XNOR-Net convolution with its BinActiv: I * W ~= (sign(I) conv sign(W)) . K alpha (Eq. (11)).

    The input I is the real output of the preceding BatchNorm; this layer computes K from |I|,
    binarizes I (the BinActiv layer of Fig. 3) and convolves with sign(W).
    """

    weight_bits = 1
    act_bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = scaling_map_k(x, self.kernel_size, self.stride, self.padding)  # K [b, 1, h_out, w_out]
        alpha = bwn_alpha(self.weight).detach()                              # alpha [c_out]
        counts = self._conv_forward(sign_ste(x), weight_sign_ste(self.weight, alpha), None)
        # Eq. (11): I * W ~= (sign(I) (*) sign(W)) (.) K alpha
        y = counts * alpha.view(1, -1, 1, 1)
        y = y * k
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    @classmethod
    def from_float(cls, m: nn.Conv2d) -> "XnorConv2d":
        _check_conv(m, cls.__name__)
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                  bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


class BwnLinear(nn.Linear):
    """Binary-weight fully connected layer: x W^T ~= (x sign(W)^T) alpha (Eq. (1) with a 1x1 'filter')."""

    weight_bits = 1
    act_bits = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = bwn_alpha(self.weight).detach()
        y = F.linear(x, weight_sign_ste(self.weight, alpha)) * alpha.view(1, -1)
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_float(cls, m: nn.Linear) -> "BwnLinear":
        new = cls(m.in_features, m.out_features, bias=m.bias is not None,
                  device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


class XnorLinear(nn.Linear):
    """XNOR fully connected layer: X^T W ~= (sign(X)^T sign(W)) beta alpha (Eq. (7)-(10))."""

    weight_bits = 1
    act_bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = input_beta(x)                            # beta [b, 1]
        alpha = bwn_alpha(self.weight).detach()         # alpha [c_out]
        counts = F.linear(sign_ste(x), weight_sign_ste(self.weight, alpha))
        # Eq. (7)/(10): X^T W ~= beta alpha sign(X)^T sign(W)
        y = counts * alpha.view(1, -1)
        y = y * beta
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_float(cls, m: nn.Linear) -> "XnorLinear":
        new = cls(m.in_features, m.out_features, bias=m.bias is not None,
                  device=m.weight.device, dtype=m.weight.dtype)
        new.load_state_dict(m.state_dict())
        return new


BINARY_LAYERS = (BwnConv2d, XnorConv2d, BwnLinear, XnorLinear)


def binary_layers(model: nn.Module) -> list[nn.Module]:
    """The BWN/XNOR layers of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, BINARY_LAYERS)]


def binarize_model_(model: nn.Module, mode: str, *, keep_first_last: bool = True) -> nn.Module:
    """Replace the Conv2d/Linear layers of ``model`` by BWN or XNOR twins, in place.

    The first and last weight layers (in module order) stay full precision (Sec. 4: "we keep the
    first and last layer real-valued"). For ``mode="xnor"`` the model must already feed each
    binarized layer a BatchNorm output (BN -> BinActiv -> BinConv, Fig. 3); see models.py.

    Args:
        model: a float network.
        mode: "bwn" or "xnor".
        keep_first_last: keep the first and last weight layers real (the paper's choice).
    """
    if mode not in ("bwn", "xnor"):
        raise NnqError(f"mode must be 'bwn' or 'xnor', got {mode!r}")
    conv_cls, lin_cls = (BwnConv2d, BwnLinear) if mode == "bwn" else (XnorConv2d, XnorLinear)
    weighted = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    keep = {weighted[0][0], weighted[-1][0]} if keep_first_last and weighted else set()
    for name, m in weighted:
        if name in keep:
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, (conv_cls if isinstance(m, nn.Conv2d) else lin_cls).from_float(m))
    return model
