"""Train a DoReFa-Net: ``python -m papers.dorefa.train [--preset NAME] [--w-bits W --a-bits A --g-bits G]``.

The paper's own settings (``quick``, ``svhn``, ``svhn_convnet_mnist``, ``paper``): the network with every layer but
the first and last made a DoReFa layer (W-bit weights, A-bit inputs, G-bit gradients of its output), trained from
scratch with Adam (or from ``--weights``); ``--baseline-epochs`` also trains a float twin of the same recipe for
fp_value. A study run (``--preset cifar10_resnet20``): the study setting's float ResNet-20 fine-tuned with the
setting's batch, steps and per-step cosine; the Adam LR chosen on the validation split; fp_value the setting's
approved float reference.

Either way the trained model is written as its real artifact (k-bit packed weight codes, the 1-bit layers'
scales), reloaded into a fresh model, and must predict exactly what the trained model predicts.
"""

from __future__ import annotations

import copy
import re
from typing import Iterable

import torch
from torch import nn

from common import study
from common.cli import cli_main
from common.data import load_dataset
from common.errors import NnqError
from common.evaluate import count_params, evaluate_split, file_size, fp32_size_bytes, model_bits
from common.runs import Run
from common.settings import get_setting
from common.train import Callback, cosine_per_step, fit, float_start, run_paper_or_study, seed_everything
from papers.dorefa.artifact import load_packed, save_packed, stored_fields
from papers.dorefa.config import PRESETS, STUDY_LR_GRID, Config
from papers.dorefa.dorefa import FLOAT_BITS, quantize_model_
from papers.dorefa.models import EDGE_LAYERS, build_float

PAPER = "dorefa"


def _bits_or_none(k: int) -> int | None:
    return None if k == FLOAT_BITS else k


def run_key(cfg: Config) -> str:
    arch = get_setting(cfg.setting).arch if cfg.setting else cfg.arch
    key = f"{arch}-w{cfg.w_bits}a{cfg.a_bits}g{cfg.g_bits}" + ("" if cfg.setting else f"-{cfg.dataset}")
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def build_dorefa(cfg: Config, float_model: nn.Module, arch: str) -> nn.Module:
    """The DoReFa-Net of ``cfg``: a copy of ``float_model`` whose inner conv/linear layers are DoReFa layers."""
    first, last = EDGE_LAYERS[arch]
    return quantize_model_(copy.deepcopy(float_model), cfg.w_bits, cfg.a_bits, cfg.g_bits, first=first, last=last)


def _optimizer(model: nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":  # Sec. 3: Adam
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _fit(cfg: Config, model: nn.Module, data, run: Run, tag: str, callbacks: Iterable[Callback] = ()) -> dict:
    """The paper-setting recipe: ``cfg.epochs`` epochs, LR halved every ``lr_decay_epochs`` or cosine per step."""
    opt = _optimizer(model, cfg, cfg.lr)
    if cfg.lr_decay_epochs:
        sched, interval = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_decay_epochs, 0.5), "epoch"
    else:
        total = cfg.epochs * data.train_steps_per_epoch(cfg.batch_size)
        sched, interval = cosine_per_step(opt, total), "step"
    return fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
               scheduler_interval=interval, callbacks=callbacks, run=run, tag=tag, seed=cfg.seed, desc=tag)


@torch.no_grad()
def _test_logits(model: nn.Module, data, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb.cpu()) for xb, _ in data.eval_batches("test", batch_size)])


def _artifact_check(model: nn.Module, data, run: Run, rebuild) -> dict:
    model = model.cpu().eval()
    artifact = save_packed(model, run.dir / "dorefa_packed.safetensors")
    reloaded = load_packed(artifact, rebuild()).cpu().eval()
    ours, theirs = _test_logits(model, data), _test_logits(reloaded, data)
    same = bool(torch.equal(ours.argmax(1), theirs.argmax(1)))
    if not same:
        raise NnqError(f"{artifact} does not reproduce the trained model's predictions; please report this")
    return {"artifact": artifact, "size": file_size(artifact), "same": same,
            "logits_identical": bool(torch.equal(ours, theirs))}


def _row(cfg: Config, model: nn.Module, data, test: dict, chk: dict, res: dict, fp: dict, **fields) -> dict:
    extra = fields.pop("extra", {})
    return {
        "method": "DoReFa-Net", "dataset": data.label, "metric": "test_top1", "value": round(test["top1"], 4),
        "w_bits": _bits_or_none(cfg.w_bits), "a_bits": _bits_or_none(cfg.a_bits),
        "g_bits": _bits_or_none(cfg.g_bits), "params": count_params(model),
        "model_bits": model_bits(stored_fields(model)), "size_bytes": chk["size"],
        "compression_ratio": round(fp32_size_bytes(model) / chk["size"], 3), "train_time_s": res["train_time_s"],
        **fp, **fields,
        "extra": {"W": cfg.w_bits, "A": cfg.a_bits, "G": cfg.g_bits, "top5": round(test["top5"], 4),
                  "val_top1": res["val"]["top1"] if res["val"] else None, "steps": res["steps"],
                  "artifact": chk["artifact"].name, "artifact_reproduces_predictions": chk["same"],
                  "artifact_logits_identical": chk["logits_identical"], **extra},
    }


def _float_twin(cfg: Config, data, run: Run):
    """The float twin (W32A32G32) of the paper-setting recipe, for fp_value; None without --baseline-epochs."""
    if not cfg.baseline_epochs:
        return None

    def train(model: nn.Module) -> str:
        fp_cfg = copy.copy(cfg)
        fp_cfg.epochs = cfg.baseline_epochs
        _fit(fp_cfg, model, data, run, "float")
        return (f"float twin (W32A32G32), {cfg.baseline_epochs} epochs, {cfg.optimizer} LR {cfg.lr:g}, "
                "from scratch")

    return train


def _paper_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, resize=cfg.resize,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test, val_size=cfg.val_size)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        # the DoReFa-Net starts from the given float weights, else from scratch; a float twin of its recipe: fp_value
        start, fp = float_start(data, lambda: build_float(cfg.arch, data.input_shape, data.num_classes, cfg.width),
                                weights=cfg.weights, data_dir=cfg.data_dir, name=cfg.arch, weights_recipe="as given",
                                twin=_float_twin(cfg, data, run), twin_is_start=False)
        model = build_dorefa(cfg, start, cfg.arch)
        res = _fit(cfg, model, data, run, "dorefa", callbacks)
        test = evaluate_split(model, data, "test")
        chk = _artifact_check(model, data, run, lambda: build_dorefa(cfg, start, cfg.arch))
        schedule = (f"LR halved every {cfg.lr_decay_epochs} epochs" if cfg.lr_decay_epochs else "cosine per step")
        return run.finish(_row(cfg, model, data, test, chk, res, fp,
                               extra={"epochs": cfg.epochs, "arch": cfg.arch, "width": cfg.width, "lr": cfg.lr,
                                      "optimizer": f"{cfg.optimizer}, weight decay {cfg.weight_decay:g}, {schedule}",
                                      "start": cfg.weights or "scratch"}))


def _study_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    setting, data, run = study.start_run(cfg, PAPER, run_key(cfg), EDGE_LAYERS, "DoReFa")
    grid = cfg.lr_grid or STUDY_LR_GRID

    def train(lr: float, steps: int, run_: Run | None, tag: str, cbs: Iterable[Callback] = ()):
        seed_everything(cfg.seed)
        float_model = study.load_float_model(setting, cfg.data_dir)
        model = build_dorefa(cfg, float_model, setting.arch)
        opt = _optimizer(model, cfg, lr)
        res = study.fit_setting(model, data, setting, opt, steps, run=run_, tag=tag, seed=cfg.seed,
                                precision=cfg.precision, callbacks=cbs)
        return model, float_model, res

    with run.guard():
        lr, lr_fields = study.choose_setting_lr(
            run, setting, grid, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[2]["val"]["top1"],
            max_steps=cfg.max_steps)
        model, float_model, res = train(lr, setting.steps, run, "dorefa", callbacks)
        test = evaluate_split(model, data, "test")
        chk = _artifact_check(model, data, run, lambda: build_dorefa(cfg, float_model, setting.arch))
        fp = study.float_reference_fields(setting.name, cfg.seed)
        return run.finish(_row(cfg, model, data, test, chk, res, fp, setting=setting.name,
                               extra={**lr_fields, "arch": setting.arch, "schedule": setting.schedule,
                                      "optimizer": f"{cfg.optimizer}, weight decay {cfg.weight_decay:g}",
                                      "start": setting.weights}))


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train the DoReFa-Net of ``cfg``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the DoReFa stage (tests use one to interrupt).
    """
    return run_paper_or_study(cfg, callbacks, _paper_main, _study_main)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.dorefa.train")
