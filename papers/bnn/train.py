"""Train a BNN and its float twin: ``python -m papers.bnn.train [--preset NAME] [flags]``.

Runs the float twin (fp_value), then the binarized network with Adam, an exponentially decaying
learning rate and latent-weight clipping (Alg. 1), writes the 1-bit artifact, reloads it and checks
that it predicts exactly what the trained model predicts, and writes summary.json.

A study run (``--preset cifar10_resnet20``) fine-tunes the study setting's float ResNet-20 as a BNN (Sign
activations, binary block weights; first conv and last linear float) for the setting's steps, its Adam LR
chosen on the validation split; fp_value is the setting's approved float reference.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common import study
from common.cli import cli_main
from common.data import DataBundle, load_dataset
from common.errors import NnqError
from common.evaluate import (count_params, evaluate_split, file_size, fp32_size_bytes, model_bits, module_fields,
                             predictions)
from common.models import MLP, BnnConvNet
from common.runs import Run
from common.settings import get_setting
from common.train import Callback, cosine_per_step, fit, seed_everything
from papers.bnn.artifact import load_packed, save_packed
from papers.bnn.bnn import (BinaryActivation, ClipLatentWeights, binarize_weights_, binary_layers, bnn_resnet_cifar,
                            square_hinge_loss)
from papers.bnn.config import PRESETS, Config

PAPER = "bnn"


def build_model(cfg: Config, data: DataBundle, *, binary: bool) -> nn.Module:
    """The BNN (binary=True) or its float twin: same layers, ReLU and real weights instead of Sign."""
    act = BinaryActivation if binary else nn.ReLU
    c, h, w = data.input_shape
    if cfg.arch == "mlp":
        model = MLP(c * h * w, cfg.hidden, data.num_classes, act=act, batchnorm=True,
                    dropout=cfg.dropout, dropout_in=cfg.dropout_in, out_bn=True)
    else:
        model = BnnConvNet(c, data.num_classes, act=act, out_bn=True)
    return binarize_weights_(model) if binary else model


def _optimizer(cfg: Config, model: nn.Module, epochs: int):
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # the paper's MNIST runs: exponentially decaying learning rate, from lr to lr_end over the run.
    gamma = (cfg.lr_end / cfg.lr) ** (1.0 / max(epochs, 1))
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


def run_key(cfg: Config) -> str:
    if cfg.setting:
        return f"{get_setting(cfg.setting).arch}-bnn"
    width = "x".join(map(str, cfg.hidden)) if cfg.arch == "mlp" else "paper"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.arch}{width}-{cfg.dataset}").strip("-")


def _check_artifact(model: nn.Module, rebuilt: nn.Module, data: DataBundle, run: Run) -> tuple[str, int, bool]:
    """Write the 1-bit artifact, reload it into ``rebuilt`` and check it predicts what ``model`` predicts."""
    artifact = save_packed(model, run.dir / "bnn_packed.safetensors")
    reloaded = load_packed(artifact, rebuilt)
    same = torch.equal(predictions(model, data.x_test), predictions(reloaded, data.x_test))
    if not same:
        raise NnqError(f"{artifact} does not reproduce the trained model's predictions; please report this")
    return artifact.name, file_size(artifact), same


def _paper_main(cfg: Config, callbacks: Iterable[Callback]):
    data = load_dataset(cfg.dataset, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                        val_size=cfg.val_size)
    loss_fn = square_hinge_loss if cfg.loss == "sq_hinge" else F.cross_entropy
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        fp_value = fp_time = None
        if cfg.baseline_epochs:
            fp_model = build_model(cfg, data, binary=False)
            opt, sched = _optimizer(cfg, fp_model, cfg.baseline_epochs)
            fp = fit(fp_model, data, epochs=cfg.baseline_epochs, batch_size=cfg.batch_size, optimizer=opt,
                     scheduler=sched, loss_fn=loss_fn, run=run, tag="float", seed=cfg.seed, desc="float twin")
            fp_value, fp_time = evaluate_split(fp_model, data, "test")["top1"], fp["train_time_s"]

        model = build_model(cfg, data, binary=True)
        opt, sched = _optimizer(cfg, model, cfg.epochs)
        res = fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
                  loss_fn=loss_fn, callbacks=[ClipLatentWeights(), *callbacks], run=run, tag="bnn",
                  seed=cfg.seed, desc="BNN")
        test = evaluate_split(model, data, "test")

        artifact, size, same = _check_artifact(model, build_model(cfg, data, binary=True), data, run)
        return run.finish({
            "method": "BNN", "dataset": data.label, "metric": "test_top1", "value": round(test["top1"], 4),
            "fp_value": None if fp_value is None else round(fp_value, 4),
            "fp_recipe": None if fp_value is None else f"float twin (ReLU), {cfg.baseline_epochs} epochs, Adam",
            "w_bits": 1, "a_bits": 1, "params": count_params(model), "model_bits": model_bits(module_fields(model)),
            "size_bytes": size, "compression_ratio": round(fp32_size_bytes(model) / size, 3),
            "train_time_s": res["train_time_s"],
            "extra": {"fp_train_time_s": fp_time, "test_error": round(100.0 - test["top1"], 4), "epochs": cfg.epochs,
                      "val_top1": res["val"]["top1"] if res["val"] else None, "artifact": artifact,
                      "artifact_reproduces_predictions": same},
        })




def _study_main(cfg: Config, callbacks: Iterable[Callback]):
    setting = get_setting(cfg.setting)
    data = study.load_data(setting, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    loss_fn = square_hinge_loss if cfg.loss == "sq_hinge" else F.cross_entropy
    depth = int(setting.arch[len("resnet"):])
    run = Run.start(PAPER, cfg, run_key(cfg))

    def build() -> nn.Module:
        model = bnn_resnet_cifar(depth, data.num_classes, data.input_shape[0])
        model.load_state_dict(study.load_float_model(setting, cfg.data_dir).state_dict())
        binary = {n for n, m in model.named_modules() if m in binary_layers(model)}
        if binary & set(setting.keep_float):
            raise NnqError(f"{setting.name} keeps {setting.keep_float} float; this model binarizes {binary}")
        return model

    def train(lr: float, steps: int, run_: Run | None, tag: str, cbs: Iterable[Callback] = ()):
        seed_everything(cfg.seed)
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=lr)  # the paper trains with Adam (shift-based AdaMax aside)
        res = fit(model, data, steps=steps, batch_size=setting.batch_size, optimizer=opt,
                  scheduler=cosine_per_step(opt, steps), scheduler_interval="step", loss_fn=loss_fn,
                  callbacks=[ClipLatentWeights(), *cbs], run=run_, tag=tag, seed=cfg.seed, desc=tag,
                  precision=cfg.precision)
        return model, res

    with run.guard():
        pilot_steps = min(setting.lr_pilot_steps, cfg.max_steps or 10**9)
        lr, pilots = study.choose_lr_in_run(
            run, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[1]["val"]["top1"], cfg.lr_grid, pilot_steps)
        model, res = train(lr, setting.steps, run, "bnn", callbacks)
        test = evaluate_split(model, data, "test")
        artifact, size, same = _check_artifact(model, build(), data, run)
        ref = study.float_reference(setting.name, cfg.seed)
        return run.finish({
            "method": "BNN", "dataset": data.label, "metric": "test_top1", "value": round(test["top1"], 4),
            "fp_value": ref[0] if ref else None, "fp_recipe": ref[1] if ref else None, "setting": setting.name,
            "w_bits": 1, "a_bits": 1, "params": count_params(model), "model_bits": model_bits(module_fields(model)),
            "size_bytes": size, "compression_ratio": round(fp32_size_bytes(model) / size, 3),
            "train_time_s": res["train_time_s"],
            "extra": {"test_error": round(100.0 - test["top1"], 4), "lr": lr, "lr_grid": list(cfg.lr_grid),
                      "pilot_steps": pilot_steps, "lr_pilots_val_top1": {str(k): v for k, v in pilots.items()},
                      "val_top1": res["val"]["top1"] if res["val"] else None, "steps": res["steps"],
                      "optimizer": "Adam (0.9, 0.999), no weight decay", "loss": cfg.loss,
                      "schedule": setting.schedule, "arch": setting.arch, "artifact": artifact,
                      "artifact_reproduces_predictions": same},
        })


def main(cfg: Config, callbacks: Iterable[Callback] = ()):
    """Train the nets of ``cfg``; return the typed summary (also in summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the binary model's training (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return _study_main(cfg, callbacks) if cfg.setting else _paper_main(cfg, callbacks)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.bnn.train")
