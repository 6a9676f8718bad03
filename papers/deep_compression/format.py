"""The compressed file of Deep Compression: codebooks, Huffman tables and streams, sparse indices.

Han, Mao, Dally, "Deep Compression", ICLR 2016, arXiv 1510.00149 (Sec. 2, Fig. 2; Sec. 4).

The paper reports sizes from bit counts; we write the actual file and measure it. A model is
written as a list of records: each shared (or pruned float) layer as its survivors' codebook
indices (or raw fp32 values) plus the relative positions of the survivors, each stream either
fixed-width or canonical-Huffman coded; every other tensor (biases, BatchNorm) as raw bytes.
A CRC32 and the total length close the file, so a truncated or altered file raises NnqError.

File layout (little endian; version 1) - also documented in README.md:

    file    := magic "NQDC" | version u8 | flags u8 (0) | n_records u16 | file_len u32
               | record * n_records | crc32 u32 (zlib.crc32 of every byte before it)
    record  := kind u8 | name_len u8 | name utf-8 | dtype u8 | ndim u8 | shape u32 * ndim | body
    kind 0 (dense tensor)      body := raw tensor bytes (numel * itemsize, row-major)
    kind 1 (shared layer)      body := k u16 | codebook fp32 * k | width u8 | n_weights u32
                                       | n_pos u32 | stream(indices, alphabet k)
                                       | stream(relative positions, alphabet 2**width)
    kind 2 (pruned fp32 layer) body := width u8 | n_weights u32 | n_pos u32
                                       | values fp32 * n_weights | stream(positions, 2**width)
    stream  := coding u8 (0 fixed width, 1 canonical Huffman, 2 constant)
               | [Huffman only] code length of every symbol, 4 bits each, high nibble first,
                 ceil(alphabet / 2) bytes
               | [constant only] symbol u16 (every one of the n symbols is it; no payload)
               | [fixed / Huffman] nbits u32 | payload ceil(nbits / 8) bytes, MSB first, zero padded

A fixed-width stream uses ceil(log2 alphabet) bits per symbol. Positions are flat row-major
indices into the weight tensor; see huffman.relative_indices for the gap symbols and fillers.
Each record stores its own relative-index width: encode(width=None) gives every layer the width
(AUTO_WIDTHS) whose coded position stream is smallest.
The codebook is stored as fp32 so that decoding restores the fine-tuned centroids bit-exactly.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField
from common.paths import atomic_write_bytes

from papers.deep_compression.huffman import (bits_for, entropy_bits, fixed_width_decode, fixed_width_encode,
                      huffman_code_lengths, huffman_decode, huffman_encode, positions_from_relative,
                      relative_indices)
from papers.deep_compression.share import SHARED_LAYERS

MAGIC = b"NQDC"
VERSION = 1
DENSE, SHARED, SPARSE_FP32 = 0, 1, 2
FIXED, HUFFMAN, CONSTANT = 0, 1, 2
AUTO_WIDTHS = range(1, 11)  # relative-index widths tried by encode(width=None); 10 bits: a 512-byte code table
_DTYPES = {0: torch.float32, 1: torch.float16, 2: torch.float64, 3: torch.int64, 4: torch.int32,
           5: torch.int16, 6: torch.int8, 7: torch.uint8, 8: torch.bool}
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}


@dataclass
class StreamStats:
    """What one coded stream costs."""
    n: int
    alphabet: int
    coding: str
    payload_bits: int
    table_bytes: int
    fixed_bits_per_symbol: int
    mean_bits_per_symbol: float
    entropy_bits_per_symbol: float


@dataclass
class EncodeStats:
    """Per-record statistics of one written file."""
    path: str
    size_bytes: int
    layers: dict[str, dict] = field(default_factory=dict)
    dense_bytes: int = 0
    dense: dict[str, tuple[int, int]] = field(default_factory=dict)
    """State-dict key of every raw tensor -> (values, bits per value)."""

    def stored_fields(self) -> list[StoredField]:
        """The file's representation field by field, without its format overhead (magic, record heads, names,
        stream lengths, CRC): codebooks at fp32, index and position streams at their coded length (with the
        4-bit-per-symbol Huffman table a decoder needs), survivors of pruned float layers at fp32, every raw
        tensor at its width. Their sum is ``Summary.model_bits`` (``common.evaluate.model_bits``)."""
        out = []
        for name, s in self.layers.items():
            if s["kind"] == "shared":
                out.append(StoredField.fixed(f"{name}.codebook", s["k"], 32))
                out.append(_stream_field(f"{name}.index", s["index"]))
            else:
                out.append(StoredField.fixed(f"{name}.values", s["n_weights"], 32))
            out.append(_stream_field(f"{name}.position", s["position"]))
        out += [StoredField.fixed(key, n, width) for key, (n, width) in self.dense.items()]
        return out


def _stream_field(name: str, st: dict) -> StoredField:
    """A coded stream: its payload bits plus its code table (a constant stream stores only its symbol)."""
    return StoredField.stream(name, st["n"], st["payload_bits"] + 8 * st["table_bytes"])


@dataclass
class SharedLayerData:
    """A decoded shared layer: weight = codebook[idx] * mask."""
    codebook: torch.Tensor  # [k] fp32
    idx: torch.Tensor  # int64, weight shape (0 where pruned)
    mask: torch.Tensor  # bool, weight shape

    def weight(self) -> torch.Tensor:
        return self.codebook[self.idx] * self.mask


@dataclass
class DecodedModel:
    """Everything a compressed file holds."""
    tensors: dict[str, torch.Tensor]  # dense records by state-dict key
    shared: dict[str, SharedLayerData]  # shared layers by module name
    sparse: dict[str, torch.Tensor]  # pruned fp32 weights by module name (dense tensor, zeros)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The float state dict: `<layer>.weight` rebuilt for every shared/sparse layer."""
        sd = dict(self.tensors)
        for name, layer in self.shared.items():
            sd[f"{name}.weight"] = layer.weight()
        for name, w in self.sparse.items():
            sd[f"{name}.weight"] = w
        return sd


# ---------------------------------------------------------------- writing

def _write_stream(buf: io.BytesIO, symbols: np.ndarray, alphabet: int, huffman: bool) -> StreamStats:
    counts = np.bincount(symbols, minlength=alphabet) if symbols.size else np.zeros(alphabet, np.int64)
    fixed = bits_for(alphabet)
    if huffman and symbols.size and (counts > 0).sum() == 1:
        # DEVIATION: a one-symbol stream (e.g. the positions of an unpruned layer) stores only the symbol
        buf.write(struct.pack("<BH", CONSTANT, int(symbols[0])))
        return StreamStats(n=int(symbols.size), alphabet=alphabet, coding="constant", payload_bits=0,
                           table_bytes=2, fixed_bits_per_symbol=fixed, mean_bits_per_symbol=0.0,
                           entropy_bits_per_symbol=0.0)
    if huffman and symbols.size:
        lengths = huffman_code_lengths(counts)
        payload, nbits = huffman_encode(symbols, lengths)
        nib = np.zeros(alphabet + (alphabet % 2), dtype=np.uint8)
        nib[:alphabet] = lengths
        table = ((nib[0::2] << 4) | nib[1::2]).astype(np.uint8).tobytes()
        buf.write(struct.pack("<B", HUFFMAN))
        buf.write(table)
    else:
        payload, nbits = fixed_width_encode(symbols, fixed)
        table = b""
        buf.write(struct.pack("<B", FIXED))
    buf.write(struct.pack("<I", nbits))
    buf.write(payload)
    return StreamStats(n=int(symbols.size), alphabet=alphabet, coding="huffman" if table else "fixed",
                       payload_bits=nbits, table_bytes=len(table), fixed_bits_per_symbol=fixed,
                       mean_bits_per_symbol=nbits / max(1, symbols.size),
                       entropy_bits_per_symbol=entropy_bits(counts) if symbols.size else 0.0)


def _write_head(buf: io.BytesIO, kind: int, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    raw = name.encode("utf-8")
    if len(raw) > 255:
        raise NnqError(f"tensor name {name!r} is longer than 255 bytes; the format cannot store it")
    if dtype not in _DTYPE_CODES:
        raise NnqError(f"tensor {name!r} has dtype {dtype}; the format stores {list(_DTYPE_CODES)}")
    buf.write(struct.pack("<BB", kind, len(raw)) + raw)
    buf.write(struct.pack("<BB", _DTYPE_CODES[dtype], len(shape)))
    buf.write(struct.pack(f"<{len(shape)}I", *shape))


def _position_stream(pos: np.ndarray, width: int | None, huffman: bool
                     ) -> tuple[int, np.ndarray, bytes, StreamStats]:
    """The relative positions of a layer's survivors as a coded stream.

    Args:
        pos: sorted flat positions of the survivors.
        width: relative-index width; None tries every width of AUTO_WIDTHS and keeps the smallest stream.
        huffman: Huffman-code the stream (else fixed width).

    Returns:
        (width, relative-index symbols, the stream's bytes, its statistics).
    """
    widths = [width] if width is not None else list(AUTO_WIDTHS)
    best = None
    for w in widths:
        rel = relative_indices(pos, w).astype(np.int64)
        trial = io.BytesIO()
        st = _write_stream(trial, rel, 1 << w, huffman)
        # DEVIATION: with width=None each layer gets the relative-index width whose coded stream is smallest
        # (Sec. 2 bounds the width per layer type, 8 bits conv / 5 bits fc; AlexNet uses 4, Sec. 5.2 and Table 4; Tables 2-3 use 5)
        if best is None or trial.tell() < best[0]:
            best = (trial.tell(), w, rel, trial.getvalue(), st)
    _, w, rel, raw, st = best
    return w, rel, raw, st


def encode(model: nn.Module, path: str | os.PathLike, *, width: int | None = 5, huffman: bool = True,
           sparse_layers: tuple[str, ...] | list[str] = ()) -> EncodeStats:
    """Write `model` as a compressed file.

    Shared layers (SharedLinear/SharedConv2d) are written as codebook indices; the layers named in
    `sparse_layers` (plain Linear/Conv2d whose zeros are pruned connections) as fp32 survivors;
    every other state-dict tensor raw.

    Args:
        model: the pruned and/or shared model.
        path: where to write (atomically: a temporary file is renamed).
        width: bits of the relative index (Sec. 2; 5 in Tables 2-3 for LeNet); None: per layer, the width in
            AUTO_WIDTHS whose position stream is smallest (stored in the layer's record).
        huffman: Huffman-code the streams (Sec. 4); False writes them fixed-width.
        sparse_layers: module names of pruned float layers.

    Returns:
        EncodeStats with the size on disk and per-layer stream statistics.
    """
    modules = dict(model.named_modules())
    shared = {n: m for n, m in modules.items() if isinstance(m, SHARED_LAYERS)}
    for n in sparse_layers:
        if n not in modules or not hasattr(modules[n], "weight") or n in shared:
            raise NnqError(f"sparse layer {n!r} is not a float Linear/Conv2d layer of the model")
    sparse = {n: modules[n] for n in sparse_layers}
    skip = {f"{n}.{k}" for n in shared for k in ("weight", "codebook", "idx", "mask")}
    skip |= {f"{n}.weight" for n in sparse}
    dense = {k: v for k, v in model.state_dict().items() if k not in skip}

    stats = EncodeStats(path=str(path), size_bytes=0)
    body = io.BytesIO()
    n_records = 0
    for name, m in shared.items():
        cb = m.codebook.detach().float().cpu()
        idx = m.idx.detach().cpu().flatten().numpy()
        mask = m.mask.detach().cpu().flatten().numpy()
        if cb.numel() > 65535:
            raise NnqError(f"layer {name!r} has {cb.numel()} centroids; the format stores at most 65535")
        pos = np.flatnonzero(mask)
        w, rel, pos_stream, s_pos = _position_stream(pos, width, huffman)
        _write_head(body, SHARED, name, torch.float32, tuple(m.idx.shape))
        body.write(struct.pack("<H", cb.numel()) + cb.numpy().astype("<f4").tobytes())
        body.write(struct.pack("<BII", w, pos.size, rel.size))
        s_idx = _write_stream(body, idx[pos].astype(np.int64), cb.numel(), huffman)
        body.write(pos_stream)
        stats.layers[name] = {"kind": "shared", "numel": int(mask.size), "n_weights": int(pos.size),
                              "n_fillers": int(rel.size - pos.size), "k": int(cb.numel()), "width": w,
                              "index": vars(s_idx), "position": vars(s_pos)}
        n_records += 1
    for name, m in sparse.items():
        w = m.weight.detach().float().cpu()
        flat = w.flatten().numpy()
        pos = np.flatnonzero(flat != 0)
        wd, rel, pos_stream, s_pos = _position_stream(pos, width, huffman)
        _write_head(body, SPARSE_FP32, name, torch.float32, tuple(w.shape))
        body.write(struct.pack("<BII", wd, pos.size, rel.size))
        body.write(flat[pos].astype("<f4").tobytes())
        body.write(pos_stream)
        stats.layers[name] = {"kind": "sparse_fp32", "numel": int(flat.size), "n_weights": int(pos.size),
                              "n_fillers": int(rel.size - pos.size), "width": wd, "position": vars(s_pos)}
        n_records += 1
    for key, t in dense.items():
        t = t.detach().cpu().contiguous()
        start = body.tell()
        _write_head(body, DENSE, key, t.dtype, tuple(t.shape))
        body.write(t.numpy().tobytes() if t.dtype != torch.bool else t.to(torch.uint8).numpy().tobytes())
        stats.dense_bytes += body.tell() - start
        stats.dense[key] = (t.numel(), 8 * t.element_size())
        n_records += 1
    if n_records > 65535:
        raise NnqError("too many tensors for the format (at most 65535 records)")

    payload = body.getvalue()
    file_len = 4 + 1 + 1 + 2 + 4 + len(payload) + 4
    head = MAGIC + struct.pack("<BBHI", VERSION, 0, n_records, file_len)
    data = head + payload
    data += struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)
    path = atomic_write_bytes(path, data)
    stats.size_bytes = path.stat().st_size
    return stats


# ---------------------------------------------------------------- reading

class _Reader:
    def __init__(self, data: bytes, start: int, end: int):
        self.data, self.pos, self.end = data, start, end

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise NnqError("compressed file ends inside a record; it is truncated or corrupt")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _read_stream(r: _Reader, n: int, alphabet: int) -> np.ndarray:
    (coding,) = r.unpack("B")
    if coding == HUFFMAN:
        table = np.frombuffer(r.take((alphabet + 1) // 2), dtype=np.uint8)
        lengths = np.empty(table.size * 2, dtype=np.int64)
        lengths[0::2], lengths[1::2] = table >> 4, table & 0xF
        lengths = lengths[:alphabet]
        (nbits,) = r.unpack("I")
        return huffman_decode(r.take((nbits + 7) // 8), nbits, n, lengths)
    if coding == CONSTANT:
        (sym,) = r.unpack("H")
        if sym >= alphabet:
            raise NnqError(f"constant stream symbol {sym} outside its alphabet of {alphabet}; the file is corrupt")
        return np.full(n, sym, dtype=np.int64)
    if coding == FIXED:
        (nbits,) = r.unpack("I")
        return fixed_width_decode(r.take((nbits + 7) // 8), nbits, n, bits_for(alphabet))
    raise NnqError(f"unknown stream coding {coding}; the file is corrupt")


def _read_positions(r: _Reader, numel: int, width: int, n_weights: int, n_pos: int) -> np.ndarray:
    rel = _read_stream(r, n_pos, 1 << width)
    pos = positions_from_relative(rel, width)
    if pos.size != n_weights or (pos.size and pos[-1] >= numel):
        raise NnqError("sparse positions do not match the layer's shape; the file is corrupt")
    return pos


def _skip_stream(r: _Reader, name: str, n: int, alphabet: int) -> StoredField:
    """The stored field of the stream at ``r`` (payload bits + code table, as EncodeStats counts it), skipped."""
    (coding,) = r.unpack("B")
    table = 0
    if coding == HUFFMAN:
        table = len(r.take((alphabet + 1) // 2))
    elif coding == CONSTANT:
        r.take(2)
        return StoredField.stream(name, n, 16)
    elif coding != FIXED:
        raise NnqError(f"unknown stream coding {coding}; the file is corrupt")
    (nbits,) = r.unpack("I")
    r.take((nbits + 7) // 8)
    return StoredField.stream(name, n, nbits + 8 * table)


def stored_fields(path: str | os.PathLike) -> list[StoredField]:
    """The stored fields of a file written by `encode`, read from the file itself: the same list as the
    writer's ``EncodeStats.stored_fields()`` (codebooks and fp32 survivors at 32 bits, streams at their coded
    length with their code tables, dense tensors at their width), without magic, record heads, names,
    stream lengths and CRC. ``common.evaluate.model_bits`` of it is the run's ``model_bits``."""
    data, n_records = _checked_bytes(Path(path))
    r = _Reader(data, 12, len(data) - 4)
    fields: list[StoredField] = []
    dense: list[StoredField] = []
    for _ in range(n_records):
        kind, name_len = r.unpack("BB")
        name = r.take(name_len).decode("utf-8")
        dcode, ndim = r.unpack("BB")
        if dcode not in _DTYPES:
            raise NnqError(f"unknown dtype code {dcode} in {path}; the file is corrupt")
        shape = r.unpack(f"{ndim}I")
        numel = int(np.prod(shape)) if ndim else 1
        if kind == DENSE:
            dtype = _DTYPES[dcode]
            itemsize = torch.empty(0, dtype=dtype).element_size()
            r.take(numel * itemsize)
            dense.append(StoredField.fixed(name, numel, 8 * itemsize))
        elif kind == SHARED:
            (k,) = r.unpack("H")
            r.take(4 * k)
            width, n_weights, n_pos = r.unpack("BII")
            fields.append(StoredField.fixed(f"{name}.codebook", k, 32))
            fields.append(_skip_stream(r, f"{name}.index", n_weights, k))
            fields.append(_skip_stream(r, f"{name}.position", n_pos, 1 << width))
        elif kind == SPARSE_FP32:
            width, n_weights, n_pos = r.unpack("BII")
            r.take(4 * n_weights)
            fields.append(StoredField.fixed(f"{name}.values", n_weights, 32))
            fields.append(_skip_stream(r, f"{name}.position", n_pos, 1 << width))
        else:
            raise NnqError(f"unknown record kind {kind} in {path}; the file is corrupt")
    if r.pos != r.end:
        raise NnqError(f"{path} has {r.end - r.pos} unread bytes after its records; the file is corrupt")
    return fields + dense


def _checked_bytes(path: Path) -> tuple[bytes, int]:
    """The bytes of a file written by `encode` and its record count, after every whole-file check."""
    if not path.is_file():
        raise NnqError(f"compressed file {path} does not exist; run the training first or pass the right path")
    data = path.read_bytes()
    if len(data) < 16 or data[:4] != MAGIC:
        raise NnqError(f"{path} is not a Deep Compression file (bad magic); pass a file written by encode()")
    version, _flags, n_records, file_len = struct.unpack("<BBHI", data[4:12])
    if version != VERSION:
        raise NnqError(f"{path} has format version {version}; this code reads version {VERSION}")
    if file_len != len(data):
        raise NnqError(f"{path} is {len(data)} bytes but its header says {file_len}; the file is truncated or corrupt")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise NnqError(f"{path} fails its CRC32 check; the file is corrupt, re-encode the model")
    return data, n_records


def decode(path: str | os.PathLike) -> DecodedModel:
    """Read a file written by `encode`.

    Raises:
        NnqError: the file is missing, not ours, of another version, truncated or corrupted.
    """
    path = Path(path)
    data, n_records = _checked_bytes(path)
    r = _Reader(data, 12, len(data) - 4)
    out = DecodedModel(tensors={}, shared={}, sparse={})
    for _ in range(n_records):
        kind, name_len = r.unpack("BB")
        name = r.take(name_len).decode("utf-8")
        dcode, ndim = r.unpack("BB")
        if dcode not in _DTYPES:
            raise NnqError(f"unknown dtype code {dcode} in {path}; the file is corrupt")
        shape = r.unpack(f"{ndim}I")
        numel = int(np.prod(shape)) if ndim else 1
        if kind == DENSE:
            dtype = _DTYPES[dcode]
            np_dtype = torch.empty(0, dtype=dtype if dtype != torch.bool else torch.uint8).numpy().dtype
            arr = np.frombuffer(r.take(numel * np_dtype.itemsize), dtype=np_dtype).copy()
            t = torch.from_numpy(arr).reshape(shape)
            out.tensors[name] = t.to(torch.bool) if dtype == torch.bool else t
        elif kind == SHARED:
            (k,) = r.unpack("H")
            cb = torch.from_numpy(np.frombuffer(r.take(4 * k), dtype="<f4").copy())
            width, n_weights, n_pos = r.unpack("BII")
            sym = _read_stream(r, n_weights, k)
            pos = _read_positions(r, numel, width, n_weights, n_pos)
            idx = torch.zeros(numel, dtype=torch.int64)
            mask = torch.zeros(numel, dtype=torch.bool)
            idx[torch.from_numpy(pos)] = torch.from_numpy(sym)
            mask[torch.from_numpy(pos)] = True
            out.shared[name] = SharedLayerData(cb, idx.reshape(shape), mask.reshape(shape))
        elif kind == SPARSE_FP32:
            width, n_weights, n_pos = r.unpack("BII")
            vals = np.frombuffer(r.take(4 * n_weights), dtype="<f4").copy()
            pos = _read_positions(r, numel, width, n_weights, n_pos)
            w = torch.zeros(numel, dtype=torch.float32)
            w[torch.from_numpy(pos)] = torch.from_numpy(vals)
            out.sparse[name] = w.reshape(shape)
        else:
            raise NnqError(f"unknown record kind {kind} in {path}; the file is corrupt")
    if r.pos != r.end:
        raise NnqError(f"{path} has {r.end - r.pos} unread bytes after its records; the file is corrupt")
    return out


def load_into(model: nn.Module, decoded: DecodedModel) -> nn.Module:
    """Load a decoded file into `model`: a float model (weights rebuilt) or a shared one.

    Raises:
        NnqError: the file's tensors do not match the model's.
    """
    modules = dict(model.named_modules())
    sd = {}
    for name, t in decoded.state_dict().items():
        sd[name] = t
    for name, layer in decoded.shared.items():
        if isinstance(modules.get(name), SHARED_LAYERS):
            sd[f"{name}.codebook"], sd[f"{name}.idx"], sd[f"{name}.mask"] = layer.codebook, layer.idx, layer.mask
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise NnqError(f"compressed file does not fit this model ({first}); build the model of the run") from None
    return model
