"""Train an efficient CNN from scratch: ``python -m papers.efficient_cnns.train [--preset NAME] [flags]``.

The architecture papers change the network, not the training: this script builds ``--arch`` at ``--width`` (the
paper's multiplier), trains it with SGD or RMSProp, evaluates it on the test split once, and reports beside the
accuracy what the papers tabulate: parameters, multiply-adds (torch's FLOP counter), and the measured batch-1
latency on this machine. The trained model is written as an fp32 safetensors file (the artifact), reloaded, and
must predict exactly what the trained model predicts.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch
from torch import nn

from common.cli import cli_main
from common.data import load_dataset
from common.errors import NnqError
from common.evaluate import (count_params, evaluate_split, file_size, fp32_size_bytes, latency_ms, model_bits,
                             module_fields, save_fp32)
from common.runs import Run
from common.train import Callback, cosine_per_step, fit, seed_everything
from papers.efficient_cnns.config import PRESETS, Config
from papers.efficient_cnns.models import DEFAULT_VARIANT, build, cost

PAPER = "efficient_cnns"
NAMES = {"mobilenet_v1": "MobileNet", "mobilenet_v2": "MobileNetV2", "shufflenet_v1": "ShuffleNet",
         "shufflenet_v2": "ShuffleNet V2", "squeezenet": "SqueezeNet", "squeezenext": "SqueezeNext"}


def method_name(arch: str, width: float, variant: str | None) -> str:
    """The row's name as the papers write it, e.g. "MobileNetV2 0.5", "ShuffleNet 1x (g=3)", "SqueezeNet 1.1"."""
    variant = variant or DEFAULT_VARIANT.get(arch)
    if arch == "shufflenet_v1":
        return f"ShuffleNet {width:g}x (g={variant[1:]})"
    if arch == "shufflenet_v2":
        return f"ShuffleNet V2 {width:g}x"
    if arch == "squeezenet":
        version, _, bypass = variant.partition("+")
        return f"SqueezeNet {version}" + (f" + {bypass} bypass" if bypass else "")
    if arch == "squeezenext":
        return f"{width:.1f}-SqNxt-{variant}"
    return f"{NAMES[arch]} {width:.1f}" if round(width * 10) == width * 10 else f"{NAMES[arch]} {width:g}"


def run_key(cfg: Config) -> str:
    key = f"{cfg.arch}-w{cfg.width:g}" + (f"-{cfg.variant}" if cfg.variant else "") + f"-{cfg.dataset}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def use_cifar_stem(stem: str, input_shape) -> bool:
    return stem == "cifar" or (stem == "auto" and max(input_shape[1:]) <= 64)


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":  # MobileNetV2 Sec. 6.1: "RMSPropOptimizer with both decay and momentum set to 0.9"
        # TF's RMSProp "decay" is torch's alpha; TF adds epsilon inside the square root (ours: torch's default).
        return torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=0.9, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, eps=1e-3)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


@torch.no_grad()
def _predictions(model: nn.Module, data, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb.cpu()).argmax(1) for xb, _ in data.eval_batches("test", batch_size)])


def _artifact_check(model: nn.Module, data, run: Run, rebuild) -> dict:
    """Writes the fp32 artifact, reloads it into a fresh network and compares the test predictions."""
    from safetensors.torch import load_file

    model = model.cpu().eval()
    path = save_fp32(model, run.dir / "model_fp32.safetensors")
    fresh = rebuild().cpu().eval()
    fresh.load_state_dict(load_file(str(path)))
    same = bool(torch.equal(_predictions(model, data), _predictions(fresh, data)))
    if not same:
        raise NnqError(f"{path} does not reproduce the trained model's predictions; please report this")
    return {"artifact": path, "size": file_size(path), "same": same}


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train ``cfg.arch`` from scratch on ``cfg.dataset``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the training loop (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, val_size=cfg.val_size)
    cifar = use_cifar_stem(cfg.stem, data.input_shape)
    c, h, w = data.input_shape

    def rebuild() -> nn.Module:
        return build(cfg.arch, cfg.width, num_classes=data.num_classes, in_channels=c, cifar=cifar,
                     variant=cfg.variant)

    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        model = rebuild()
        costs = cost(model, data.input_shape)
        opt = _optimizer(cfg, model)
        if cfg.schedule == "cosine":
            steps = cfg.epochs * max(data.train_steps_per_epoch(cfg.batch_size, 1) // cfg.grad_accum, 1)
            sched, interval = cosine_per_step(opt, steps), "step"
        else:  # Sec. 6.1 of MobileNetV2: "learning rate decay rate of 0.98 per epoch"
            sched, interval = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay), "epoch"
        res = fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
                  scheduler_interval=interval, callbacks=callbacks, run=run, tag="train", seed=cfg.seed,
                  desc=method_name(cfg.arch, cfg.width, cfg.variant), precision=cfg.precision)
        test = evaluate_split(model, data, "test")
        chk = _artifact_check(model, data, run, rebuild)
        lat = None
        if cfg.latency_repeats:
            lat = round(latency_ms(model.cpu().eval(), torch.zeros(1, c, h, w), repeats=cfg.latency_repeats), 3)
        int8 = _int8(cfg, model, data, (c, h, w)) if cfg.int8 else {}
        return run.finish({
            "method": method_name(cfg.arch, cfg.width, cfg.variant), "dataset": data.label, "metric": "test_top1",
            "value": round(test["top1"], 4), "params": count_params(model),
            "model_bits": model_bits(module_fields(model)), "size_bytes": chk["size"],
            "compression_ratio": round(fp32_size_bytes(model) / chk["size"], 3), "train_time_s": res["train_time_s"],
            "extra": {"arch": cfg.arch, "width": cfg.width, "variant": cfg.variant or DEFAULT_VARIANT.get(cfg.arch),
                      "stem": "cifar" if cifar else "imagenet", "input_shape": list(data.input_shape),
                      "macs": costs["macs"], "params_no_bn": costs["params_no_bn"],
                      "latency_ms_batch1": lat, "latency_threads": torch.get_num_threads(),
                      "top5": round(test["top5"], 4), "val_top1": res["val"]["top1"] if res["val"] else None,
                      "steps": res["steps"], "epochs": cfg.epochs, "lr": cfg.lr,
                      "optimizer": f"{cfg.optimizer}, momentum {cfg.momentum}, weight decay {cfg.weight_decay:g}, "
                                   f"{cfg.schedule} schedule", "artifact": chk["artifact"].name,
                      "artifact_reproduces_predictions": chk["same"], **int8},
        })


def _int8(cfg: Config, model: nn.Module, data, shape) -> dict:
    """Int8 PTQ (ptq.py) of the trained model: test top-1, state-dict bytes and batch-1 latency beside the fp32 ones."""
    from itertools import islice

    from papers.efficient_cnns.ptq import quantize_int8, state_dict_bytes, top1

    model = model.cpu().eval()
    calib = [xb for xb, _ in islice(data.train_batches(epoch=0, seed=cfg.seed, batch_size=cfg.batch_size), 8)]
    q = quantize_int8(model, calib, calib[0])
    out = {"int8_top1": round(top1(q, data), 4), "int8_state_dict_bytes": state_dict_bytes(q),
           "fp32_state_dict_bytes": state_dict_bytes(model), "int8_backend": "x86 (torch.ao FX, per-channel weights)"}
    if cfg.latency_repeats:
        out["int8_latency_ms_batch1"] = round(latency_ms(q, torch.zeros(1, *shape), repeats=cfg.latency_repeats), 3)
    return out


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.efficient_cnns.train")
