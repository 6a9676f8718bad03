"""Migrates the bnn package's first-schema summaries (one flat dict) to the typed schema.

Derived from each run's own files: the measured figures (test top-1, float twin, artifact size, compression
ratio, train time) stay as they are; the paper-specific ones move under ``extra``. ``model_bits`` and ``params``
follow from the run's configuration alone (the MLP's widths and the data set's input shape): model_bits counts
the stored fields (papers.bnn.train.build_model -> common.evaluate.module_fields), nothing trained.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.evaluate import count_params, model_bits, module_fields  # noqa: E402
from papers.bnn.config import Config  # noqa: E402
from papers.bnn.train import build_model  # noqa: E402

# input shape of the data sets the first-schema presets used (config: dataset)
_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
_KEEP = ("paper", "preset", "dataset", "status", "metric", "value", "fp_value", "size_bytes", "compression_ratio",
         "train_time_s", "peak_mem_mb", "run_dir", "commit", "dirty")


def migrate(old: dict, config: dict, run_dir: Path) -> dict:
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                    if k in Config.__dataclass_fields__})
    model = build_model(cfg, SimpleNamespace(input_shape=_SHAPES[config["dataset"]], num_classes=10), binary=True)
    extra = {k: v for k, v in old.items() if k not in _KEEP and k != "model_bits" and k != "params"}
    extra["evaluated_on"] = "test split after every epoch (first schema: no validation split, nothing chosen on it)"
    row = {k: old[k] for k in _KEEP if k in old}
    row.update({"method": "BNN", "w_bits": 1, "a_bits": 1, "seed": config["seed"], "dry_run": False,
                "params": count_params(model), "model_bits": model_bits(module_fields(model)),
                "fp_recipe": (f"float twin (ReLU), {config['baseline_epochs']} epochs, Adam"
                              if old.get("fp_value") is not None else None),
                "message": None, "extra": extra})
    return row
