"""Migrates the xnor package's first-schema summaries (one flat dict: XNOR-Net fields + ``bwn_*`` fields).

Derived from each run's own files: the XNOR-Net row keeps its measured figures (test top-1, float twin, artifact
size, compression ratio, train time) and moves the rest under ``extra``; the BWN becomes the run's point
(points.json) with its measured top-1, artifact size and train time. ``model_bits``, ``params`` and the BWN's
fp32 file size follow from the run's configuration alone (the architecture and input shape): they count the
artifact's stored fields (papers.xnor.packed.stored_fields), not anything trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.evaluate import count_params, fp32_size_bytes, model_bits  # noqa: E402
from papers.xnor.models import build  # noqa: E402
from papers.xnor.packed import stored_fields  # noqa: E402

# input shape and classes of the data sets the first-schema presets used (config: dataset, resize)
_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10_jpeg": (3, 32, 32), "cifar10": (3, 32, 32)}
_RUN_FACTS = ("paper", "preset", "status", "peak_mem_mb", "run_dir", "commit", "dirty")
_XNOR_KEYS = ("dataset", "metric", "value", "fp_value", "params", "model_bits", "size_bytes", "compression_ratio",
              "train_time_s")


def _model(config: dict, mode: str):
    c, h, w = _SHAPES[config["dataset"]]
    if config.get("resize"):
        h = w = config["resize"]
    return build(config["arch"], mode, (c, h, w), 10)


def _fp_recipe(config: dict) -> str:
    start = f", from {config['init_from']}" if config.get("init_from") else ""
    return f"float twin, {config['baseline_epochs']} epochs, Adam, cosine{start}"


def _env(run_dir: Path) -> dict:
    import json

    return json.loads((run_dir / "env.json").read_text())


def migrate(old: dict, config: dict, run_dir: Path) -> dict:
    model = _model(config, "xnor")
    extra = {k: v for k, v in old.items() if k not in _RUN_FACTS + _XNOR_KEYS and not k.startswith("bwn_")}
    extra["test_error"] = round(100.0 - old["value"], 4)
    extra["evaluated_on"] = "test split after every epoch (first schema: no validation split, nothing tuned on it)"
    row = {k: old[k] for k in _RUN_FACTS + _XNOR_KEYS if k in old}
    row.update({"method": "XNOR-Net", "w_bits": 1, "a_bits": 1, "seed": config["seed"], "dry_run": False,
                "params": count_params(model), "model_bits": model_bits(stored_fields(model)),
                "fp_recipe": _fp_recipe(config) if old.get("fp_value") is not None else None,
                "dirty": bool(old.get("dirty", _env(run_dir).get("dirty", True))), "message": None, "extra": extra})
    return row


def points(old: dict, config: dict, run_dir: Path) -> list[dict] | None:
    if "bwn_value" not in old:
        return None
    model = _model(config, "bwn")
    size = old["bwn_size_bytes"]
    return [{**{k: old[k] for k in _RUN_FACTS + ("dataset", "metric", "fp_value") if k in old},
             "method": "BWN", "value": old["bwn_value"], "w_bits": 1, "a_bits": None, "seed": config["seed"],
             "dry_run": False, "params": count_params(model), "model_bits": model_bits(stored_fields(model)),
             "size_bytes": size, "compression_ratio": round(fp32_size_bytes(model) / size, 3),
             "train_time_s": old["bwn_train_time_s"],
             "fp_recipe": _fp_recipe(config) if old.get("fp_value") is not None else None,
             "dirty": bool(old.get("dirty", True)), "message": None,
             "extra": {"top5": old.get("bwn_top5"), "test_error": round(100.0 - old["bwn_value"], 4),
                       "artifact": old.get("bwn_artifact"), "epochs": config["bwn_epochs"], "arch": config["arch"],
                       "packed_reproduces_predictions": old.get("bwn_packed_reproduces_predictions"),
                       "evaluated_on": "test split after every epoch (first schema: no validation split)"}}]
