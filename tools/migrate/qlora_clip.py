"""Typed summaries for the approved QLoRA-on-CLIP runs of the first schema (``python tools/migrate_summaries.py qlora_clip``).

Every field comes from the run's own files: the accuracies, storage, times and the artifact's measured size from
``summary.json`` / ``variants.json``; the float reference from its full fine-tuning row (runs without one get no
``fp_value``); ``model_bits`` from the stored fields of each variant's model, rebuilt from ``config.json`` (the
architecture, quantization and adapters; the weights do not change the count) and checked against the base-layer
bytes and trainable parameters the run measured. Not derivable and therefore left null: each variant's own peak
memory (these runs recorded the process's running maximum) and the validation accuracies (these runs evaluated
the test split after every epoch; there was no validation split).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PAPER = "qlora_clip"
HEADLINE = "qlora_nf4"


@functools.lru_cache(maxsize=None)
def _variant_facts(config_json: str, variant: str) -> tuple[int, int, int, int]:
    """(model_bits, base bytes, trainable params, float params) of ``variant`` built as the run's config says."""
    from common import clip as cclip
    from papers.qlora_clip import lora
    from papers.qlora_clip.config import Config
    from papers.qlora_clip.train import class_prompts, prepare_variant
    from common.evaluate import count_params, model_bits

    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(config_json).items()})
    classes, templates = class_prompts(cfg.dataset)
    bundle = cclip.load_clip(cfg.model, None)  # same architecture; the weights do not enter the count
    float_clf = cclip.ClipClassifier(bundle, classes, templates).eval()
    lora.split_attention_(float_clf)
    base_names = lora.select_modules(float_clf, lora.ALL_LINEAR if cfg.quantize_text else lora.IMAGE_TOWER_TARGETS)
    clf, _, _ = prepare_variant(variant, float_clf, cfg)
    storage = lora.base_weight_storage(clf, base_names)
    return model_bits(lora.stored_fields(clf)), storage["bytes"], lora.trainable_params(clf), count_params(float_clf)


def _rows(run_dir: Path) -> dict[str, dict]:
    return {r["variant"]: r for r in json.loads((run_dir / "variants.json").read_text())}


def _row(old: dict, config: dict, run_dir: Path, variant: str) -> dict:
    from papers.qlora_clip.train import VARIANT_METHOD

    rows = _rows(run_dir)
    r = rows[variant]
    bits, base_bytes, trainable, float_params = _variant_facts(json.dumps(config, sort_keys=True), variant)
    if base_bytes != r["base_bytes"] or trainable != r["trainable_params"] or float_params != old["params"]:
        raise SystemExit(f"{run_dir.name}: the rebuilt {variant} does not match the run's measured storage "
                         f"({base_bytes} vs {r['base_bytes']} B, {trainable} vs {r['trainable_params']} trainable); "
                         "re-run it instead")
    fp = rows.get("full_ft")
    size = old["size_bytes"] if variant == HEADLINE else None
    lr = None if variant == "zero_shot" else config["full_ft_lr"] if variant == "full_ft" else config["lr"]
    return {
        "paper": PAPER, "preset": config["preset"], "status": old["status"], "kind": "model",
        "method": VARIANT_METHOD[variant], "dataset": old["dataset"], "metric": old["metric"], "value": r["top1"],
        "fp_value": fp["top1"] if fp else None,
        "fp_recipe": (f"full fine-tuning of the fp32 image tower, same data and budget ({config['epochs']} epochs, "
                      f"batch {config['batch_size']}, AdamW lr {config['full_ft_lr']:g})") if fp else None,
        "w_bits": 4 if r["base"] != "fp32" else None, "a_bits": None, "g_bits": None, "setting": None,
        "seed": config["seed"], "params": float_params + (trainable if r["adapted_layers"] else 0),
        "model_bits": bits, "size_bytes": size,
        "compression_ratio": old["compression_ratio"] if size else None,
        "train_time_s": r["train_time_s"], "peak_mem_mb": None, "dry_run": False, "run_dir": old["run_dir"],
        "commit": old["commit"], "dirty": old["dirty"], "message": old.get("message"),
        "extra": {"variant": variant, "base": r["base"], "val_top1": None,
                  "base_test_top1": r["zero_shot_top1"], "trainable_params": r["trainable_params"],
                  "bits_per_base_param": r["bits_per_base_param"], "base_ratio_to_fp32": r["base_ratio_to_fp32"],
                  "steps": r["steps"], "lr": lr, "time_per_step_s": r["time_per_step_s"],
                  "state_bytes": r["state_bytes"], "optimizer": r["optimizer"], "peak_mem_kind": None,
                  "per_epoch_eval_split": "test"},
    }


def migrate(old: dict, config: dict, run_dir: Path) -> dict:
    new = _row(old, config, run_dir, HEADLINE)
    new["extra"].update({
        "model": old["model"], "pretrained": old["pretrained"], "pretraining": old["pretraining"],
        "split_attention_modules": old["split_attention_modules"], "compute_dtype": config["compute_dtype"],
        "variants_top1": old["variants"], "datatype_rel_mse": old["datatype_rel_mse"],
        "artifact": "qlora_nf4_model.safetensors",
        "process_peak_rss_mb": old["peak_mem_mb"],
    })
    return new


def points(old: dict, config: dict, run_dir: Path) -> list[dict]:
    return [_row(old, config, run_dir, v) for v in _rows(run_dir) if v != HEADLINE]
