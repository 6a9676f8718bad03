"""The training loop: step budgets, dry-run truncation, gradient accumulation, exact mid-epoch resume."""

import pytest
import torch

from common.data import load_dataset
from common.models import MLP
from common.runs import Run
from common.evaluate import evaluate_split
from common.train import Callback, cosine_per_step, fit, float_start, seed_everything, sgd_float_twin


class StopAfterStep(Callback):
    """Simulates a kill right after optimizer step k (before any later checkpoint)."""

    def __init__(self, k: int):
        self.k = k

    def after_step(self, ctx):
        if ctx.step == self.k:
            raise KeyboardInterrupt


def setup(seed=0):
    seed_everything(seed)
    data = load_dataset("synthetic", val_size=64)
    model = MLP(64, (16,), 10, dropout=0.2)  # dropout: the resumed run must restore the random state too
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return data, model, opt


def test_step_budget_and_per_step_cosine_end_at_zero_lr():
    data, model, opt = setup()
    res = fit(model, data, steps=23, batch_size=32, optimizer=opt, scheduler=cosine_per_step(opt, 23),
              scheduler_interval="step")
    assert res["steps"] == 23 and not res["truncated"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert res["history"][-1]["step"] == 23 and res["val"]["top1"] > 30  # 10 classes: chance is 10%


def test_max_steps_truncates_every_stage_and_says_so():
    data, model, opt = setup()
    res = fit(model, data, epochs=5, batch_size=32, optimizer=opt, max_steps=3)
    assert res["steps"] == 3 and res["truncated"]


def test_gradient_accumulation_equals_one_big_batch():
    data, _, _ = setup()
    model_a = MLP(64, (16,), 10, batchnorm=False)  # BatchNorm would see 16 samples instead of 64
    model_b = MLP(64, (16,), 10, batchnorm=False)
    model_b.load_state_dict(model_a.state_dict())
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.1)
    fit(model_a, data, steps=4, batch_size=64, optimizer=opt_a, seed=3)
    fit(model_b, data, steps=4, batch_size=16, grad_accum=4, optimizer=opt_b, seed=3)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    def run_folder(name):
        return Run.create("bnn", "quick", name, 0, tmp_path, {"preset": "quick", "seed": 0})

    data, model, opt = setup()
    whole = fit(model, data, epochs=3, batch_size=32, optimizer=opt, run=run_folder("whole"), ckpt_every=4, seed=7)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    run = run_folder("killed")
    data, model, opt = setup()
    with pytest.raises(KeyboardInterrupt):  # 14 steps per epoch: killed in epoch 2 after step 22 (checkpoint at 20)
        fit(model, data, epochs=3, batch_size=32, optimizer=opt, run=run, ckpt_every=4, seed=7,
            callbacks=[StopAfterStep(22)])
    assert run.load_checkpoint("main.ckpt.pt")["step"] == 20

    data, model, opt = setup(seed=123)  # fresh objects; everything must come from the checkpoint
    resumed = fit(model, data, epochs=3, batch_size=32, optimizer=opt, run=run, ckpt_every=4, seed=7)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert resumed["steps"] == whole["steps"] == 42
    assert [r["step"] for r in run.metrics()] == [r["step"] for r in whole["history"]] == [14, 28, 42]


def test_bf16_autocast_trains_and_fp32_weights_stay_fp32():
    data, model, opt = setup()
    before = [p.detach().clone() for p in model.parameters()]
    res = fit(model, data, steps=3, batch_size=32, optimizer=opt, precision="bf16")
    assert res["steps"] == 3 and res["val"]["loss"] == res["val"]["loss"]  # finite, not NaN
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_float_start_trains_the_twin_as_the_start_or_on_a_copy_and_reports_its_test_top1():
    data = load_dataset("synthetic", val_size=64)
    build = lambda: (seed_everything(1), MLP(64, (16,), 10))[1]  # noqa: E731 - the same initialisation each call
    init = _state(build())
    seen = []

    def twin(model):
        seen.append(model)
        fit(model, data, steps=20, batch_size=32, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
        return "SGD, 20 steps"

    start, fp = float_start(data, build, twin=twin)  # the twin is the start (fine-tuning methods)
    assert seen == [start] and not _same(_state(start), init) and start.training
    assert fp == {"fp_value": round(evaluate_split(start, data, "test")["top1"], 4), "fp_recipe": "SGD, 20 steps"}
    assert fp["fp_value"] > 30  # the twin learned (10 classes: chance is 10%)

    start, fp2 = float_start(data, build, twin=twin, twin_is_start=False)  # from scratch, the twin only for fp
    assert seen[-1] is not start and _same(_state(start), init)
    assert fp2 == {"fp_value": round(evaluate_split(seen[-1], data, "test")["top1"], 4), "fp_recipe": "SGD, 20 steps"}

    start, fp3 = float_start(data, build)  # no twin: no float reference
    assert fp3 == {} and _same(_state(start), init)


def test_float_start_from_weights_loads_them_and_does_not_train(tmp_path):
    data = load_dataset("synthetic", val_size=64)
    seed_everything(0)
    trained = MLP(64, (16,), 10)
    fit(trained, data, steps=20, batch_size=32, optimizer=torch.optim.SGD(trained.parameters(), lr=0.1), seed=0)
    torch.save(trained.state_dict(), tmp_path / "mlp.pt")
    twin = lambda m: pytest.fail("given weights: no twin")  # noqa: E731
    start, fp = float_start(data, lambda: MLP(64, (16,), 10), weights=str(tmp_path / "mlp.pt"), name="mlp", twin=twin)
    assert _same(_state(start), _state(trained)) and start.training
    assert fp == {"fp_value": round(evaluate_split(trained, data, "test")["top1"], 4),
                  "fp_recipe": f"the float weights {tmp_path / 'mlp.pt'}, as given (not fine-tuned)"}


def test_sgd_float_twin_trains_by_its_recipe_and_is_none_without_epochs():
    from types import SimpleNamespace

    data = load_dataset("synthetic", val_size=64)
    cfg = SimpleNamespace(baseline_epochs=2, baseline_lr=0.05, momentum=0.9, batch_size=32, seed=0)
    made = []

    def sgd(model, lr, momentum, weight_decay):
        made.append((lr, momentum, weight_decay))
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    seed_everything(0)
    model = MLP(64, (16,), 10)
    before = evaluate_split(model, data, "val")["top1"]
    recipe = sgd_float_twin(cfg, data, None, sgd)(model)
    assert made == [(0.05, 0.9, 1e-4)]
    assert recipe == "float twin, 2 epochs, SGD momentum 0.9, LR 0.05, weight decay 1e-4, cosine"
    assert evaluate_split(model, data, "val")["top1"] > max(before, 30)
    assert sgd_float_twin(SimpleNamespace(**{**vars(cfg), "baseline_epochs": 0}), data, None, sgd) is None
