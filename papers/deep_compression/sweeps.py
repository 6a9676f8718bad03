"""The paper's two ablations, measured on real files: ``python -m papers.deep_compression.sweeps``.

1. Accuracy vs compression rate for pruning only, quantization only, and both (Fig. 6): each
   point starts from the same float baseline, is retrained/fine-tuned for the preset's epochs,
   and its compression rate is the fp32 size over the size of its Huffman-coded file.
2. Centroid initialisation (Sec. 6.2, Fig. 8): on the pruned model, weight sharing with linear,
   density-based and random initialisation at several bit widths, test error before and after
   centroid fine-tuning.

Writes one run folder (``tradeoff.json``, ``init_study.json``) whose summary.json is a sweep (``kind="sweep"``,
no single ``value``) and whose points.json holds one typed row per measured model: the float baseline, every
pruning / quantization / both point (with its file's size and stored bits) and every initialisation row.
Approve it like a training run.
"""

from __future__ import annotations

import copy

import torch

from common.cli import parse_config
from common.errors import NnqError
from common.evaluate import count_params, fp32_size_bytes, model_bits, module_fields
from common.runs import Run
from common.train import seed_everything
from papers.deep_compression.config import PRESETS, Config
from papers.deep_compression.format import encode
from papers.deep_compression.prune import prunable_layers
from papers.deep_compression.share import INIT_METHODS
from papers.deep_compression.train import (PAPER, _error, float_baseline, load_data, per_layer, prune_retrain,
                                           run_key, share_finetune)

DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.03, 0.02)
BITS = (8, 6, 4, 3, 2, 1)
BOTH = ((0.2, 6), (0.1, 5), (0.08, 4), (0.05, 3), (0.03, 3), (0.03, 2))
INIT_BITS = (1, 2, 3, 4, 5)


METHODS = {"float": "float", "pruning": "pruning only", "quantization": "quantization only",
           "both": "pruning + quantization"}


def _point(kind, model, cfg, data, run, fp_bytes, name, seconds, **extra) -> dict:
    path = run.dir / f"{name}.nqdc"
    shared = any(hasattr(m, "codebook") for m in model.modules())
    layers = [] if shared else list(prunable_layers(model))
    stats = encode(model, path, width=cfg.index_bits, huffman=True, sparse_layers=layers)
    error = _error(model.eval(), data)
    path.unlink()  # the size is what we keep; the rate is measured on the file just written
    return {"kind": kind, **extra, "size_bytes": stats.size_bytes, "ratio": round(fp_bytes / stats.size_bytes, 3),
            "rate_pct": round(100 * stats.size_bytes / fp_bytes, 3), "error": error,
            "model_bits": model_bits(stats.stored_fields()), "train_time_s": round(seconds, 3)}


def point_rows(points: list[dict], study: list[dict], common: dict) -> list[dict]:
    """The typed rows (points.json) of the trade-off points and the initialisation study.

    Args:
        points: tradeoff.json (the float baseline first).
        study: init_study.json's rows.
        common: the fields every row shares (dataset, metric, fp_value, fp_recipe, params).
    """
    rows = []
    for p in points:
        bits = p.get("bits")
        rows.append({**common, "method": METHODS[p["kind"]], "value": round(100 - p["error"], 4),
                     "w_bits": bits, "model_bits": p.get("model_bits"), "size_bytes": p["size_bytes"],
                     "compression_ratio": p["ratio"], "train_time_s": p.get("train_time_s"),
                     "extra": {k: p[k] for k in ("kind", "density", "bits", "rate_pct", "error") if k in p}})
    for r in study:
        rows.append({**common, "method": f"{r['init']} init, {r['bits']}-bit sharing", "value": round(100 - r["error"], 4),
                     "w_bits": r["bits"], "train_time_s": r.get("train_time_s"),
                     "extra": {"kind": "init", **{k: r[k] for k in ("init", "bits", "error_before_finetune", "error")}}})
    return rows


def main(cfg: Config, *, densities=DENSITIES, bits=BITS, both=BOTH, init_bits=INIT_BITS):
    """Run both ablations for the network and schedule of ``cfg``; return the typed (sweep) summary."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_data(cfg)
    run = Run.create(PAPER, cfg.preset, "sweep-" + run_key(cfg), cfg.seed, cfg.out_dir,
                     {**cfg.to_dict(), "sweep": {"densities": densities, "bits": bits, "both": both,
                                                 "init_bits": init_bits}})
    with run.guard():
        seed_everything(cfg.seed)
        base, base_time = float_baseline(cfg, data, run)
        fp_bytes, fp_error = fp32_size_bytes(base), _error(base, data)
        layers = list(prunable_layers(base))
        points = [{"kind": "float", "size_bytes": fp_bytes, "ratio": 1.0, "rate_pct": 100.0, "error": fp_error}]
        it = max(1, cfg.prune_iterations)
        points[0].update(train_time_s=round(base_time, 3), model_bits=model_bits(module_fields(base)))
        total = base_time
        for d in densities:  # pruning only: fp32 survivors, Huffman-coded positions
            m = copy.deepcopy(base)
            _, _, t = prune_retrain(m, cfg, data, None, {n: d for n in layers}, iterations=it, epochs=cfg.epochs)
            total += t
            points.append(_point("pruning", m, cfg, data, run, fp_bytes, f"p{d}", base_time + t, density=d))
        for b in bits:  # quantization only: every weight kept, shared, fine-tuned
            m = copy.deepcopy(base)
            _, _, t = share_finetune(m, cfg, data, None, {n: b for n in layers}, None, init=cfg.init,
                                     epochs=cfg.share_epochs)
            total += t
            points.append(_point("quantization", m, cfg, data, run, fp_bytes, f"q{b}", base_time + t, bits=b))
        for d, b in both:
            m = copy.deepcopy(base)
            masks, _, t = prune_retrain(m, cfg, data, None, {n: d for n in layers}, iterations=it, epochs=cfg.epochs)
            _, _, t2 = share_finetune(m, cfg, data, None, {n: b for n in layers}, masks.masks, init=cfg.init,
                                      epochs=cfg.share_epochs)
            total += t + t2
            points.append(_point("both", m, cfg, data, run, fp_bytes, f"pq{d}-{b}", base_time + t + t2,
                                 density=d, bits=b))
        run.write_json("tradeoff.json", points)

        # centroid initialisation on the preset's pruned model
        pruned = copy.deepcopy(base)
        masks, _, t_pruned = prune_retrain(pruned, cfg, data, None, per_layer(cfg.density, layers, "density"),
                                           iterations=it, epochs=cfg.epochs)
        total += t_pruned
        pruned_error = _error(pruned, data)
        study = []
        for init in INIT_METHODS:
            for b in init_bits:
                m = copy.deepcopy(pruned)
                _, before, t = share_finetune(m, cfg, data, None, {n: b for n in layers}, masks.masks, init=init,
                                              epochs=cfg.share_epochs)
                total += t
                study.append({"init": init, "bits": b, "error_before_finetune": before,
                              "error": _error(m, data), "train_time_s": round(base_time + t_pruned + t, 3)})
        run.write_json("init_study.json", {"pruned_error": pruned_error, "density": cfg.density, "rows": study})

        opt = "SGD momentum 0.9" if cfg.optimizer == "sgd" else "Adam"
        common = {"dataset": data.label, "metric": "test_top1", "fp_value": round(100 - fp_error, 4),
                  "fp_recipe": f"float baseline trained by this run, {cfg.baseline_epochs} epochs, {opt}",
                  "params": count_params(base)}
        best = min((p for p in points if p["kind"] == "both"), key=lambda p: (p["error"] > fp_error + 0.5, -p["ratio"]))
        return run.finish({**common, "kind": "sweep", "method": "Deep Compression ablations (Fig. 6, Fig. 8)",
                           "value": None, "train_time_s": round(total, 3),
                           "extra": {"best_point": best, "pruned_error": pruned_error}},
                          points=point_rows(points, study, common))


def cli(argv: list[str] | None = None):
    """Parse the same flags as the train command and run the sweeps."""
    try:
        cfg = parse_config(Config, PRESETS, argv, prog="python -m papers.deep_compression.sweeps")
        summary = main(cfg)
    except NnqError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"sweep run: {summary.run_dir}")
    return summary


if __name__ == "__main__":
    cli()
