"""Train a float twin, a BWN and an XNOR-Net: ``python -m papers.xnor.train [--preset NAME] [flags]``.

Stages (each a ``common.train.fit`` with its own tag, checkpoint and metric lines in one run folder):
``float`` (fp_value), ``bwn`` (Sec. 3.1) and ``xnor`` (Sec. 3.2). Then the XNOR and BWN nets are
written as packed 1-bit artifacts, reloaded as packed models that compute with the XNOR-popcount
kernel, and evaluated: their test predictions must equal the simulated models' predictions.
``size_bytes`` is the XNOR artifact's file size, ``compression_ratio`` the fp32 file over it.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch
from torch import nn

from common.cli import cli_main
from common.data import DataBundle, find_weights, load_dataset
from common.errors import NnqError
from common.evaluate import count_params, file_size, fp32_size_bytes, model_bits, predictions, tensor_bytes
from common.models import load_resnet_cifar
from common.runs import Run
from common.train import Callback, fit, seed_everything
from papers.xnor import kernel
from papers.xnor.config import PRESETS, Config
from papers.xnor.models import build, init_from_float_
from papers.xnor.packed import load_packed, save_packed
from papers.xnor.xnor import binary_layers

PAPER = "xnor"


def run_key(cfg: Config) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.arch}-{cfg.dataset}").strip("-")


def _optimizer(cfg: Config, model: nn.Module, epochs: int, weight_decay: float = 0.0):
    # Sec. 4: trained with ADAM; we decay the rate with a cosine schedule over the run.
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))


def _initialise(cfg: Config, model: nn.Module) -> None:
    if cfg.init_from:
        depth = int(cfg.arch[6:]) if cfg.arch.startswith("resnet") and cfg.arch != "resnet18" else None
        if depth is None:
            raise NnqError(f"--init-from supports the CIFAR ResNets only, not {cfg.arch}")
        init_from_float_(model, load_resnet_cifar(depth, find_weights(cfg.init_from, data_dir=cfg.data_dir)))


def _stage(cfg: Config, data: DataBundle, run: Run, mode: str, epochs: int, callbacks=()) -> tuple[nn.Module, dict]:
    model = build(cfg.arch, mode, data.input_shape, data.num_classes)
    _initialise(cfg, model)
    opt, sched = _optimizer(cfg, model, epochs, cfg.weight_decay if mode == "fp" else 0.0)
    res = fit(model, data, epochs=epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
              callbacks=callbacks, run=run, tag={"fp": "float"}.get(mode, mode), seed=cfg.seed,
              desc={"fp": "float twin", "bwn": "BWN", "xnor": "XNOR-Net"}[mode])
    return model, res


@torch.no_grad()
def _packed_check(cfg: Config, model: nn.Module, data: DataBundle, run: Run, name: str) -> dict:
    """Save the 1-bit artifact, reload it as a packed model, compare predictions with the simulated model."""
    model.eval()
    artifact = save_packed(model, run.dir / f"{name}_packed.safetensors")
    packed = load_packed(artifact, model).cpu()
    x = data.x_test.cpu()
    sim = predictions(model.cpu(), x, batch_size=cfg.eval_packed_batch)
    real = predictions(packed, x, batch_size=cfg.eval_packed_batch)
    same = bool(torch.equal(sim, real))
    if not same:
        raise NnqError(f"{artifact}: the packed {name} model predicts differently from the simulated one on "
                       f"{int((sim != real).sum())} test images; please report this")
    top1 = float((real == data.y_test.cpu()).float().mean() * 100)
    layers = binary_layers(model)
    # the binarized layers alone: fp32 weights vs the artifact's sign bits + alpha (one fp32 per filter)
    fp32_bytes = sum(m.weight.numel() * 4 for m in layers)
    stored = tensor_bytes(artifact)
    sign_bytes = sum(v for k, v in stored.items() if k.endswith(".weight.bits"))
    alpha_bytes = sum(v for k, v in stored.items() if k.endswith(".alpha"))
    return {"artifact": artifact, "size": file_size(artifact), "same": same, "top1": round(top1, 4),
            "layers_fp32": fp32_bytes, "layers_packed": sign_bytes + alpha_bytes, "sign_bytes": sign_bytes,
            "alpha_bytes": alpha_bytes}


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train the float twin, the BWN and the XNOR-Net of ``cfg``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the XNOR stage (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        kernel.set_num_threads(cfg.threads)
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, resize=cfg.resize,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        fp_value = fp_time = None
        if cfg.baseline_epochs:
            _, fp = _stage(cfg, data, run, "fp", cfg.baseline_epochs)
            fp_value, fp_time = fp["top1"], fp["train_time_s"]
        bwn_fields: dict = {}
        if cfg.bwn_epochs:
            bwn_model, bwn = _stage(cfg, data, run, "bwn", cfg.bwn_epochs)
            chk = _packed_check(cfg, bwn_model, data, run, "bwn")
            bwn_fields = {"bwn_value": round(bwn["top1"], 4), "bwn_top5": round(bwn["top5"], 4),
                          "bwn_size_bytes": chk["size"], "bwn_train_time_s": bwn["train_time_s"],
                          "bwn_artifact": chk["artifact"].name, "bwn_packed_reproduces_predictions": chk["same"]}
        model, res = _stage(cfg, data, run, "xnor", cfg.epochs, callbacks)
        chk = _packed_check(cfg, model, data, run, "xnor")
        fp32_bytes = fp32_size_bytes(model)
        return run.finish({
            "dataset": data.label, "metric": "test_top1", "value": round(res["top1"], 4),
            "fp_value": None if fp_value is None else round(fp_value, 4),
            "params": count_params(model), "model_bits": model_bits(model), "size_bytes": chk["size"],
            "compression_ratio": round(fp32_bytes / chk["size"], 3), "fp32_size_bytes": fp32_bytes,
            "train_time_s": res["train_time_s"], "fp_train_time_s": fp_time, "top5": round(res["top5"], 4),
            "epochs": cfg.epochs, "arch": cfg.arch, "artifact": chk["artifact"].name,
            "packed_value": chk["top1"], "packed_reproduces_predictions": chk["same"],
            "binary_layers_fp32_bytes": chk["layers_fp32"], "binary_layers_packed_bytes": chk["layers_packed"],
            "binary_layers_sign_bytes": chk["sign_bytes"], "binary_layers_alpha_bytes": chk["alpha_bytes"],
            "binary_layers_ratio": round(chk["layers_fp32"] / chk["layers_packed"], 2),
            "kernel_backend": kernel.backend_name(), **bwn_fields,
        })


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.xnor.train")
