"""PTQ4ViT post-training quantization: ``python -m papers.ptq4vit.quantize [--preset NAME] [flags]``.

capture -> search -> saved scales artifact -> apply -> evaluate. The float model's calibration set runs once
forward and backward (inputs and output gradients of every linear layer, attention matmul and patch
embedding); at each of ``--compare-bits`` (W = A) base PTQ (cosine metric, uniform quantizers, one round,
alpha = 0.5) and PTQ4ViT (Hessian-guided metric, twin uniform quantizers, alternating rounds) search their steps,
layer by layer on the float inputs. The PTQ4ViT search at ``--w-bits/--a-bits`` is saved
(``ptq4vit_scales_w<W>a<A>.safetensors``), loaded back and applied; that model is the headline row, written as its
packed integer artifact (``ptq4vit_packed_w<W>a<A>.safetensors``) and reloaded to check it computes the same.
``--ablations`` adds the paper's ablation grid, ``--calib-sweep`` the calibration-set sizes, ``--sites`` the
metric with each quantized tensor alone and with each kind of tensor left float (``sites_w<B>a<B>.json``).
``--max-steps N`` is a dry run: N test batches, N calibration images, a grid of N + 1 candidates, one round, only
W = A = --w-bits, no ablation or sweep, and (timm models) a random init when the hub's weights cannot be loaded.

MiniLM (quick): metric ``test_embedding_cosine`` (mean cosine of the quantized encoder's sentence embeddings to
the float encoder's on 48 shipped sentences); small ViTs and timm/HF models: ``test_top1``.
"""

from __future__ import annotations

import copy
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common import clip
from common.cli import cli_main
from common.clip import embedding_metrics
from common.clip import encode_sentences as encode
from common.errors import NnqError
from common.evaluate import count_params, file_size, fp32_size_bytes, model_bits
from common.runs import Run
from common.train import seed_everything
from papers.ptq4vit import models as pm
from papers.ptq4vit import ptq4vit as P
from papers.ptq4vit import sites as S
from papers.ptq4vit.artifact import load_packed, save_packed, stored_fields
from papers.ptq4vit.config import PRESETS, Config
from papers.ptq4vit.texts import CALIBRATION, TEST_PAIRS, TEST_TEXTS

PAPER = "ptq4vit"
ABLATION_ROWS = ((False, False, False), (True, False, False), (True, True, False), (True, False, True),
                 (False, True, True), (True, True, True))
"""(Hessian guided, softmax twin, GELU twin): the rows of the paper's ablation table (official README), the first
being base PTQ."""
RETRIEVAL_TAU = 0.05
"""Temperature of MiniLM's calibration loss (in-batch retrieval with the float model's nearest neighbour as label)."""


@dataclass
class Target:
    """A float model with what the search and the evaluation need.

    Attributes:
        model: the float model (eval mode) with its attention matmuls as modules.
        plan: which modules are quantized.
        loss: (model, n) -> the calibration loss on the first n calibration samples (graph kept).
        evaluate: model -> {"value": headline metric, ...} on the test set.
        fresh: builds the float skeleton again (the packed artifact is reloaded onto it).
        n_calib: calibration samples available.
    """

    model: nn.Module
    plan: P.Plan
    loss: Callable[[nn.Module, int], torch.Tensor]
    evaluate: Callable[[nn.Module], dict]
    metric: str
    dataset: str
    fresh: Callable[[], nn.Module]
    n_calib: int
    fp_recipe: str = "the pretrained fp32 model itself"


def pseudo_label_ce(logits: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the float model's own predictions (argmax of ``ref``).

    DEVIATION: the official code back-propagates KL(float softmax || model softmax), whose gradient vanishes when
    the model is the float model itself; the paper's Hessian derivation uses the task loss, and with the float
    model's predictions as labels the calibration needs no labels and dL/dO is not zero.
    """
    return F.cross_entropy(logits, ref.argmax(-1))


# ------------------------------------------------------------------------------ MiniLM


def load_minilm() -> tuple[nn.Module, object]:
    """The pretrained all-MiniLM-L6-v2 encoder (common.clip) with its attention routed through matmul modules."""
    model, tok = clip.load_minilm()
    pm.attach_hf_matmuls_(model)
    return model, tok


def minilm_target(cfg: Config) -> Target:
    model, tok = load_minilm()
    with torch.no_grad():
        ref = encode(model, tok, TEST_TEXTS)
    assert len(TEST_TEXTS) == 2 * len(TEST_PAIRS)

    def sentence(m, t):  # one sentence at a time: no padding tokens among the captured inputs
        b = tok(t, return_tensors="pt")
        return F.normalize(m(**b).last_hidden_state.mean(1), dim=-1)[0]

    def loss(m, n):
        # DEVIATION: MiniLM has no classifier; its task is retrieval by cosine. The loss is the in-batch
        # retrieval cross-entropy with the float encoder's nearest neighbour as the label (pseudo-labels, as
        # pseudo_label_ce for images).
        if n < 2:
            raise NnqError("MiniLM's calibration loss needs at least 2 sentences; use --calib-samples 2 or more")
        e = torch.stack([sentence(m, t) for t in CALIBRATION[:n]])
        sim = (e @ e.T) / RETRIEVAL_TAU
        sim = sim - torch.eye(n) * 1e4
        return pseudo_label_ce(sim, sim.detach())

    include = lambda name: name.startswith("encoder.layer.")
    return Target(model=model, plan=pm.build_plan(model, include), loss=loss,
                  evaluate=lambda m: embedding_metrics(encode(m, tok, TEST_TEXTS), ref),
                  metric="test_embedding_cosine", dataset="MiniLM test sentences (48, shipped)",
                  fresh=lambda: load_minilm()[0], n_calib=len(CALIBRATION))


# ------------------------------------------------------------------------------ image classifiers


def _classifier_target(cfg: Config, model: nn.Module, fresh, data, fp_recipe: str) -> Target:
    """Calibration: ``calib_samples`` training images drawn at random (seeded); metric: test top-1."""
    streaming = getattr(data, "streaming", False)
    if streaming:  # an image folder: calibration from the train split, the test split in its stored order
        xs, n = [], 0
        for x, _ in data.eval_batches("train", cfg.batch_size):
            xs.append(x)
            n += len(x)
            if n >= max(cfg.calib_samples, *cfg.calib_sweep, 1):
                break
        x_cal = torch.cat(xs)
        limit = cfg.max_steps

        def test_batches():
            for i, batch in enumerate(data.eval_batches("test", cfg.batch_size)):
                if limit is not None and i >= limit:
                    break
                yield batch
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        n_cal = min(len(data.x_train), max(cfg.calib_samples, *cfg.calib_sweep, 1))
        x_cal = data.x_train[torch.randperm(len(data.x_train), generator=g)[:n_cal]]

        def test_batches():
            for i in range(0, len(data.x_test), 500):
                yield data.x_test[i:i + 500], data.y_test[i:i + 500]

    @torch.no_grad()
    def predict(m):
        preds, labels = [], []
        for x, y in test_batches():
            preds.append(m(x).argmax(1))
            labels.append(y)
        return torch.cat(preds), torch.cat(labels)

    ref_pred, labels = predict(model)

    def evaluate(m):
        pred, _ = predict(m)
        return {"value": round(100.0 * float((pred == labels).float().mean()), 4),
                "prediction_agreement": round(100.0 * float((pred == ref_pred).float().mean()), 3)}

    def loss(m, n):
        logits = m(x_cal[:n])
        return pseudo_label_ce(logits, logits.detach())

    return Target(model=model, plan=pm.build_plan(model), loss=loss, evaluate=evaluate, metric="test_top1",
                  dataset=f"{data.label} ({len(labels)} test images)", fresh=fresh, n_calib=len(x_cal),
                  fp_recipe=fp_recipe)


SMALL = {"vit_digits": "digits", "vit_mnist": "mnist", "vit_cifar10": "cifar10_jpeg"}


def small_vit_target(cfg: Config) -> Target:
    from common.data import load_dataset

    recipe = pm.RECIPES[SMALL[cfg.model]]
    if cfg.dataset != recipe.dataset:
        raise NnqError(f"--model {cfg.model} was trained on {recipe.dataset}; use --dataset {recipe.dataset}")
    key = pm.cached(recipe)
    if key is None and cfg.max_steps is not None:  # dry run: a truncated training, nothing cached
        model, info = pm.train_small_vit(recipe, cfg.data_dir, save=False, max_steps=cfg.max_steps)
    else:
        model, info = pm.ensure_small_vit(SMALL[cfg.model], cfg.data_dir)
    data = load_dataset(cfg.dataset, cfg.data_dir, limit_test=cfg.limit_test)
    key = pm.cached(recipe)
    fresh = (lambda: pm.load_cached(key)[0]) if key else (lambda: copy.deepcopy(model))
    return _classifier_target(cfg, model.eval(), fresh, data,
                              f"the package's small ViT ({recipe.budget}; test top-1 {info['test_top1']:.2f}%)")


def timm_target(cfg: Config) -> Target:
    """A timm ViT/DeiT on an image folder (the paper's setting: ImageNet val, 224 x 224, ImageNet normalisation)."""
    import timm

    from common.data import load_dataset

    name = cfg.model.split(":", 1)[1]
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize="imagenet", image_size=224, val_size=0)

    state = {"hub": cfg.pretrained == "hub"}

    def build():
        if name not in timm.list_models():
            raise NnqError(f"timm has no model {name}; e.g. vit_small_patch16_224, deit_base_patch16_224")
        torch.manual_seed(cfg.seed)
        if state["hub"] and (os.environ.get("NNQ_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"):
            if cfg.max_steps is None:
                raise NnqError(f"offline ($NNQ_OFFLINE=1): timm cannot download {name}'s weights; run with the hub, "
                               "or dry-run with --pretrained none --max-steps 1")
            print(f"offline: the dry run of {name} uses a random init of its real configuration")
            state["hub"] = False
        if state["hub"]:
            try:
                m = timm.create_model(name, pretrained=True)
            except Exception as exc:  # noqa: BLE001 - no hub
                if cfg.max_steps is None:
                    raise NnqError(f"cannot load timm {name}'s weights ({type(exc).__name__}); without the hub, "
                                   "dry-run with --pretrained none --max-steps 1") from None
                print(f"no hub weights for {name} ({type(exc).__name__}): the dry run uses a random init")
                state["hub"] = False
        if not state["hub"]:
            torch.manual_seed(cfg.seed)
            m = timm.create_model(name, pretrained=False, num_classes=data.num_classes)
        pm.attach_timm_matmuls_(m)
        return m.eval()

    model = build()
    what = "hub weights" if state["hub"] else "random init of the real configuration (dry run)"
    return _classifier_target(cfg, model, build, data, f"timm {name}, {what}")


def hf_target(cfg: Config) -> Target:
    """A Hugging Face ViT classifier (AutoModelForImageClassification) on an image folder."""
    from transformers import AutoConfig, AutoModelForImageClassification, ViTConfig

    from common.data import load_dataset

    name = cfg.model.split(":", 1)[1]
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize="imagenet", image_size=224, val_size=0)

    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=x).logits

    def build():
        if cfg.pretrained == "hub":
            try:
                m = AutoModelForImageClassification.from_pretrained(name)
            except Exception as exc:  # noqa: BLE001
                raise NnqError(f"cannot load {name} ({type(exc).__name__}); without the hub use --pretrained none") \
                    from None
        else:
            try:
                conf = AutoConfig.from_pretrained(name, local_files_only=True)
            except Exception:  # noqa: BLE001 - offline: ViT-B/16's configuration (transformers' default)
                conf = ViTConfig()
            conf.num_labels = data.num_classes
            torch.manual_seed(cfg.seed)
            m = AutoModelForImageClassification.from_config(conf)
        pm.attach_hf_matmuls_(m)
        return Logits(m.eval()).eval()

    return _classifier_target(cfg, build(), build, data, f"Hugging Face {name} ({cfg.pretrained or 'random init'})")


def build_target(cfg: Config) -> Target:
    if cfg.model == "minilm":
        return minilm_target(cfg)
    if cfg.model in SMALL:
        return small_vit_target(cfg)
    if cfg.model.startswith("timm:"):
        return timm_target(cfg)
    return hf_target(cfg)


# ------------------------------------------------------------------------------ methods


def settings(cfg: Config, method: str, hessian: bool | None = None, twin_softmax: bool | None = None,
             twin_gelu: bool | None = None) -> P.SearchSettings:
    """base: base PTQ (official README: cosine, alpha 0.5, beta 1.2, one round, uniform quantizers);
    ptq4vit: the method with this config's switches (or the given ones: an ablation row)."""
    if method == "base":
        return replace(P.BASE_PTQ, n=cfg.n_grid)
    h = cfg.hessian if hessian is None else hessian
    return replace(P.PTQ4VIT, n=cfg.n_grid, rounds=cfg.rounds, metric="hessian" if h else "cosine",
                   twin_softmax=cfg.twin if twin_softmax is None else twin_softmax,
                   twin_gelu=cfg.twin if twin_gelu is None else twin_gelu, max_m=cfg.max_m)


def label(st: P.SearchSettings) -> str:
    if st == replace(P.BASE_PTQ, n=st.n):
        return "base PTQ"
    parts = ["Hessian" if st.metric == "hessian" else st.metric]
    parts += [p for p, on in (("softmax twin", st.twin_softmax), ("GELU twin", st.twin_gelu)) if on]
    return "PTQ4ViT (" + ", ".join(parts) + ")" if st.twin_softmax and st.twin_gelu and st.metric == "hessian" \
        else " + ".join(parts)


def run_key(cfg: Config) -> str:
    key = f"{cfg.model}-w{cfg.w_bits}a{cfg.a_bits}" + ("" if cfg.twin else "-notwin") + \
          ("" if cfg.hessian else "-nohessian")
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def _quantized(model: nn.Module, scales: dict, w_bits: int, a_bits: int) -> nn.Module:
    return P.apply_scales_(copy.deepcopy(model), scales, w_bits, a_bits).eval()


def _error_sums(scales: dict) -> tuple[float, float]:
    e = scales.get("_errors") or {}
    return sum(v[0] for v in e.values()), sum(v[1] for v in e.values())


def _histograms(tg: Target, cap: P.Captured, scales_by: dict, bits: int) -> dict:
    """Post-softmax and post-GELU values of the middle block (histogram counts) and both quantizers' levels."""
    out = {}
    av = [n for n, r in tg.plan.matmuls.items() if r == "av"]
    gelu = [n for n, (r, _) in tg.plan.linears.items() if r == "gelu"]
    if av:
        name = av[len(av) // 2]
        x = torch.cat([i[0].reshape(-1) for i in cap.inputs[name]]).float()
        counts = torch.histc(x, bins=100, min=0.0, max=1.0)
        ent = {"layer": name, "bins": [0.0, 1.0, 100], "counts": counts.tolist(),
               "fraction_below_0.01": round(float((x < 0.01).float().mean()), 5)}
        for tag, sc in scales_by.items():
            e = sc.get(name)
            if e is None:
                continue
            if e["a_kind"] == "twin_softmax":
                ent[f"{tag}_levels"] = P.twin_softmax_levels(int(e["a_delta"][0]), bits).tolist()
                ent[f"{tag}_m"] = int(e["a_delta"][0])
            else:
                d = float(e["a_delta"].mean())
                ent[f"{tag}_levels"] = [i * d for i in range(0, 2 ** (bits - 1)) if i * d <= 1.0]
        out["post_softmax"] = ent
    if gelu:
        name = gelu[len(gelu) // 2]
        x = torch.cat([i[0].reshape(-1) for i in cap.inputs[name]]).float()
        lo, hi = float(x.min()), float(x.max())
        ent = {"layer": name, "bins": [lo, hi, 100], "counts": torch.histc(x, 100, lo, hi).tolist(),
               "fraction_negative": round(float((x < 0).float().mean()), 5)}
        for tag, sc in scales_by.items():
            e = sc.get(name)
            if e is None:
                continue
            if e["act_kind"] == "twin_gelu":
                ent[f"{tag}_levels"] = P.twin_gelu_levels(float(e["a_delta"][0]), bits, int(e["a_delta"][1])).tolist()
            else:
                d = float(e["a_delta"][0])
                ent[f"{tag}_levels"] = [i * d for i in range(-(2 ** (bits - 1)), 2 ** (bits - 1))]
        out["post_gelu"] = ent
    return out


def main(cfg: Config) -> dict:
    """Capture, search, save, apply and evaluate base PTQ and PTQ4ViT on ``cfg``'s model; return the summary."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.max_steps is not None:  # dry run: N test batches, N calibration images, a grid of N + 1, one round
        cfg = replace(cfg, n_grid=min(cfg.n_grid, cfg.max_steps + 1), rounds=1, ablations=False, calib_sweep=(),
                      calib_samples=min(cfg.calib_samples, cfg.max_steps), compare_bits=(cfg.w_bits,),
                      a_bits=cfg.w_bits)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        t0 = time.perf_counter()
        tg = build_target(cfg)
        n_cal = min(cfg.calib_samples, tg.n_calib)
        with torch.no_grad():
            fp = tg.evaluate(tg.model)
        print(f"float model: {tg.metric} {fp['value']}; {len(tg.plan.linears)} linear layers, "
              f"{len(tg.plan.matmuls)} matmuls, {len(tg.plan.convs)} convs; {n_cal} calibration samples")
        tc = time.perf_counter()
        cap = P.capture(tg.model, tg.plan, lambda m: tg.loss(m, n_cal), need_grad=True)
        capture_s = time.perf_counter() - tc
        common_fields = {"dataset": tg.dataset, "metric": tg.metric, "params": count_params(tg.model),
                         "fp_value": fp["value"], "fp_recipe": tg.fp_recipe, "train_time_s": 0.0}
        points, curves, headline, hist_scales, site_scales = [], {}, None, {}, None
        rows = [(b, "base", settings(cfg, "base")) for b in cfg.compare_bits]
        rows += [(b, "ptq4vit", settings(cfg, "ptq4vit")) for b in cfg.compare_bits]
        if (cfg.w_bits, cfg.a_bits) not in [(b, b) for b in cfg.compare_bits]:
            rows.append((None, "ptq4vit", settings(cfg, "ptq4vit")))
        for bits, method, st in rows:
            wb, ab = (bits, bits) if bits else (cfg.w_bits, cfg.a_bits)
            is_head = method == "ptq4vit" and (wb, ab) == (cfg.w_bits, cfg.a_bits)
            ts = time.perf_counter()
            if is_head and cfg.load_scales:
                scales = P.load_scales(cfg.load_scales)
            else:
                scales = P.search_model(tg.model, tg.plan, cap, wb, ab, st)
            search_s = time.perf_counter() - ts
            path = run.dir / f"ptq4vit_scales_w{wb}a{ab}{'' if method == 'ptq4vit' else '_base'}.safetensors"
            P.save_scales(scales, path, {"w_bits": wb, "a_bits": ab, "method": label(st)})
            model = _quantized(tg.model, P.load_scales(path), wb, ab)  # the run applies what it saved
            with torch.no_grad():
                res = tg.evaluate(model)
            start, err = _error_sums(scales)
            curves[f"{method}_w{wb}a{ab}"] = scales.get("_curves", {})
            if wb == ab == min(cfg.compare_bits):
                hist_scales[method] = scales
            if method == "ptq4vit" and wb == ab == max(cfg.compare_bits) and bits is not None:
                site_scales = scales
            points.append({**common_fields, "method": f"{label(st)} W{wb}A{ab}", "value": res["value"],
                           "w_bits": wb, "a_bits": ab, "train_time_s": round(search_s, 3),
                           "extra": {k: v for k, v in res.items() if k != "value"}
                           | {"variant": method, "metric_kind": st.metric, "twin_softmax": st.twin_softmax,
                              "twin_gelu": st.twin_gelu, "layer_distance_start": start,
                              "layer_distance_final": err, "calib_samples": n_cal}})
            run.log_metrics({"method": method, "w_bits": wb, "a_bits": ab, "result": res,
                             "search_s": round(search_s, 2)})
            print(f"{label(st)} W{wb}A{ab}: {tg.metric} {res['value']} (float {fp['value']}; search {search_s:.0f}s)")
            if is_head:
                headline = (model, res, path, search_s, st)
            else:
                del model
        run.write_json("search_curves.json", curves)
        model, res, scales_path, search_s, st = headline
        by = {(p["extra"]["variant"], p["w_bits"]): p for p in points}
        base = by.get(("base", cfg.w_bits))

        # the real artifact: packed codes, reloaded onto a fresh float skeleton, must compute the same
        packed = save_packed(model, run.dir / f"ptq4vit_packed_w{cfg.w_bits}a{cfg.a_bits}.safetensors",
                             {"model": cfg.model, "w_bits": cfg.w_bits, "a_bits": cfg.a_bits})
        reloaded = load_packed(packed, tg.fresh()).eval()
        with torch.no_grad():
            again = tg.evaluate(reloaded)
        same = again == res
        if not same:
            raise NnqError(f"{packed} does not reproduce the quantized model ({again} vs {res}); please report this")
        del reloaded

        sites_file = None
        if cfg.sites and site_scales is not None:
            sb = max(cfg.compare_bits)
            print(f"W{sb}A{sb}: the error of each quantized tensor alone and of each kind left float")
            sites = S.site_errors(tg.model, site_scales, sb, sb, tg.evaluate, fp["value"], log=print)
            sites["weight_rows"] = S.weight_row_spread(tg.model, tg.plan.linears)
            sites["input_channels"] = S.input_channel_spread(cap.inputs, tg.plan.linears)
            sites_file = run.write_json(f"sites_w{sb}a{sb}.json", sites).name

        ablation = []
        if cfg.ablations:
            for bits in cfg.compare_bits:
                for h, ts_, tg_ in ABLATION_ROWS:
                    st_a = settings(cfg, "base") if not (h or ts_ or tg_) else \
                        settings(cfg, "ptq4vit", hessian=h, twin_softmax=ts_, twin_gelu=tg_)
                    known = [p for p in points if p["w_bits"] == bits and p["extra"]["metric_kind"] == st_a.metric
                             and p["extra"]["twin_softmax"] == ts_ and p["extra"]["twin_gelu"] == tg_
                             and (h or ts_ or tg_ or p["extra"]["variant"] == "base")]
                    if known:
                        value, extra = known[0]["value"], known[0]["extra"]
                    else:
                        sc = P.search_model(tg.model, tg.plan, cap, bits, bits, st_a)
                        with torch.no_grad():
                            r = tg.evaluate(_quantized(tg.model, sc, bits, bits))
                        value, extra = r["value"], {k: v for k, v in r.items() if k != "value"}
                    ablation.append({"bits": bits, "hessian": h, "softmax_twin": ts_, "gelu_twin": tg_,
                                     "value": value, **{k: extra[k] for k in extra if k in
                                                        ("prediction_agreement", "retrieval_agreement", "min_cosine")}})
                    print(f"ablation W{bits}A{bits} hessian={h} softmax_twin={ts_} gelu_twin={tg_}: {value}")
            run.write_json("ablation.json", ablation)

        sweep = []
        for n in cfg.calib_sweep:
            n_eff = min(n, tg.n_calib)
            cap_n = cap if n_eff == n_cal else P.capture(tg.model, tg.plan, lambda m: tg.loss(m, n_eff), True)
            sc = P.search_model(tg.model, tg.plan, cap_n, cfg.w_bits, cfg.a_bits, st)
            with torch.no_grad():
                r = tg.evaluate(_quantized(tg.model, sc, cfg.w_bits, cfg.a_bits))
            sweep.append({"calib_samples": n_eff, "value": r["value"], "w_bits": cfg.w_bits, "a_bits": cfg.a_bits})
            print(f"calibration {n_eff}: {r['value']}")
        if sweep:
            run.write_json("calib_sweep.json", sweep)
        hist = _histograms(tg, cap, hist_scales, min(cfg.compare_bits)) if cfg.histograms else {}
        if hist:
            run.write_json("histograms.json", hist)

        size = file_size(packed)
        row = {**common_fields, "method": f"{label(st)} W{cfg.w_bits}A{cfg.a_bits}", "value": res["value"],
               "w_bits": cfg.w_bits, "a_bits": cfg.a_bits, "model_bits": model_bits(stored_fields(model)),
               "size_bytes": size, "compression_ratio": round(fp32_size_bytes(tg.model) / size, 3),
               "train_time_s": round(search_s, 3),
               "extra": {k: v for k, v in res.items() if k != "value"} | {
                   "fp": fp, "base_ptq_value": base["value"] if base else None,
                   "calib_samples": n_cal, "n_grid": cfg.n_grid, "rounds": cfg.rounds, "hessian": cfg.hessian,
                   "twin": cfg.twin, "quantized_linears": len(tg.plan.linears),
                   "quantized_matmuls": len(tg.plan.matmuls), "quantized_convs": len(tg.plan.convs),
                   "capture_s": round(capture_s, 2), "scales_artifact": scales_path.name, "artifact": packed.name,
                   "artifact_reproduces_outputs": same, "ablation": ablation, "calib_sweep": sweep,
                   "sites_file": sites_file,
                   "total_time_s": round(time.perf_counter() - t0, 1)}}
        return run.finish(row, points)


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.ptq4vit.quantize")
