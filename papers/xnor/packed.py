"""Packed inference modules, model conversion and the 1-bit artifact file.

``convert_to_packed(model)`` returns a copy of a trained (simulated) BWN/XNOR model whose binary
layers hold their weights as bits and, for XNOR layers, compute with the XNOR-popcount kernel of
kernel.py. The packed XNOR layer computes exactly the numbers of the simulated one: integer
counts (same integers), then ``* alpha`` and ``* K`` in the same order and dtype.

File format (safetensors): for each binary layer ``<name>.weight.bits`` (uint8, its signs flattened
in PyTorch order, bit 1 = -1, little-endian bit order, zero-padded to a byte) and ``<name>.alpha``
(fp32 [c_out]); every other tensor of the state dict in fp32 (ints unchanged). The metadata holds
the format tag and each binary layer's kind and shape.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField, module_fields, read_safetensors, tensor_bytes
from papers.xnor import kernel
from papers.xnor.xnor import BINARY_LAYERS, binarize, bwn_alpha, input_beta, scaling_map_k

FORMAT = "nnq-xnor-packed-v1"


class _PackedBase(nn.Module):
    weight_bits = 1

    def _init_common(self, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight_shape = tuple(w_pm1.shape)
        self.register_buffer("alpha", alpha.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def signs(self) -> torch.Tensor:
        """The +-1 weights, rebuilt from the packed words."""
        raise NotImplementedError


class PackedXnorConv2d(_PackedBase):
    """Inference twin of :class:`XnorConv2d`: packed weights, XNOR-popcount convolution (Eq. (11))."""

    act_bits = 1

    def __init__(self, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None,
                 stride: tuple[int, int], padding: tuple[int, int]):
        super().__init__()
        self._init_common(w_pm1, alpha, bias)
        self.in_channels = w_pm1.shape[1]
        self.kernel_size = tuple(w_pm1.shape[2:])
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.register_buffer("w_words", kernel.pack_conv_weight(w_pm1))  # [c_out, kh*kw*cw]
        self._corr: dict[tuple[int, int], torch.Tensor] = {}

    def signs(self) -> torch.Tensor:
        return kernel.unpack_conv_weight(self.w_words, self.weight_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if any(self.padding) and (h, w) not in self._corr:
            self._corr[(h, w)] = kernel.border_correction(self.signs(), h, w, self.stride, self.padding)
        k = scaling_map_k(x, self.kernel_size, self.stride, self.padding)
        # Eq. (11): (sign(I) (*) sign(W)) (.) K alpha, same float ops and order as XnorConv2d
        return kernel.xnor_conv2d(x, self.w_words, self.in_channels, self.kernel_size, self.stride, self.padding,
                                  self.alpha, k, self.bias, corr=self._corr.get((h, w)))


class PackedXnorLinear(_PackedBase):
    """Inference twin of :class:`XnorLinear`: sign(X)^T sign(W) by XNOR-popcount, times beta alpha."""

    act_bits = 1

    def __init__(self, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self._init_common(w_pm1, alpha, bias)
        self.register_buffer("w_words", kernel.pack_bits(w_pm1))  # [c_out, ceil(c_in/64)]

    def signs(self) -> torch.Tensor:
        return kernel.unpack_bits(self.w_words, self.weight_shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = input_beta(x)
        # Eq. (7)/(10): beta alpha sign(X)^T sign(W), same float ops and order as XnorLinear
        return kernel.xnor_linear(x, self.w_words, self.weight_shape[1], self.alpha, beta, self.bias)


class PackedBwnConv2d(_PackedBase):
    """Inference twin of :class:`BwnConv2d`: 1-bit weights in memory, real input.

    # DEVIATION: BWN's saving at run time is replacing multiplications by additions (Sec. 3.1); on a
    # CPU we unpack the signs once and use the float convolution, so BWN gains memory, not speed.
    """

    act_bits = 32

    def __init__(self, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None,
                 stride: tuple[int, int], padding: tuple[int, int]):
        super().__init__()
        self._init_common(w_pm1, alpha, bias)
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.register_buffer("w_bits", _to_bytes(w_pm1))
        self._s: torch.Tensor | None = None

    def signs(self) -> torch.Tensor:
        return _from_bytes(self.w_bits, self.weight_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._s is None or self._s.device != x.device:
            self._s = self.signs().to(x.device, x.dtype)
        y = F.conv2d(x, self._s, None, self.stride, self.padding) * self.alpha.view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class PackedBwnLinear(_PackedBase):
    """Inference twin of :class:`BwnLinear` (1-bit weights, real input; see PackedBwnConv2d)."""

    act_bits = 32

    def __init__(self, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self._init_common(w_pm1, alpha, bias)
        self.register_buffer("w_bits", _to_bytes(w_pm1))
        self._s: torch.Tensor | None = None

    def signs(self) -> torch.Tensor:
        return _from_bytes(self.w_bits, self.weight_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._s is None or self._s.device != x.device:
            self._s = self.signs().to(x.device, x.dtype)
        y = F.linear(x, self._s) * self.alpha.view(1, -1)
        return y if self.bias is None else y + self.bias


PACKED_LAYERS = (PackedXnorConv2d, PackedXnorLinear, PackedBwnConv2d, PackedBwnLinear)


def _to_bytes(w_pm1: torch.Tensor) -> torch.Tensor:
    """+-1 tensor -> uint8 [ceil(numel/8)], bit 1 = -1, little-endian bit order (dense, no row padding)."""
    if not bool(((w_pm1 == 1) | (w_pm1 == -1)).all()):
        raise NnqError("packing needs a tensor of exact +-1 values; binarize it first (sign)")
    return torch.from_numpy(np.packbits((w_pm1.detach().reshape(-1) < 0).cpu().numpy(), bitorder="little"))


def _from_bytes(b: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    n = math.prod(shape)
    if b.numel() != math.ceil(n / 8):
        raise NnqError(f"packed weight has {b.numel()} bytes, shape {tuple(shape)} needs {math.ceil(n / 8)}")
    bits = np.unpackbits(b.cpu().numpy(), count=n, bitorder="little")
    return torch.from_numpy(1.0 - 2.0 * bits.astype(np.float32)).reshape(shape)


def _packed_from(kind: str, w_pm1: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None,
                 stride=(1, 1), padding=(0, 0)) -> nn.Module:
    if kind == "XnorConv2d":
        return PackedXnorConv2d(w_pm1, alpha, bias, stride, padding)
    if kind == "BwnConv2d":
        return PackedBwnConv2d(w_pm1, alpha, bias, stride, padding)
    if kind == "XnorLinear":
        return PackedXnorLinear(w_pm1, alpha, bias)
    if kind == "BwnLinear":
        return PackedBwnLinear(w_pm1, alpha, bias)
    raise NnqError(f"unknown packed layer kind {kind!r}")


def _check_convertible(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, BINARY_LAYERS):
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros"
                                             or isinstance(m.padding, str)):
                raise NnqError(f"layer {name!r} ({type(m).__name__}) has groups/dilation/padding the packed kernel "
                               "does not support (groups=1, dilation=1, numeric zero padding only)")
        elif getattr(m, "weight_bits", 32) < 32 and not isinstance(m, PACKED_LAYERS):
            raise NnqError(f"layer {name!r} ({type(m).__name__}) declares weight_bits={m.weight_bits} but has no "
                           "packed implementation; only BwnConv2d, XnorConv2d, BwnLinear, XnorLinear convert")


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The fields of the 1-bit artifact of a simulated BWN/XNOR ``model`` (the file format above), each at its
    width: a binary layer's signs at 1 bit per weight and its alpha at 32 bits per output filter; every other
    float tensor of the state dict (first/last layers, BatchNorm, biases) at 32 bits. ``Summary.model_bits`` is
    ``common.evaluate.model_bits`` of these fields."""
    fields = module_fields(model)  # binary layers declare weight_bits = 1
    for name, m in model.named_modules():
        if isinstance(m, BINARY_LAYERS):
            fields.append(StoredField.fixed(f"{name}.alpha", m.weight.shape[0], 32))
    return fields


@torch.no_grad()
def convert_to_packed(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose BWN/XNOR layers are replaced by packed twins.

    Raises:
        NnqError: if a layer declares a low bit width but has no packed implementation.
    """
    _check_convertible(model)
    out = copy.deepcopy(model).eval()
    for name, m in list(out.named_modules()):
        if not isinstance(m, BINARY_LAYERS):
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        geo = dict(stride=m.stride, padding=m.padding) if isinstance(m, nn.Conv2d) else {}
        setattr(parent, leaf, _packed_from(type(m).__name__, binarize(m.weight), bwn_alpha(m.weight), m.bias, **geo))
    return out


@torch.no_grad()
def save_packed(model: nn.Module, path: str | Path) -> Path:
    """Write the 1-bit artifact of a simulated or packed BWN/XNOR ``model`` to ``path``."""
    path = Path(path)
    if not any(isinstance(m, PACKED_LAYERS) for m in model.modules()):
        model = convert_to_packed(model)
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    packed_names = set()
    for name, m in model.named_modules():
        if isinstance(m, PACKED_LAYERS):
            packed_names.add(name)
            kind = type(m).__name__.removeprefix("Packed")
            tensors[f"{name}.weight.bits"] = _to_bytes(m.signs())
            tensors[f"{name}.alpha"] = m.alpha.float().cpu().contiguous()
            if m.bias is not None:
                tensors[f"{name}.bias"] = m.bias.float().cpu().contiguous()
            layers[name] = {"kind": kind, "shape": list(m.weight_shape),
                            "stride": list(getattr(m, "stride", (1, 1))), "padding": list(getattr(m, "padding", (0, 0)))}
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] in packed_names:
            continue
        tensors[key] = value.detach().cpu().float().contiguous() if value.is_floating_point() else value.cpu().contiguous()
    save_file(tensors, str(path), metadata={"format": FORMAT, "layers": json.dumps(layers)})
    return path


def binary_layer_bytes(packed_path: str | Path, fp32_path: str | Path) -> list[dict]:
    """Per binarized layer of a packed artifact: its bytes on disk next to the fp32 file's.

    Every byte is read from the two files' headers (nothing computed from a formula): the fp32
    weight, the sign bits, alpha (one fp32 per output filter, counted) and the bias (fp32 in both
    files, listed apart). ``ratio`` = fp32 weight / (sign bits + alpha); ``bound`` = 32 n / (n + 32) for
    filters of n weights, the most any 1-bit format with a 32-bit alpha per filter can reach.
    """
    with safe_open(str(packed_path), framework="pt") as f:
        layers = json.loads((f.metadata() or {})["layers"])
    packed, fp32 = tensor_bytes(packed_path), tensor_bytes(fp32_path)
    rows = []
    for name, spec in layers.items():
        shape = spec["shape"]
        n = math.prod(shape[1:])  # weights per output filter
        sign, alpha = packed[f"{name}.weight.bits"], packed[f"{name}.alpha"]
        rows.append({"layer": name, "kind": spec["kind"], "shape": shape, "filter_weights": n,
                     "fp32_weight_bytes": fp32[f"{name}.weight"], "sign_bytes": sign, "alpha_bytes": alpha,
                     "bias_bytes": packed.get(f"{name}.bias", 0),
                     "ratio": fp32[f"{name}.weight"] / (sign + alpha), "bound": 32 * n / (n + 32)})
    return rows


@torch.no_grad()
def load_packed(path: str | Path, model: nn.Module) -> nn.Module:
    """Build the packed model from ``path`` into a copy of ``model`` (the simulated architecture).

    Raises:
        NnqError: unreadable file, wrong format, or a file that does not match ``model``.
    """
    path = Path(path)
    meta, tensors = read_safetensors(path, FORMAT, "packed XNOR file")
    out = copy.deepcopy(model).eval()
    layers = json.loads(meta["layers"])
    for name, spec in layers.items():
        try:
            parent_name, _, leaf = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            getattr(parent, leaf)
        except AttributeError:
            raise NnqError(f"{path} has layer {name!r} that this model does not have") from None
        w = _from_bytes(tensors.pop(f"{name}.weight.bits"), tuple(spec["shape"]))
        geo = dict(stride=tuple(spec["stride"]), padding=tuple(spec["padding"])) if "Conv" in spec["kind"] else {}
        setattr(parent, leaf, _packed_from(spec["kind"], w, tensors.pop(f"{name}.alpha"),
                                           tensors.pop(f"{name}.bias", None), **geo))
    own = {k: v for k, v in out.state_dict().items() if k.rpartition(".")[0] not in layers}
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise NnqError(f"{path} does not match this model: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in own.items():
        v.copy_(tensors[k])
    return out
