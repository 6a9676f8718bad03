"""Migrates the deep_compression package's first-schema summaries (one flat dict, per-stage tables inside).

Derived from each run's own files:

* The measured figures (test top-1, float baseline, artifact size, compression ratio, train time, parameters) stay;
  everything else of the first schema (test error, fp32 bytes, density, the stage and layer tables) moves under
  ``extra``, with the retraining and fine-tuning LRs of config.json.
* ``fp_recipe``: how config.json made the float baseline (epochs, optimizer, start weights).
* ``w_bits``: the weight-sharing width of each layer (config.json ``bits``) averaged over the layer's surviving
  weights (stages.json: layer size x the density the pruning reached), as ``train.mean_weight_bits`` does.
* ``model_bits``: the first schema wrote 8 x the file size. The approved folder keeps no ``model.nqdc``, but the
  file's layout is fixed by the architecture (config.json): the record heads (kind, name, dtype, shape), the
  per-layer fields (codebook size, width, counts) and the per-stream heads (coding, bit length) are format
  overhead of known size; every raw tensor's bits follow from its shape and dtype. What is left of the measured
  ``size_bytes`` is the codebooks, the Huffman tables and the coded streams. Those streams end on a byte, so the
  count includes their zero padding (at most 7 bits per stream; ``extra.model_bits_padding_bits_max``): the only
  part of the representation the folder cannot separate from overhead. The per-layer bits the first schema wrote
  (``compress_rate_pqh_pct``, 3 decimals) must agree with it within their rounding, else the run is re-run.
* Sweeps: the first-schema sweep summary kept only the best point, and the points' train times and stored bits
  were never written; such a run is re-run (``python -m papers.deep_compression.sweeps``), not migrated: its
  row is left without ``train_time_s``, which the driver reports as invalid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.evaluate import StoredField, model_bits  # noqa: E402
from papers.deep_compression.config import Config  # noqa: E402
from papers.deep_compression.train import build_model, mean_weight_bits  # noqa: E402

# input shape of the data sets the first-schema presets used (config: dataset)
_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10_jpeg": (3, 32, 32), "cifar10": (3, 32, 32)}
_RUN_FACTS = ("paper", "preset", "status", "peak_mem_mb", "run_dir", "commit", "dirty")
_KEPT = ("dataset", "metric", "value", "fp_value", "params", "size_bytes", "compression_ratio", "train_time_s")
_DROPPED = ("model_bits", "kind", "best_point")
STREAM_HEAD = 1 + 4  # coding u8 + nbits u32 (a constant stream: coding u8, then its 2-byte symbol, counted stored)
FILE_OVERHEAD = 12 + 4  # magic, version, flags, n_records, file_len; CRC32


def _config(config: dict) -> Config:
    known = {k: v for k, v in config.items() if k in Config.__dataclass_fields__}
    for k in ("density", "bits"):
        known[k] = tuple(known[k])
    return Config(**known)


def _model(config: dict):
    return build_model(_config(config), SimpleNamespace(input_shape=_SHAPES[config["dataset"]], num_classes=10))


def _head_bytes(name: str, shape: tuple[int, ...]) -> int:
    """A record's head: kind u8, name_len u8, name, dtype u8, ndim u8, shape u32 each."""
    return 2 + len(name.encode("utf-8")) + 2 + 4 * len(shape)


def stored_fields(old: dict, config: dict) -> tuple[list[StoredField], int]:
    """The fields of the run's ``model.nqdc`` (see the module docstring) and the most padding bits they include."""
    stages = old["stages"]
    layers = {row["layer"]: row for row in stages["layers"]}
    state = _model(config).state_dict()
    overhead = FILE_OVERHEAD
    dense, streams = [], 0
    for key, t in state.items():
        module = key.rsplit(".", 1)[0]
        if module in layers and key.endswith(".weight"):
            continue
        overhead += _head_bytes(key, tuple(t.shape))
        dense.append(StoredField.fixed(key, t.numel(), 8 * t.element_size()))
    for name, row in layers.items():
        shape = tuple(state[f"{name}.weight"].shape)
        overhead += _head_bytes(name, shape) + 2 + 1 + 4 + 4  # k u16; width u8, n_weights u32, n_pos u32
        for mean_bits in (row["weight_bits_pqh"], row["index_bits_pqh"]):
            constant = mean_bits == 0
            overhead += 1 if constant else STREAM_HEAD
            streams += 0 if constant else 1
    dense_bits = model_bits(dense)
    if 8 * (stages["dense_bytes"] - sum(_head_bytes(k, tuple(state[k].shape)) for k in (f.name for f in dense))) \
            != dense_bits:
        raise ValueError(f"{old['run_dir']}: the architecture's raw tensors do not match stages.dense_bytes")
    coded = 8 * (old["size_bytes"] - overhead) - dense_bits
    n_weights = sum(round(r["weights"] * r["weights_pct"] / 100) for r in layers.values())
    fields = [StoredField.stream("codebooks, Huffman tables, index and position streams (byte-padded)",
                                 n_weights, coded)] + dense
    # cross-check: the per-layer coded bits of the first schema (compress_rate_pqh_pct has 3 decimals)
    reported = sum(r["compress_rate_pqh_pct"] / 100 * 32 * r["weights"] for r in layers.values())
    tolerance = sum(0.0005 / 100 * 32 * r["weights"] for r in layers.values()) + 7 * streams + 1
    if abs(coded - reported) > tolerance:
        raise ValueError(f"{old['run_dir']}: {coded} coded bits from the file size, {reported:.0f} from the layer "
                         "table; re-run it")
    return fields, 7 * streams


def _fp_recipe(config: dict) -> str:
    opt = "SGD momentum 0.9" if config["optimizer"] == "sgd" else "Adam"
    if not config["baseline_epochs"]:
        return f"the float weights {config['weights']}, as loaded"
    if config.get("weights"):
        return f"{config['weights']} fine-tuned by this run, {config['baseline_epochs']} epochs, {opt}"
    return f"float baseline trained by this run, {config['baseline_epochs']} epochs, {opt}"


def _survivors(old: dict) -> dict[str, int]:
    dens = old["stages"]["pruned"]["layer_density"]
    return {r["layer"]: round(r["weights"] * dens[r["layer"]]) for r in old["stages"]["layers"]}


def migrate(old: dict, config: dict, run_dir: Path) -> dict:
    env = json.loads((run_dir / "env.json").read_text())
    row = {k: old[k] for k in _RUN_FACTS + _KEPT if k in old}
    row.update({"seed": config["seed"], "dry_run": False, "message": None, "setting": None, "a_bits": None,
                "fp_recipe": _fp_recipe(config) if old.get("fp_value") is not None else None,
                "dirty": bool(old.get("dirty", env.get("dirty", True)))})
    if old.get("kind") == "sweep":  # re-run instead: its points' train times are in no file (see above)
        row.update({"kind": "sweep", "method": "Deep Compression ablations (Fig. 5, Fig. 6)", "value": None,
                    "size_bytes": None, "compression_ratio": None, "train_time_s": None,
                    "extra": {"best_point": old.get("best_point")}})
        return row
    layers = [r["layer"] for r in old["stages"]["layers"]]
    bits = dict(zip(layers, config["bits"] * len(layers) if len(config["bits"]) == 1 else config["bits"]))
    fields, padding = stored_fields(old, config)
    extra = {k: v for k, v in old.items() if k not in _RUN_FACTS + _KEPT + _DROPPED}
    extra.update({"retrain_lr": config["retrain_lr"], "share_lr": config["share_lr"],
                  "model_bits_padding_bits_max": padding,
                  "evaluated_on": "test split after every epoch (first schema: no validation split, nothing tuned on it)"})
    row.update({"method": "Deep Compression (P+Q+H)", "w_bits": mean_weight_bits(bits, _survivors(old)),
                "model_bits": model_bits(fields), "extra": extra})
    return row


def points(old: dict, config: dict, run_dir: Path) -> list[dict] | None:
    return None  # a first-schema sweep is re-run (its points' train times and stored bits are in no file)
