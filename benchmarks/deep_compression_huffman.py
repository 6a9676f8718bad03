"""Huffman streams of Deep Compression files vs the empirical entropy of the symbols they code, per layer.

Issue 3 asks for Huffman streams within 1% of the empirical (order-0) entropy of their symbols. For every
shared layer of each given ``model.nqdc`` this measures the codebook-index stream and the relative-position
stream, the latter at the paper's uniform 5-bit width (Tables 2-3) and at the per-layer width that
``format.encode(width=None)`` picks, and names the symbols that carry most of each stream's excess
(excess of symbol s: p_s * (len_s + log2 p_s) bits per symbol; the excesses of all symbols, some negative,
sum to the stream's Huffman bits minus its entropy). Writes
benchmarks/results/deep_compression_huffman.json.

    python -m benchmarks.deep_compression_huffman RUN_DIR_OR_MODEL_NQDC [...]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from benchmarks._meta import write_result
from papers.deep_compression.format import _position_stream, decode
from papers.deep_compression.huffman import entropy_bits, excess_pct, huffman_code_lengths


def stream_report(symbols: np.ndarray, alphabet: int, top: int = 3) -> dict:
    """Huffman bits, entropy, gap % and the symbols with the largest excess of one stream."""
    counts = np.bincount(symbols, minlength=alphabet)
    lengths = huffman_code_lengths(counts)
    p = counts / counts.sum()
    nz = p > 0
    excess = np.zeros(alphabet)
    excess[nz] = p[nz] * (lengths[nz] + np.log2(p[nz]))  # bits per symbol above -log2 p
    h = entropy_bits(counts)
    bits = float((lengths[symbols]).sum())
    worst = np.argsort(-excess)[:top]
    return {"n": int(symbols.size), "alphabet": alphabet, "huffman_bits_per_symbol": round(bits / symbols.size, 4),
            "entropy_bits_per_symbol": round(h, 4), "gap_pct": excess_pct(bits, h * symbols.size),
            "table_bytes": (alphabet + 1) // 2,
            "excess_bits_per_symbol": round(float(excess.sum()), 5),
            "largest_excess": [{"symbol": int(s), "p": round(float(p[s]), 4), "code_len": int(lengths[s]),
                                "ideal_len": round(float(-np.log2(p[s])), 3),
                                "excess_bits_per_symbol": round(float(excess[s]), 5)}
                               for s in worst if p[s] > 0]}


def file_report(path: Path) -> dict:
    dec = decode(path)
    layers = {}
    tot = {k: [0.0, 0.0] for k in ("index", "position_w5", "position_auto")}
    for name, layer in dec.shared.items():
        pos = np.flatnonzero(layer.mask.flatten().numpy())
        idx = layer.idx.flatten().numpy()[pos].astype(np.int64)
        w_auto, rel_auto, _, _ = _position_stream(pos, None, True)
        _, rel5, _, _ = _position_stream(pos, 5, True)
        r = {"n_weights": int(pos.size), "k": int(layer.codebook.numel()),
             "index": stream_report(idx, layer.codebook.numel()),
             "position_w5": {**stream_report(rel5.astype(np.int64), 32), "width": 5,
                             "filler_pct": round(100 * float((rel5 == 0).mean()), 2)},
             "position_auto": {**stream_report(rel_auto.astype(np.int64), 1 << w_auto), "width": w_auto,
                               "filler_pct": round(100 * float((rel_auto == 0).mean()), 2)}}
        for k in tot:
            tot[k][0] += r[k]["huffman_bits_per_symbol"] * r[k]["n"]
            tot[k][1] += r[k]["entropy_bits_per_symbol"] * r[k]["n"]
        layers[name] = r
    return {"file": str(path), "size_bytes": path.stat().st_size, "layers": layers,
            "all_layers_gap_pct": {k: excess_pct(b, h) for k, (b, h) in tot.items()}}


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="run folders (their model.nqdc) or .nqdc files")
    args = ap.parse_args()
    files = [p / "model.nqdc" if p.is_dir() else p for p in args.paths]
    reports = [file_report(f) for f in files]
    out = write_result("deep_compression_huffman", {
        "what": "Huffman-coded streams vs the empirical order-0 entropy of their symbols, per layer",
        "target": "each stream within 1% of the entropy (issue 3)", "files": reports})
    buf = io.StringIO()
    for rep in reports:
        buf.write(f"{rep['file']}\n")
        for name, r in rep["layers"].items():
            buf.write(f"  {name:10s} n={r['n_weights']:6d}  index {r['index']['gap_pct']:5.2f}%  "
                      f"positions w5 {r['position_w5']['gap_pct']:5.2f}% -> w{r['position_auto']['width']} "
                      f"{r['position_auto']['gap_pct']:5.2f}%\n")
        buf.write(f"  all layers: {rep['all_layers_gap_pct']}\n")
    print(buf.getvalue() + f"-> {out}")


if __name__ == "__main__":
    run()
