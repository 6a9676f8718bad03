"""The process group of a run: one process, or several under ``accelerate launch`` / ``torchrun``.

Everything here is a thin layer over Hugging Face ``accelerate`` so that the rest of ``common`` asks one
place how many processes there are and which one writes files.

Several processes: on GPUs ``accelerate launch -m papers.<name>.train ...`` (``--multi_gpu --num_processes N``);
on CPUs ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m papers.<name>.train ...`` (plain
``accelerate launch --cpu`` starts a single process).
"""

from __future__ import annotations

import os

PRECISIONS = ("fp32", "bf16", "fp16")
_ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def world_size() -> int:
    """Processes of this run, from the launcher's environment (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's index among :func:`world_size` (0 when run directly)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def accelerator(precision: str = "fp32"):
    """The process's ``accelerate.Accelerator``; joins the process group under a launcher.

    Args:
        precision: "fp32" (the CPU default: bf16 matmuls are far slower than fp32 on CPUs without AMX),
            "bf16" (GPUs with bf16 support) or "fp16" (older GPUs; gradients scaled by accelerate).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    wanted = _ACCELERATE_PRECISION[precision]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", wanted) != wanted:
        AcceleratorState._reset_state()  # a second stage of the same process asks for another precision
    return Accelerator(mixed_precision=wanted)


def end_training() -> None:
    """Call once when a command's training is over (``common.cli.cli_main`` does): ends accelerate's
    trackers and process group. No-op when no training ran in this process."""
    from accelerate.state import PartialState

    if PartialState._shared_state:
        accelerator().end_training()
