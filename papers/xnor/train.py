"""Train a float twin, a BWN and an XNOR-Net: ``python -m papers.xnor.train [--preset NAME] [flags]``.

A paper preset runs three stages (each a ``common.train.fit`` with its own tag, checkpoint and metric lines
in one run folder): ``float`` (fp_value), ``bwn`` (Sec. 3.1) and ``xnor`` (Sec. 3.2). The XNOR and BWN nets
are written as packed 1-bit artifacts, reloaded as packed models that compute with the XNOR-popcount kernel
and evaluated: their test predictions must equal the simulated models' predictions. The summary is the
XNOR-Net; the BWN is the run's second row (points.json).

A study run (``--preset cifar10_resnet20 --method bwn|xnor``) trains one network on the study setting
(common/settings.py) from the shared float ResNet-20, its LR chosen on the validation split; fp_value is the
setting's approved float reference.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch
from torch import nn

from common import study
from common.cli import cli_main
from common.data import find_weights, load_dataset
from common.errors import NnqError
from common.evaluate import count_params, evaluate_split, file_size, fp32_size_bytes, model_bits, tensor_bytes
from common.models import load_resnet_cifar
from common.runs import Run
from common.settings import get_setting
from common.train import Callback, cosine_per_step, fit, seed_everything
from papers.xnor import kernel
from papers.xnor.config import PRESETS, STUDY_LR_GRIDS, Config
from papers.xnor.models import build, init_from_float_
from papers.xnor.packed import load_packed, save_packed, stored_fields
from papers.xnor.xnor import binary_layers

PAPER = "xnor"
METHOD_NAMES = {"bwn": "BWN", "xnor": "XNOR-Net"}
A_BITS = {"bwn": None, "xnor": 1}  # BWN keeps real-valued inputs (W1A32); XNOR-Net binarizes them (W1A1)


def run_key(cfg: Config) -> str:
    if cfg.setting:
        return f"{get_setting(cfg.setting).arch}-{cfg.method}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.arch}-{cfg.dataset}").strip("-")


def _optimizer(cfg: Config, model: nn.Module, epochs: int, weight_decay: float = 0.0):
    # DEVIATION (README, Deviations): the paper presets train all three nets with Adam and a per-epoch cosine;
    # Sec. 4.2 trains BWN with SGD (momentum 0.9). The study runs follow Sec. 4.2 (_study_optimizer).
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))


def _study_optimizer(method: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    # Sec. 4.2: BWN (like BinaryConnect) with SGD, momentum 0.9; XNOR-Net (like BNN) with Adam.
    if method == "bwn":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=lr)


def _study_optimizer_name(method: str) -> str:
    return "SGD, momentum 0.9, no weight decay" if method == "bwn" else "Adam (0.9, 0.999), no weight decay"


def _initialise(cfg: Config, model: nn.Module) -> None:
    if cfg.init_from:
        depth = int(cfg.arch[6:]) if cfg.arch.startswith("resnet") and cfg.arch != "resnet18" else None
        if depth is None:
            raise NnqError(f"--init-from supports the CIFAR ResNets only, not {cfg.arch}")
        init_from_float_(model, load_resnet_cifar(depth, find_weights(cfg.init_from, data_dir=cfg.data_dir)))


def _stage(cfg: Config, data, run: Run, mode: str, epochs: int, callbacks=()) -> tuple[nn.Module, dict]:
    model = build(cfg.arch, mode, data.input_shape, data.num_classes)
    _initialise(cfg, model)
    opt, sched = _optimizer(cfg, model, epochs, cfg.weight_decay if mode == "fp" else 0.0)
    res = fit(model, data, epochs=epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
              callbacks=callbacks, run=run, tag={"fp": "float"}.get(mode, mode), seed=cfg.seed,
              desc={"fp": "float twin", "bwn": "BWN", "xnor": "XNOR-Net"}[mode])
    return model, res


@torch.no_grad()
def _test_predictions(model: nn.Module, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, labels) on the test split, in its stored order (in-memory or streamed data)."""
    model.eval()
    preds, labels = [], []
    for xb, yb in data.eval_batches("test", batch_size):
        preds.append(model(xb.cpu()).argmax(dim=1))
        labels.append(yb.cpu())
    return torch.cat(preds), torch.cat(labels)


def _packed_check(cfg: Config, model: nn.Module, data, run: Run, name: str) -> dict:
    """Save the 1-bit artifact, reload it as a packed model, compare test predictions with the simulated model."""
    model = model.cpu().eval()
    artifact = save_packed(model, run.dir / f"{name}_packed.safetensors")
    packed = load_packed(artifact, model).cpu()
    sim, labels = _test_predictions(model, data, cfg.eval_packed_batch)
    real, _ = _test_predictions(packed, data, cfg.eval_packed_batch)
    same = bool(torch.equal(sim, real))
    if not same:
        raise NnqError(f"{artifact}: the packed {name} model predicts differently from the simulated one on "
                       f"{int((sim != real).sum())} test images; please report this")
    layers = binary_layers(model)
    # the binarized layers alone: fp32 weights vs the artifact's sign bits + alpha (one fp32 per filter)
    fp32_bytes = sum(m.weight.numel() * 4 for m in layers)
    stored = tensor_bytes(artifact)
    sign_bytes = sum(v for k, v in stored.items() if k.endswith(".weight.bits"))
    alpha_bytes = sum(v for k, v in stored.items() if k.endswith(".alpha"))
    return {"artifact": artifact, "size": file_size(artifact), "same": same,
            "packed_top1": round(float((real == labels).float().mean() * 100), 4),
            "binary_layers_fp32_bytes": fp32_bytes, "binary_layers_sign_bytes": sign_bytes,
            "binary_layers_alpha_bytes": alpha_bytes,
            "binary_layers_ratio": round(fp32_bytes / (sign_bytes + alpha_bytes), 2)}


def _row(method: str, model: nn.Module, data, test: dict, chk: dict, train_time_s: float, **fields) -> dict:
    """The typed summary fields of one trained BWN or XNOR-Net and its checked artifact."""
    return {
        "method": METHOD_NAMES[method], "dataset": data.label, "metric": "test_top1",
        "value": round(test["top1"], 4), "w_bits": 1, "a_bits": A_BITS[method], "params": count_params(model),
        "model_bits": model_bits(stored_fields(model)), "size_bytes": chk["size"],
        "compression_ratio": round(fp32_size_bytes(model) / chk["size"], 3), "train_time_s": train_time_s,
        **fields,
        "extra": {"top5": round(test["top5"], 4), "test_error": round(100.0 - test["top1"], 4),
                  "artifact": chk["artifact"].name, "packed_value": chk["packed_top1"],
                  "packed_reproduces_predictions": chk["same"], "kernel_backend": kernel.backend_name(),
                  **{k: v for k, v in chk.items() if k.startswith("binary_layers_")}, **fields.pop("extra", {})},
    }


def _paper_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, resize=cfg.resize,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test, val_size=cfg.val_size)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        fp: dict = {}
        if cfg.baseline_epochs:
            fp_model, fp_res = _stage(cfg, data, run, "fp", cfg.baseline_epochs)
            start = f", from {cfg.init_from}" if cfg.init_from else ""
            fp = {"fp_value": round(evaluate_split(fp_model, data, "test")["top1"], 4),
                  "fp_recipe": f"float twin, {cfg.baseline_epochs} epochs, Adam, cosine{start}"}
            fp_time = fp_res["train_time_s"]
        points = []
        if cfg.bwn_epochs:
            bwn_model, bwn = _stage(cfg, data, run, "bwn", cfg.bwn_epochs)
            test = evaluate_split(bwn_model, data, "test")
            chk = _packed_check(cfg, bwn_model, data, run, "bwn")
            points.append(_row("bwn", bwn_model, data, test, chk, bwn["train_time_s"], **fp,
                               extra={"epochs": cfg.bwn_epochs, "arch": cfg.arch,
                                      "val_top1": bwn["val"]["top1"] if bwn["val"] else None}))
        model, res = _stage(cfg, data, run, "xnor", cfg.epochs, callbacks)
        test = evaluate_split(model, data, "test")
        chk = _packed_check(cfg, model, data, run, "xnor")
        extra = {"epochs": cfg.epochs, "arch": cfg.arch, "val_top1": res["val"]["top1"] if res["val"] else None,
                 "fp_train_time_s": fp_time if fp else None}
        return run.finish(_row("xnor", model, data, test, chk, res["train_time_s"], **fp, extra=extra),
                          points=points or None)


def _study_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    setting = get_setting(cfg.setting)
    data = study.load_data(setting, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    method, grid = cfg.method, cfg.lr_grid or STUDY_LR_GRIDS[cfg.method]
    run = Run.start(PAPER, cfg, run_key(cfg))

    def train(lr: float, steps: int, run_: Run | None, tag: str, cbs: Iterable[Callback] = ()):
        seed_everything(cfg.seed)
        model = build(setting.arch, method, data.input_shape, data.num_classes)
        init_from_float_(model, study.load_float_model(setting, cfg.data_dir))
        kept = {n: type(m).__name__ for n, m in model.named_modules() if n in setting.keep_float}
        if sorted(kept) != sorted(setting.keep_float) or any(t not in ("Conv2d", "Linear") for t in kept.values()):
            raise NnqError(f"{setting.name} keeps {setting.keep_float} float; this model has {kept}")
        opt = _study_optimizer(method, model, lr)
        res = fit(model, data, steps=steps, batch_size=setting.batch_size, optimizer=opt,
                  scheduler=cosine_per_step(opt, steps), scheduler_interval="step", callbacks=cbs, run=run_,
                  tag=tag, seed=cfg.seed, desc=tag, precision=cfg.precision)
        return model, res

    with run.guard():
        pilot_steps = min(setting.lr_pilot_steps, cfg.max_steps or 10**9)
        lr, pilots = study.choose_lr_in_run(
            run, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[1]["val"]["top1"], grid, pilot_steps)
        model, res = train(lr, setting.steps, run, method, callbacks)
        test = evaluate_split(model, data, "test")
        chk = _packed_check(cfg, model, data, run, method)
        ref = study.float_reference(setting.name, cfg.seed)
        fp = {"fp_value": ref[0], "fp_recipe": ref[1]} if ref else {}
        return run.finish(_row(method, model, data, test, chk, res["train_time_s"], setting=setting.name, **fp,
                               extra={"lr": lr, "lr_grid": list(grid), "pilot_steps": pilot_steps,
                                      "lr_pilots_val_top1": {str(k): v for k, v in pilots.items()},
                                      "val_top1": res["val"]["top1"] if res["val"] else None,
                                      "steps": res["steps"], "optimizer": _study_optimizer_name(method),
                                      "schedule": setting.schedule, "arch": setting.arch}))


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train the nets of ``cfg``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the XNOR stage, or for the study run's network (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        kernel.set_num_threads(cfg.threads)
    return _study_main(cfg, callbacks) if cfg.setting else _paper_main(cfg, callbacks)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.xnor.train")
