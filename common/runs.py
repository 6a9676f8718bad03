"""Run folders: config, environment, metrics, checkpoints and the typed summary.

A run lives in ``<out_dir>/<paper>/<preset>__<key>__s<seed>__<timestamp>/`` and holds
``config.json``, ``env.json``, ``metrics.jsonl``, ``summary.json`` (a :class:`common.summary.Summary`),
``points.json`` when it measured several models, checkpoints and the real artifact. Every file is
written atomically (:func:`common.paths.atomic_path`), so a killed process never leaves half a file.
Approving a run for the slides is :mod:`common.results`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import torch

from common import distributed
from common.errors import NnqError
from common.paths import REPO_ROOT, atomic_path, atomic_write_text
from common.summary import POINTS_FILE, SUMMARY_FILE, Summary, validate

def git_state(root: Path = REPO_ROOT) -> tuple[str, bool]:
    """(commit hash, dirty flag) of the checkout holding this code; ("unknown", True) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


def environment() -> dict[str, Any]:
    """Library versions, device and machine facts recorded in env.json."""
    import numpy

    commit, dirty = git_state()
    env = {
        "commit": commit, "dirty": dirty,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "platform": platform.platform(), "processor": cpu_name(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "argv": sys.argv,
    }
    for lib in ("torchvision", "accelerate"):
        try:
            env[lib] = __import__(lib).__version__
        except ImportError:
            env[lib] = None
    return env


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux; empty elsewhere), e.g. avx2, avx512f, popcnt."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def peak_mem_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, else the max resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`common.paths.atomic_path`: a killed process leaves the old file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class Run:
    """One run folder. Create it with :meth:`create`, reopen it for ``--resume`` with :meth:`open`."""

    def __init__(self, run_dir: Path, *, read_only: bool = False):
        self.dir = Path(run_dir)
        self.read_only = read_only  # the non-main processes of a multi-process run write nothing
        self.config: dict[str, Any] = json.loads((self.dir / "config.json").read_text())
        self.paper: str = json.loads((self.dir / SUMMARY_FILE).read_text())["paper"]

    @classmethod
    def create(cls, paper: str, preset: str, key: str, seed: int, out_dir: str | Path,
               config: dict[str, Any]) -> "Run":
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(out_dir) / paper / f"{preset}__{key}__s{seed}__{stamp}"
        run_dir, n = base, 1
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        run_dir.mkdir(parents=True)
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True))
        atomic_write_text(run_dir / "env.json", json.dumps(environment(), indent=2))
        running = Summary(paper=paper, preset=preset, seed=seed, run_dir=str(run_dir))
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(running.to_dict(), indent=2))
        (run_dir / "metrics.jsonl").touch()
        return cls(run_dir)

    @classmethod
    def open(cls, run_dir: str | Path) -> "Run":
        run_dir = Path(run_dir)
        for name in ("config.json", SUMMARY_FILE):
            if not (run_dir / name).is_file():
                raise NnqError(f"{run_dir} is not a run folder (no {name}); pass a folder made by a train command")
        return cls(run_dir)

    @classmethod
    def start(cls, paper: str, cfg: Any, key: str) -> "Run":
        """Reopen ``cfg.resume`` or create a new run folder for ``cfg`` (a BaseConfig).

        Under ``torchrun`` / ``accelerate launch`` the main process makes the folder and the
        others open it read-only, so that every process resumes from the same checkpoints.
        """
        if distributed.world_size() > 1:
            state = distributed.accelerator(getattr(cfg, "precision", "fp32"))  # joins the process group
            box = [str(cls._start_here(paper, cfg, key).dir) if state.is_main_process else None]
            torch.distributed.broadcast_object_list(box, src=0)
            return cls(Path(box[0]), read_only=not state.is_main_process)
        return cls._start_here(paper, cfg, key)

    @classmethod
    def _start_here(cls, paper: str, cfg: Any, key: str) -> "Run":
        if cfg.resume:
            run = cls.open(cfg.resume)
            if run.paper != paper:
                raise NnqError(f"--resume {cfg.resume} is a run of {run.paper}, not {paper}")
            run.set_status("running")
            return run
        return cls.create(paper, cfg.preset, key, cfg.seed, cfg.out_dir, cfg.to_dict())

    # -- files -------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.dir / name
        if self.read_only:
            return path
        atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.dir / name).read_text())

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one evaluation as a JSON line."""
        if self.read_only:
            return
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")
            f.flush()

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.dir / "metrics.jsonl")

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl (used on resume to drop lines written after the last checkpoint)."""
        if self.read_only:
            return
        atomic_write_text(self.dir / "metrics.jsonl",
                          "".join(json.dumps(r, default=_json_default) + "\n" for r in records))

    def save_checkpoint(self, obj: Any, name: str = "checkpoint.pt") -> Path:
        path = self.dir / name
        if self.read_only:
            return path
        atomic_torch_save(obj, path)
        return path

    def has_checkpoint(self, name: str = "checkpoint.pt") -> bool:
        return (self.dir / name).is_file()

    def load_checkpoint(self, name: str = "checkpoint.pt") -> Any:
        path = self.dir / name
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise NnqError(f"{path} does not exist; start a new run instead of --resume") from None
        except Exception as exc:  # torch raises several types for a damaged zip
            raise NnqError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}); "
                           "delete it to restart that stage, or start a new run") from None

    @contextlib.contextmanager
    def guard(self) -> Iterator["Run"]:
        """Mark the run ``cancelled`` on Ctrl-C and ``failed`` (with the message) on any error."""
        try:
            yield self
        except KeyboardInterrupt:
            self.set_status("cancelled", f"interrupted; continue with --resume {self.dir}")
            raise
        except BaseException as exc:
            self.set_status("failed", f"{type(exc).__name__}: {exc}")
            raise

    # -- status and summary -------------------------------------------------------------------
    def set_status(self, status: str, message: str | None = None) -> None:
        if self.read_only:
            return
        summary = self.read_json(SUMMARY_FILE)
        summary["status"] = status
        summary["message"] = message
        self.write_json(SUMMARY_FILE, summary)

    def _row(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A finished row: the run's own facts (paper, preset, seed, code state, ...) + the method's fields."""
        env = self.read_json("env.json")  # the code state the run started from
        row = {"paper": self.paper, "preset": self.config.get("preset"), "status": "finished",
               "seed": self.config.get("seed"), "dry_run": self.config.get("max_steps") is not None,
               "peak_mem_mb": round(peak_mem_mb(), 1), "run_dir": str(self.dir),
               "commit": env.get("commit", "unknown"), "dirty": bool(env.get("dirty", True)), "message": None}
        row.update(fields)
        problems = validate(row)
        if problems:
            raise ValueError(f"{self.dir}: the summary breaks the schema: {'; '.join(problems)}")
        return Summary(**row).to_dict()

    def finish(self, fields: dict[str, Any], points: list[dict[str, Any]] | None = None) -> Summary:
        """Write the final summary.json (status finished), and points.json when given; return the summary.

        Args:
            fields: the method's fields of :class:`common.summary.Summary` (method, dataset, metric, value,
                fp_value, fp_recipe, w_bits, ..., extra); the run's own facts are filled in here.
            points: further models measured by the run (same fields; each is validated), e.g. a sweep's
                points or the BWN beside the XNOR-Net.
        """
        if points is not None:
            self.write_json(POINTS_FILE, [self._row(p) for p in points])
        summary = self._row(fields)
        self.write_json(SUMMARY_FILE, summary)
        return Summary(**summary)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a last line cut by a kill is ignored."""
    records = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records
