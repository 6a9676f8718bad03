"""Dataclass configs with named presets, turned into a command line.

A paper's ``Config`` subclasses :class:`BaseConfig`; the string literal under each field is
its ``--help`` text. ``cli_main`` parses ``--preset NAME`` first, then every other flag as an
override of that preset, validates the result and runs ``main(cfg)``. With ``--resume RUN_DIR``
the configuration is read back from the run folder and any flag that contradicts it is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from common.docstrings import field_docs
from common.errors import NnqError


@dataclasses.dataclass
class BaseConfig:
    """Fields every paper accepts on its command line."""

    preset: str = "quick"
    """Named preset the other fields start from (see the paper's PRESETS)."""
    dataset: str = "digits"
    """Data set name for common.data.load_dataset (digits, mnist, fashion_mnist, cifar10, cifar100, svhn, svhn_extra, cifar10_jpeg, imagefolder:ROOT, synthetic)."""
    data_dir: str | None = None
    """Where real data sets live; default $NNQ_DATA_DIR, else ./data."""
    out_dir: str = "runs"
    """Parent folder of run folders (runs/<paper>/<run>/)."""
    epochs: int = 10
    """Training epochs of the main model."""
    batch_size: int = 64
    """Mini-batch size."""
    lr: float = 1e-3
    """Initial learning rate."""
    seed: int = 0
    """Seed of every random number generator; same seed, same numbers on the CPU."""
    resume: str | None = None
    """Run folder to continue from its last complete epoch (its config.json is used)."""
    threads: int = 0
    """CPU threads for torch (0: the idle physical cores of this process's CPU set at start, at least 1)."""
    limit_train: int | None = None
    """Use only the first N training samples (tests and quick looks); None: all."""
    limit_test: int | None = None
    """Use only N test samples (a fixed random subset) and at most N validation samples; None: all."""
    val_size: int | None = None
    """Training samples held out as the validation split that per-epoch evaluation reads (a fixed choice, the same for every run); None: the data set's default (5,000 for MNIST and CIFAR); 0: none."""
    max_steps: int | None = None
    """Dry run: every training stage stops after N optimizer steps, then evaluates; the summary says dry_run (not a budget)."""
    precision: str = "fp32"
    """Compute precision through accelerate: fp32 (the CPU default: bf16 is far slower on CPUs), bf16 or fp16 (GPUs)."""
    grad_accum: int = 1
    """Micro-batches of --batch-size whose gradients make one optimizer step."""
    ckpt_every: int | None = None
    """Also write a checkpoint every N optimizer steps (a paper-scale epoch takes hours); None: every epoch only."""

    def validate(self) -> None:
        """Raise NnqError for values no run can use. Subclasses extend it and call super()."""
        if self.epochs < 1:
            raise NnqError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise NnqError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise NnqError(f"--lr must be positive, got {self.lr}")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise NnqError(f"--{name.replace('_', '-')} must be positive or none, got {getattr(self, name)}")
        if self.threads < 0:
            raise NnqError(f"--threads must be 0 (default) or positive, got {self.threads}")
        if self.val_size is not None and self.val_size < 0:
            raise NnqError(f"--val-size must be 0 or more, got {self.val_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise NnqError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise NnqError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.grad_accum < 1:
            raise NnqError(f"--grad-accum must be at least 1, got {self.grad_accum}")
        if self.ckpt_every is not None and self.ckpt_every < 1:
            raise NnqError(f"--ckpt-every must be at least 1, got {self.ckpt_every}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Optional fields several papers' Configs share: what makes a value bad, and the end of the error.
_SHARED_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "baseline_epochs": (lambda v: v < 0, "must be 0 or more, got {v}"),
    "baseline_lr": (lambda v: not v > 0, "must be positive, got {v}"),
    "normalize": (lambda v: v not in ("default", "imagenet", "none"), "must be default, imagenet or none, got {v!r}"),
    "lr_grid": (lambda v: any(lr <= 0 for lr in v), "values must be positive, got {v}"),
    "log_every": (lambda v: v < 1, "must be at least 1, got {v}"),
}


def check_shared_fields(cfg: BaseConfig, *names: str) -> None:
    """Raise NnqError for the first bad value among the fields ``names`` (in that order) that several papers'
    Configs share: baseline_epochs (0 or more), baseline_lr (positive), normalize (default, imagenet or none),
    setting (none or a study setting of common.settings), lr_grid (positive LRs), log_every (at least 1)."""
    for name in names:
        value = getattr(cfg, name)
        if name == "setting":
            if value is not None:
                from common.settings import get_setting

                get_setting(value)
            continue
        bad, message = _SHARED_FIELD_CHECKS[name]
        if bad(value):
            raise NnqError(f"--{name.replace('_', '-')} " + message.format(v=value))


# Fields that may differ between a run and its resumption.
_RESUME_FREE = {"resume", "threads", "out_dir", "data_dir"}


def _converter(tp: Any) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """argparse ``type`` and extra keywords for one annotated field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner, extra = _converter(next(a for a in args if a is not type(None)))
        return (lambda s: None if s.lower() == "none" else inner(s)), extra
    if tp is bool:
        return bool, {"action": argparse.BooleanOptionalAction}
    if origin in (tuple, list):
        elem = args[0] if args else str
        return elem, {"nargs": "+"}
    if tp in (int, float, str):
        return tp, {}
    raise TypeError(f"unsupported config field type {tp!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, no usage block
        raise NnqError(f"{message} (see --help)")


def build_parser(config_cls: type, presets: Mapping[str, BaseConfig], prog: str | None = None) -> argparse.ArgumentParser:
    """A parser whose flags are the config's fields; defaults are suppressed so given flags are known."""
    docs = field_docs(config_cls)
    hints = typing.get_type_hints(config_cls)
    parser = _Parser(prog=prog, description=(config_cls.__doc__ or "").strip(),
                     argument_default=argparse.SUPPRESS,
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    quick = presets.get("quick")
    for f in dataclasses.fields(config_cls):
        conv, extra = _converter(hints[f.name])
        help_text = docs.get(f.name, "")
        if f.name == "preset":
            extra = {**extra, "choices": sorted(presets)}
        elif quick is not None:
            help_text += f" [quick: {getattr(quick, f.name)!r}]"
        kwargs = dict(help=help_text.replace("%", "%%"), **extra)  # argparse %-formats help: a literal % stays
        if "action" not in extra:
            kwargs["type"] = conv
            kwargs["metavar"] = f.name.upper()
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return parser


def parse_config(config_cls: type, presets: Mapping[str, BaseConfig], argv: list[str] | None = None,
                 prog: str | None = None) -> BaseConfig:
    """Preset + overrides (or a run folder's config with --resume) -> a validated Config."""
    given = vars(build_parser(config_cls, presets, prog).parse_args(argv))
    hints = typing.get_type_hints(config_cls)
    for key, value in given.items():  # nargs="+" gives lists; the config holds tuples
        if typing.get_origin(hints[key]) is tuple and isinstance(value, list):
            given[key] = tuple(value)
    if given.get("resume"):
        cfg = _config_from_run(config_cls, Path(given["resume"]), given)
    else:
        preset = given.get("preset", "quick")
        if preset not in presets:
            raise NnqError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(presets))}")
        cfg = dataclasses.replace(presets[preset], **given)
    cfg.validate()
    return cfg


def _config_from_run(config_cls: type, run_dir: Path, given: dict[str, Any]) -> BaseConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise NnqError(f"--resume {run_dir}: no config.json there; pass a run folder made by this command")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NnqError(f"--resume {run_dir}: config.json is unreadable ({exc}); start a new run") from None
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise NnqError(f"--resume {run_dir}: its config has keys this command does not know ({', '.join(unknown)}); "
                       "it was made by another paper or version")
    hints = typing.get_type_hints(config_cls)
    for key, value in saved.items():  # JSON turns tuples into lists
        if typing.get_origin(hints[key]) is tuple and isinstance(value, list):
            saved[key] = tuple(value)
    cfg = config_cls(**saved)
    for key, value in given.items():
        if key in _RESUME_FREE:
            continue
        if value != getattr(cfg, key):
            raise NnqError(f"--resume {run_dir}: --{key.replace('_', '-')} {value!r} differs from the run's "
                           f"{getattr(cfg, key)!r}; drop the flag to resume, or start a new run")
    cfg.resume = str(run_dir)
    for key in _RESUME_FREE - {"resume"}:
        if key in given:
            setattr(cfg, key, given[key])
    return cfg


def cli_main(main: Callable[[BaseConfig], dict], config_cls: type, presets: Mapping[str, BaseConfig],
             argv: list[str] | None = None, prog: str | None = None) -> dict | None:
    """Entry point of ``python -m papers.<name>.train``: parse, run, print the one-screen summary.

    NnqError becomes one line on stderr and exit status 2; Ctrl-C exits with status 130
    after the run folder is marked ``cancelled``.
    """
    from common.distributed import end_training, is_main_process
    from common.summary import Summary, format_summary
    from common.threads import apply_thread_defaults

    try:
        cfg = parse_config(config_cls, presets, argv, prog)
        apply_thread_defaults(cfg.threads)
        summary = main(cfg)
    except NnqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("cancelled: the run folder keeps its last complete epoch; continue with --resume RUN_DIR",
              file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        end_training()
    if is_main_process():  # once, also under torchrun
        print(format_summary(summary if isinstance(summary, Summary) else Summary(**summary)))
    return summary
