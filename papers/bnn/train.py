"""Train a BNN and its float twin: ``python -m papers.bnn.train [--preset NAME] [flags]``.

Runs the float twin (fp_value), then the binarized network with Adam, an exponentially decaying
learning rate and latent-weight clipping (Alg. 1), writes the 1-bit artifact, reloads it and checks
that it predicts exactly what the trained model predicts, and writes summary.json.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common.cli import cli_main
from common.data import DataBundle, load_dataset
from common.errors import NnqError
from common.evaluate import count_params, file_size, fp32_size_bytes, model_bits, predictions
from common.models import MLP, BnnConvNet
from common.runs import Run
from common.train import Callback, fit, seed_everything
from papers.bnn.artifact import load_packed, save_packed
from papers.bnn.bnn import BinaryActivation, ClipLatentWeights, binarize_weights_, square_hinge_loss
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
    # Sec. 2.6: exponentially decaying learning rate, from lr to lr_end over the run.
    gamma = (cfg.lr_end / cfg.lr) ** (1.0 / max(epochs, 1))
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


def run_key(cfg: Config) -> str:
    width = "x".join(map(str, cfg.hidden)) if cfg.arch == "mlp" else "paper"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{cfg.arch}{width}-{cfg.dataset}").strip("-")


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train the float twin and the BNN of ``cfg``; return the summary dict (also in summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the binary model's training (tests use one to interrupt).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(cfg.dataset, cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
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
            fp_value, fp_time = fp["top1"], fp["train_time_s"]

        model = build_model(cfg, data, binary=True)
        opt, sched = _optimizer(cfg, model, cfg.epochs)
        res = fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
                  loss_fn=loss_fn, callbacks=[ClipLatentWeights(), *callbacks], run=run, tag="bnn",
                  seed=cfg.seed, desc="BNN")

        artifact = save_packed(model, run.dir / "bnn_packed.safetensors")
        reloaded = load_packed(artifact, build_model(cfg, data, binary=True))
        same = torch.equal(predictions(model, data.x_test), predictions(reloaded, data.x_test))
        if not same:
            raise NnqError(f"{artifact} does not reproduce the trained model's predictions; please report this")
        size = file_size(artifact)
        return run.finish({
            "dataset": data.label, "metric": "test_top1", "value": round(res["top1"], 4),
            "fp_value": None if fp_value is None else round(fp_value, 4),
            "params": count_params(model), "model_bits": model_bits(model), "size_bytes": size,
            "compression_ratio": round(fp32_size_bytes(model) / size, 3),
            "train_time_s": res["train_time_s"], "fp_train_time_s": fp_time,
            "test_error": round(100.0 - res["top1"], 4), "epochs": cfg.epochs,
            "artifact": artifact.name, "artifact_reproduces_predictions": same,
        })


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.bnn.train")
