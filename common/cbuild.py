"""The one build helper of the study's C kernels: compile a C source into a shared library, cached by content.

:func:`build_library` compiles ``src`` with the system C compiler (``$CC``, else ``cc``) into
``cache_dir(cache)/<stem>_<hash>.so``, the hash taken over the source (and the files it includes, ``depends``),
the compiler and the flags, so a changed source or flag builds anew and an unchanged one is loaded from the
cache. The library is written through :func:`common.paths.atomic_path`: a concurrent build never sees a
half-written file. No compiler, or a failed compile, is a one-line :class:`NnqError`.

``ISA_FLAGS`` names the code paths the kernels are built for: ``native`` (``-march=native``), ``avx2``
(``-march=x86-64-v3``: exactly what an AVX2-only machine has, no AVX-512, GFNI or VNNI sneaking in) and
``scalar`` (``-march=x86-64-v2``: ``popcnt``, no AVX).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from common.errors import NnqError
from common.paths import atomic_path, cache_dir

ISA_FLAGS = {
    "native": ["-march=native"],
    "avx2": ["-march=x86-64-v3", "-mtune=native"],
    "scalar": ["-march=x86-64-v2", "-mtune=native"],
}
BASE_FLAGS = ["-O3", "-fopenmp", "-shared", "-fPIC", "-std=c11", "-ffp-contract=off"]


def compiler() -> str:
    """The C compiler to use (``$CC``, else ``cc``); NnqError where it is not on PATH."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise NnqError(f"the C kernels need a C compiler; {cc!r} is not on PATH (install gcc or set $CC)")
    return cc


def build_library(src: Path, *, cache: str, stem: str, flags: Sequence[str], depends: Sequence[Path] = (),
                  libs: Sequence[str] = ()) -> Path:
    """Compile ``src`` with ``flags`` (and link ``libs``) into the cache once per content; returns the .so path."""
    cc = compiler()
    sources = [Path(src), *map(Path, depends)]
    key = hashlib.sha256(b"".join(s.read_bytes() for s in sources) + " ".join([cc, *flags]).encode()).hexdigest()[:16]
    out = cache_dir(cache) / f"{stem}_{key}.so"
    if not out.exists():
        with atomic_path(out, fsync=False) as tmp:
            try:
                subprocess.run([cc, *flags, str(src), "-o", str(tmp), *libs], check=True, capture_output=True,
                               text=True)
            except subprocess.CalledProcessError as exc:
                last = (exc.stderr.strip().splitlines() or ["?"])[-1]
                raise NnqError(f"compiling {Path(src).name} failed: {last}") from None
    return out
