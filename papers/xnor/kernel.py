"""The real XNOR-Net inference path: bit packing and XNOR-popcount GEMM / convolution.

Encoding (shared with xnor_kernel.c): bit 1 = -1, bit 0 = +1, value j of a row in bit
(j % 64) of word (j // 64) of an int64 tensor; bits past the end of a row are 0. For two +-1
rows of n values, a . b = n - 2 popcount(a XOR b) (Sec. 3.2, "the convolution ... can be
estimated by XNOR and bit-counting operations").

The C source is compiled on first use with the system C compiler (``$CC``, else ``cc``) and
``-O3 -march=native -fopenmp`` into ``$NNQ_CACHE_DIR/xnor`` (else ``~/.cache/nnq/xnor``), keyed
by a hash of the source and flags, and loaded with ctypes. ``NNQ_XNOR_ISA`` = ``native`` (default),
``avx2`` (``-march=x86-64-v3``: AVX2, no AVX-512) or ``scalar`` (``x86-64-v2``: ``popcnt``, no AVX) picks the code
path, for benchmarks;
``NNQ_XNOR_BACKEND=torch`` forces the pure-PyTorch fallback, which computes the same integers
(used automatically, with a one-line warning, when no compiler works).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from common.cbuild import BASE_FLAGS, ISA_FLAGS, build_library
from common.errors import NnqError

_SRC = Path(__file__).with_name("xnor_kernel.c")
# x86-64-v3 / -v2 are exactly what an AVX2-only / a pre-AVX machine has (no GFNI, VNNI, AVX-512 sneaking in)
_ISA_FLAGS, _BASE_FLAGS = ISA_FLAGS, BASE_FLAGS
_LIBS: dict[str, ctypes.CDLL | None] = {}

_i64, _p = ctypes.c_int64, ctypes.c_void_p


def _build(isa: str) -> ctypes.CDLL:
    if isa not in _ISA_FLAGS:
        raise NnqError(f"NNQ_XNOR_ISA={isa!r} is not one of {sorted(_ISA_FLAGS)}")
    out = build_library(_SRC, cache="xnor", stem=f"xnor_kernel_{isa}", flags=_BASE_FLAGS + _ISA_FLAGS[isa])
    lib = ctypes.CDLL(str(out))
    lib.xnor_isa.restype = ctypes.c_char_p
    lib.xnor_panel_words.restype = _i64
    lib.xnor_panel_words.argtypes = [_i64, _i64]
    lib.xnor_patch_words.restype = _i64
    lib.xnor_patch_words.argtypes = [_i64, _i64, _i64]
    lib.xnor_pack_f32.argtypes = [_p, _p, _i64, _i64]
    lib.xnor_to_panels.argtypes = [_p, _p, _i64, _i64]
    lib.xnor_im2col_panels.argtypes = [_p, _p] + [_i64] * 12
    lib.xnor_gemm_panel.argtypes = [_p, _p, _p, _i64, _i64, _i64, _i64, _i64]
    lib.xnor_gemm.argtypes = [_p, _p, _p, _i64, _i64, _i64, _i64]
    lib.xnor_gemm.restype = ctypes.c_int
    lib.xnor_set_num_threads.argtypes = [ctypes.c_int]
    lib.xnor_pack_nchw.argtypes = [_p, _p, _i64, _i64, _i64]
    lib.xnor_conv2d_f32.argtypes = [_p] * 7 + [_i64] * 13
    lib.xnor_conv2d_f32.restype = ctypes.c_int
    lib.xnor_linear_f32.argtypes = [_p] * 6 + [_i64] * 3
    lib.xnor_linear_f32.restype = ctypes.c_int
    return lib


def library(isa: str | None = None) -> ctypes.CDLL | None:
    """The compiled kernel library for ``isa`` (default ``$NNQ_XNOR_ISA`` or native), or None for the fallback."""
    if os.environ.get("NNQ_XNOR_BACKEND", "c") == "torch":
        return None
    isa = isa or os.environ.get("NNQ_XNOR_ISA", "native")
    if isa not in _LIBS:
        try:
            _LIBS[isa] = _build(isa)
        except (NnqError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            warnings.warn(f"xnor: compiling the C kernel failed ({detail.strip().splitlines()[-1] if detail.strip() else exc}); "
                          "using the slower pure-PyTorch fallback (install gcc to get the fast path)", stacklevel=2)
            _LIBS[isa] = None
    return _LIBS[isa]


def backend_name(isa: str | None = None) -> str:
    """``"c/<isa>"`` (e.g. ``c/avx512-vpopcntdq``) or ``"torch"``."""
    lib = library(isa)
    return "torch" if lib is None else "c/" + lib.xnor_isa().decode()


def set_num_threads(n: int) -> None:
    """Set the OpenMP thread count of every loaded kernel library (torch.set_num_threads does not reach it)."""
    library()
    for lib in _LIBS.values():
        if lib is not None:
            lib.xnor_set_num_threads(int(n))


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------
def _bit_weights(device: torch.device) -> torch.Tensor:
    return torch.tensor([1 << j if j < 63 else -(1 << 63) for j in range(64)], dtype=torch.int64, device=device)


def pack_bits(t: torch.Tensor) -> torch.Tensor:
    """Pack a tensor of exact +-1 values along its last dimension into 64-bit words.

    Args:
        t: [..., n] with every value in {-1, +1}.

    Returns:
        int64 [..., ceil(n / 64)]; bit 1 = -1, bit 0 = +1, trailing bits 0.

    Raises:
        NnqError: if ``t`` holds a value other than -1 or +1.
    """
    if not bool(((t == 1) | (t == -1)).all()):
        bad = t[(t != 1) & (t != -1)].flatten()[:3].tolist()
        raise NnqError(f"pack_bits needs a tensor of exact +-1 values, found e.g. {bad}; binarize it first (sign)")
    n = t.shape[-1]
    kw = (n + 63) // 64
    bits = (t < 0).to(torch.int64)
    bits = F.pad(bits, (0, kw * 64 - n)).reshape(*t.shape[:-1], kw, 64)
    return (bits * _bit_weights(t.device)).sum(dim=-1)


def unpack_bits(words: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: [..., kw] int64 words -> [..., n] of +-1."""
    if words.dtype != torch.int64 or words.shape[-1] != (n + 63) // 64:
        raise NnqError(f"unpack_bits: expected int64 words [..., {(n + 63) // 64}] for n={n}, "
                       f"got {words.dtype} {tuple(words.shape)}")
    shifts = torch.arange(64, device=words.device)
    bits = (words.unsqueeze(-1) >> shifts) & 1  # [..., kw, 64]
    bits = bits.reshape(*words.shape[:-1], -1)[..., :n]
    return (1 - 2 * bits).to(dtype)


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """Pack sign(x) (sign(0) = +1) of a real [..., n] tensor along the last dim; fast path in C."""
    x = x.detach()
    lib = library()
    if lib is None or x.device.type != "cpu" or x.dtype != torch.float32:
        return pack_bits(torch.where(x >= 0, 1.0, -1.0))
    x = x.contiguous()
    n = x.shape[-1]
    rows = x.numel() // max(n, 1)
    out = torch.empty(*x.shape[:-1], (n + 63) // 64, dtype=torch.int64)
    lib.xnor_pack_f32(_ptr(x), _ptr(out), rows, n)
    return out


# ---------------------------------------------------------------------------------------------
# GEMM and convolution on packed bits
# ---------------------------------------------------------------------------------------------
def binary_gemm(a: torch.Tensor, b: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Dot products of packed +-1 rows: C[m, j] = sum_i A_bits[m, i] B_bits[j, i].

    Args:
        a: int64 [M, kw] packed rows; b: int64 [N, kw] packed rows; n_bits: the rows' true length.

    Returns:
        int32 [M, N], C = n_bits - 2 popcount(a XOR b).
    """
    if a.dtype != torch.int64 or b.dtype != torch.int64 or a.shape[1] != b.shape[1]:
        raise NnqError(f"binary_gemm needs int64 words of equal width, got {a.dtype}{tuple(a.shape)} and "
                       f"{b.dtype}{tuple(b.shape)}")
    lib = library()
    if lib is None or a.device.type != "cpu":
        return (unpack_bits(a, n_bits) @ unpack_bits(b, n_bits).T).to(torch.int32)
    a, b = a.contiguous(), b.contiguous()
    c = torch.empty(a.shape[0], b.shape[0], dtype=torch.int32)
    if lib.xnor_gemm(_ptr(a), _ptr(b), _ptr(c), a.shape[0], b.shape[0], a.shape[1], n_bits) != 0:
        raise NnqError("binary_gemm: out of memory for the packed operand")
    return c


def dense_taps(c_in: int) -> bool:
    """True when the taps' c_in bits are packed back to back (c_in < 64 divides 64, e.g. 16 or 32 channels)."""
    return c_in < 64 and 64 % c_in == 0


def pack_conv_weight(w: torch.Tensor) -> torch.Tensor:
    """Kernel layout of +-1 conv weights [c_out, c_in, kh, kw], matching the packed im2col's patch rows.

    Taps (i, j) in row-major order, each with its c_in signs. If c_in divides 64 and is below it, the
    taps' bits are packed back to back (a word holds 64 / c_in taps): [c_out, ceil(kh*kw*c_in / 64)];
    otherwise each tap takes ceil(c_in / 64) words: [c_out, kh*kw*ceil(c_in / 64)].
    """
    c_out, c_in, kh, kw = w.shape
    w_taps = w.permute(0, 2, 3, 1)                              # [c_out, kh, kw, c_in]
    if dense_taps(c_in):
        return pack_bits(w_taps.reshape(c_out, -1))             # [c_out, ceil(kh*kw*c_in / 64)]
    return pack_bits(w_taps).reshape(c_out, -1)                 # [c_out, kh*kw*cw]


def unpack_conv_weight(words: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`pack_conv_weight`: +-1 float32 weights of ``shape`` [c_out, c_in, kh, kw]."""
    c_out, c_in, kh, kw = shape
    if dense_taps(c_in):
        taps = unpack_bits(words, kh * kw * c_in).view(c_out, kh, kw, c_in)
    else:
        taps = unpack_bits(words.view(c_out, kh, kw, -1), c_in)
    return taps.permute(0, 3, 1, 2)


def border_correction(w_pm1: torch.Tensor, h: int, w: int, stride: tuple[int, int],
                      padding: tuple[int, int]) -> torch.Tensor:
    """corr[o, y, x] = sum of W[o, :, i, j] over taps (i, j) that fall in the zero padding at (y, x).

    The packed im2col stores a padded tap as +1 (bit 0) while the float reference pads sign(I)
    with 0, so the packed sum exceeds the reference by exactly this term.

    Returns:
        int32 [c_out, h_out, w_out].
    """
    ones = torch.ones(1, w_pm1.shape[1], h, w, dtype=torch.float32, device=w_pm1.device)
    valid = F.conv2d(ones, w_pm1.float(), stride=stride, padding=padding)[0]   # sum over in-image taps
    total = w_pm1.float().sum(dim=(1, 2, 3)).view(-1, 1, 1)                    # sum over all taps
    return (total - valid).round().to(torch.int32)


def xnor_conv2d_counts(x: torch.Tensor, w_words: torch.Tensor, c_in: int, kernel_size: tuple[int, int],
                       stride: tuple[int, int], padding: tuple[int, int], corr: torch.Tensor | None = None,
                       w_pm1: torch.Tensor | None = None) -> torch.Tensor:
    """sign(x) conv sign(W) with zero padding, on packed bits; exact integers.

    Args:
        x: real input [b, c_in, h, w] (binarized here, sign(0) = +1).
        w_words: packed weights from :func:`pack_conv_weight`.
        c_in, kernel_size, stride, padding: the convolution's geometry.
        corr: :func:`border_correction` for this input size (computed from ``w_pm1`` if None).
        w_pm1: the +-1 weights, needed only when ``corr`` is None and padding is non-zero.

    Returns:
        int32 [b, c_out, h_out, w_out], equal to F.conv2d(sign(x), sign(W), padding=padding).
    """
    b, c, h, w = x.shape
    if c != c_in:
        raise NnqError(f"xnor conv expects {c_in} input channels, got {c}")
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cw = (c_in + 63) // 64
    c_out = w_words.shape[0]
    if (ph or pw) and corr is None:
        if w_pm1 is None:
            raise NnqError("xnor_conv2d_counts needs w_pm1 or corr when padding is non-zero")
        corr = border_correction(w_pm1, h, w, stride, padding)
    lib = library()
    if lib is None or x.device.type != "cpu":
        xb = torch.where(x >= 0, 1.0, -1.0)
        xb = F.pad(xb, (pw, pw, ph, ph), value=1.0)  # pad with +1 = bit 0, as the C im2col does
        cols = F.unfold(xb, (kh, kw), stride=(sh, sw))                           # [b, c*kh*kw, L]
        cols = cols.view(b, c_in, kh * kw, -1).permute(0, 3, 2, 1)             # [b, L, taps, c]
        a = unpack_conv_weight(w_words, (c_out, c_in, kh, kw)).permute(0, 2, 3, 1).reshape(c_out, kh * kw, c_in)
        out = torch.einsum("bltc,otc->bol", cols, a).round().to(torch.int32).reshape(b, c_out, ho, wo)
        out = out.contiguous()  # NCHW like the C path: later reductions (K) depend on the layout
    else:
        x_words = torch.empty(b, h * w, cw, dtype=torch.int64)                     # [b, h*w, cw]
        xc = x.detach().float().contiguous()
        lib.xnor_pack_nchw(_ptr(xc), _ptr(x_words), b, c_in, h * w)
        n = b * ho * wo
        kwords = w_words.shape[1]
        if kwords != lib.xnor_patch_words(c_in, kh, kw):
            raise NnqError(f"packed weights have {kwords} words per filter, the kernel expects "
                           f"{lib.xnor_patch_words(c_in, kh, kw)}; pack them with pack_conv_weight")
        panels = torch.empty(lib.xnor_panel_words(n, kwords), dtype=torch.int64)
        lib.xnor_im2col_panels(_ptr(x_words), _ptr(panels), b, h, w, c_in, kh, kw, sh, sw, ph, pw, ho, wo)
        out = torch.empty(b, c_out, ho, wo, dtype=torch.int32)
        wc = w_words.contiguous()
        lib.xnor_gemm_panel(_ptr(wc), _ptr(panels), _ptr(out), c_out, n, kwords, kh * kw * c_in, ho * wo)
    if corr is not None:
        out = out - corr.unsqueeze(0)
    return out


def _f32(t: torch.Tensor | None, what: str) -> torch.Tensor | None:
    if t is None:
        return None
    if t.dtype != torch.float32:
        raise NnqError(f"the packed XNOR path computes in float32; {what} is {t.dtype}")
    return t.detach().contiguous()


def xnor_conv2d(x: torch.Tensor, w_words: torch.Tensor, c_in: int, kernel_size: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], alpha: torch.Tensor, k: torch.Tensor,
                bias: torch.Tensor | None = None, corr: torch.Tensor | None = None,
                w_pm1: torch.Tensor | None = None) -> torch.Tensor:
    """The whole XNOR convolution of Eq. (11): ((sign(x) conv sign(W)) * alpha) * K (+ bias), exactly.

    Same float operations, order and rounding as :class:`papers.xnor.xnor.XnorConv2d`; in the C
    path the bits, the im2col, the popcount GEMM and this epilogue run in one call.

    Args:
        x: real input [b, c_in, h, w]; w_words: :func:`pack_conv_weight` output; alpha: [c_out];
        k: the scaling map [b, 1, h_out, w_out]; bias: [c_out] or None; corr, w_pm1: as in
        :func:`xnor_conv2d_counts`.

    Returns:
        float32 [b, c_out, h_out, w_out].
    """
    lib = library()
    b, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if (ph or pw) and corr is None:
        if w_pm1 is None:
            raise NnqError("xnor_conv2d needs w_pm1 or corr when padding is non-zero")
        corr = border_correction(w_pm1, h, w, stride, padding)
    if lib is None or x.device.type != "cpu":
        counts = xnor_conv2d_counts(x, w_words, c_in, kernel_size, stride, padding, corr=corr)
        y = counts.to(x.dtype) * alpha.view(1, -1, 1, 1)
        y = y * k
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    if c != c_in:
        raise NnqError(f"xnor conv expects {c_in} input channels, got {c}")
    x, alpha, k, bias = _f32(x, "the input"), _f32(alpha, "alpha"), _f32(k, "K"), _f32(bias, "the bias")
    corr = None if corr is None else corr.to(torch.int32).contiguous()
    c_out = w_words.shape[0]
    if w_words.shape[1] != lib.xnor_patch_words(c_in, kh, kw):
        raise NnqError(f"packed weights have {w_words.shape[1]} words per filter, the kernel expects "
                       f"{lib.xnor_patch_words(c_in, kh, kw)}; pack them with pack_conv_weight")
    out = torch.empty(b, c_out, ho, wo, dtype=torch.float32)
    wc = w_words.contiguous()
    rc = lib.xnor_conv2d_f32(_ptr(x), _ptr(wc), None if corr is None else _ptr(corr), _ptr(alpha), _ptr(k),
                             None if bias is None else _ptr(bias), _ptr(out), b, c, h, w, c_out, kh, kw, sh, sw,
                             ph, pw, ho, wo)
    if rc != 0:
        raise NnqError("xnor_conv2d: out of memory for the packed input")
    return out


def xnor_linear(x: torch.Tensor, w_words: torch.Tensor, n: int, alpha: torch.Tensor, beta: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """The XNOR fully connected layer of Eq. (7)-(10): ((sign(x) sign(W)^T) * alpha) * beta (+ bias), exactly.

    Args:
        x: [b, n] real input; w_words: [c_out, ceil(n/64)] packed signs; alpha: [c_out]; beta: [b, 1].

    Returns:
        float32 [b, c_out].
    """
    lib = library()
    if lib is None or x.device.type != "cpu":
        counts = binary_gemm(pack_signs(x), w_words, n)
        y = counts.to(x.dtype) * alpha.view(1, -1)
        y = y * beta
        return y if bias is None else y + bias
    x, alpha, beta, bias = _f32(x, "the input"), _f32(alpha, "alpha"), _f32(beta, "beta"), _f32(bias, "the bias")
    out = torch.empty(x.shape[0], w_words.shape[0], dtype=torch.float32)
    wc = w_words.contiguous()
    if lib.xnor_linear_f32(_ptr(x), _ptr(wc), _ptr(alpha), _ptr(beta), None if bias is None else _ptr(bias),
                           _ptr(out), x.shape[0], n, w_words.shape[0]) != 0:
        raise NnqError("xnor_linear: out of memory for the packed input")
    return out
