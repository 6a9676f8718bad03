"""Where things live, and how files are written so that a killed process never leaves half of one.

* :data:`REPO_ROOT` — the checkout holding this code.
* :func:`cache_dir` — the one cache root of the study (``$NNQ_CACHE_DIR``, else ``~/.cache/nnq``), with
  one sub-folder per user: ``decoded`` (image folders decoded to tensors), ``clip`` (pretrained small
  CLIPs), ``xnor`` (compiled kernels), ``study`` (float references of the study settings).
* :func:`atomic_path` — the one atomic-write helper: write to a temporary file in the target's folder,
  flush it to disk, rename it over the target. Every writer of a file that must not be torn (run files,
  checkpoints, artifacts, caches, compiled libraries, READMEs) goes through it.

This module imports nothing from the rest of ``common`` so that every other module may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def cache_dir(sub: str | None = None) -> Path:
    """The study's cache root, ``$NNQ_CACHE_DIR`` (else ``~/.cache/nnq``), or its sub-folder ``sub``.

    The folder is not created; writers create it through :func:`atomic_path`.
    """
    root = Path(os.environ.get("NNQ_CACHE_DIR") or Path.home() / ".cache" / "nnq").expanduser()
    return root / sub if sub else root


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; when the block ends without error it replaces ``path``.

    The caller writes the temporary file in any way (``torch.save``, a compiler's ``-o``, ``open``).
    On an error (or Ctrl-C) the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to (re)write; its folder is created if missing.
        fsync: Flush the new file to disk before the rename (skip for throw-away caches).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600 files; the target gets the mode open() would give it
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
