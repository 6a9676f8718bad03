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


def test_validation_runs_after_overrides():
    with pytest.raises(NnqError, match="--dropout"):
        parse_config(Config, PRESETS, ["--dropout", "1.5"])
