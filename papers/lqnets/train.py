"""Train an LQ-Nets network: ``python -m papers.lqnets.train [--preset NAME] [flags]``.

The paper's own settings (``quick``, ``cifar10_vggsmall``, ``paper``): a float start (trained float weights from
``--weights``, or a float twin trained here for ``--baseline-epochs``, which also gives fp_value), then the LQ
network made from it (first and last layer float, as the paper), trained with SGD while QEM (Alg. 1) updates
every basis after each optimizer step (``QemCallback``). A study run (``--preset cifar10_resnet20``): the study
setting's float ResNet-20, its batch, steps and per-step cosine; the LR chosen on the validation split; fp_value
the setting's approved float reference. ``--quantizer uniform`` is the paper's ablation: the same run with
evenly spaced levels of the same bits.

Either way the trained model is written as its real artifact (weight bit-planes and bases), reloaded, and must
predict exactly what the trained model predicts; one layer and a test batch through the whole network are also
computed from bit-planes and popcounts (``bitwise.py``) and compared with the simulated model.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable

import torch
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
from papers.lqnets.artifact import load_planes, save_planes, stored_fields
from papers.lqnets.bitwise import bitwise_forward, bitwise_layers
from papers.lqnets.config import PRESETS, STUDY_LR_GRID, Config
from papers.lqnets.lqnets import (init_basis, level_codes, lq_layers, lq_quantizers, qem, quantization_error,
                                  quantize_model_, sorted_levels, subsample, update_bases_)
from papers.lqnets.models import KEEP_FLOAT, build_float

PAPER = "lqnets"


def run_key(cfg: Config) -> str:
    arch = get_setting(cfg.setting).arch if cfg.setting else cfg.arch
    a = "32" if cfg.a_bits is None else str(cfg.a_bits)
    key = f"{arch}-w{cfg.w_bits}a{a}" + ("" if cfg.setting else f"-{cfg.dataset}")
    if cfg.quantizer != "lq":
        key += f"-{cfg.quantizer}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def build_lq(cfg: Config, float_model: nn.Module, arch: str) -> nn.Module:
    """The LQ network of ``cfg``: a copy of ``float_model`` with every conv/linear but the first and last quantized."""
    return quantize_model_(copy.deepcopy(float_model), cfg.w_bits, cfg.a_bits, keep_float=KEEP_FLOAT[arch],
                           uniform=cfg.quantizer == "uniform", momentum=cfg.basis_momentum)


def _optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    # weight decay on conv/linear weights only (the official code regularises ".*/W"); the bases are buffers
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    ids = {id(p) for p in decay}
    others = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                            {"params": others, "weight_decay": 0.0}], lr=lr, momentum=momentum)


class QemCallback(Callback):
    """After every optimizer step: the v-step of Alg. 1 on the batch just seen and the moving average of every
    basis (Sec. 3.2); every ``every`` steps it also records the bases (the basis trajectories)."""

    def __init__(self, every: int):
        self.every, self.rows = every, []

    def after_step(self, ctx: TrainContext) -> None:
        update_bases_(ctx.model)
        if ctx.step % self.every == 0 or ctx.step == 1:
            self.rows.append({"step": ctx.step, **{n: q.basis.detach().cpu().tolist()[0]
                                                   for n, q in lq_quantizers(ctx.model).items()}})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))


@torch.no_grad()
def level_report(model: nn.Module, data, bins: int = 60) -> list[dict]:
    """Per quantized layer: the histogram of its weights (output channel 0) and of its inputs (a test batch), the
    levels of its quantizers, and the levels of a uniform quantizer of the same bits fitted by the same QEM to the
    same values, with both relative quantization errors ||x - Q(x)||^2 / ||x||^2."""
    model = model.cpu().eval()
    seen: dict[str, torch.Tensor] = {}
    layers = lq_layers(model)
    hooks = [m.register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, args[0].detach()))
             for n, m in layers.items()]
    xb, _ = next(iter(data.eval_batches("test", 64)))
    model(xb.cpu())
    for h in hooks:
        h.remove()
    rows = []
    for name, m in layers.items():
        for kind, q, values in (("w", m.w_quant, m.weight.detach()[:1].reshape(1, -1)),
                                ("a", m.a_quant, seen[name].reshape(1, -1))):
            if q.bits is None:
                continue
            basis = q.basis[:1]
            codes = level_codes(q.bits, q.signed)
            fit_on = subsample(values)
            start = init_basis(fit_on, q.bits, q.signed)
            uni, _ = qem(fit_on, start, codes, 20, uniform=True, track=False)
            learned, _ = qem(fit_on, start, codes, 20, track=False)
            hist, edges = torch.histogram(values.flatten().float(), bins=bins)
            norm = float(values.double().pow(2).sum().clamp_min(1e-30))
            rows.append({"layer": name, "kind": kind, "bits": q.bits, "uniform_run": q.uniform,
                         "hist": hist.tolist(), "edges": edges.tolist(),
                         "levels": sorted_levels(basis, codes)[0][0].tolist(),
                         "uniform_levels": sorted_levels(uni, codes)[0][0].tolist(),
                         "qem_levels": sorted_levels(learned, codes)[0][0].tolist(),
                         "rel_err": float(quantization_error(values, basis, codes).sum()) / norm,
                         "rel_err_uniform": float(quantization_error(values, uni, codes).sum()) / norm,
                         "rel_err_qem": float(quantization_error(values, learned, codes).sum()) / norm})
    return rows


@torch.no_grad()
def _test_predictions(model: nn.Module, data, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb.cpu()).argmax(1) for xb, _ in data.eval_batches("test", batch_size)])


@torch.no_grad()
def _bitwise_check(model: nn.Module, data, n: int = 8) -> dict:
    """A test batch of ``n`` images: one inner layer and the whole network from bit-planes and popcounts vs the
    simulated model (max |difference| relative to the largest output, and whether the predictions agree)."""
    inner = [(name, m) for name, m in lq_layers(model).items() if m.act_bits is not None]
    if not inner:
        return {}
    name, layer = inner[len(inner) // 2]
    seen: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    small = data.input_shape[1] * data.input_shape[2] <= 64 * 64  # the whole network only on small images
    xb, _ = next(iter(data.eval_batches("test", n if small else 1)))
    xb = xb.cpu()
    sim_logits = model.eval()(xb)
    handle.remove()
    sim, bit = layer(seen["x"]), bitwise_forward(layer, seen["x"])
    out = {"bitwise_layer": name,
           "bitwise_vs_simulated_max_rel": float((sim - bit).abs().max() / sim.abs().max().clamp_min(1e-12))}
    if small:
        with bitwise_layers(model):
            bit_logits = model(xb)
        out["bitwise_net_vs_simulated_max_rel"] = float((sim_logits - bit_logits).abs().max()
                                                        / sim_logits.abs().max().clamp_min(1e-12))
        out["bitwise_net_same_predictions"] = bool(torch.equal(sim_logits.argmax(1), bit_logits.argmax(1)))
    return out


def _artifact_check(model: nn.Module, data, run: Run, rebuild) -> dict:
    model = model.cpu().eval()
    artifact = save_planes(model, run.dir / "lqnets_planes.safetensors")
    reloaded = load_planes(artifact, rebuild()).cpu().eval()
    same = bool(torch.equal(_test_predictions(model, data), _test_predictions(reloaded, data)))
    if not same:
        raise NnqError(f"{artifact} does not reproduce the trained model's predictions; please report this")
    return {"artifact": artifact, "size": file_size(artifact), "same": same, **_bitwise_check(reloaded, data)}


def _row(cfg: Config, model: nn.Module, data, test: dict, chk: dict, res: dict, fp: dict, levels: list,
         **fields) -> dict:
    extra = fields.pop("extra", {})
    w_err = [r["rel_err"] for r in levels if r["kind"] == "w"]
    return {
        "method": "LQ-Nets" if cfg.quantizer == "lq" else "LQ-Nets (uniform levels)", "dataset": data.label,
        "metric": "test_top1", "value": round(test["top1"], 4), "w_bits": cfg.w_bits, "a_bits": cfg.a_bits,
        "params": count_params(model), "model_bits": model_bits(stored_fields(model)), "size_bytes": chk["size"],
        "compression_ratio": round(fp32_size_bytes(model) / chk["size"], 3), "train_time_s": res["train_time_s"],
        **fp, **fields,
        "extra": {"top5": round(test["top5"], 4), "val_top1": res["val"]["top1"] if res["val"] else None,
                  "steps": res["steps"], "quantizer": cfg.quantizer, "basis_momentum": cfg.basis_momentum,
                  "mean_rel_weight_error": round(sum(w_err) / len(w_err), 6) if w_err else None,
                  "artifact": chk["artifact"].name, "artifact_reproduces_predictions": chk["same"],
                  **{k: v for k, v in chk.items() if k.startswith("bitwise_")}, **extra},
    }


def _scheduler(cfg: Config, opt: torch.optim.Optimizer):
    if cfg.lr_milestones:  # the official ImageNet schedule: LR / 10 at each milestone epoch
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_milestones), gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)


def _paper_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize=cfg.normalize, limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, val_size=cfg.val_size)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        float_model, fp = float_start(data, lambda: build_float(cfg.arch, data.input_shape, data.num_classes),
                                      weights=cfg.weights, data_dir=cfg.data_dir, name=cfg.arch,
                                      twin=sgd_float_twin(cfg, data, run, _optimizer))
        seed_everything(cfg.seed)
        model = build_lq(cfg, float_model, cfg.arch)
        opt = _optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay)
        log = QemCallback(cfg.log_every)
        res = fit(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=opt,
                  scheduler=_scheduler(cfg, opt), callbacks=[log, *callbacks], run=run, tag="lqnets", seed=cfg.seed,
                  desc="LQ-Nets")
        run.write_json("bases.json", log.rows)
        test = evaluate_split(model, data, "test")
        levels = level_report(model, data)
        run.write_json("levels.json", levels)
        chk = _artifact_check(model, data, run, lambda: build_lq(cfg, float_model, cfg.arch))
        sched = (f"LR / 10 at epochs {list(cfg.lr_milestones)}" if cfg.lr_milestones else "cosine per epoch")
        return run.finish(_row(cfg, model, data, test, chk, res, fp, levels,
                               extra={"epochs": cfg.epochs, "arch": cfg.arch, "lr": cfg.lr,
                                      "weight_decay": cfg.weight_decay,
                                      "optimizer": f"SGD, momentum {cfg.momentum}, {sched}"}))


def _study_main(cfg: Config, callbacks: Iterable[Callback]) -> dict:
    setting, data, run = study.start_run(cfg, PAPER, run_key(cfg), KEEP_FLOAT, "LQ-Nets")
    grid = cfg.lr_grid or STUDY_LR_GRID

    def train(lr: float, steps: int, run_: Run | None, tag: str, cbs: Iterable[Callback] = ()):
        seed_everything(cfg.seed)
        float_model = study.load_float_model(setting, cfg.data_dir)
        model = build_lq(cfg, float_model, setting.arch)
        opt = _optimizer(model, lr, cfg.momentum, cfg.weight_decay)
        cbs = list(cbs) or [QemCallback(cfg.log_every)]
        res = study.fit_setting(model, data, setting, opt, steps, run=run_, tag=tag, seed=cfg.seed,
                                precision=cfg.precision, callbacks=cbs)
        return model, float_model, res

    with run.guard():
        lr, lr_fields = study.choose_setting_lr(
            run, setting, grid, lambda lr_, n: train(lr_, n, None, f"pilot lr {lr_:g}")[2]["val"]["top1"],
            max_steps=cfg.max_steps)
        log = QemCallback(cfg.log_every)
        model, float_model, res = train(lr, setting.steps, run, "lqnets", [log, *callbacks])
        run.write_json("bases.json", log.rows)
        test = evaluate_split(model, data, "test")
        levels = level_report(model, data)
        run.write_json("levels.json", levels)
        chk = _artifact_check(model, data, run, lambda: build_lq(cfg, float_model, setting.arch))
        fp = study.float_reference_fields(setting.name, cfg.seed)
        return run.finish(_row(cfg, model, data, test, chk, res, fp, levels, setting=setting.name,
                               extra={**lr_fields, "weight_decay": cfg.weight_decay, "arch": setting.arch,
                                      "schedule": setting.schedule,
                                      "optimizer": f"SGD, momentum {cfg.momentum}, weight decay "
                                                   f"{cfg.weight_decay:g} (conv/linear weights only)"}))


def main(cfg: Config, callbacks: Iterable[Callback] = ()) -> dict:
    """Train the LQ-Nets network of ``cfg``; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
        callbacks: extra callbacks for the LQ stage (tests use one to interrupt).
    """
    return run_paper_or_study(cfg, callbacks, _paper_main, _study_main)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.lqnets.train")
