"""Bad input gives one clear line (exit status 2, no traceback) and loses nothing."""

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import cli_main
from papers.bnn.config import PRESETS, Config
from papers.bnn.train import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(main, Config, PRESETS, argv=argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("argv, words", [
    (["--dataset", "imagenette"], ["unknown data set", "digits"]),
    (["--epochs", "0"], ["--epochs", "at least 1"]),
    (["--batch-size", "-1"], ["--batch-size"]),
    (["--lr", "-0.1"], ["--lr"]),
    (["--bogus-flag", "3"], ["unrecognized", "--bogus-flag"]),
    (["--epochs", "three"], ["--epochs", "invalid int"]),
    (["--preset", "nope"], ["--preset", "invalid choice"]),
    (["--arch", "resnet"], ["--arch"]),
])
def test_bad_values_are_one_line_errors(argv, words, capsys, offline, tmp_path):
    err = run_cli([*argv, "--out-dir", str(tmp_path)], capsys)
    for w in words:
        assert w in err
    assert not (tmp_path / "bnn").exists()  # nothing was started


def test_missing_data_offline_names_the_files_and_where(capsys, offline, tmp_path):
    err = run_cli(["--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--out-dir", str(tmp_path)], capsys)
    assert "train-images-idx3-ubyte" in err and str(tmp_path / "empty") in err


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def finished_run(tmp_path, offline):
    cfg = dataclasses.replace(PRESETS["quick"], hidden=(32,), epochs=1, baseline_epochs=0, out_dir=str(tmp_path))
    return Path(main(cfg).run_dir)


def test_resume_with_a_different_config_is_refused_and_changes_nothing(finished_run, capsys):
    before = _digest(finished_run)
    err = run_cli(["--resume", str(finished_run), "--lr", "0.5"], capsys)
    assert "--lr" in err and "differs" in err
    assert _digest(finished_run) == before


def test_truncated_checkpoint_is_a_clear_error_and_is_kept(finished_run, capsys):
    ckpt = finished_run / "bnn.ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    err = run_cli(["--resume", str(finished_run), "--epochs", "1"], capsys)
    assert "truncated or corrupt" in err
    assert ckpt.stat().st_size == 1000


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys, offline):
    err = run_cli(["--resume", str(tmp_path)], capsys)
    assert "config.json" in err


def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "papers.bnn.train", "--epochs", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: --epochs must be at least 1, got 0"
