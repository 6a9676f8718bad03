"""Config -> command line: presets, overrides, help text, types."""

import dataclasses

import pytest

from common.cli import build_parser, field_docs, parse_config
from common.errors import NnqError
from papers.bnn.config import PRESETS, Config


def test_no_flag_gives_the_quick_preset():
    assert parse_config(Config, PRESETS, []) == PRESETS["quick"]


def test_preset_then_overrides_with_types():
    cfg = parse_config(Config, PRESETS, ["--preset", "mnist_mlp", "--epochs", "3", "--hidden", "64", "32",
                                         "--lr", "0.01", "--data-dir", "none"])
    assert cfg == dataclasses.replace(PRESETS["mnist_mlp"], epochs=3, hidden=(64, 32), lr=0.01, data_dir=None)


def test_help_shows_each_fields_docstring_and_the_quick_value():
    text = build_parser(Config, PRESETS).format_help()
    assert "Hidden layer widths of the MLP" in text
    assert "--resume" in text and "[quick: 40]" in text
    assert set(field_docs(Config)) == {f.name for f in dataclasses.fields(Config)}


def test_every_papers_help_renders_with_each_fields_docstring():
    import importlib
    from pathlib import Path

    papers = sorted(p.parent.name for p in Path(__file__).resolve().parents[1].glob("papers/*/config.py"))
    assert {"awq", "bnn", "lsq", "xnor"} <= set(papers)
    for paper in papers:
        config = importlib.import_module(f"papers.{paper}.config")
        cls = type(config.PRESETS["quick"])
        text = " ".join(build_parser(cls, config.PRESETS).format_help().split())  # argparse %-formats each help
        for name, doc in field_docs(cls).items():
            assert "--" + name.replace("_", "-") in text, (paper, name)
            assert " ".join(doc.split())[:40] in text, (paper, name)  # a literal % (e.g. "1%") comes through


def test_validation_runs_after_overrides():
    with pytest.raises(NnqError, match="--dropout"):
        parse_config(Config, PRESETS, ["--dropout", "1.5"])


def test_shared_field_checks_name_the_flag_and_report_the_first_bad_field_in_the_given_order():
    from common.cli import check_shared_fields
    from papers.lsq.config import PRESETS as LSQ

    names = ("baseline_epochs", "baseline_lr", "normalize", "setting", "lr_grid", "log_every")
    good = dataclasses.replace(LSQ["quick"], setting="cifar10_resnet20", lr_grid=(0.01, 0.1))
    check_shared_fields(good, *names)
    bad = {"baseline_epochs": (-1, "--baseline-epochs must be 0 or more, got -1"),
           "baseline_lr": (float("nan"), "--baseline-lr must be positive, got nan"),
           "normalize": ("zca", "--normalize must be default, imagenet or none, got 'zca'"),
           "setting": ("nope", "unknown study setting 'nope'"),
           "lr_grid": ((0.1, 0.0), r"--lr-grid values must be positive, got \(0.1, 0.0\)"),
           "log_every": (0, "--log-every must be at least 1, got 0")}
    for name, (value, message) in bad.items():
        with pytest.raises(NnqError, match=message):
            check_shared_fields(dataclasses.replace(good, **{name: value}), *names)
    two = dataclasses.replace(good, baseline_lr=0.0, log_every=0)
    with pytest.raises(NnqError, match="--log-every"):
        check_shared_fields(two, "log_every", "baseline_lr")


@pytest.mark.parametrize("paper", ["lsq", "lqnets", "dorefa"])
def test_papers_reject_bad_shared_fields_on_the_command_line(paper):
    import importlib

    config = importlib.import_module(f"papers.{paper}.config")
    cls = type(config.PRESETS["quick"])
    for argv, flag in ((["--baseline-epochs", "-2"], "--baseline-epochs"), (["--normalize", "zca"], "--normalize"),
                       (["--lr-grid", "0.1", "-0.1"], "--lr-grid"), (["--setting", "nope"], "nope")):
        with pytest.raises(NnqError, match=flag):
            parse_config(cls, config.PRESETS, argv)
