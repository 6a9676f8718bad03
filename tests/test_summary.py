"""The typed summary: one meaning per field, checked when written and when read."""

from pathlib import Path

import pytest

from common.errors import NnqError
from common.summary import Summary, read_points, read_summary, validate

REPO = Path(__file__).resolve().parent.parent


def finished(**kw) -> dict:
    row = dict(paper="bnn", preset="quick", status="finished", method="BNN", dataset="digits", metric="test_top1",
               value=95.0, fp_value=97.0, fp_recipe="float twin", w_bits=1, a_bits=1, seed=0, params=10,
               model_bits=800, size_bytes=200, compression_ratio=20.0, train_time_s=1.0, run_dir="r", commit="c",
               dirty=False)
    row.update(kw)
    return row


def test_a_complete_row_is_valid_and_round_trips():
    assert validate(finished()) == []
    assert Summary.from_dict(finished()).to_dict() == {**Summary(paper="bnn", preset="quick").to_dict(), **finished()}


@pytest.mark.parametrize("change, phrase", [
    ({"test_error": 5.0}, "unknown key 'test_error'"),
    ({"value": None}, "needs 'value'"),
    ({"value": 120.0}, "not a percentage"),
    ({"model_bits": 1600}, "not below the artifact"),
    ({"fp_recipe": None}, "fp_value needs fp_recipe"),
    ({"w_bits": 0}, "not a bit width"),
    ({"setting": "imagenet_vit"}, "not a study setting"),
    ({"status": "done"}, "status 'done'"),
    ({"kind": "sweep"}, "a sweep has no single 'value'"),
    ({"size_bytes": None}, "come together"),
    ({"params": "10"}, "is not int"),
    ({"dirty": None}, "needs 'dirty'"),
])
def test_each_broken_rule_is_named(change, phrase):
    assert any(phrase in p for p in validate(finished(**change))), validate(finished(**change))


def test_a_running_row_needs_only_its_identity():
    assert validate({"paper": "xnor", "preset": "paper", "status": "running"}) == []
    assert validate({"preset": "paper"}) == ["missing 'paper'"]


def test_reading_a_broken_summary_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "summary.json").write_text('{"paper": "bnn", "preset": "quick", "model_bits_total": 3}')
    with pytest.raises(NnqError, match=r"summary.json does not follow the summary schema: unknown key"):
        read_summary(tmp_path)


def approved_run_dirs() -> list[Path]:
    dirs = sorted(REPO.glob("papers/*/results/runs/*/summary.json")) + sorted(REPO.glob("study/results/runs/*/summary.json"))
    return [p.parent for p in dirs]


def test_there_are_approved_runs_to_check():
    assert len(approved_run_dirs()) >= 4


@pytest.mark.parametrize("run_dir", approved_run_dirs(), ids=lambda p: f"{p.parts[-4]}/{p.name[:40]}")
def test_every_approved_summary_and_point_follows_the_schema(run_dir):
    s = read_summary(run_dir)
    points = read_points(run_dir)
    assert s.status == "finished" and not s.dry_run
    assert s.kind == "model" or points, "a sweep keeps its points in points.json"
    for row in [s, *points]:
        if row.size_bytes is not None and row.model_bits is not None:
            assert row.model_bits < 8 * row.size_bytes
