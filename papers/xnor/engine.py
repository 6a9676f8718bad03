"""A whole-network binary inference engine: activations stay packed between binary layers.

``to_engine(model)`` compiles a trained (simulated) binary network into a program of a few C operations
(engine_kernel.c) and PyTorch calls for the float parts (first layer, shortcuts' 1x1 convs, classifier),
and returns a callable whose logits are bit-identical to ``model(x)`` in eval mode. The per-layer path
(packed.py) stays the readable reference; ENGINE.md explains the design, the threshold derivation and the
measured speed.

Two kinds of nets, two ways between binary layers:

* **Sign-only nets (BNN: BatchNorm, then sign).** For a binary layer with integer output ``c`` followed by
  BatchNorm and sign, sign(BN(c)) is a monotone function of the integer ``c`` per channel, so it is one
  comparison ``c >= T`` (or ``c <= T`` for a negative BN scale). ``T`` is found by evaluating the model's own
  BatchNorm module on every possible count, so the comparison equals BatchNorm + sign bit for bit. The layer
  writes packed bits; a max-pool between the layer and its BatchNorm runs on the bits (OR or AND of the
  window, by the channel's direction).
* **XNOR nets (Eq. (11): (sign(I) conv sign(W)) * alpha * K).** K depends on the float magnitudes of every
  input position, so no integer threshold exists: the layer keeps the exact float epilogue of the simulated
  layer and a second C pass (``eng_pack``) applies the next max-pool / BatchNorm / ReLU, writes the sign bits
  and computes the next K (or beta) from the same values in PyTorch's order of float additions.

Supported: the XNOR nets of models.py (``XnorBnnConvNet``, ``SmallConvNet`` in xnor mode, ``XnorLeNet5``,
``XnorResNetCifar``, ``XnorResNet18``, and a plain ``nn.Sequential`` of the same layers) and sign-only nets built as
``common.models.MLP`` / ``BnnConvNet`` / ``nn.Sequential`` with a
sign activation (a parameter-free module with ``act_bits = 1`` computing sign(x), sign(0) = +1) and
binary-weight layers (``nn.Linear`` / ``nn.Conv2d`` subclasses with ``weight_bits = 1`` computing
``F.linear(x, sign(W), bias)``), e.g. the BNN MLP; both are checked on probe inputs before they are used.
Anything else is refused with a one-line NnqError.

Exactness holds where PyTorch runs its reductions on one thread (inputs under 32768 values per reduction, or
``torch.set_num_threads(1)``): with more threads PyTorch may split a channel-mean differently, which changes
the simulated model's own K in the last bit.
"""

from __future__ import annotations

import copy
import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cbuild import build_library
from common.errors import NnqError
from common.models import MLP, BnnConvNet
from papers.xnor import kernel
from papers.xnor.models import (
    SmallConvNet,
    XnorBasicBlock,
    XnorBasicBlockImageNet,
    XnorBnnConvNet,
    XnorLeNet5,
    XnorResNet18,
    XnorResNetCifar,
)
from papers.xnor.xnor import (
    BwnConv2d,
    BwnLinear,
    XnorConv2d,
    XnorLinear,
    binarize,
    bwn_alpha,
)

_DIR = Path(__file__).resolve().parent
_SRCS = (_DIR / "engine_kernel.c", _DIR / "xnor_kernel.c")
_LIBS: dict[str, ctypes.CDLL] = {}
_VEC: dict[str, int] = {}
_THREADS: list[int] = []  # the last set_num_threads, applied to libraries loaded later
_p, _i64 = ctypes.c_void_p, ctypes.c_int64


class PackArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("B", _i64), ("C", _i64), ("H", _i64), ("W", _i64), ("pool_k", _i64), ("pool_s", _i64),
                ("a1", _p), ("b1", _p), ("feat1", _i64), ("relu", _i64), ("a2", _p), ("b2", _p), ("fma", _i64),
                ("z", _p), ("bits", _p), ("A", _p), ("K", _p), ("kh", _i64), ("kw", _i64), ("sh", _i64),
                ("sw", _i64), ("ph", _i64), ("pw", _i64), ("KHo", _i64), ("KWo", _i64), ("beta", _p), ("vec", _i64)]


class ConvArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("B", _i64), ("H", _i64), ("W", _i64), ("C", _i64), ("w", _p), ("M", _i64),
                ("kh", _i64), ("kw", _i64), ("sh", _i64), ("sw", _i64), ("ph", _i64), ("pw", _i64), ("Ho", _i64),
                ("Wo", _i64), ("kbits", _i64), ("corr", _p), ("mode", _i64), ("alpha", _p), ("K", _p),
                ("bias", _p), ("res", _p), ("res_C", _i64), ("res_H", _i64), ("res_W", _i64), ("res_s", _i64),
                ("res_coff", _i64), ("out", _p), ("T", _p), ("inc", _p), ("out_bits", _p)]


class PoolArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("B", _i64), ("H", _i64), ("W", _i64), ("Cw", _i64), ("k", _i64), ("s", _i64),
                ("Ho", _i64), ("Wo", _i64), ("inc", _p), ("out", _p)]


_KIND = {PackArgs: 0, ConvArgs: 1, PoolArgs: 2}


def _build(isa: str) -> ctypes.CDLL:
    if isa not in kernel._ISA_FLAGS:
        raise NnqError(f"isa={isa!r} is not one of {sorted(kernel._ISA_FLAGS)}")
    out = build_library(_SRCS[0], cache="xnor", stem=f"engine_kernel_{isa}", depends=_SRCS[1:],
                        flags=kernel._BASE_FLAGS + kernel._ISA_FLAGS[isa] + ["-I", str(_DIR)], libs=["-lm"])
    lib = ctypes.CDLL(str(out))
    for name in ("eng_pack", "eng_bconv", "eng_bpool"):
        getattr(lib, name).argtypes = [_p]
    lib.eng_run.argtypes = [_i64, _p, _p]
    lib.eng_channel_mean_abs.argtypes = [_p, _i64, _i64, _i64, _i64, _p]
    lib.xnor_isa.restype = ctypes.c_char_p
    return lib


def library(isa: str = "native") -> ctypes.CDLL:
    """The compiled engine for ``isa`` ("native", "avx2" = x86-64-v3, "scalar" = x86-64-v2)."""
    if isa not in _LIBS:
        _LIBS[isa] = _build(isa)
        if _THREADS:
            _LIBS[isa].xnor_set_num_threads(_THREADS[-1])
    return _LIBS[isa]


def set_num_threads(n: int) -> None:
    """Threads of the engine's OpenMP loops and of torch (the float layers); both are set."""
    torch.set_num_threads(n)
    _THREADS.append(int(n))
    for lib in _LIBS.values():
        lib.xnor_set_num_threads(int(n))
    kernel.set_num_threads(n)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


# ---------------------------------------------------------------------------------------------
# PyTorch's float arithmetic, probed once
# ---------------------------------------------------------------------------------------------
def _torch_vec(lib: ctypes.CDLL, isa: str) -> int:
    """The float vector width with which this torch build sums ``x.abs().mean(dim=1)`` (8 on AVX2, 16 on AVX-512)."""
    if isa in _VEC:
        return _VEC[isa]
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 37, 9, 11), (2, 5, 2, 2), (1, 300, 7, 7), (2, 64, 5, 13), (1, 1000, 1, 1), (1, 16, 32, 32),
              (1, 129, 6, 6)]
    for vec in (8, 16, 4):
        ok = True
        for shape in shapes:
            z = torch.randn(*shape, generator=g) * 3
            ref = z.abs().mean(dim=1)
            ours = torch.empty_like(ref)
            b, c, h, w = shape
            lib.eng_channel_mean_abs(z.data_ptr(), b, c, h * w, vec, ours.data_ptr())
            if not torch.equal(ours, ref):
                ok = False
                break
        if ok:
            _VEC[isa] = vec
            return vec
    raise NnqError("this torch build sums channel means in an order the engine does not reproduce; "
                   "use the per-layer packed path (papers.xnor.packed.convert_to_packed) instead")


@dataclass
class _Affine:
    """A BatchNorm in eval mode as z = a x + b, rounded as this torch build rounds it."""

    a: torch.Tensor
    b: torch.Tensor
    fma: bool


@torch.no_grad()
def _bn_affine(bn: nn.Module, lib: ctypes.CDLL) -> _Affine:
    if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or bn.running_mean is None:
        raise NnqError(f"{type(bn).__name__} without running statistics cannot be folded; train it with "
                       "track_running_stats=True")
    n = bn.num_features
    w = bn.weight.detach().float() if bn.weight is not None else torch.ones(n)
    var = bn.running_var.float()
    eps = np.float32(bn.eps)
    invstd = np.float32(1.0) / np.sqrt(var.numpy().astype(np.float32) + eps)     # ATen: 1 / sqrt(var + eps)
    a = torch.from_numpy((invstd * w.numpy()).astype(np.float32))                 # alpha_c = invstd * gamma
    # b_c = BN(0) exactly, whichever rounding the bias term had (fma(-mean, a, beta) or beta - mean a)
    probe_shape = (1, n) if isinstance(bn, nn.BatchNorm1d) else (1, n, 1, 1)
    b = bn(torch.zeros(probe_shape)).reshape(n).contiguous()
    x = (torch.randn(2, n, 3, 5, generator=torch.Generator().manual_seed(1)) * 4)
    ref = (bn(x.permute(0, 2, 3, 1).reshape(-1, n)).reshape(2, 3, 5, n).permute(0, 3, 1, 2)
           if isinstance(bn, nn.BatchNorm1d) else bn(x))
    for fused in (True, False):
        z = torch.empty_like(x)
        bits = torch.empty(2, 3, 5, (n + 63) // 64, dtype=torch.int64)
        args = PackArgs(x=x.data_ptr(), B=2, C=n, H=3, W=5, a1=a.data_ptr(), b1=b.data_ptr(), fma=int(fused),
                        z=z.data_ptr(), bits=bits.data_ptr(), vec=8)
        lib.eng_pack(ctypes.byref(args))
        if torch.equal(z, ref.contiguous()):
            return _Affine(a, b, fused)
    raise NnqError("this torch build rounds BatchNorm in a way the engine does not reproduce (neither a fused nor "
                   "a plain multiply-add); use papers.xnor.packed.convert_to_packed instead")


# ---------------------------------------------------------------------------------------------
# The program: slots (tensors) and steps
# ---------------------------------------------------------------------------------------------
@dataclass
class _Chain:
    """The ops between two binary layers, in order: [max-pool] [flatten] [affine [ReLU affine]]."""

    pool: tuple[int, int] | None = None
    flatten: bool = False
    bn1: nn.Module | None = None
    relu: bool = False
    bn2: nn.Module | None = None


@dataclass
class _Torch:
    fn: Callable[[torch.Tensor], torch.Tensor]
    src: str
    dst: str


@dataclass
class _Pack:
    src: str
    dst: str
    chain: _Chain
    consumer: nn.Module | None  # the XNOR layer whose K / beta is computed; None for sign-only nets


@dataclass
class _BConv:
    src: str
    dst: str
    w_pm1: torch.Tensor                       # +-1 weights [M, C, kh, kw] or [M, F]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    alpha: torch.Tensor | None = None         # float epilogue: count * alpha * K (+ bias) (+ residual)
    k_src: str | None = None
    bias: torch.Tensor | None = None
    res: tuple[str, int, int] | None = None   # (slot, channel offset, stride)
    threshold: tuple[torch.Tensor, torch.Tensor] | None = None  # (T [M] int32, inc [M] uint8): packed output
    pool: tuple[int, int] | None = None       # max-pool on the packed output (threshold mode)
    words: torch.Tensor | None = None         # packed filters of a convolution (cached)


@dataclass
class _Program:
    steps: list = field(default_factory=list)
    n: int = 0

    def slot(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


# ---------------------------------------------------------------------------------------------
# Recognising the model
# ---------------------------------------------------------------------------------------------
def _is_sign_act(m: nn.Module) -> bool:
    return getattr(m, "act_bits", None) == 1 and not isinstance(m, (nn.Linear, nn.Conv2d)) \
        and not any(True for _ in m.parameters())


def _is_bnn_weight(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv2d)) and getattr(m, "weight_bits", 32) == 1 \
        and not isinstance(m, (XnorConv2d, XnorLinear, BwnConv2d, BwnLinear))


@torch.no_grad()
def _check_sign_act(m: nn.Module) -> None:
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0])
    if not torch.equal(m(x), torch.where(x >= 0, 1.0, -1.0)):
        raise NnqError(f"{type(m).__name__} declares act_bits=1 but does not compute sign(x) with sign(0) = +1")


@torch.no_grad()
def _check_bnn_weight(m: nn.Module) -> torch.Tensor:
    s = binarize(m.weight.detach())
    g = torch.Generator().manual_seed(2)
    if isinstance(m, nn.Linear):
        x = torch.randn(2, m.in_features, generator=g)
        ok = torch.equal(m(x), F.linear(x, s, m.bias))
    else:
        _check_conv_geometry(m)
        x = torch.randn(1, m.in_channels, 6, 6, generator=g)
        ok = torch.equal(m(x), F.conv2d(x, s, m.bias, m.stride, m.padding))
    if not ok:
        raise NnqError(f"{type(m).__name__} declares weight_bits=1 but does not compute the layer with sign(W)")
    return s


def _check_conv_geometry(m: nn.Conv2d) -> None:
    if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise NnqError(f"{type(m).__name__}: the engine runs groups=1, dilation=1, numeric zero padding only")


def _pool_of(m: nn.MaxPool2d) -> tuple[int, int] | None:
    k, s, p, d = (m.kernel_size, m.stride, m.padding, m.dilation)
    k, s = (k if isinstance(k, int) else k[0]), (s if isinstance(s, int) else s[0])
    if m.kernel_size not in (k, (k, k)) or m.stride not in (s, (s, s)) or p not in (0, (0, 0)) \
            or d not in (1, (1, 1)) or m.ceil_mode:
        return None
    return k, s


def _fit_chain(mods: list[nn.Module]) -> _Chain | None:
    """The ops as a chain [MaxPool2d] [Flatten] [BN [ReLU BN]], or None."""
    ch, i = _Chain(), 0
    if i < len(mods) and isinstance(mods[i], nn.MaxPool2d):
        ch.pool = _pool_of(mods[i])
        if ch.pool is None:
            return None
        i += 1
    if i < len(mods) and isinstance(mods[i], nn.Flatten):
        if (mods[i].start_dim, mods[i].end_dim) != (1, -1):
            return None
        ch.flatten, i = True, i + 1
    if i < len(mods) and isinstance(mods[i], (nn.BatchNorm1d, nn.BatchNorm2d)):
        ch.bn1, i = mods[i], i + 1
        if i + 1 < len(mods) and isinstance(mods[i], nn.ReLU) \
                and isinstance(mods[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)):
            ch.relu, ch.bn2, i = True, mods[i + 1], i + 2
    return ch if i == len(mods) else None


def _split_chain(mods: list[nn.Module]) -> tuple[list[nn.Module], _Chain]:
    """The longest suffix of ``mods`` that fits a chain, and what comes before it."""
    for k in range(len(mods), -1, -1):
        ch = _fit_chain(mods[len(mods) - k:])
        if ch is not None:
            return mods[:len(mods) - k], ch
    return mods, _Chain()


def _seq_modules(model: nn.Module) -> list[nn.Module]:
    t = type(model)
    if t in (XnorBnnConvNet, SmallConvNet, BnnConvNet):
        mods = list(model.features) + list(model.classifier)
    elif t is XnorLeNet5:
        mods = list(model.convnet) + [nn.Flatten()] + list(model.fc)
    elif t in (MLP, nn.Sequential):
        mods = list(model)
    else:
        raise NnqError(f"the binary engine does not know {t.__name__}; it runs XnorBnnConvNet, SmallConvNet (xnor), "
                       "XnorLeNet5, XnorResNetCifar, XnorResNet18 and sign-activation MLP / BnnConvNet")
    return [m for m in mods if not isinstance(m, (nn.Dropout, nn.Identity))]


def _as_torch(mods: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    seq = nn.Sequential(*mods)
    return lambda x: seq(x)


def _float_bnn_layer(m: nn.Module, s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A binary-weight layer on a real input (a BNN's first layer) as a torch call with its signs precomputed."""
    if isinstance(m, nn.Linear):
        return lambda x: F.linear(x, s, m.bias)
    return lambda x: F.conv2d(x, s, m.bias, m.stride, m.padding)


@torch.no_grad()
def sign_thresholds(bn: nn.Module | None, kbits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold BatchNorm + sign after an integer count into one comparison per channel.

    sign(BN(c)) = sign(gamma (c - mu) / sigma + beta) is +1 iff c >= mu - beta sigma / gamma for gamma > 0 and iff
    c <= mu - beta sigma / gamma for gamma < 0 (the comparison flips), constant for gamma = 0. In float32 the
    boundary moves by rounding, so T is read off the module itself: BN is evaluated on every count
    c in [-kbits, kbits] and T is the first (gamma > 0) or last (gamma < 0) count whose output is >= 0.

    Args:
        bn: the BatchNorm1d/2d in eval mode (None: sign of the count itself); kbits: the layer's n.

    Returns:
        T int32 [M] and inc uint8 [M]: bit +1 iff (c >= T if inc else c <= T).
    """
    c = torch.arange(-kbits, kbits + 1, dtype=torch.float32)                     # every possible count
    if bn is None:
        plus = (c >= 0).view(-1, 1)
    else:
        m = bn.num_features
        v = c.view(-1, 1).expand(-1, m)
        if isinstance(bn, nn.BatchNorm1d):
            out = bn(v.contiguous())
        else:
            out = bn(v.t().reshape(1, m, -1, 1)).reshape(m, -1).t()
        plus = out >= 0                                                          # sign(0) = +1 (Eq. (1))
    n_plus = plus.sum(0)
    dec = plus[0] & ~plus[-1]                                                    # gamma < 0: +1 iff c <= T
    idx = torch.arange(len(c)).view(-1, 1)
    expected = torch.where(dec, idx < n_plus, idx >= len(c) - n_plus)           # the +1s at one end, contiguous
    if not torch.equal(plus, expected):
        raise NnqError("BatchNorm + sign is not monotone in the count for some channel; it cannot be folded")
    T = torch.where(dec, n_plus - 1 - kbits, kbits + 1 - n_plus)                 # last +1 count / first +1 count
    return T.to(torch.int32).contiguous(), (~dec).to(torch.uint8).contiguous()


# ---------------------------------------------------------------------------------------------
# Lowering
# ---------------------------------------------------------------------------------------------
def _xnor_layer_step(m: nn.Module, src: str, dst: str, k_src: str) -> _BConv:
    if isinstance(m, XnorConv2d):
        _check_conv_geometry(m)
        return _BConv(src, dst, binarize(m.weight.detach()), tuple(m.stride), tuple(m.padding),
                      alpha=bwn_alpha(m.weight).detach(), k_src=k_src, bias=m.bias)
    return _BConv(src, dst, binarize(m.weight.detach()), alpha=bwn_alpha(m.weight).detach(), k_src=k_src,
                  bias=m.bias)


def _lower_xnor_seq(mods: list[nn.Module]) -> _Program:
    prog, cur, i0 = _Program(), "x", 0
    for i, m in enumerate(mods):
        if isinstance(m, (BwnConv2d, BwnLinear)):
            raise NnqError("BWN layers keep real inputs; the engine runs nets with binary activations (XNOR, BNN)")
        if not isinstance(m, (XnorConv2d, XnorLinear)):
            continue
        pre, chain = _split_chain(mods[i0:i])
        if pre:
            nxt = prog.slot("f")
            prog.steps.append(_Torch(_as_torch(pre), cur, nxt))
            cur = nxt
        bits, y = prog.slot("b"), prog.slot("f")
        prog.steps.append(_Pack(cur, bits, chain, m))
        prog.steps.append(_xnor_layer_step(m, bits, y, bits + ".k"))
        cur, i0 = y, i + 1
    if i0 == 0:
        raise NnqError("the model has no XNOR layer; nothing for the binary engine to run")
    if mods[i0:]:
        prog.steps.append(_Torch(_as_torch(mods[i0:]), cur, "out"))
    return prog


def _lower_bnn_seq(mods: list[nn.Module]) -> _Program:
    """Sign-only nets: [float prefix] W0 chain sign [Flatten] W1 chain sign ... Wn tail."""
    prog, cur = _Program(), "x"
    weights = [i for i, m in enumerate(mods) if _is_bnn_weight(m)]
    signs = [i for i, m in enumerate(mods) if _is_sign_act(m)]
    for i in signs:
        _check_sign_act(mods[i])
    if not weights or not signs:
        raise NnqError("the model has no binary-weight layer after a sign activation; nothing for the engine to run")
    i0 = 0
    cur_bits: str | None = None
    for wi, w_idx in enumerate(weights):
        m = mods[w_idx]
        s = _check_bnn_weight(m)
        nxt_sign = next((j for j in signs if j > w_idx), None)
        nxt_w = weights[wi + 1] if wi + 1 < len(weights) else len(mods)
        if cur_bits is None:  # real input: torch computes this layer
            prog.steps.append(_Torch(_as_torch(mods[i0:w_idx]) if w_idx > i0 else (lambda x: x), cur, "f_in"))
            f = prog.slot("f")
            prog.steps.append(_Torch(_float_bnn_layer(m, s), "f_in", f))
            if nxt_sign is None or nxt_sign > nxt_w:
                raise NnqError("a sign-only net needs a sign activation after its first binary-weight layer")
            chain = _fit_chain(mods[w_idx + 1:nxt_sign])
            if chain is None or chain.flatten or chain.relu:
                raise NnqError("between a layer and its sign the engine folds [MaxPool2d] [BatchNorm] only")
            bits = prog.slot("b")
            prog.steps.append(_Pack(f, bits, chain, None))
            cur_bits = bits
        else:
            if m.bias is not None:
                raise NnqError(f"binary layer {type(m).__name__} with a bias on binary inputs is not supported; "
                               "BNN layers followed by BatchNorm have none")
            geo = {"stride": tuple(m.stride), "padding": tuple(m.padding)} if isinstance(m, nn.Conv2d) else {}
            if nxt_sign is not None and nxt_sign < nxt_w:
                chain = _fit_chain(mods[w_idx + 1:nxt_sign])
                if chain is None or chain.flatten or chain.relu:
                    raise NnqError("between a layer and its sign the engine folds [MaxPool2d] [BatchNorm] only")
                kbits = s[0].numel()
                bits = prog.slot("b")
                prog.steps.append(_BConv(cur_bits, bits, s, threshold=sign_thresholds(chain.bn1, kbits),
                                         pool=chain.pool, **geo))
                cur_bits = bits
            else:  # the last binary layer: integer counts, then the float tail
                f = prog.slot("f")
                prog.steps.append(_BConv(cur_bits, f, s, **geo))
                if mods[w_idx + 1:]:
                    if any(_is_bnn_weight(t) or _is_sign_act(t) for t in mods[w_idx + 1:]):
                        raise NnqError("unsupported layer order after the last binary layer")
                    prog.steps.append(_Torch(_as_torch(mods[w_idx + 1:]), f, "out"))
                return prog
        # between the sign and the next weight layer only Flatten may stand
        if nxt_sign is not None and any(not isinstance(t, nn.Flatten) for t in mods[nxt_sign + 1:nxt_w]):
            raise NnqError("between a sign activation and the next binary layer the engine allows Flatten only")
        i0 = nxt_w
    raise NnqError("a sign-only net must end with a binary layer followed by float layers")


def _lower_resnet(model: nn.Module) -> _Program:
    prog = _Program()
    if isinstance(model, XnorResNetCifar):
        stem = lambda x: F.relu(model.bn1(model.conv1(x)))
        tail = lambda o: model.linear(F.relu(model.bn_out(o)).mean(dim=(2, 3)))
        layers = [model.layer1, model.layer2, model.layer3]
    else:
        stem = lambda x: model.maxpool(F.relu(model.bn1(model.conv1(x))))
        tail = lambda o: model.fc(F.relu(model.bn_out(o)).mean(dim=(2, 3)))
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
    prog.steps.append(_Torch(stem, "x", "f0"))
    cur = "f0"
    for layer in layers:
        for blk in layer:
            if type(blk) not in (XnorBasicBlock, XnorBasicBlockImageNet):
                raise NnqError(f"unknown residual block {type(blk).__name__}")
            b1, y1, b2, out = prog.slot("b"), prog.slot("f"), prog.slot("b"), prog.slot("f")
            prog.steps.append(_Pack(cur, b1, _Chain(bn1=blk.bn1), blk.conv1))
            prog.steps.append(_xnor_layer_step(blk.conv1, b1, y1, b1 + ".k"))
            prog.steps.append(_Pack(y1, b2, _Chain(bn1=blk.bn2), blk.conv2))
            if isinstance(blk, XnorBasicBlock):
                res = (cur, blk.planes // 4, 2) if blk.downsample else (cur, 0, 1)
            elif blk.downsample is not None:
                ds = prog.slot("f")
                prog.steps.append(_Torch(blk.downsample, cur, ds))
                res = (ds, 0, 1)
            else:
                res = (cur, 0, 1)
            step = _xnor_layer_step(blk.conv2, b2, out, b2 + ".k")
            step.res = res
            prog.steps.append(step)
            cur = out
    prog.steps.append(_Torch(tail, cur, "out"))
    return prog


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class BinaryEngine:
    """A compiled binary network; call it like the model (eval mode). Build it with :func:`to_engine`."""

    def __init__(self, model: nn.Module, prog: _Program, isa: str):
        self.model, self.prog, self.isa = model, prog, isa
        self.lib = library(isa)
        self.vec = _torch_vec(self.lib, isa)
        self._affine: dict[int, _Affine] = {}
        for st in prog.steps:
            if isinstance(st, _Pack):
                for bn in (st.chain.bn1, st.chain.bn2):
                    if bn is not None and id(bn) not in self._affine:
                        self._affine[id(bn)] = _bn_affine(bn, self.lib)
        self._plans: dict[tuple, list] = {}

    def backend(self) -> str:
        return "c/" + self.lib.xnor_isa().decode()

    # -- instantiation for one input shape --------------------------------------------------------
    @torch.no_grad()
    def _instantiate(self, shape: tuple[int, ...]) -> list:
        slots: dict[str, torch.Tensor] = {"x": torch.zeros(shape)}
        meta: dict[str, tuple] = {}          # bits slot -> (B, H, W, C)
        keep: list = []                      # tensors the C structs point to
        plan: list = []                      # ("torch", step) | ("c", kinds, args, bindings)
        c_group: list = []

        def flush() -> None:
            if c_group:
                kinds = (ctypes.c_int64 * len(c_group))(*[_KIND[type(a)] for a, _ in c_group])
                ptrs = (ctypes.c_void_p * len(c_group))(*[ctypes.addressof(a) for a, _ in c_group])
                plan.append(("c", kinds, ptrs, [(a, f, s) for a, b in c_group for f, s in b]))
                keep.extend([kinds, ptrs] + [a for a, _ in c_group])
                c_group.clear()

        torch_made = {"x"}
        for st in self.prog.steps:
            if isinstance(st, _Torch):
                flush()
                src = slots[st.src]
                slots[st.dst] = st.fn(src).contiguous()
                torch_made.add(st.dst)
                plan.append(("torch", st))
                continue
            if isinstance(st, _Pack):
                args, binds = self._pack_args(st, slots, meta, keep, torch_made)
            else:
                args, binds = self._conv_args(st, slots, meta, keep, torch_made, c_group)
            if args is not None:
                c_group.append((args, binds))
        flush()
        return plan, slots, keep

    def _pack_args(self, st: _Pack, slots, meta, keep, torch_made):
        x = slots[st.src]
        if x.dim() == 2:
            x = x.view(x.shape[0], x.shape[1], 1, 1)
        if x.dim() != 4 or x.dtype != torch.float32:
            raise NnqError(f"engine: expected a float32 [B, C, H, W] activation, got {x.dtype} {tuple(x.shape)}")
        b, c, h, w = x.shape
        ch = st.chain
        ho, wo = ((h - ch.pool[0]) // ch.pool[1] + 1, (w - ch.pool[0]) // ch.pool[1] + 1) if ch.pool else (h, w)
        cw = (c + 63) // 64
        bits = torch.zeros(b, ho, wo, cw, dtype=torch.int64)
        z = torch.empty(b, c, ho, wo)
        A = torch.empty(b, ho * wo)
        args = PackArgs(x=x.data_ptr(), B=b, C=c, H=h, W=w, z=z.data_ptr(), bits=bits.data_ptr(), A=A.data_ptr(),
                        vec=self.vec)
        if ch.pool:
            args.pool_k, args.pool_s = ch.pool
        fmas = set()
        for name, bn in (("1", ch.bn1), ("2", ch.bn2)):
            if bn is None:
                continue
            aff = self._affine[id(bn)]
            n_expected = c * ho * wo if (name == "1" and ch.flatten) else c
            if aff.a.numel() == c * ho * wo and ch.flatten and name == "1":
                args.feat1 = 1
            elif aff.a.numel() != c:
                raise NnqError(f"BatchNorm with {aff.a.numel()} features on an activation of {n_expected}")
            setattr(args, "a" + name, aff.a.data_ptr())
            setattr(args, "b" + name, aff.b.data_ptr())
            fmas.add(aff.fma)
        if len(fmas) > 1:
            raise NnqError("two BatchNorms of one chain round differently; cannot fuse them")
        args.fma = int(fmas.pop()) if fmas else 1
        args.relu = int(ch.relu)
        out = [bits, z, A]
        m = st.consumer
        if isinstance(m, XnorConv2d):
            (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
            kho, kwo = (ho + 2 * ph - kh) // sh + 1, (wo + 2 * pw - kw) // sw + 1
            K = torch.empty(b, kho, kwo)
            args.K, args.kh, args.kw, args.sh, args.sw, args.ph, args.pw, args.KHo, args.KWo = \
                K.data_ptr(), kh, kw, sh, sw, ph, pw, kho, kwo
            slots[st.dst + ".k"] = K
            out.append(K)
        elif isinstance(m, XnorLinear):
            beta = torch.empty(b)
            args.beta = beta.data_ptr()
            slots[st.dst + ".k"] = beta
            out.append(beta)
        slots[st.dst] = bits
        meta[st.dst] = (b, ho, wo, c, ch.flatten)
        keep.extend(out)
        binds = [("x", st.src)] if st.src in torch_made else []
        return args, binds

    def _conv_args(self, st: _BConv, slots, meta, keep, torch_made, c_group):
        b, h, w, c, _ = meta[st.src]
        x = slots[st.src]
        wp = st.w_pm1
        m_out = wp.shape[0]
        if wp.dim() == 4:  # convolution on [B, H, W, Cw]
            if wp.shape[1] != c:
                raise NnqError(f"engine: conv expects {wp.shape[1]} input channels, got {c}")
            kh, kw = wp.shape[2:]
            (sh, sw), (ph, pw) = st.stride, st.padding
            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if st.words is None:
                st.words = kernel.pack_conv_weight(wp).contiguous()
            words = st.words
            corr = kernel.border_correction(wp, h, w, st.stride, st.padding).reshape(m_out, -1).contiguous() \
                if (ph or pw) else None
            kbits, c_eff, hh, ww = kh * kw * c, c, h, w
        else:  # fully connected on the flattened [B, H*W*Cw] words: filters reordered to (pixel, channel)
            if wp.shape[1] != c * h * w:
                raise NnqError(f"engine: linear layer expects {wp.shape[1]} inputs, got {c * h * w}")
            per_px = wp.reshape(m_out, c, h * w).permute(0, 2, 1).contiguous()   # [M, HW, C]
            words = kernel.pack_bits(per_px).reshape(m_out, -1).contiguous()     # [M, HW * Cw]
            kh = kw = sh = sw = 1
            ph = pw = 0
            ho = wo = 1
            corr = None
            kbits, c_eff, hh, ww = c * h * w, words.shape[1] * 64, 1, 1
        args = ConvArgs(x=x.data_ptr(), B=b, H=hh, W=ww, C=c_eff, w=words.data_ptr(), M=m_out, kh=kh, kw=kw, sh=sh,
                        sw=sw, ph=ph, pw=pw, Ho=ho, Wo=wo, kbits=kbits, corr=_ptr(corr))
        keep.extend([words, corr])
        binds = []
        if st.threshold is not None:
            T, inc = st.threshold
            mw = (m_out + 63) // 64
            out_bits = torch.zeros(b, ho, wo, mw, dtype=torch.int64)
            args.mode, args.T, args.inc, args.out_bits = 1, T.data_ptr(), inc.data_ptr(), out_bits.data_ptr()
            keep.extend([T, inc, out_bits])
            if st.pool:
                k, s = st.pool
                pho, pwo = (ho - k) // s + 1, (wo - k) // s + 1
                pooled = torch.zeros(b, pho, pwo, mw, dtype=torch.int64)
                inc_bits = kernel.pack_bits(torch.where(inc.bool(), -1.0, 1.0)).contiguous()  # bit 1 = increasing
                pargs = PoolArgs(x=out_bits.data_ptr(), B=b, H=ho, W=wo, Cw=mw, k=k, s=s, Ho=pho, Wo=pwo,
                                 inc=inc_bits.data_ptr(), out=pooled.data_ptr())
                keep.extend([pooled, inc_bits])
                c_group.append((args, []))
                slots[st.dst], meta[st.dst] = pooled, (b, pho, pwo, m_out, False)
                return pargs, []
            slots[st.dst], meta[st.dst] = out_bits, (b, ho, wo, m_out, False)
            return args, binds
        out = torch.empty(b, m_out, ho, wo) if wp.dim() == 4 else torch.empty(b, m_out)
        args.out = out.data_ptr()
        if st.alpha is not None:
            alpha = st.alpha.float().contiguous()
            args.alpha = alpha.data_ptr()
            keep.append(alpha)
        if st.k_src is not None:
            args.K = slots[st.k_src].data_ptr()
        if st.bias is not None:
            bias = st.bias.detach().float().contiguous()
            args.bias = bias.data_ptr()
            keep.append(bias)
        if st.res is not None:
            rs, coff, rstride = st.res
            r = slots[rs]
            args.res, args.res_C, args.res_H, args.res_W = r.data_ptr(), r.shape[1], r.shape[2], r.shape[3]
            args.res_s, args.res_coff = rstride, coff
            if rs in torch_made:
                binds.append(("res", rs))
        slots[st.dst] = out
        keep.append(out)
        return args, binds

    # -- running ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise NnqError(f"the binary engine runs float32 CPU inputs, got {x.dtype} on {x.device}")
        key = tuple(x.shape)
        if key not in self._plans:
            self._plans[key] = self._instantiate(key)
        plan, slots, _ = self._plans[key]
        live = {"x": x.contiguous()}
        for item in plan:
            if item[0] == "torch":
                st = item[1]
                src = live[st.src] if st.src in live else slots[st.src]
                live[st.dst] = st.fn(src).contiguous()
            else:
                _, kinds, ptrs, binds = item
                for args, fld, slot in binds:
                    setattr(args, fld, live[slot].data_ptr())
                self.lib.eng_run(len(kinds), kinds, ptrs)
        out = live.get("out")
        return out if out is not None else slots[self.prog.steps[-1].dst].clone()


def to_engine(model: nn.Module, *, isa: str = "native") -> BinaryEngine:
    """Compile a trained binary network for the packed engine (one call; the model is copied, in eval mode).

    Args:
        model: an XNOR net of models.py or a sign-only MLP / BnnConvNet (see the module docstring).
        isa: "native" (-march=native), "avx2" (x86-64-v3) or "scalar" (x86-64-v2).

    Raises:
        NnqError: a model or layer the engine cannot run exactly.
    """
    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if type(model) in (XnorResNetCifar, XnorResNet18):
        prog = _lower_resnet(model)
    else:
        mods = _seq_modules(model)
        if any(isinstance(m, (XnorConv2d, XnorLinear)) for m in mods):
            prog = _lower_xnor_seq(mods)
        elif any(_is_sign_act(m) for m in mods):
            prog = _lower_bnn_seq(mods)
        elif any(isinstance(m, (BwnConv2d, BwnLinear)) for m in mods):
            raise NnqError("BWN layers keep real inputs; the engine runs nets with binary activations (XNOR, BNN)")
        else:
            raise NnqError(f"{type(model).__name__} has no binary layer; nothing for the binary engine to run")
    return BinaryEngine(model, prog, isa)
