"""Run folders: schema, determinism, exact resume after an interruption, approval."""

import dataclasses
import json

import pytest

from common.cli import parse_config
from common.results import approve, load_approved
from common.summary import Summary
from common.train import Callback
from papers.bnn.config import PRESETS, Config
from papers.bnn.train import main

VOLATILE = {"run_dir", "train_time_s", "fp_train_time_s", "peak_mem_mb", "images_per_s", "commit", "dirty"}


def tiny(tmp_path, **kw):
    settings = {"hidden": (64,), "epochs": 2, "baseline_epochs": 1, "out_dir": str(tmp_path), **kw}
    return dataclasses.replace(PRESETS["quick"], **settings)


def stable(record) -> dict:
    if isinstance(record, Summary):
        record = record.to_dict()
        record["extra"] = stable(record["extra"])
    return {k: v for k, v in record.items() if k not in VOLATILE}


def metrics_of(run_dir):
    return [stable(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_summary_schema_and_files(tmp_path, offline):
    s = main(tiny(tmp_path))
    run_dir = tmp_path / "bnn" / s.run_dir.split("/bnn/")[1]
    assert json.loads((run_dir / "summary.json").read_text()) == s.to_dict()
    assert run_dir.name.startswith("quick__mlp64-digits__s0__")
    env = json.loads((run_dir / "env.json").read_text())
    assert {"commit", "dirty", "torch", "python", "device", "processor"} <= set(env)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["hidden"] == [64]
    assert isinstance(s.params, int) and s.model_bits < 32 * s.params
    assert s.model_bits < 8 * s.size_bytes and (s.w_bits, s.a_bits, s.status) == (1, 1, "finished")


def test_same_seed_gives_identical_numbers(tmp_path, offline):
    a, b = main(tiny(tmp_path)), main(tiny(tmp_path))
    assert stable(a) == stable(b)
    da = tmp_path / "bnn" / a.run_dir.split("/bnn/")[1]
    db = tmp_path / "bnn" / b.run_dir.split("/bnn/")[1]
    assert metrics_of(da) == metrics_of(db)
    c = main(tiny(tmp_path, seed=1))
    assert metrics_of(tmp_path / "bnn" / c.run_dir.split("/bnn/")[1]) != metrics_of(da)


class InterruptAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, ctx):
        if ctx.epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tmp_path, offline):
    cfg = tiny(tmp_path, epochs=3)
    whole = main(cfg)
    with pytest.raises(KeyboardInterrupt):
        main(cfg, callbacks=[InterruptAt(2)])
    run_dir = sorted((tmp_path / "bnn").iterdir())[-1]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "cancelled"
    assert [m["epoch"] for m in metrics_of(run_dir) if m["tag"] == "bnn"] == [1]
    resumed = main(parse_config(Config, PRESETS, ["--resume", str(run_dir)]))
    assert resumed.status == "finished"
    assert stable(resumed) == stable(whole)
    whole_dir = tmp_path / "bnn" / whole.run_dir.split("/bnn/")[1]
    assert metrics_of(run_dir) == metrics_of(whole_dir)


def test_a_non_finite_loss_stops_the_run_as_failed_with_a_clear_message(tmp_path, offline):
    import torch

    from common.data import load_dataset
    from common.errors import NnqError
    from common.models import MLP
    from common.runs import Run
    from common.train import fit

    data = load_dataset("synthetic")
    model = MLP(64, (8,), 10)
    run = Run.create("bnn", "quick", "nan", 0, tmp_path, {"preset": "quick"})
    blow_up = lambda logits, y: torch.nn.functional.cross_entropy(logits, y) * float("nan")  # noqa: E731
    with pytest.raises(NnqError, match="diverged.*lower --lr"), run.guard():
        fit(model, data, epochs=2, batch_size=32, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=blow_up, run=run)
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged" in summary["message"]
    assert not run.has_checkpoint("main.ckpt.pt")  # no epoch finished, nothing half-written


def test_approve_copies_small_files_only(tmp_path, offline, monkeypatch):
    import common.results as results

    s = main(tiny(tmp_path))
    monkeypatch.setattr(results, "results_dir", lambda paper: tmp_path / "results")
    dest = approve(s.run_dir)
    assert {p.name for p in dest.iterdir()} == {"config.json", "env.json", "metrics.jsonl", "summary.json"}
    [loaded] = load_approved("bnn", root=tmp_path / "results")
    assert loaded.summary == s


def test_results_without_approved_runs_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import common.results as common_results
    from papers.bnn import results

    monkeypatch.setattr(common_results, "results_dir", lambda paper: tmp_path / "empty")
    with pytest.raises(SystemExit) as exc:
        results.cli(["--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "no approved runs" in err and "--run" in err
