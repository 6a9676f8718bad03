"""Deep Compression end to end: ``python -m papers.deep_compression.train [--preset NAME] [flags]``.

Stages (Fig. 1 of the paper): the float baseline (trained here, or loaded from --weights), then
``prune_iterations`` rounds of magnitude pruning + retraining with the masks kept applied, then
per-layer k-means weight sharing + centroid fine-tuning, then the compressed file (Huffman-coded
codebook indices and relative sparse indices). After each stage the model is evaluated and the
stage's real file is written and measured: ``pruned.nqdc`` (fp32 survivors + fixed-width relative
indices), ``shared_fixed.nqdc`` (fixed-width codebook indices), ``model.nqdc`` (Huffman). The last
one is decoded into a fresh float model, which must predict exactly what the shared model
predicts; ``size_bytes`` is its size on disk, ``model_bits`` the sum of its stored fields.

Every stage evaluates on the validation split while it trains; the test split is read once per reported
model (the stage table of the paper's Tables 2-3 and the final model). With ``--setting`` (the study row)
the whole compression runs within the setting's step budget, and the retraining LR is chosen on the
validation split by pilot runs (``common.study.choose_lr``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from common.cli import cli_main
from common.data import DataBundle, find_weights, load_dataset
from common.errors import NnqError
from common.evaluate import count_params, evaluate_split, fp32_size_bytes, model_bits, predictions
from common.models import build_model as build_common_model
from common.models import load_lenet5_mnist, load_resnet_cifar
from common.runs import Run
from common.settings import get_setting
from common.train import Callback, cosine_per_step, fit, seed_everything
from papers.deep_compression.config import PRESETS, Config
from papers.deep_compression.format import decode, encode, load_into
from papers.deep_compression.huffman import excess_pct
from papers.deep_compression.prune import PruneMasks, density_schedule, prunable_layers
from papers.deep_compression.share import share_weights_

PAPER = "deep_compression"


def weights_path(cfg: Config) -> Path:
    """Resolve --weights: as given if it exists, else under --weights-dir / $NNQ_WEIGHTS_DIR / <data dir>/../weights."""
    return find_weights(cfg.weights, cfg.weights_dir, cfg.data_dir)


def build_model(cfg: Config, data: DataBundle) -> nn.Module:
    """The float network of ``cfg`` (weights random; see load_baseline)."""
    kw = {"hidden": (300, 100), "batchnorm": False} if cfg.arch == "mlp" else {}
    return build_common_model(cfg.arch, data.input_shape, data.num_classes, **kw)


def load_baseline(cfg: Config, data: DataBundle) -> nn.Module:
    """The float model of ``cfg`` with --weights loaded (strictly)."""
    path = weights_path(cfg)
    if cfg.arch == "lenet5":
        return load_lenet5_mnist(path)
    if cfg.arch == "resnet20":
        return load_resnet_cifar(20, path, data.num_classes)
    model = build_model(cfg, data)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state), strict=True)
    return model


def per_layer(values: tuple, names: list[str], flag: str) -> dict[str, float]:
    """Broadcast a per-layer setting: one value for every layer, or one per layer in order."""
    if len(values) == 1:
        return {n: values[0] for n in names}
    if len(values) != len(names):
        raise NnqError(f"--{flag} has {len(values)} values but the model has {len(names)} prunable layers "
                       f"({', '.join(names)}); give one value or one per layer")
    return dict(zip(names, values))


def _optimizer(cfg: Config, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def run_key(cfg: Config) -> str:
    dens = "-".join(f"{d:g}" for d in cfg.density)
    bits = "-".join(map(str, cfg.bits))
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.arch}-{cfg.dataset}-d{dens}-b{bits}-i{cfg.index_bits}").strip("-")


def _error(model: nn.Module, data: DataBundle) -> float:
    """Test error (%) of a model whose number is reported (read once per reported model)."""
    return round(100.0 - evaluate_split(model, data, "test")["top1"], 4)


def compressed_layers(cfg: Config, model: nn.Module) -> list[str]:
    """The prunable layers of ``model`` less those ``--keep-float`` leaves dense and float."""
    names = list(prunable_layers(model))
    unknown = [n for n in cfg.keep_float if n not in names]
    if unknown:
        raise NnqError(f"--keep-float names {unknown}, not prunable layers of {cfg.arch}; choose from {names}")
    return [n for n in names if n not in cfg.keep_float]


def stage_steps(total: int, iterations: int) -> list[int]:
    """A step budget split evenly over ``iterations`` retraining rounds and the centroid fine-tuning (last)."""
    n = iterations + 1
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def _train(model: nn.Module, cfg: Config, data: DataBundle, run: Run | None, opt: torch.optim.Optimizer, *,
           epochs: int, steps: int | None, callbacks, tag: str, seed: int, desc: str) -> dict:
    """One training stage: ``epochs`` with a per-epoch cosine, or ``steps`` with a per-step cosine."""
    if steps is not None:
        return fit(model, data, steps=steps, batch_size=cfg.batch_size, optimizer=opt,
                   scheduler=cosine_per_step(opt, steps), scheduler_interval="step", callbacks=callbacks, run=run,
                   tag=tag, seed=seed, desc=desc, max_steps=cfg.max_steps, precision=cfg.precision)
    return fit(model, data, epochs=epochs, batch_size=cfg.batch_size, optimizer=opt,
               scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs), callbacks=callbacks, run=run,
               tag=tag, seed=seed, desc=desc, max_steps=cfg.max_steps, precision=cfg.precision)


def _hist(values: torch.Tensor, lo: float, hi: float, bins: int = 100) -> list[int]:
    return torch.histc(values.float(), bins=bins, min=lo, max=hi).long().tolist()


def _gap_pct(stream: dict) -> float:
    """How far a coded stream is above the empirical entropy of its symbols, in % of that entropy."""
    return excess_pct(stream["payload_bits"], stream["entropy_bits_per_symbol"] * stream["n"])


def layer_table(stats: dict, fixed: dict, bits: dict[str, int]) -> list[dict]:
    """Per-layer rows like the paper's Tables 2-3.

    Args:
        stats: per-layer statistics of the Huffman file (P+Q+H columns).
        fixed: per-layer statistics of the fixed-width file (P+Q columns).
        bits: layer name -> weight-sharing bits.
    """
    rows = []
    for name, s in stats.items():
        n, numel = s["n_weights"], s["numel"]
        idx, pos = s["index"], s["position"]
        coded_bits = idx["payload_bits"] + pos["payload_bits"] + 8 * (idx["table_bytes"] + pos["table_bytes"])
        coded_bits += 32 * s["k"]  # the fp32 codebook
        f = fixed[name]
        fixed_bits = f["index"]["payload_bits"] + f["position"]["payload_bits"] + 32 * f["k"]
        rows.append({
            "layer": name, "weights": numel, "weights_pct": round(100 * n / numel, 2), "fillers": s["n_fillers"],
            "weight_bits_pq": bits[name], "weight_bits_pqh": round(idx["mean_bits_per_symbol"], 3),
            "weight_entropy_bits": round(idx["entropy_bits_per_symbol"], 3), "weight_gap_pct": _gap_pct(idx),
            "index_bits_pq": f["position"]["fixed_bits_per_symbol"], "index_width_pqh": s["width"],
            "index_bits_pqh": round(pos["mean_bits_per_symbol"], 3),
            "index_entropy_bits": round(pos["entropy_bits_per_symbol"], 3), "index_gap_pct": _gap_pct(pos),
            "compress_rate_pq_pct": round(100 * fixed_bits / (32 * numel), 3),
            "compress_rate_pqh_pct": round(100 * coded_bits / (32 * numel), 3),
        })
    return rows


def float_baseline(cfg: Config, data: DataBundle, run: Run | None, callbacks: Iterable[Callback] = ()
                   ) -> tuple[nn.Module, float]:
    """Stage 0: the float model of ``cfg`` (tag "float"); return (model, train s).

    --weights alone loads them; --baseline-epochs alone trains from scratch; both fine-tune the loaded
    weights on the run's data (e.g. the shared ResNet-20 on our CIFAR-10 JPEG copy), so that the float
    baseline has seen the same data as the compressed model it is compared with.
    """
    if not cfg.baseline_epochs:
        return load_baseline(cfg, data).eval(), 0.0
    model = load_baseline(cfg, data).train() if cfg.weights else build_model(cfg, data)
    opt = _optimizer(cfg, model.parameters(), cfg.lr, cfg.weight_decay)
    res = _train(model, cfg, data, run, opt, epochs=cfg.baseline_epochs, steps=None, callbacks=callbacks,
                 tag="float", seed=cfg.seed, desc="float")
    return model.eval(), res["train_time_s"]


def prune_retrain(model: nn.Module, cfg: Config, data: DataBundle, run: Run | None, density: dict[str, float],
                  *, iterations: int, epochs: int, tag: str = "prune", callbacks: Iterable[Callback] = (),
                  steps: list[int] | None = None, lr: float | None = None) -> tuple[PruneMasks, list[dict], float]:
    """Stage 1 (Han 2015 Sec. 3.3): ``iterations`` rounds of prune -> retrain ``epochs`` epochs (or ``steps[t]``
    steps), in place, at ``lr`` (default --retrain-lr).

    Returns:
        (the masks, the quality parameter of every layer per round, training seconds).
    """
    masks = PruneMasks(model, list(density)).attach()
    schedules = {n: density_schedule(d, iterations) for n, d in density.items()}
    qualities, seconds = [], 0.0
    for t in range(iterations):
        qualities.append(masks.prune_({n: s[t] for n, s in schedules.items()}))
        if epochs or steps:
            opt = _optimizer(cfg, model.parameters(), lr or cfg.retrain_lr, cfg.weight_decay)
            res = _train(model, cfg, data, run, opt, epochs=epochs, steps=steps[t] if steps else None,
                         callbacks=[masks, *callbacks], tag=f"{tag}{t + 1}", seed=cfg.seed + t + 1,
                         desc=f"prune {t + 1}/{iterations} ({masks.total_density():.1%} kept)")
            seconds += res["train_time_s"]
    masks.detach()
    masks.apply_()
    return masks, qualities, seconds


def share_finetune(model: nn.Module, cfg: Config, data: DataBundle, run: Run | None, bits: dict[str, int],
                   masks: dict[str, torch.Tensor] | None, *, init: str, epochs: int, tag: str = "share",
                   callbacks: Iterable[Callback] = (), steps: int | None = None, lr: float | None = None,
                   report: bool = True) -> tuple[dict[str, nn.Module], float | None, float]:
    """Stage 2 (Sec. 3): k-means weight sharing, then ``epochs`` epochs (or ``steps`` steps) of centroid
    fine-tuning (Eq. 3) at ``lr`` (default --share-lr).

    Returns:
        (the shared layers by name, test error before fine-tuning (None unless ``report``), training seconds).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    shared = share_weights_(model, bits, init=init, masks=masks, generator=gen)
    model.eval()
    error_before = _error(model, data) if report else None
    seconds = 0.0
    if epochs or steps:
        opt = _optimizer(cfg, model.parameters(), lr or cfg.share_lr, 0.0)
        res = _train(model, cfg, data, run, opt, epochs=epochs, steps=steps, callbacks=callbacks, tag=tag,
                     seed=cfg.seed + 100, desc="centroid fine-tune")
        seconds = res["train_time_s"]
    model.eval()
    for m in shared.values():
        m._current_weight()
    return shared, error_before, seconds


def load_data(cfg: Config) -> DataBundle:
    """The data of ``cfg``: its study setting's (training less validation, validation, test), else --dataset."""
    if cfg.setting:
        from common.study import load_data as setting_data

        return setting_data(get_setting(cfg.setting), cfg.data_dir, limit_train=cfg.limit_train,
                            limit_test=cfg.limit_test)
    return load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, resize=cfg.resize,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test, val_size=cfg.val_size)


def compress(model: nn.Module, cfg: Config, data: DataBundle, run: Run | None, density: dict[str, float],
             bits: dict[str, int], *, lr: float, steps: int | None, callbacks: Iterable[Callback] = (),
             report: bool = True) -> dict:
    """Stages 1-2 on ``model`` in place: prune -> retrain (x iterations) -> share -> fine-tune centroids.

    Args:
        lr: retraining LR; centroid fine-tuning runs at ``lr * share_lr / retrain_lr``.
        steps: the whole step budget (split by :func:`stage_steps`), or None for the preset's epochs.
        report: evaluate the intermediate models on the test split (the stage table); pilots pass False.
    """
    split = stage_steps(steps, cfg.prune_iterations) if steps else None
    masks, qualities, t_prune = prune_retrain(model, cfg, data, run, density, iterations=cfg.prune_iterations,
                                              epochs=cfg.epochs, callbacks=callbacks, steps=split and split[:-1],
                                              lr=lr)
    model.eval()
    out = {"masks": masks, "qualities": qualities, "t_prune": t_prune}
    if report:
        out["pruned_error"] = _error(model, data)
        out["pruned_file"] = encode(model, run.dir / "pruned.nqdc", width=cfg.index_bits, huffman=False,
                                    sparse_layers=list(density))
        big = out["big"] = max(density, key=lambda n: prunable_layers(model)[n].weight.numel())
        w = prunable_layers(model)[big].weight.detach().flatten()
        out["w_pruned"] = w[masks.masks[big].flatten()].clone()
    shared, out["error_before_ft"], out["t_share"] = share_finetune(
        model, cfg, data, run, bits, masks.masks, init=cfg.init, epochs=cfg.share_epochs, callbacks=callbacks,
        steps=split[-1] if split else None, lr=lr * cfg.share_lr / cfg.retrain_lr, report=report)
    out["shared"] = shared
    return out


def choose_retrain_lr(cfg: Config, data: DataBundle, base: nn.Module, density: dict[str, float],
                      bits: dict[str, int], run: Run) -> tuple[float, dict[float, float]]:
    """The retraining LR of ``cfg.lr_grid`` whose pilot (the whole compression at the setting's pilot budget,
    from the same float model) scores best on the validation split; pilots are kept in ``pilots.json``."""
    from common.study import choose_lr

    pilot_steps = (get_setting(cfg.setting).lr_pilot_steps if cfg.setting
                   else cfg.pilot_steps or max(1, (cfg.steps or 0) // 4))
    if cfg.max_steps:
        pilot_steps = min(pilot_steps, cfg.max_steps * (cfg.prune_iterations + 1))

    def pilot(lr: float, steps: int) -> float:
        seed_everything(cfg.seed)
        model = copy.deepcopy(base).train()
        compress(model, cfg, data, None, density, bits, lr=lr, steps=steps, report=False)
        return evaluate_split(model, data, "val")["top1"]

    done = {float(k): v for k, v in (run.read_json("pilots.json") if (run.dir / "pilots.json").is_file()
                                     else {}).items()}
    return choose_lr(pilot, cfg.lr_grid, max(pilot_steps, cfg.prune_iterations + 1), done=done,
                     record=lambda r: run.write_json("pilots.json", {str(k): v for k, v in r.items()}))


def main(cfg: Config, callbacks: Iterable[Callback] = ()):
    """Compress the network of ``cfg`` through the three stages; return the typed summary.

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks of every training stage (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_data(cfg)
    layers = compressed_layers(cfg, build_model(cfg, data))  # check the per-layer flags before any training
    density = per_layer(cfg.density, layers, "density")
    bits = per_layer(cfg.bits, layers, "bits")
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        times = {}
        # ---- stage 0: float baseline
        model, times["float"] = float_baseline(cfg, data, run, callbacks)
        fp_bytes = fp32_size_bytes(model)
        fp_error = _error(model, data)
        big = max(layers, key=lambda n: prunable_layers(model)[n].weight.numel())
        w_dense = prunable_layers(model)[big].weight.detach().flatten().clone()

        lr, pilots = cfg.retrain_lr, {}
        if cfg.lr_grid:
            lr, pilots = choose_retrain_lr(cfg, data, model, density, bits, run)
            seed_everything(cfg.seed)

        # ---- stages 1-2: iterative pruning + retraining, weight sharing + centroid fine-tuning
        c = compress(model, cfg, data, run, density, bits, lr=lr, steps=cfg.steps, callbacks=callbacks)
        masks, shared = c["masks"], c["shared"]
        times["prune"], times["share"] = c["t_prune"], c["t_share"]
        shared_error = _error(model, data)
        shared_file = encode(model, run.dir / "shared_fixed.nqdc", width=cfg.index_bits, huffman=False)

        # ---- stage 3: Huffman coding (Sec. 4) -> the real file; decode and check it
        final = encode(model, run.dir / "model.nqdc", width=None if cfg.auto_index_bits else cfg.index_bits,
                       huffman=True)
        restored = load_into(build_model(cfg, data), decode(run.dir / "model.nqdc")).eval()
        same = torch.equal(predictions(restored, data.x_test), predictions(model, data.x_test))
        if not same:
            raise NnqError(f"{run.dir / 'model.nqdc'} does not reproduce the shared model's predictions; "
                           "please report this")
        test = evaluate_split(restored, data, "test")
        final_error = round(100.0 - test["top1"], 4)

        table = layer_table(final.layers, shared_file.layers, bits)
        sym_bits = sum(s["index"]["payload_bits"] for s in final.layers.values())
        sym_n = sum(s["index"]["n"] for s in final.layers.values())
        ent = sum(s["index"]["entropy_bits_per_symbol"] * s["index"]["n"] for s in final.layers.values())
        pos_bits = sum(s["position"]["payload_bits"] for s in final.layers.values())
        pos_ent = sum(s["position"]["entropy_bits_per_symbol"] * s["position"]["n"] for s in final.layers.values())

        def stage(size: int, error: float) -> dict:
            return {"size_bytes": size, "error": error, "ratio": round(fp_bytes / size, 3)}

        report = {
            "float": stage(fp_bytes, fp_error),
            "pruned": {**stage(c["pruned_file"].size_bytes, c["pruned_error"]), "file": "pruned.nqdc",
                       "density": round(masks.total_density(), 5),
                       "layer_density": {n: round(d, 5) for n, d in masks.density().items()},
                       "quality": c["qualities"]},
            "shared": {**stage(shared_file.size_bytes, shared_error), "file": "shared_fixed.nqdc",
                       "error_before_finetune": c["error_before_ft"], "init": cfg.init},
            "huffman": {**stage(final.size_bytes, final_error), "file": "model.nqdc"},
            "layers": table,
            "huffman_vs_entropy": {
                "index_bits_per_symbol": round(sym_bits / max(1, sym_n), 4),
                "index_entropy_bits": round(ent / max(1, sym_n), 4),
                "index_gap_pct": excess_pct(sym_bits, ent),
                "position_gap_pct": excess_pct(pos_bits, pos_ent)},
            "dense_bytes": final.dense_bytes,
            "train_time_s": times,
        }
        run.write_json("stages.json", report)
        lo, hi = float(w_dense.min()), float(w_dense.max())
        sm = shared[big]
        counts = torch.bincount(sm.idx[sm.mask], minlength=sm.codebook.numel())
        run.write_json("histograms.json", {
            "layer": big, "range": [lo, hi], "bins": 100,
            "dense": _hist(w_dense, lo, hi), "pruned": _hist(c["w_pruned"], lo, hi),
            "shared_centroids": sm.codebook.detach().tolist(), "shared_counts": counts.tolist()})

        fp_value, fp_recipe = round(100 - fp_error, 4), _fp_recipe(cfg)
        if cfg.setting:
            from common.study import float_reference

            ref = float_reference(cfg.setting, cfg.seed)
            fp_value, fp_recipe = ref if ref else (None, None)
        w_bits = mean_weight_bits(bits, {n: int(m.mask.sum()) for n, m in shared.items()})
        return run.finish({
            "method": "Deep Compression (P+Q+H)", "dataset": data.label, "metric": "test_top1",
            "value": round(test["top1"], 4), "fp_value": fp_value, "fp_recipe": fp_recipe,
            "w_bits": w_bits, "a_bits": None, "setting": cfg.setting,
            "params": count_params(build_model(cfg, data)), "model_bits": model_bits(final.stored_fields()),
            "size_bytes": final.size_bytes, "compression_ratio": round(fp_bytes / final.size_bytes, 3),
            "train_time_s": round(sum(times.values()), 3),
            "extra": {"test_error": final_error, "fp_test_error": fp_error, "fp32_bytes": fp_bytes,
                      "density": round(masks.total_density(), 5), "artifact": "model.nqdc",
                      "artifact_reproduces_predictions": same, "retrain_lr": lr,
                      "share_lr": lr * cfg.share_lr / cfg.retrain_lr,
                      "lr_pilots_val_top1": {str(k): v for k, v in pilots.items()},
                      "val_top1": evaluate_split(restored, data, "val")["top1"] if data.has_split("val") else None,
                      "stages": report},
        })


def mean_weight_bits(bits: dict[str, int], survivors: dict[str, int]) -> float:
    """``Summary.w_bits``: the weight-sharing width of each shared layer (a codebook of 2**bits centroids,
    the paper's "5-bit" / "8-bit"), averaged over the layers' surviving weights."""
    total = sum(survivors.values())
    return round(sum(bits[n] * k for n, k in survivors.items()) / max(1, total), 4)


def _fp_recipe(cfg: Config) -> str:
    """How this run's own float baseline (its fp_value) was made."""
    opt = "SGD momentum 0.9" if cfg.optimizer == "sgd" else "Adam"
    if not cfg.baseline_epochs:
        return f"the float weights {cfg.weights}, as loaded"
    if cfg.weights:
        return f"{cfg.weights} fine-tuned by this run, {cfg.baseline_epochs} epochs, {opt}"
    return f"float baseline trained by this run, {cfg.baseline_epochs} epochs, {opt}"


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.deep_compression.train")
