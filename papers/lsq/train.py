"""Fine-tune a trained float network with LSQ: ``python -m papers.lsq.train [--preset NAME] [flags]``.

The paper's own setting (``quick``, ``paper``): a float start (trained float weights from ``--weights``, or a
float twin trained here for ``--baseline-epochs``, which also gives fp_value), then the LSQ network made from
it (first and last layer at ``--edge-bits``), fine-tuned with SGD (momentum 0.9, cosine decay) as Sec. 3.
A study run (``--preset cifar10_resnet20``): the study setting's float ResNet-20, first conv and last linear
float, the setting's batch, steps and per-step cosine; the LR chosen on the validation split; fp_value the
setting's approved float reference.

Either way the trained model is written as its real artifact (b-bit packed weight codes and the step sizes),
reloaded, and must predict exactly what the trained model predicts; one layer is also computed with integers
(int64 accumulation times s_w * s_a) and compared with the simulated layer.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common import study
from common.cli import cli_main
from common.data import load_dataset
from common.errors import NnqError
from common.evaluate import count_params, evaluate_split, file_size, fp32_size_bytes, model_bits
from common.runs import Run
from common.settings import get_setting
from common.train import (Callback, TrainContext, fit, float_start, run_paper_or_study, seed_everything,
                          sgd_float_twin)
from papers.lsq.artifact import integer_forward, load_packed, save_packed, stored_fields
from papers.lsq.config import PRESETS, STUDY_LR_GRID, Config, paper_weight_decay
from papers.lsq.lsq import lsq_layers, quantize_model_, step_sizes
from papers.lsq.models import EDGE_LAYERS, build_float

PAPER = "lsq"


def run_key(cfg: Config) -> str:
    arch = get_setting(cfg.setting).arch if cfg.setting else cfg.arch
    key = f"{arch}-w{cfg.w_bits}a{cfg.a_bits}" + ("" if cfg.setting else f"-{cfg.dataset}")
    if cfg.grad_scale != "nqp":
        key += f"-g{cfg.grad_scale}"
    if cfg.init != "paper":
        key += f"-init{cfg.init}"
    if cfg.distill:
        key += "-kd"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def method_name(cfg: Config) -> str:
    """The summary's ``method``: "LSQ" with the paper's choices, else the ablation it is (the study's comparison
    keeps each as its own cell rather than pooling it with LSQ's seeds)."""
    variants = [{"n": "g = 1/√N", "one": "g = 1"}.get(cfg.grad_scale, ""),
                "naive init" if cfg.init != "paper" else "", "distilled" if cfg.distill else ""]
    variants = [v for v in variants if v]
    return f"LSQ ({', '.join(variants)})" if variants else "LSQ"


def build_lsq(cfg: Config, float_model: nn.Module, arch: str, edge_bits: int | None) -> nn.Module:
    """The LSQ network of ``cfg``: a copy of ``float_model`` with every conv/linear replaced by its LSQ layer."""
    first, last = EDGE_LAYERS[arch]
    return quantize_model_(copy.deepcopy(float_model), cfg.w_bits, cfg.a_bits, first=first, last=last,
                           edge_bits=edge_bits, grad_scale=cfg.grad_scale, init=cfg.init)


def _optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    # Sec. 3: SGD with momentum 0.9; weight decay on the network's weights, none on the step sizes (ours: the
    # paper does not say; decaying s would pull every step size to zero).
    steps = [p for n, p in model.named_parameters() if n.endswith("_quant.s")]
    ids = {id(p) for p in steps}
    others = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": others, "weight_decay": weight_decay},
                            {"params": steps, "weight_decay": 0.0}], lr=lr, momentum=momentum)


def distillation_loss(model: nn.Module, teacher: nn.Module, weight: float, temperature: float):
    """loss_fn(logits, labels) for ``fit``: (1 - w) CE + w T^2 KL(teacher || student) at temperature T.

    The teacher (the float model, Sec. 3.6 of the paper) sees the same augmented batch as the student: a forward
    pre-hook on the student keeps the batch.
    """
    teacher.eval().requires_grad_(False)
    batch: dict[str, torch.Tensor] = {}
    model.register_forward_pre_hook(lambda m, args: batch.__setitem__("x", args[0]) if m.training else None)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        if "x" not in batch:
            return ce
        with torch.no_grad():
            t_logits = teacher.to(logits.device)(batch["x"])
        t = temperature
        kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(t_logits / t, 1), log_target=True,
                      reduction="batchmean")
        return (1 - weight) * ce + weight * t * t * kl

    return loss_fn


class StepSizeLog(Callback):
    """Records every learned step size each ``every`` optimizer steps (the step-size trajectories)."""

    def __init__(self, every: int):
        self.every, self.rows = every, []

    def after_step(self, ctx: TrainContext) -> None:
        if ctx.step % self.every == 0 or ctx.step == 1:
            self.rows.append({"step": ctx.step, **step_sizes(ctx.model)})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))


@torch.no_grad()
def _test_predictions(model: nn.Module, data, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb.cpu()).argmax(1) for xb, _ in data.eval_batches("test", batch_size)])


@torch.no_grad()
def _integer_check(model: nn.Module, data) -> dict:
    """One inner quantized layer on a test batch: integer forward vs the simulated layer (max |difference|)."""
    inner = [(n, m) for n, m in lsq_layers(model).items() if m.weight_bits is not None and not m.a_quant.signed]
    if not inner:
        return {}
    name, layer = inner[len(inner) // 2]
    seen: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    xb, _ = next(iter(data.eval_batches("test", 16)))
    model.eval()(xb.cpu())
    handle.remove()
    sim, real = layer(seen["x"]), integer_forward(layer, seen["x"])
    return {"integer_layer": name, "integer_vs_simulated_max_abs": float((sim - real).abs().max()),
            "integer_vs_simulated_max_rel": float((sim - real).abs().max() / sim.abs().max().clamp_min(1e-12))}


def _artifact_check(model: nn.Module, data, run: Run, rebuild) -> dict:
    model = model.cpu().eval()
    artifact = save_packed(model, run.dir / "lsq_packed.safetensors")
    reloaded = load_packed(artifact, rebuild()).cpu().eval()
    same = bool(torch.equal(_test_predictions(model, data), _test_predictions(reloaded, data)))
    if not same:
        raise NnqError(f"{artifact} does not reproduce the trained model's predictions; please report this")
    return {"artifact": artifact, "size": file_size(artifact), "same": same, **_integer_check(model, data)}


def _row(cfg: Config, model: nn.Module, data, test: dict, chk: dict, res: dict, fp: dict, **fields) -> dict:
    extra = fields.pop("extra", {})
    return {
        "method": method_name(cfg), "dataset": data.label, "metric": "test_top1", "value": round(test["top1"], 4),
        "w_bits": cfg.w_bits, "a_bits": cfg.a_bits, "params": count_params(model),
        "model_bits": model_bits(stored_fields(model)), "size_bytes": chk["size"],
        "compression_ratio": round(fp32_size_bytes(model) / chk["size"], 3), "train_time_s": res["train_time_s"],
        **fp, **fields,
        "extra": {"top5": round(test["top5"], 4), "val_top1": res["val"]["top1"] if res["val"] else None,
                  "steps": res["steps"], "grad_scale": cfg.grad_scale, "init": cfg.init, "distill": cfg.distill,
                  "artifact": chk["artifact"].name, "artifact_reproduces_predictions": chk["same"],
                  **{k: v for k, v in chk.items() if k.startswith("integer_")}, **extra},
    }


def _paper_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, val_size=cfg.val_size)
    run = Run.start(PAPER, cfg, run_key(cfg))
    wd = paper_weight_decay(cfg.w_bits) if cfg.weight_decay is None else cfg.weight_decay
    with run.guard():
        seed_everything(cfg.seed)
        float_model, fp = float_start(data, lambda: build_float(cfg.arch, data.input_shape, data.num_classes),
                                      weights=cfg.weights, data_dir=cfg.data_dir, name=cfg.arch,
                                      twin=sgd_float_twin(cfg, data, run, _optimizer))
        model = build_lsq(cfg, float_model, cfg.arch, cfg.edge_bits)
        loss_fn = (distillation_loss(model, float_model, cfg.kd_weight, cfg.kd_temperature) if cfg.distill
                   else F.cross_entropy)
        opt = _optimizer(model, cfg.lr, cfg.momentum, wd)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)  # Sec. 3: cosine decay
        log = StepSizeLog(cfg.log_every)
        res = fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt, scheduler=sched,
                  loss_fn=loss_fn, callbacks=[log, *callbacks], run=run, tag="lsq", seed=cfg.seed, desc="LSQ")
        run.write_json("step_sizes.json", log.rows)
        test = evaluate_split(model, data, "test")
        chk = _artifact_check(model, data, run, lambda: build_lsq(cfg, float_model, cfg.arch, cfg.edge_bits))
        return run.finish(_row(cfg, model, data, test, chk, res, fp,
                               extra={"epochs": cfg.epochs, "arch": cfg.arch, "edge_bits": cfg.edge_bits,
                                      "lr": cfg.lr, "weight_decay": wd,
                                      "optimizer": f"SGD, momentum {cfg.momentum}, cosine per epoch"}))


def _study_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    setting, data, run = study.start_run(cfg, PAPER, run_key(cfg), EDGE_LAYERS, "LSQ")
    grid = cfg.lr_grid or STUDY_LR_GRID
    wd = paper_weight_decay(cfg.w_bits) if cfg.weight_decay is None else cfg.weight_decay

    def train(lr: float, steps: int, run_: Run | None, tag: str, cbs: Iterable[Callback] = ()):
        seed_everything(cfg.seed)
        float_model = study.load_float_model(setting, cfg.data_dir)
        model = build_lsq(cfg, float_model, setting.arch, None)  # the study setting keeps first/last float
        loss_fn = (distillation_loss(model, float_model, cfg.kd_weight, cfg.kd_temperature) if cfg.distill
                   else F.cross_entropy)
        opt = _optimizer(model, lr, cfg.momentum, wd)
        res = study.fit_setting(model, data, setting, opt, steps, run=run_, tag=tag, seed=cfg.seed,
                                precision=cfg.precision, loss_fn=loss_fn, callbacks=cbs)
        return model, float_model, res

    with run.guard():
        lr, lr_fields = study.choose_setting_lr(
            run, setting, grid, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[2]["val"]["top1"],
            max_steps=cfg.max_steps)
        log = StepSizeLog(cfg.log_every)
        model, float_model, res = train(lr, setting.steps, run, "lsq", [log, *callbacks])
        run.write_json("step_sizes.json", log.rows)
        test = evaluate_split(model, data, "test")
        chk = _artifact_check(model, data, run, lambda: build_lsq(cfg, float_model, setting.arch, None))
        fp = study.float_reference_fields(setting.name, cfg.seed)
        return run.finish(_row(cfg, model, data, test, chk, res, fp, setting=setting.name,
                               extra={**lr_fields, "weight_decay": wd, "arch": setting.arch,
                                      "schedule": setting.schedule,
                                      "optimizer": f"SGD, momentum {cfg.momentum}, weight decay {wd:g} "
                                                   "(not on step sizes)"}))


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Fine-tune the LSQ network of ``cfg``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the LSQ stage (tests use one to interrupt).
    """
    return run_paper_or_study(cfg, callbacks, _paper_main, _study_main)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.lsq.train")
