"""The typed summary of a run: one schema, one meaning per field, for every paper.

A run's ``summary.json`` is a :class:`Summary`; a run that measures several models (a sweep, a grid,
the BWN beside an XNOR-Net, the LoRA variants beside QLoRA) keeps those in ``points.json``, a list of
the same typed rows. Both are validated when written and when read (:func:`validate`), so a table or a
chart across papers never mixes two meanings of one name. Paper-specific figures go under ``extra``.

The meanings (also the docstrings below, which ``python -m common.summary --schema`` prints):

* ``value`` — the headline metric of the run's final model on the test split (read once, at the end).
* ``fp_value`` — the float reference of the same architecture on the same data; ``fp_recipe`` names the
  recipe that produced it. In a study setting it is the float model fine-tuned by that setting's recipe.
* ``model_bits`` — the method's stored representation counted field by field (every code at its width,
  pruned weights free, index/position streams, codebooks and scales, fp32 tensors at 32 bits), without the
  file format's own overhead: :func:`common.evaluate.model_bits` of what the method declares.
* ``size_bytes`` — the real artifact file; ``compression_ratio`` — the fp32 file over the artifact file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.docstrings import field_docs
from common.errors import NnqError

STATUSES = ("running", "finished", "failed", "cancelled")
KINDS = ("model", "sweep")
SUMMARY_FILE = "summary.json"
POINTS_FILE = "points.json"


@dataclass
class Summary:
    """One result row: a run's ``summary.json``, or one point of its ``points.json``."""

    paper: str
    """Package of the run (``papers/<paper>``), or ``study`` for a study setting's float reference."""
    preset: str
    """Preset the run's configuration started from (``quick`` numbers are CPU-sized, never paper scale)."""
    status: str = "running"
    """running, finished, failed or cancelled (Ctrl-C; ``--resume`` continues it)."""
    kind: str = "model"
    """``model``: one final model, ``value`` is its metric. ``sweep``: several points in points.json, ``value`` null."""
    method: str | None = None
    """What the row measures, in the paper's words (e.g. "BNN", "BWN", "XNOR-Net", "float")."""
    dataset: str | None = None
    """Label of the data set (e.g. "CIFAR-10 (JPEG q75)"), as tables and figures print it."""
    metric: str | None = None
    """Name of ``value``'s metric (e.g. ``test_top1``: top-1 accuracy in percent on the test split)."""
    value: float | None = None
    """The headline metric of the run's final model on the test split; null for a sweep."""
    fp_value: float | None = None
    """The same metric of the float reference: same architecture, same data (null when none was trained)."""
    fp_recipe: str | None = None
    """The recipe that produced ``fp_value`` (e.g. "float twin, 20 epochs, Adam", or a study setting's)."""
    w_bits: float | None = None
    """Code width of the quantized layers' weights (mean over their weights where layers differ); null: float."""
    a_bits: int | None = None
    """Bit width of the quantized layers' input activations; null where activations are not quantized."""
    g_bits: int | None = None
    """Bit width of the quantized gradients; null where gradients are not quantized."""
    setting: str | None = None
    """The study setting the row belongs to (see ``common.settings``), or null for a paper's own preset."""
    seed: int | None = None
    """Seed of the run's random number generators."""
    params: int | None = None
    """Parameters of the final model (``nn.Module.parameters``)."""
    model_bits: int | None = None
    """Bits of the method's stored representation, field by field, without file-format overhead."""
    size_bytes: int | None = None
    """Bytes of the real artifact file the run wrote (null: the method writes none)."""
    compression_ratio: float | None = None
    """fp32 file bytes (``common.evaluate.fp32_size_bytes``) over ``size_bytes``."""
    train_time_s: float | None = None
    """Seconds spent in optimizer steps of the reported model (evaluation excluded)."""
    peak_mem_mb: float | None = None
    """Peak memory of the process in MiB (max resident set on a CPU, allocator peak on a GPU)."""
    dry_run: bool = False
    """True when ``--max-steps`` truncated the training: a smoke run, never a result."""
    run_dir: str | None = None
    """The run folder that produced the row."""
    commit: str | None = None
    """Git commit of the code that started the run."""
    dirty: bool | None = None
    """Whether that checkout had uncommitted changes."""
    message: str | None = None
    """Why a run failed or was cancelled (null otherwise)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The paper's own figures (per-stage tables, per-variant accuracies, ...); keys are the paper's."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "summary") -> "Summary":
        """The typed row of ``data``; raises NnqError naming every problem (unknown keys included)."""
        problems = validate(data)
        if problems:
            raise NnqError(f"{where} does not follow the summary schema: {'; '.join(problems)}")
        return cls(**data)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Summary)}
_REQUIRED_WHEN_FINISHED = ("method", "dataset", "metric", "params", "train_time_s", "run_dir", "commit", "dirty",
                           "seed")
_PERCENT_METRICS = ("top1", "top5", "accuracy", "agreement")


def _type_ok(value: Any, annotation: str) -> bool:
    if value is None:
        return "None" in annotation
    if annotation.startswith("bool"):
        return isinstance(value, bool)
    if annotation.startswith("dict"):
        return isinstance(value, dict)
    if isinstance(value, bool):
        return False
    if annotation.startswith("int"):
        return isinstance(value, int)
    if annotation.startswith("float"):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if annotation.startswith("str"):
        return isinstance(value, str)
    raise TypeError(f"unhandled annotation {annotation}")


def validate(data: dict[str, Any]) -> list[str]:
    """Every way ``data`` breaks the schema, as short phrases (empty: valid)."""
    from common.settings import SETTINGS  # the study settings are the only valid values of `setting`

    problems = [f"unknown key {k!r} (paper-specific figures go under 'extra')" for k in data if k not in FIELDS]
    for name in ("paper", "preset"):
        if name not in data:
            problems.append(f"missing {name!r}")
    for name, f in FIELDS.items():
        if name in data and not _type_ok(data[name], str(f.type)):
            problems.append(f"{name}={data[name]!r} is not {f.type}")
    if problems:
        return problems
    row = {**{k: (f.default if f.default is not dataclasses.MISSING else None) for k, f in FIELDS.items()}, **data}
    if row["status"] not in STATUSES:
        problems.append(f"status {row['status']!r} is not one of {STATUSES}")
    if row["kind"] not in KINDS:
        problems.append(f"kind {row['kind']!r} is not one of {KINDS}")
    if row["setting"] is not None and row["setting"] not in SETTINGS:
        problems.append(f"setting {row['setting']!r} is not a study setting ({', '.join(SETTINGS)})")
    if row["status"] == "finished":
        problems += [f"a finished row needs {k!r}" for k in _REQUIRED_WHEN_FINISHED if row[k] is None]
        if row["kind"] == "model" and row["value"] is None:
            problems.append("a finished model row needs 'value'")
    if row["kind"] == "sweep" and row["value"] is not None:
        problems.append("a sweep has no single 'value'; its points go to points.json")
    metric = row["metric"] or ""
    for name in ("value", "fp_value"):
        v = row[name]
        if v is not None and any(metric.endswith(m) for m in _PERCENT_METRICS) and not 0 <= v <= 100:
            problems.append(f"{name}={v} is not a percentage although metric is {metric!r}")
    if row["fp_value"] is not None and not row["fp_recipe"]:
        problems.append("fp_value needs fp_recipe (the recipe that produced it)")
    for name in ("w_bits", "a_bits", "g_bits"):
        v = row[name]
        if v is not None and not 0 < v <= 32:
            problems.append(f"{name}={v} is not a bit width in (0, 32]")
    for name in ("params", "model_bits", "size_bytes"):
        if row[name] is not None and row[name] < 0:
            problems.append(f"{name} is negative")
    if row["compression_ratio"] is not None and not row["compression_ratio"] > 0:
        problems.append("compression_ratio must be positive")
    if (row["size_bytes"] is None) != (row["compression_ratio"] is None):
        problems.append("size_bytes and compression_ratio come together (both null without an artifact)")
    if row["model_bits"] is not None and row["size_bytes"] and not row["model_bits"] < 8 * row["size_bytes"]:
        problems.append(f"model_bits={row['model_bits']} is not below the artifact's {8 * row['size_bytes']} bits "
                        "(model_bits counts the representation without file overhead)")
    return problems


def read_summary(run_dir: str | Path) -> Summary:
    """The validated :class:`Summary` of a run folder."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NnqError(f"{run_dir} has no {SUMMARY_FILE}; pass a run folder made by a train command") from None
    except json.JSONDecodeError as exc:
        raise NnqError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    return Summary.from_dict(data, where=str(path))


def read_points(run_dir: str | Path) -> list[Summary]:
    """The validated rows of a run folder's ``points.json`` (empty when it has none)."""
    path = Path(run_dir) / POINTS_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NnqError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(rows, list):
        raise NnqError(f"{path} must hold a list of summary rows")
    return [Summary.from_dict(r, where=f"{path} row {i}") for i, r in enumerate(rows)]


def format_summary(s: Summary) -> str:
    """The one-screen summary printed at the end of a train/quantize command."""
    def fmt(v: Any, unit: str = "") -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:,.2f}{unit}"
        if isinstance(v, int):
            return f"{v:,}{unit}"
        return f"{v}{unit}"

    label = f"{s.preset} preset" + (" (CPU-sized, not the paper's budget)" if s.preset == "quick" else "")
    bits = "/".join(f"{n}{fmt(getattr(s, f'{n.lower()}_bits'))}" for n in ("W", "A", "G")
                    if getattr(s, f"{n.lower()}_bits") is not None)
    lines = [
        f"{s.paper} · {s.method} · {label} · {s.dataset} · status: {s.status}"
        + (" · DRY RUN (--max-steps): not a result" if s.dry_run else ""),
        f"  {s.metric or 'metric'}: {fmt(s.value)}   float reference: {fmt(s.fp_value)}"
        + (f" ({s.fp_recipe})" if s.fp_recipe else ""),
        f"  params: {fmt(s.params)}   stored bits: {fmt(s.model_bits)}" + (f"   bits: {bits}" if bits else "")
        + (f"   study setting: {s.setting}" if s.setting else ""),
        f"  artifact size: {fmt(s.size_bytes, ' B')}   compression vs fp32 file: {fmt(s.compression_ratio, '×')}",
        f"  train time: {fmt(s.train_time_s, ' s')}   peak memory: {fmt(s.peak_mem_mb, ' MiB')}",
        f"  run folder: {s.run_dir}",
    ]
    if s.status == "finished" and not s.dry_run:
        lines.append(f"  approve it for the slides: python -m common.results approve {s.run_dir}")
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.summary", description="Check or describe run summaries.")
    parser.add_argument("run_dirs", nargs="*", help="run folders to validate (summary.json and points.json)")
    parser.add_argument("--schema", action="store_true", help="print every field with its meaning")
    args = parser.parse_args(argv)
    if args.schema:
        for name, doc in field_docs(Summary).items():
            print(f"{name}: {doc}")
    bad = 0
    for d in args.run_dirs:
        try:
            read_summary(d)
            read_points(d)
            print(f"ok: {d}")
        except NnqError as exc:
            bad += 1
            print(f"error: {exc}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main())
