"""Every ``paper`` preset on an image folder (ImageNet) dry-runs end to end on a generated ImageNet-layout folder.

Run as a user would (``python -m papers.<name>.train --preset paper --dataset imagefolder:PATH --max-steps 2 ...``
in a subprocess, one torch thread, one loader worker): the run must finish and say it was a dry run.
"""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.data import make_image_folder

REPO = Path(__file__).resolve().parent.parent


def folder_papers() -> list[str]:
    """Packages whose ``paper`` preset reads an ``imagefolder:`` data set."""
    names = []
    for pkg in sorted(p for p in (REPO / "papers").iterdir() if (p / "config.py").is_file()):
        presets = getattr(importlib.import_module(f"papers.{pkg.name}.config"), "PRESETS", {})
        if "paper" in presets and str(presets["paper"].dataset).startswith("imagefolder:"):
            names.append(pkg.name)
    return names


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), classes=4, per_class=6, test_per_class=3,
                             sizes=((80, 60), (60, 80), (64, 64), (33, 27)))


@pytest.mark.parametrize("paper", folder_papers())
def test_paper_preset_dry_runs_on_an_image_folder(paper, imagenet, tmp_path):
    entry = "train" if (REPO / "papers" / paper / "train.py").is_file() else "quantize"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NNQ_OFFLINE": "1", "NNQ_PROGRESS": "0", "NNQ_WORKERS": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", f"papers.{paper}.{entry}", "--preset", "paper", "--dataset", f"imagefolder:{imagenet}",
           "--max-steps", "2", "--limit-test", "16", "--batch-size", "4", "--threads", "1", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd[1:4])} failed:\n{proc.stderr[-3000:]}"
    summaries = list((tmp_path / paper).glob("*/summary.json"))
    assert len(summaries) == 1, summaries
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "finished" and summary["dry_run"] is True
