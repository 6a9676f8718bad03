"""What every benchmark result records besides its figures: machine, threads, versions, commit."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import torch

from common.paths import atomic_write_text
from common.runs import cpu_flags, cpu_name, git_state

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    commit, dirty = git_state()
    flags = cpu_flags()
    simd = [f for f in flags if f.startswith(("avx", "sse4", "fma", "popcnt", "bmi", "amx", "f16c", "vnni"))]
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpu_simd_flags": simd,
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "commit": commit, "dirty": dirty,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def write_result(name: str, figures: dict) -> Path:
    return atomic_write_text(RESULTS / f"{name}.json",
                             json.dumps({"benchmark": name, **figures, "machine": machine()}, indent=2) + "\n")
