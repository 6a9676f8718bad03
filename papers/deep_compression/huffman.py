"""Stage 3 of Deep Compression: Huffman coding of the quantized weights and sparse indices.

Han, Mao, Dally, "Deep Compression", ICLR 2016, arXiv 1510.00149 (Sec. 2 for the relative index,
Fig. 2; Sec. 4 for Huffman coding, Fig. 5).

Idea: the indices into the codebook and the relative positions of the surviving weights are far
from uniform (Fig. 5), so an optimal prefix code spends fewer bits on frequent symbols. The sparse
structure is stored as the difference between the positions of consecutive surviving weights,
with a bounded bit width; when a gap is longer than the width allows, a filler entry is inserted
(Fig. 2).

Implements: relative indexing with filler entries (Sec. 2, Fig. 2), canonical Huffman codes
(lengths from the classic Huffman construction, codes assigned canonically so that only the
lengths are stored), vectorised encoding and table-driven decoding. Code lengths are limited to
15 bits so that a length fits a nibble of the file.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from common.errors import NnqError

MAX_CODE_LEN = 15


# ---------------------------------------------------------------- relative (sparse) indices

def relative_indices(positions: np.ndarray, width: int) -> np.ndarray:
    """Encode sorted flat positions of the surviving weights as bounded relative gaps (Fig. 2).

    Symbol s in [1, 2**width - 1] means "the next survivor is s places after the previous one"
    (the first is counted from position -1). Symbol 0 is a filler: "advance 2**width - 1 places,
    no weight here"; it is emitted while a gap is longer than the largest symbol.

    Args:
        positions: int array [n], strictly increasing flat indices of the survivors.
        width: bits per relative index (the paper uses 5 for LeNet's layers, Tables 2-3).

    Returns:
        uint8/uint16 symbols [n + number of fillers].
    """
    if not 1 <= width <= 16:
        raise NnqError(f"relative index width must be 1..16 bits, got {width}")
    positions = np.asarray(positions, dtype=np.int64)
    gmax = (1 << width) - 1  # longest gap one symbol codes
    gaps = np.diff(positions, prepend=-1)  # [n], >= 1
    if gaps.size and gaps.min() < 1:
        raise NnqError("positions must be strictly increasing")
    # Fig. 2: a gap g > gmax becomes ceil(g / gmax) - 1 fillers, then the remainder
    n_fill = (gaps - 1) // gmax  # [n]
    last = gaps - n_fill * gmax  # [n], in [1, gmax]
    # DEVIATION: a filler is a reserved relative-index symbol (0) and carries no weight index,
    # where Fig. 2 stores a zero weight; the filler then costs the index bits only.
    out = np.zeros(int(n_fill.sum()) + gaps.size, dtype=np.uint16 if width > 8 else np.uint8)
    ends = np.cumsum(n_fill + 1) - 1  # where each survivor's symbol goes
    out[ends] = last
    return out


def positions_from_relative(symbols: np.ndarray, width: int) -> np.ndarray:
    """Invert relative_indices: symbols -> sorted flat positions of the survivors."""
    gmax = (1 << width) - 1
    s = np.asarray(symbols, dtype=np.int64)
    if s.size and s.max() > gmax:
        raise NnqError(f"relative index symbol {int(s.max())} does not fit {width} bits; the file is corrupt")
    step = np.where(s == 0, gmax, s)
    pos = np.cumsum(step) - 1
    return pos[s != 0]


# ---------------------------------------------------------------- canonical Huffman codes

def entropy_bits(counts: np.ndarray) -> float:
    """Empirical entropy in bits per symbol of a histogram."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def excess_pct(coded_bits: float, entropy_total_bits: float) -> float:
    """How far a coded stream (``coded_bits`` in all) lies above the entropy bound of its symbols (n * H bits),
    in % of that bound; 0 for a stream without information (one symbol, or none)."""
    if entropy_total_bits <= 0:
        return 0.0
    return round(100 * (coded_bits - entropy_total_bits) / entropy_total_bits, 3)


def _huffman_lengths_unbounded(counts: np.ndarray) -> np.ndarray:
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = [i for i, c in enumerate(counts) if c > 0]
    if len(used) == 1:  # one symbol still needs one bit to be decodable
        lengths[used[0]] = 1
        return lengths
    # heap of (weight, tie-break, symbols in subtree); merging adds 1 to every member's depth
    heap = [(int(counts[i]), i, [i]) for i in used]
    heapq.heapify(heap)
    tie = len(counts)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for i in s1 + s2:
            lengths[i] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def huffman_code_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Optimal prefix-code lengths of a histogram (Huffman), limited to `max_len` bits.

    Args:
        counts: int array [alphabet], symbol frequencies (0 = symbol absent, gets no code).
        max_len: longest code allowed.

    Returns:
        int64 lengths [alphabet].
    """
    counts = np.asarray(counts, dtype=np.int64)
    if (counts > 0).sum() > (1 << max_len):
        raise NnqError(f"an alphabet of {(counts > 0).sum()} symbols cannot be coded in {max_len} bits")
    c = counts.copy()
    while True:
        lengths = _huffman_lengths_unbounded(c)
        if lengths.max(initial=0) <= max_len:
            return lengths
        # DEVIATION: length limit by flattening the histogram (halving counts, keeping them > 0)
        # and rebuilding; optimal length-limited codes (package-merge) are not needed at 15 bits
        c = np.where(c > 0, np.maximum(1, c // 2), 0)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical Huffman codes from code lengths (shorter codes first, ties by symbol).

    Returns:
        int64 codes [alphabet] (code of an absent symbol is 0; its length is 0).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    order = sorted((int(l), s) for s, l in enumerate(lengths) if l > 0)
    code, prev = 0, 0
    for l, s in order:
        code <<= l - prev
        codes[s] = code
        code += 1
        prev = l
    if order and code > (1 << prev):
        raise NnqError("code lengths violate the Kraft inequality; the file is corrupt")
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate the canonical codes of `symbols`.

    Args:
        symbols: int array [n] of symbols, each with a nonzero code length.
        lengths: code lengths [alphabet].

    Returns:
        (payload bytes, MSB-first, zero-padded; number of valid bits).
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if symbols.size == 0:
        return b"", 0
    if lengths[symbols].min() == 0:
        raise NnqError("a symbol to encode has no Huffman code; build the lengths from these symbols")
    return _pack_codes(canonical_codes(lengths)[symbols], lengths[symbols])


def _pack_codes(codes: np.ndarray, lens: np.ndarray) -> tuple[bytes, int]:
    """Write variable-length codes MSB first: codes [n], lens [n] -> (bytes, nbits)."""
    total = int(lens.sum())
    starts = np.cumsum(lens) - lens  # [n]
    owner = np.repeat(np.arange(lens.size), lens)  # [total] symbol of each bit
    offset = np.arange(total) - starts[owner]  # [total] bit position inside its code
    bits = (codes[owner] >> (lens[owner] - 1 - offset)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes(), total


def huffman_decode(payload: bytes, nbits: int, n: int, lengths: np.ndarray) -> np.ndarray:
    """Decode `n` symbols from a canonical Huffman bit stream.

    Args:
        payload: the bytes written by huffman_encode.
        nbits: number of valid bits.
        n: number of symbols to read.
        lengths: code lengths [alphabet].

    Returns:
        int64 symbols [n].

    Raises:
        NnqError: the stream does not decode to exactly `n` symbols in `nbits` bits.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if n == 0:
        if nbits:
            raise NnqError("Huffman stream has bits but no symbols; the file is corrupt")
        return np.zeros(0, dtype=np.int64)
    if len(payload) * 8 < nbits:
        raise NnqError("Huffman stream shorter than its bit count; the file is truncated or corrupt")
    lmax = int(lengths.max(initial=0))
    if lmax == 0 or lmax > MAX_CODE_LEN:
        raise NnqError(f"bad Huffman code lengths (longest {lmax}); the file is corrupt")
    codes = canonical_codes(lengths)
    # lookup table over every lmax-bit window: its first code's symbol and length
    sym_tab = np.full(1 << lmax, -1, dtype=np.int64)
    len_tab = np.zeros(1 << lmax, dtype=np.int64)
    for s in np.flatnonzero(lengths):
        l = int(lengths[s])
        lo = int(codes[s]) << (lmax - l)
        sym_tab[lo:lo + (1 << (lmax - l))] = s
        len_tab[lo:lo + (1 << (lmax - l))] = l
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[:nbits].astype(np.int64)
    bits = np.concatenate([bits, np.zeros(lmax, dtype=np.int64)])
    # windows[p] = the lmax bits starting at bit p, as an integer
    windows = np.zeros(nbits, dtype=np.int64)
    for j in range(lmax):
        windows = (windows << 1) | bits[j:j + nbits]
    sym_l, len_l, win_l = sym_tab.tolist(), len_tab.tolist(), windows.tolist()
    out = [0] * n
    pos = 0
    for i in range(n):
        if pos >= nbits:
            raise NnqError("Huffman stream ended early; the file is truncated or corrupt")
        v = win_l[pos]
        s = sym_l[v]
        if s < 0:
            raise NnqError("invalid Huffman code in stream; the file is corrupt")
        out[i] = s
        pos += len_l[v]
    if pos != nbits:
        raise NnqError(f"Huffman stream decoded {pos} of {nbits} bits; the file is corrupt")
    return np.asarray(out, dtype=np.int64)


def fixed_width_encode(symbols: np.ndarray, width: int) -> tuple[bytes, int]:
    """Pack symbols at `width` bits each (the stage before Huffman coding)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= (1 << width)):
        raise NnqError(f"symbols do not fit {width} bits")
    return _pack_codes(symbols, np.full(symbols.size, width, dtype=np.int64))


def fixed_width_decode(payload: bytes, nbits: int, n: int, width: int) -> np.ndarray:
    """Inverse of fixed_width_encode."""
    if nbits != n * width or len(payload) * 8 < nbits:
        raise NnqError("fixed-width stream has the wrong length; the file is truncated or corrupt")
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[:nbits].astype(np.int64)
    weights = 1 << np.arange(width - 1, -1, -1, dtype=np.int64)
    return (bits.reshape(n, width) * weights).sum(axis=1) if n else np.zeros(0, dtype=np.int64)


def bits_for(alphabet: int) -> int:
    """Bits of a fixed-width code of an alphabet of this size."""
    return max(1, math.ceil(math.log2(max(alphabet, 2))))
