"""Run folders: config, environment, metrics, checkpoints and one summary schema for every paper.

A run lives in ``<out_dir>/<paper>/<preset>__<key>__s<seed>__<timestamp>/`` and holds
``config.json``, ``env.json``, ``metrics.jsonl``, ``summary.json``, checkpoints and any search
artifact. Every file is written atomically (temporary file + rename), so a killed process
never leaves half a file. ``approve`` copies a finished run's small files into
``papers/<paper>/results/runs/``, from where ``results.py`` builds figures and tables.

Command line::

    python -m common.runs approve RUN_DIR [RUN_DIR ...]
    python -m common.runs list PAPER
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from common.errors import NnqError

REPO_ROOT = Path(__file__).resolve().parent.parent

SUMMARY_KEYS = ("paper", "preset", "dataset", "status", "metric", "value", "fp_value", "params",
                "model_bits", "size_bytes", "compression_ratio", "train_time_s", "peak_mem_mb",
                "run_dir", "commit", "dirty")

# Files an approved run keeps: small, text, reproducible from the run.
_APPROVE_SUFFIXES = (".json", ".jsonl", ".csv", ".md")
_APPROVE_MAX_BYTES = 2_000_000


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


def peak_mem_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, else the max resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename: a killed process leaves the old file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Run:
    """One run folder. Create it with :meth:`create`, reopen it for ``--resume`` with :meth:`open`."""

    def __init__(self, run_dir: Path, *, read_only: bool = False):
        self.dir = Path(run_dir)
        self.read_only = read_only  # the non-main processes of a multi-process run write nothing
        self.config: dict[str, Any] = json.loads((self.dir / "config.json").read_text())
        self.paper: str = json.loads((self.dir / "summary.json").read_text())["paper"]

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
        atomic_write_text(run_dir / "summary.json", json.dumps(
            {"paper": paper, "preset": preset, "status": "running", "run_dir": str(run_dir)}, indent=2))
        (run_dir / "metrics.jsonl").touch()
        return cls(run_dir)

    @classmethod
    def open(cls, run_dir: str | Path) -> "Run":
        run_dir = Path(run_dir)
        for name in ("config.json", "summary.json"):
            if not (run_dir / name).is_file():
                raise NnqError(f"{run_dir} is not a run folder (no {name}); pass a folder made by a train command")
        return cls(run_dir)

    @classmethod
    def start(cls, paper: str, cfg: Any, key: str) -> "Run":
        """Reopen ``cfg.resume`` or create a new run folder for ``cfg`` (a BaseConfig).

        Under ``torchrun`` / ``accelerate launch`` the main process makes the folder and the
        others open it read-only, so that every process resumes from the same checkpoints.
        """
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from common.train import accelerator

            state = accelerator()  # joins the process group
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
        """Replace metrics.jsonl (used on resume to drop lines of an epoch that did not finish)."""
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

    # -- status ------------------------------------------------------------------------------
    def set_status(self, status: str, message: str | None = None) -> None:
        if self.read_only:
            return
        summary = self.read_json("summary.json")
        summary["status"] = status
        if message:
            summary["message"] = message
        else:
            summary.pop("message", None)
        self.write_json("summary.json", summary)

    def finish(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Write the final summary.json (status finished) and return it.

        Args:
            fields: at least dataset, metric, value, fp_value, params, model_bits, size_bytes,
                compression_ratio, train_time_s; any extra keys are kept after the common ones.
        """
        env = self.read_json("env.json")  # the code state the run started from
        commit, dirty = env.get("commit", "unknown"), env.get("dirty", True)
        summary = {"paper": self.paper, "preset": self.config.get("preset"), "status": "finished",
                   "peak_mem_mb": round(peak_mem_mb(), 1), "run_dir": str(self.dir),
                   "commit": commit, "dirty": dirty}
        summary.update(fields)
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ValueError(f"summary lacks {missing}")
        ordered = {k: summary[k] for k in SUMMARY_KEYS}
        ordered.update({k: v for k, v in summary.items() if k not in ordered})
        self.write_json("summary.json", ordered)
        return ordered


def read_safetensors(path: str | Path, fmt: str, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors artifact whose metadata says ``format == fmt``.

    Raises:
        NnqError: one line, for an unreadable or truncated file (``what`` names it, e.g. "packed XNOR file")
            or a file of another format.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the same error for the user
        raise NnqError(f"{path} is not a readable {what} ({type(exc).__name__}); re-run training") from None
    if meta.get("format") != fmt:
        raise NnqError(f"{path} is not a {fmt} file (format={meta.get('format')!r})")
    return meta, tensors


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


def format_summary(summary: dict[str, Any]) -> str:
    """The one-screen summary printed at the end of a train/quantize command."""
    def fmt(v: Any, unit: str = "") -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:,.2f}{unit}"
        if isinstance(v, int):
            return f"{v:,}{unit}"
        return f"{v}{unit}"

    label = f"{summary.get('preset')} preset" + (" (CPU-sized, not the paper's budget)"
                                                 if summary.get("preset") == "quick" else "")
    lines = [
        f"{summary.get('paper')} · {label} · {summary.get('dataset')} · status: {summary.get('status')}",
        f"  {summary.get('metric', 'metric')}: {fmt(summary.get('value'))}   "
        f"float baseline: {fmt(summary.get('fp_value'))}",
        f"  params: {fmt(summary.get('params'))}   model bits: {fmt(summary.get('model_bits'))}",
        f"  artifact size: {fmt(summary.get('size_bytes'), ' B')}   compression vs fp32: "
        f"{fmt(summary.get('compression_ratio'), '×')}",
        f"  train time: {fmt(summary.get('train_time_s'), ' s')}   "
        f"peak memory: {fmt(summary.get('peak_mem_mb'), ' MB')}",
        f"  run folder: {summary.get('run_dir')}",
        f"  approve it for the slides: python -m common.runs approve {summary.get('run_dir')}",
    ]
    return "\n".join(lines)


def results_dir(paper: str) -> Path:
    return REPO_ROOT / "papers" / paper / "results"


def approve(run_dir: str | Path) -> Path:
    """Copy a finished run's small files into papers/<paper>/results/runs/<run-name>/."""
    run = Run.open(run_dir)
    summary = run.read_json("summary.json")
    if summary.get("status") != "finished":
        raise NnqError(f"{run.dir} has status {summary.get('status')!r}; only finished runs can be approved")
    if not (REPO_ROOT / "papers" / run.paper).is_dir():
        raise NnqError(f"no package papers/{run.paper} for this run")
    dest = results_dir(run.paper) / "runs" / run.dir.name
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(run.dir.iterdir()):
        if src.is_file() and src.suffix in _APPROVE_SUFFIXES and src.stat().st_size <= _APPROVE_MAX_BYTES:
            shutil.copy2(src, dest / src.name)
    return dest


def load_approved(paper: str, root: Path | None = None, *, required: bool = False) -> list[dict[str, Any]]:
    """Approved runs of a paper: dicts with dir, summary, config, metrics (oldest first).

    Args:
        required: raise NnqError (saying how to make them) when there is none.
    """
    base = (root or results_dir(paper)) / "runs"
    out = []
    for d in sorted(base.glob("*/")) if base.is_dir() else []:
        if not (d / "summary.json").is_file():
            continue
        out.append({"dir": d, "summary": json.loads((d / "summary.json").read_text()),
                    "config": json.loads((d / "config.json").read_text()),
                    "metrics": read_jsonl(d / "metrics.jsonl")})
    if required and not out:
        raise NnqError(f"no approved runs in {base}; make them with `python -m papers.{paper}.results --run` "
                       f"(or train and `python -m common.runs approve RUN_DIR`)")
    return out


def run_missing(paper: str, grid: Iterable[str], presets: dict[str, Any], main: Callable[[Any], dict],
                have: set[str] | None = None) -> list[Path]:
    """Train and approve each preset of ``grid`` that has no approved run of ``paper`` yet.

    Args:
        have: presets already covered (default: those of the approved runs).
    """
    have = {r["summary"]["preset"] for r in load_approved(paper)} if have is None else have
    approved = []
    for preset in grid:
        if preset not in have:
            approved.append(approve(main(presets[preset])["run_dir"]))
            print(f"approved {approved[-1]}")
    return approved


def results_cli(paper: str, *, build: Callable[[Path | None], dict[str, Path]], run: Callable[[], object],
                grid: Iterable[str], argv: list[str] | None = None) -> None:
    """The command line of every ``papers/<paper>/results.py``: ``[--run] [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(prog=f"python -m papers.{paper}.results",
                                     description=f"Figures, tables and deck of papers/{paper} from its approved runs.")
    parser.add_argument("--run", action="store_true",
                        help=f"first train and approve the missing experiments of the grid {tuple(grid)}")
    parser.add_argument("--out-dir", type=Path, default=None, help=f"write here instead of papers/{paper}/results/")
    args = parser.parse_args(argv)
    try:
        if args.run:
            run()
        for name, path in build(args.out_dir).items():
            print(f"{name}: {path}")
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.runs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("approve", help="copy finished runs into papers/<paper>/results/runs/")
    p.add_argument("run_dirs", nargs="+")
    p = sub.add_parser("list", help="list a paper's approved runs")
    p.add_argument("paper")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "approve":
            for d in args.run_dirs:
                print(f"approved {d} -> {approve(d)}")
        else:
            for r in load_approved(args.paper):
                s = r["summary"]
                print(f"{r['dir'].name}: {s['metric']}={s['value']} size={s['size_bytes']} B")
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    _main()
