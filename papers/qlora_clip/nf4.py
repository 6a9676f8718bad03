"""4-bit NormalFloat, blockwise absmax quantization and double quantization.

QLoRA: Efficient Finetuning of Quantized LLMs — Tim Dettmers, Artidoro Pagnoni, Ari Holtzman,
Luke Zettlemoyer. NeurIPS 2023. arXiv: https://arxiv.org/abs/2305.14314 ·
official code: https://github.com/artidoro/qlora (kernels in https://github.com/bitsandbytes-foundation/bitsandbytes).

Pretrained weights are roughly zero-centred normal, so a 4-bit code book whose levels sit at
quantiles of N(0, 1) puts the same expected number of weights in every bin (information-theoretically
optimal for normal data). Each block of 64 weights is scaled by its absolute maximum into [-1, 1] and
rounded to the nearest code; two 4-bit codes share one byte. The fp32 absmax of every block costs
0.5 bit/param, so QLoRA quantizes those constants a second time (mean removed, 8-bit, block 256),
bringing the overhead down to about 0.127 bit/param.

Implements: Eq. (4) with the asymmetric construction of Sec. 3 "4-bit NormalFloat Quantization"
(`normal_float_code_book`), blockwise absmax quantization Eq. (1)-(2) (`quantize_blockwise`,
`dequantize_blockwise`), double quantization Sec. 3 "Double Quantization" and Eq. (6)
(`double_quantize`, `double_dequantize`), the FP4 and Int4 data types of Table 2, 4-bit packing.
Not implemented: paged optimizers (a CUDA unified-memory feature; see train.py), the NF4 matmul kernel.

Every function is pure and device/dtype-agnostic; all arithmetic happens in fp32 as in bitsandbytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from common.errors import NnqError

QUANT_TYPES = ("nf4", "fp4", "int4")
BLOCKSIZE = 64  # Sec. 3: "blocksize of 64 for W"
BLOCKSIZE2 = 256  # Sec. 3 Double Quantization: "blocksize of 256 for c2"
# DEVIATION: the probability offset delta that keeps the outermost NF4 quantile finite is not given in
# the paper; this value (the mean of 1 - 1/(2*15) and 1 - 1/(2*16)) is the one bitsandbytes uses, so that
# our code book reproduces its NF4 table (tests/test_method.py checks this).
NF4_OFFSET = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))


def _ndtri(p: torch.Tensor) -> torch.Tensor:
    """Quantile function Q_X of N(0, 1)."""
    return torch.special.ndtri(p)


@lru_cache(maxsize=None)
def normal_float_code_book(bits: int = 4, offset: float = NF4_OFFSET) -> torch.Tensor:
    """The k-bit NormalFloat code book (NF4 for ``bits=4``), sorted, in [-1, 1], zero exact.

    Eq. (4) places level q_i between the quantiles Q_X(i/(2^k+1)) and Q_X((i+1)/(2^k+1)) of
    N(0, 1). A symmetric code book has no exact zero, so Sec. 3 builds the data type
    asymmetrically: 2^(k-1) levels for the negative half and 2^(k-1)+1 for the positive half,
    sharing the zero. Probabilities run evenly from ``offset`` (delta, < 1) to 1/2 on each side,
    since Q_X(1) is infinite.

    Args:
        bits: k, the code width.
        offset: delta, the largest probability used (the outermost level before normalization).

    Returns:
        fp32 tensor [2^k], ascending, max 1, min -1, containing 0.
    """
    half = 2 ** (bits - 1)
    # Sec. 3: 2^(k-1)+1 quantiles for the positive half (the last one is Q_X(1/2) = 0) ...
    p_pos = torch.linspace(offset, 0.5, half + 1, dtype=torch.float64)[:-1]  # [2^(k-1)]
    # ... and 2^(k-1) for the negative half (again dropping the zero, added once below).
    p_neg = torch.linspace(offset, 0.5, half, dtype=torch.float64)[:-1]  # [2^(k-1)-1]
    q = torch.cat([_ndtri(p_pos), torch.zeros(1, dtype=torch.float64), -_ndtri(p_neg)])  # [2^k]
    # Eq. (4) normalised into [-1, 1] so that absmax-scaled inputs (Eq. 1) map onto it.
    q = q / q.abs().max()
    return torch.sort(q).values.to(torch.float32)


@lru_cache(maxsize=None)
def fp4_code_book() -> torch.Tensor:
    """FP4 (E2M1) as bitsandbytes lays it out: code index = sign | 2 exponent bits | 1 mantissa bit.

    Normal numbers are (1 + m/2) * 2^(e) * 2/3 for the exponent fields 01, 10, 11 (e = 0, -1, -2),
    so the largest magnitude is exactly 1 after absmax scaling; the exponent field 00 holds zero
    and one subnormal value 2^-7 * 2/3.

    Returns:
        fp32 tensor [16] in code-index order (not sorted); index 8 is -0.
    """
    # DEVIATION: Table 2 names "FP4 (E2M1)" without its exponent bias; we use the bitsandbytes layout
    # so that FP4 numbers compare with the same library QLoRA used.
    exp_of_field = {0b01: 0, 0b10: -1, 0b11: -2}
    vals = []
    for idx in range(16):
        sign = -1.0 if idx & 0b1000 else 1.0
        e_field, m = (idx >> 1) & 0b11, idx & 0b1
        if e_field == 0:
            mag = 0.0 if m == 0 else 2.0**-7 * 2 / 3
        else:
            mag = (1 + m / 2) * 2.0 ** exp_of_field[e_field] * 2 / 3
        vals.append(sign * mag)
    return torch.tensor(vals, dtype=torch.float32)


@lru_cache(maxsize=None)
def int4_code_book() -> torch.Tensor:
    """Int4 absmax: levels k/7 for k in [-8, 7] (two's complement; -8/7 is never chosen after |x| <= 1).

    Returns:
        fp32 tensor [16], ascending.
    """
    return torch.arange(-8, 8, dtype=torch.float32) / 7


@lru_cache(maxsize=None)
def dynamic_code_book(bits: int = 8, max_exponent_bits: int = 7) -> torch.Tensor:
    """The signed 8-bit dynamic (tree) data type used for the second-level constants.

    Sec. 3 "Double Quantization" quantizes c2 "with 8-bit Floats"; the implementation uses the
    dynamic data type of 8-bit Optimizers (Dettmers et al., 2022): a sign, a run of zero bits that
    sets a decimal exponent 10^-j, and a linear fraction with the remaining bits in [0.1, 1].
    Level counts per exponent: 2^i for i = 0..6 on each sign, plus 0 and 1.

    Returns:
        fp32 tensor [2^bits], ascending.
    """
    vals = []
    non_sign = bits - 1
    for i in range(max_exponent_bits):
        n_frac = 2 ** (i + non_sign - max_exponent_bits) + 1  # boundaries of the linear fraction
        bounds = torch.linspace(0.1, 1, n_frac, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2  # [2^i] bin centres
        scale = 10.0 ** (-(max_exponent_bits - 1) + i)
        vals += (scale * means).tolist() + (-scale * means).tolist()
    vals += [0.0, 1.0]
    vals += [0.0] * (2**bits - len(vals))
    return torch.tensor(sorted(vals), dtype=torch.float32)


def code_book(quant_type: str) -> torch.Tensor:
    """The 16-level code book of a 4-bit data type ("nf4", "fp4" or "int4")."""
    if quant_type == "nf4":
        return normal_float_code_book(4)
    if quant_type == "fp4":
        return fp4_code_book()
    if quant_type == "int4":
        return int4_code_book()
    raise NnqError(f"unknown quant type {quant_type!r}; use one of {', '.join(QUANT_TYPES)}")


def _nearest_code(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level of ``code`` for every element of x (x in [-1, 1]); ties go down."""
    order = torch.argsort(code, stable=True)
    s = code[order]
    bounds = (s[:-1] + s[1:]) / 2  # [n_code - 1] decision thresholds
    return order.to(x.device)[torch.bucketize(x, bounds.to(x.device))]


def quantize_blockwise(
    x: torch.Tensor, code: torch.Tensor, blocksize: int = BLOCKSIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization onto a code book, Eq. (1)-(2) per block.

    Args:
        x: any-shaped float tensor (flattened in row-major order; a last partial block is allowed).
        code: the code book [n_code], levels in [-1, 1].
        blocksize: B, elements sharing one absmax constant.

    Returns:
        codes: uint8 [numel] indices into ``code``.
        absmax: fp32 [ceil(numel / B)] the quantization constants c (absmax of each block).
    """
    flat = x.reshape(-1).float()  # [n]
    n = flat.numel()
    n_blocks = math.ceil(n / blocksize)
    padded = torch.nn.functional.pad(flat, (0, n_blocks * blocksize - n))  # zeros do not change an absmax
    blocks = padded.view(n_blocks, blocksize)  # [n_blocks, B]
    # Eq. (1): c = absmax(X); an all-zero block keeps a tiny c (its codes are all zero anyway).
    absmax = blocks.abs().amax(dim=1)  # [n_blocks]
    # Eq. (1): X_scaled = X / c; bitsandbytes multiplies by the reciprocal, which we copy for bit-exactness.
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38))[:, None], -1, 1)  # [n_blocks, B]
    # Eq. (1): round to the nearest level of the data type.
    codes = _nearest_code(scaled.reshape(-1)[:n], code).to(torch.uint8)  # [n]
    return codes, absmax


def dequantize_blockwise(
    codes: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int = BLOCKSIZE
) -> torch.Tensor:
    """Eq. (2): X ≈ code[X_int] * c, block by block.

    Args:
        codes: integer [n] indices into ``code``.
        absmax: fp32 [ceil(n / B)] constants.
        code: the code book [n_code].
        blocksize: B.

    Returns:
        fp32 [n].
    """
    n = codes.numel()
    vals = code.to(absmax.device)[codes.reshape(-1).long()]  # [n]
    scale = absmax.repeat_interleave(blocksize)[:n]  # [n]
    return vals * scale


def pack_4bit(codes: torch.Tensor, pad_code: int = 0) -> torch.Tensor:
    """Two 4-bit codes per byte, first code in the high nibble. [n] uint8 -> [ceil(n/2)] uint8.

    An odd count is padded with ``pad_code`` (bitsandbytes pads with the code of 0.0).
    """
    c = codes.reshape(-1).to(torch.uint8)
    if c.numel() % 2:
        c = torch.cat([c, c.new_full((1,), pad_code)])
    return (c[0::2] << 4) | (c[1::2] & 0xF)


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `pack_4bit`. [ceil(n/2)] uint8 -> [n] uint8."""
    p = packed.reshape(-1)
    out = torch.stack([p >> 4, p & 0xF], dim=1).reshape(-1)  # [2 * len(p)]
    return out[:n]


def double_quantize(
    absmax: torch.Tensor, blocksize2: int = BLOCKSIZE2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double Quantization (Sec. 3): quantize the fp32 constants c2 to 8 bits, block 256.

    The constants are positive; removing their mean first lets the symmetric 8-bit type use both signs.

    Args:
        absmax: fp32 [n_blocks] first-level constants c2^FP32.

    Returns:
        codes8: uint8 [n_blocks] c2^FP8 as indices into `dynamic_code_book`.
        absmax2: fp32 [ceil(n_blocks / 256)] second-level constants c1^FP32.
        offset: fp32 [] the subtracted mean.
    """
    offset = absmax.mean()  # Sec. 3: "we subtract the mean from c2 before quantization"
    codes8, absmax2 = quantize_blockwise(absmax - offset, dynamic_code_book().to(absmax.device), blocksize2)
    return codes8, absmax2, offset


def double_dequantize(
    codes8: torch.Tensor, absmax2: torch.Tensor, offset: torch.Tensor, blocksize2: int = BLOCKSIZE2
) -> torch.Tensor:
    """Eq. (6) inner part: c2 ≈ dequant(c1^FP32, c2^k-bit) + mean. Returns fp32 [n_blocks]."""
    return dequantize_blockwise(codes8, absmax2, dynamic_code_book().to(absmax2.device), blocksize2) + offset


@dataclass
class QuantizedTensor:
    """The real 4-bit storage of one weight tensor: packed codes + (double-quantized) constants.

    Attributes:
        packed: uint8 [ceil(n/2)] two codes per byte.
        absmax: fp32 [n_blocks] constants, or uint8 [n_blocks] 8-bit codes when double-quantized.
        absmax2: fp32 [ceil(n_blocks/256)] second-level constants (double quantization only).
        offset: fp32 [] mean removed before the second quantization (double quantization only).
        shape: the original shape.
        quant_type: "nf4" | "fp4" | "int4".
        blocksize: B of the first level.
        code: the 16-level code book used (kept with the tensor, as bitsandbytes keeps its quant_map;
            a constant of the data type, so not counted in `nbytes`).
    """

    packed: torch.Tensor
    absmax: torch.Tensor
    absmax2: torch.Tensor | None
    offset: torch.Tensor | None
    shape: tuple[int, ...]
    quant_type: str
    blocksize: int = BLOCKSIZE
    code: torch.Tensor | None = None

    @property
    def double_quant(self) -> bool:
        return self.absmax2 is not None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The per-tensor data actually stored (no code books: they are constants of the data type)."""
        out = {"packed": self.packed, "absmax": self.absmax}
        if self.double_quant:
            out |= {"absmax2": self.absmax2, "offset": self.offset.reshape(1)}
        return out

    def nbytes(self) -> int:
        """Bytes of the stored tensors, measured from their storage (element size x count)."""
        return sum(t.untyped_storage().nbytes() for t in self.tensors().values())

    def bits_per_param(self) -> float:
        return 8 * self.nbytes() / math.prod(self.shape)

    def dequantize(self) -> torch.Tensor:
        """Eq. (6) without the matmul: fp32 tensor of ``shape``."""
        n = math.prod(self.shape)
        absmax = double_dequantize(self.absmax, self.absmax2, self.offset) if self.double_quant else self.absmax
        codes = unpack_4bit(self.packed, n)
        code = code_book(self.quant_type) if self.code is None else self.code
        return dequantize_blockwise(codes, absmax, code.to(absmax.device), self.blocksize).view(
            self.shape
        )


def quantize_4bit(
    w: torch.Tensor,
    quant_type: str = "nf4",
    blocksize: int = BLOCKSIZE,
    double_quant: bool = True,
    code: torch.Tensor | None = None,
) -> QuantizedTensor:
    """Quantize a weight tensor to 4 bits (NF4 / FP4 / Int4), optionally with double quantization.

    Args:
        w: float tensor of any shape (the weight W in Eq. 5).
        quant_type: the 4-bit data type.
        blocksize: B of the first level (64 in the paper).
        double_quant: quantize the constants a second time (Sec. 3).
        code: override the code book of ``quant_type`` (e.g. another library's table, for comparisons).

    Returns:
        The packed `QuantizedTensor`.
    """
    code = code_book(quant_type) if code is None else code.float().cpu()
    codes, absmax = quantize_blockwise(w, code.to(w.device), blocksize)  # [n], [n_blocks]
    packed = pack_4bit(codes, int(_nearest_code(torch.zeros(1), code)))  # [ceil(n/2)]
    if double_quant:
        a8, a2, off = double_quantize(absmax)
        return QuantizedTensor(packed, a8, a2, off, tuple(w.shape), quant_type, blocksize, code)
    return QuantizedTensor(packed, absmax, None, None, tuple(w.shape), quant_type, blocksize, code)


def fake_quantize_4bit(
    w: torch.Tensor, quant_type: str = "nf4", blocksize: int = BLOCKSIZE, double_quant: bool = True
) -> torch.Tensor:
    """Quantize then dequantize (simulated quantization): same shape and dtype as ``w``."""
    return quantize_4bit(w, quant_type, blocksize, double_quant).dequantize().to(w.dtype)


def bits_per_param_formula(
    blocksize: int = BLOCKSIZE, blocksize2: int = BLOCKSIZE2, double_quant: bool = True, bits: int = 4
) -> float:
    """Storage cost per parameter (Sec. 3): 4 + 32/64 = 4.5 bits; with DQ 4 + 8/64 + 32/(64*256) ≈ 4.127."""
    if not double_quant:
        return bits + 32 / blocksize
    return bits + 8 / blocksize + 32 / (blocksize * blocksize2)


def quantization_error(w: torch.Tensor, quant_type: str, double_quant: bool = True) -> dict[str, float]:
    """Mean absolute and mean squared error of 4-bit quantization of ``w`` (the data-type comparison)."""
    err = fake_quantize_4bit(w.float(), quant_type, double_quant=double_quant) - w.float()
    return {"mae": err.abs().mean().item(), "mse": err.pow(2).mean().item()}
