"""AWQ post-training quantization: ``python -m papers.awq.quantize [--preset NAME] [flags]``.

search -> saved artifact -> apply -> evaluate. The float model's linear layers inside its transformer blocks
are found by one path (:func:`papers.awq.awq.linear_names`); their inputs on the calibration set are captured
once; at each of ``--compare-bits`` the RTN baseline (Eq. (1) as it is) and AWQ (the scale search of
Eq. (4)-(5), then the clip search of Sec. 3.2) are applied and evaluated. The search at ``--w-bits`` is saved
(``awq_search_w<N>.safetensors``: scales, clips, alpha), loaded back and applied; that model is the headline row,
written as its real packed artifact (``awq_packed_w<N>.safetensors``) and reloaded to check it computes exactly
the same. With ``--ablations`` the paper's ablations at ``--w-bits`` are measured too, and with ``--int4`` (at
4 bits) the linear layers run on PyTorch's int4 CPU kernel (:mod:`papers.awq.int4`).

MiniLM (the quick preset): metric ``test_embedding_cosine``, the mean cosine of the quantized model's sentence
embeddings (mean pooling, L2-normalised, as all-MiniLM-L6-v2) to the fp32 model's on the 48 test sentences of
:mod:`papers.awq.texts`; the search calibrates on 48 other sentences.
"""

from __future__ import annotations

import copy
import os
import re
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from common.cli import cli_main
from common.clip import embedding_metrics, load_minilm
from common.clip import encode_sentences as encode
from common.errors import NnqError
from common.evaluate import count_params, file_size, fp32_size_bytes, model_bits
from common.runs import Run
from common.train import seed_everything
from papers.awq import awq
from papers.awq.artifact import load_packed, save_packed, stored_fields
from papers.awq.config import PRESETS, Config
from papers.awq.texts import CALIBRATION, TEST_PAIRS, TEST_TEXTS

PAPER = "awq"


@dataclass
class Target:
    """A float model with what the search and the evaluation need.

    Attributes:
        model: the float model (eval mode).
        names: the linear layers to quantize (inside the transformer blocks).
        calibrate: runs the calibration samples through a model (for the input capture).
        evaluate: model -> {"value": headline metric, ...} on the test set.
        metric: name of the headline metric; dataset: label of the test data.
        fresh: builds the float skeleton again (the packed artifact is reloaded onto it).
        example: a batch-1 input runner for latency: model -> None.
    """

    model: nn.Module
    names: list[str]
    calibrate: Callable[[nn.Module], None]
    evaluate: Callable[[nn.Module], dict]
    metric: str
    dataset: str
    fresh: Callable[[], nn.Module]
    example: Callable[[nn.Module], object]
    fp_recipe: str = "the pretrained fp32 model itself"


# ------------------------------------------------------------------------------ MiniLM


def minilm_target(cfg: Config) -> Target:
    model, tok = load_minilm()
    ref = encode(model, tok, TEST_TEXTS)
    calib = CALIBRATION[: cfg.calib_samples]
    if len(calib) < cfg.calib_samples:
        raise NnqError(f"--calib-samples {cfg.calib_samples}: MiniLM's calibration set has {len(CALIBRATION)} sentences")
    assert len(TEST_TEXTS) == 2 * len(TEST_PAIRS)

    @torch.no_grad()
    def calibrate(m):  # one sentence at a time: no padding tokens among the captured inputs
        for t in calib:
            m(**tok(t, return_tensors="pt"))

    example_batch = tok(TEST_TEXTS[0], return_tensors="pt")
    return Target(model=model, names=awq.linear_names(model, lambda n: n.startswith("encoder.layer.")),
                  calibrate=calibrate, evaluate=lambda m: embedding_metrics(encode(m, tok, TEST_TEXTS), ref),
                  metric="test_embedding_cosine", dataset="MiniLM test sentences (48, shipped)",
                  fresh=lambda: load_minilm()[0], example=lambda m: m(**example_batch))


# ------------------------------------------------------------------------------ CLIP (both towers)


def clip_target(cfg: Config) -> Target:
    """A CLIP with both towers' block linears to quantize; metric: zero-shot top-1 on the test split.

    The zero-shot head is recomputed from each model's own (quantized) text tower. Calibration: the first
    ``calib_samples`` training images through the image tower and the class prompts through the text tower.
    """
    from common import clip as cclip
    from common.data import load_dataset
    from papers.awq.models import in_block, split_attention_

    if cfg.dataset.startswith("cifar10"):
        classes, templates = cclip.CIFAR10_CLASSES, cclip.TEMPLATES
    elif cfg.dataset in ("digits", "mnist"):
        classes, templates = cclip.DIGIT_CLASSES, cclip.DIGIT_TEMPLATES
    else:
        raise NnqError(f"--dataset {cfg.dataset}: the CLIP path knows the class prompts of cifar10, cifar10_jpeg, "
                       "digits and mnist")

    def load():
        name = cclip.SMALL_CLIP if cfg.model == "clip_small" else cfg.model.split(":", 1)[1]
        bundle = cclip.load_clip(name, cfg.pretrained)
        split_attention_(bundle.model)
        return bundle

    bundle = load()
    model = bundle.model.eval()
    data = load_dataset(cfg.dataset, cfg.data_dir, normalize="none", limit_train=max(cfg.calib_samples, 1),
                        limit_test=cfg.limit_test, val_size=0)
    mean, std = torch.tensor(bundle.mean), torch.tensor(bundle.std)
    prep = lambda x: cclip.prepare_images(x, bundle.image_size, mean, std)
    prompts = bundle.tokenizer(cclip.prompts_for(classes, templates))

    @torch.no_grad()
    def logits(m):
        head = nn.functional.normalize(m.encode_text(prompts).float(), dim=-1)
        head = nn.functional.normalize(head.view(len(classes), len(templates), -1).mean(1), dim=-1)
        out = [nn.functional.normalize(m.encode_image(prep(data.x_test[i:i + 250])).float(), dim=-1) @ head.T
               for i in range(0, len(data.x_test), 250)]
        return torch.cat(out)

    ref = logits(model).argmax(1)

    def evaluate(m):
        pred = logits(m).argmax(1)
        return {"value": round(100.0 * float((pred == data.y_test).float().mean()), 4),
                "prediction_agreement": round(100.0 * float((pred == ref).float().mean()), 3)}

    @torch.no_grad()
    def calibrate(m):
        m.encode_image(prep(data.x_train[: cfg.calib_samples]))
        m.encode_text(prompts)

    one = prep(data.x_test[:1])
    return Target(model=model, names=awq.linear_names(model, in_block), calibrate=calibrate, evaluate=evaluate,
                  metric="test_top1", dataset=f"{data.label}, zero-shot ({len(data.x_test)} test images)",
                  fresh=lambda: load().model.eval(), example=lambda m: m.encode_image(one),
                  fp_recipe=f"the fp32 CLIP {cfg.model} (pretrained: {cfg.pretrained}), zero-shot, not fine-tuned")


# ------------------------------------------------------------------------------ a causal LM by hub name

LLM_CONFIGS = {
    # LLaMA-7B's architecture (Touvron et al., 2023; the paper's Table 4 model), used when the hub is unreachable
    "huggyllama/llama-7b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                            "num_attention_heads": 32, "num_hidden_layers": 32, "rms_norm_eps": 1e-6,
                            "max_position_embeddings": 2048, "vocab_size": 32000},
    # a LLaMA-shaped toy for tests (2 layers of width 256)
    "nnq/tiny-llama": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
                       "vocab_size": 32000},
}


def load_llm(cfg: Config) -> tuple[nn.Module, object, str]:
    """(causal LM, tokenizer, what was loaded). --pretrained none: random init from the model's configuration
    (from the hub or its cache, else ``LLM_CONFIGS``) with --llm-layers layers; else the weights (hub name or path).
    The tokenizer is the model's own when it can be loaded, else MiniLM's (offline; the vocabulary follows it)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from common.clip import minilm_dir

    hf_logging.set_verbosity_error()
    name = cfg.model.split(":", 1)[1]
    src = cfg.pretrained if cfg.pretrained not in (None, "hub") else name
    # offline ($NNQ_OFFLINE=1 or $HF_HUB_OFFLINE=1, or a built-in toy): the local cache only, no retried requests
    local = (os.environ.get("NNQ_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
             or name.startswith("nnq/"))
    try:
        tok, tok_src = AutoTokenizer.from_pretrained(src, local_files_only=local), src
    except Exception:  # noqa: BLE001 - offline without a cache: the dry run's tokenizer
        tok, tok_src = AutoTokenizer.from_pretrained(str(minilm_dir())), "MiniLM's WordPiece tokenizer (offline)"
    if cfg.pretrained is not None:
        try:
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, local_files_only=local)
        except Exception as exc:  # noqa: BLE001
            raise NnqError(f"cannot load {src} ({type(exc).__name__}); without the hub, dry-run with --pretrained none "
                           "--llm-layers 1") from None
        return model.eval(), tok, f"{src} weights, tokenizer {tok_src}"
    try:
        conf = AutoConfig.from_pretrained(name, local_files_only=local)
        where = f"{name} configuration"
    except Exception:  # noqa: BLE001
        if name not in LLM_CONFIGS:
            raise NnqError(f"no configuration for {name} offline; known: {', '.join(LLM_CONFIGS)}") from None
        c = dict(LLM_CONFIGS[name])
        conf = AutoConfig.for_model(c.pop("model_type"), **c)
        where = f"{name} configuration (built in)"
    conf.vocab_size = len(tok)
    if cfg.llm_layers:
        conf.num_hidden_layers = cfg.llm_layers
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
    return model.eval(), tok, (f"random init, {where}, {conf.num_hidden_layers} layer(s), vocabulary {len(tok)}, "
                               f"tokenizer {tok_src}")


def llm_target(cfg: Config) -> Target:
    """A causal LM; metric: perplexity (lower is better) on the shipped test sentences as one stream."""
    model, tok, what = load_llm(cfg)
    ids = tok(" ".join(TEST_TEXTS), return_tensors="pt")["input_ids"][:, :512]
    calib = CALIBRATION[: cfg.calib_samples]

    @torch.no_grad()
    def evaluate(m):
        loss = m(input_ids=ids, labels=ids).loss
        return {"value": round(float(torch.exp(loss)), 4), "nll": round(float(loss), 6)}

    @torch.no_grad()
    def calibrate(m):
        m(**tok(" ".join(calib), return_tensors="pt"))

    one = ids[:, :1]
    return Target(model=model, names=awq.linear_names(model, lambda n: ".layers." in n), calibrate=calibrate,
                  evaluate=evaluate, metric="test_perplexity", dataset=f"shipped test sentences ({ids.shape[1]} tokens)",
                  fresh=lambda: load_llm(cfg)[0], example=lambda m: m(input_ids=one),
                  fp_recipe=f"the fp32 model: {what}")


def build_target(cfg: Config) -> Target:
    if cfg.model == "minilm":
        return minilm_target(cfg)
    if cfg.model.startswith("hf:"):
        return llm_target(cfg)
    return clip_target(cfg)


# ------------------------------------------------------------------------------ the run


def run_key(cfg: Config) -> str:
    key = f"{cfg.model}-w{cfg.w_bits}g{cfg.group_size}" + ("" if cfg.clip_search else "-noclip")
    return re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")


def _quantized(model: nn.Module, apply: Callable[[nn.Module], object]) -> nn.Module:
    q = copy.deepcopy(model)
    apply(q)
    return q.eval()


def _errors(art: dict) -> tuple[float, float]:
    """Sum over the layer groups of the search objective L at s = 1 (RTN) and at the chosen s (Eq. (4))."""
    errs = [e for e in art["_errors"].values() if e[0] is not None]
    return sum(e[0] for e in errs), sum(e[1] for e in errs)


def main(cfg: Config) -> dict:
    """Search, save, apply and evaluate AWQ (and RTN) on ``cfg``'s model; return the summary (also summary.json).

    Args:
        cfg: a validated Config (see ``config.PRESETS``).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Run.start(PAPER, cfg, run_key(cfg))
    with run.guard():
        seed_everything(cfg.seed)
        t0 = time.perf_counter()
        tg = build_target(cfg)
        for n in tg.names:
            w = tg.model.get_submodule(n).in_features
            if w % cfg.group_size:
                raise NnqError(f"--group-size {cfg.group_size} does not divide the input width {w} of {n}; "
                               "choose a divisor (MiniLM: 128 divides 384 and 1536)")
        fp = tg.evaluate(tg.model)
        inputs = awq.capture_inputs(tg.model, tg.names, lambda: tg.calibrate(tg.model), cfg.max_tokens)
        n_tokens = min(len(v) for v in inputs.values())
        points, curves, headline = [], {}, None
        search_time = 0.0
        bits_list = list(dict.fromkeys([cfg.w_bits, *cfg.compare_bits]))
        for bits in bits_list:
            rtn = _quantized(tg.model, lambda m: awq.apply_rtn_(m, tg.names, bits, cfg.group_size))
            rtn_res = tg.evaluate(rtn)
            del rtn
            ts = time.perf_counter()
            if bits == cfg.w_bits and cfg.load_search:
                art = awq.load_artifact(cfg.load_search)
                art["_errors"], art["_curves"] = {}, {}
            else:
                art = awq.search_model(tg.model, inputs, bits, cfg.group_size, cfg.n_grid, clip=cfg.clip_search)
            search_s = time.perf_counter() - ts
            search_time += search_s
            search_path = run.dir / f"awq_search_w{bits}.safetensors"
            awq.save_artifact(art, search_path, {"bits": bits, "group_size": cfg.group_size})
            loaded = awq.load_artifact(search_path)  # the run applies what it saved
            model = _quantized(tg.model, lambda m: awq.apply_awq_(m, loaded, bits, cfg.group_size))
            awq_res = tg.evaluate(model)
            rtn_err, awq_err = _errors(art) if art["_errors"] else (None, None)
            curves[bits] = {g: c for g, c in art["_curves"].items()}
            common_fields = {"dataset": tg.dataset, "metric": tg.metric, "w_bits": bits, "a_bits": None,
                             "params": count_params(tg.model), "train_time_s": 0.0,
                             "fp_value": fp["value"], "fp_recipe": tg.fp_recipe}
            points.append({**common_fields, "method": f"RTN W{bits} g{cfg.group_size}", "value": rtn_res["value"],
                           "extra": {k: v for k, v in rtn_res.items() if k != "value"}
                           | {"layer_error_sum": rtn_err, "variant": "rtn"}})
            points.append({**common_fields, "method": f"AWQ W{bits} g{cfg.group_size}", "value": awq_res["value"],
                           "train_time_s": round(search_s, 3),
                           "extra": {k: v for k, v in awq_res.items() if k != "value"}
                           | {"layer_error_sum": awq_err, "variant": "awq",
                              "alphas": {n: e["alpha"] for n, e in loaded.items()}}})
            run.log_metrics({"bits": bits, "rtn": rtn_res, "awq": awq_res, "rtn_layer_error_sum": rtn_err,
                             "awq_layer_error_sum": awq_err, "search_s": round(search_s, 3)})
            if bits == cfg.w_bits:
                headline = (model, awq_res, rtn_res, rtn_err, awq_err, search_path, search_s, inputs)
            else:
                del model
        run.write_json("alpha_curves.json", {str(b): c for b, c in curves.items()})
        model, awq_res, rtn_res, rtn_err, awq_err, search_path, search_s, _ = headline

        # the real artifact: packed codes, reloaded onto a fresh float skeleton, must compute the same
        packed = save_packed(model, run.dir / f"awq_packed_w{cfg.w_bits}.safetensors",
                             {"model": cfg.model, "bits": cfg.w_bits, "group_size": cfg.group_size})
        reloaded = load_packed(packed, tg.fresh()).eval()
        again = tg.evaluate(reloaded)
        same = again == awq_res
        if not same:
            raise NnqError(f"{packed} does not reproduce the quantized model ({again} vs {awq_res}); please report this")
        del reloaded

        ablation = _ablations(cfg, tg, inputs) if cfg.ablations else {}
        if ablation:
            run.write_json("ablations.json", ablation)
        int4 = _int4(cfg, tg, model) if cfg.int4 and cfg.w_bits == 4 else {}
        if int4:
            run.write_json("int4.json", int4)

        lin_fp32 = sum(tg.model.get_submodule(n).weight.numel() * 32 + tg.model.get_submodule(n).out_features * 32
                       for n in tg.names)
        lin_bits = sum(f.bits for f in stored_fields(model) if f.name.rsplit(".", 1)[0] in set(tg.names))
        size = file_size(packed)
        row = {"method": f"AWQ W{cfg.w_bits} g{cfg.group_size}", "dataset": tg.dataset, "metric": tg.metric,
               "value": awq_res["value"], "fp_value": fp["value"], "fp_recipe": tg.fp_recipe,
               "w_bits": cfg.w_bits, "a_bits": None, "params": count_params(tg.model),
               "model_bits": model_bits(stored_fields(model)), "size_bytes": size,
               "compression_ratio": round(fp32_size_bytes(tg.model) / size, 3), "train_time_s": round(search_s, 3),
               "extra": {k: v for k, v in awq_res.items() if k != "value"} | {
                   "fp": fp, "rtn": rtn_res, "rtn_value": rtn_res["value"],
                   "rtn_layer_error_sum": rtn_err, "awq_layer_error_sum": awq_err,
                   "group_size": cfg.group_size, "n_grid": cfg.n_grid, "clip_search": cfg.clip_search,
                   "calib_samples": cfg.calib_samples, "calib_tokens_per_layer": n_tokens,
                   "quantized_layers": len(tg.names), "linear_fp32_bits": lin_fp32, "linear_awq_bits": lin_bits,
                   "linear_bits_ratio": round(lin_fp32 / lin_bits, 3),
                   "search_artifact": search_path.name, "artifact": packed.name,
                   "artifact_reproduces_outputs": same, "ablations": ablation, "int4": int4,
                   "total_time_s": round(time.perf_counter() - t0, 1)}}
        return run.finish(row, points)


# ------------------------------------------------------------------------------ ablations


def _ablations(cfg: Config, tg: Target, inputs: dict) -> dict:
    """The paper's ablations at --w-bits: Table 1 (keep 1% fp by activation / weight / random), scales from the
    weight, alpha = 1 fixed, AWQ without the clip search. {name: metrics} (each with its layer error where defined)."""
    bits, gs, out = cfg.w_bits, cfg.group_size, {}
    for kind in ("activation", "weight", "random"):
        m = _quantized(tg.model, lambda q: awq.apply_keep_fp_(q, inputs, kind, bits, gs, cfg.salient_fraction,
                                                              cfg.seed))
        out[f"keep_fp_{kind}"] = tg.evaluate(m)
    for name, kw in (("scale_by_weight", {"scale_by": "weight"}), ("alpha_1", {"fixed_alpha": 1.0}),
                     ("awq_no_clip", {"clip": False})):
        kw = {"clip": cfg.clip_search, **kw}
        art = awq.search_model(tg.model, inputs, bits, gs, cfg.n_grid, **kw)
        m = _quantized(tg.model, lambda q: awq.apply_awq_(q, art, bits, gs))
        out[name] = {**tg.evaluate(m), "layer_error_sum": _errors(art)[1] if art["_errors"] else None}
    return out


def _int4(cfg: Config, tg: Target, model: nn.Module) -> dict:
    """Real int4 deployment of the AWQ model (``papers.awq.int4``) on each of ``cfg.int4_kernels``."""
    from papers.awq import int4

    return int4.deploy_report(tg.model, model, tg.evaluate, tg.example, repeats=cfg.latency_repeats,
                              bench=cfg.int4_bench, kernels=tuple(cfg.int4_kernels))


if __name__ == "__main__":
    cli_main(main, Config, PRESETS, prog="python -m papers.awq.quantize")
