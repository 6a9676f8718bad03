"""How many CPU threads torch uses when ``--threads 0`` (the default) leaves the choice to us.

torch's own default is one thread per core of the machine. On a machine shared with another busy process
that is the worst choice: every parallel region waits for the thread whose core the other process holds,
and a small training loop runs 10-20x slower (``benchmarks/results/cpu_load.json``). So the default here is
the number of physical cores of this process's CPU set (``os.sched_getaffinity``) that are idle when the
command starts (at least one); ``--threads N`` fixes the count instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_SAMPLE_S = 0.1
_BUSY = 0.5
"""A CPU whose busy share over the sample exceeds this counts as taken by another process."""


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity set; all CPUs where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int]) -> int:
    """Distinct physical cores among logical ``cpus`` (hyper-threads of one core count once)."""
    cores = set()
    for c in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add((topo / "physical_package_id").read_text().strip() + ":" + (topo / "core_id").read_text().strip())
        except OSError:
            cores.add(str(c))
    return max(len(cores), 1)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """cpu index -> (busy jiffies, total jiffies) from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            out[int(name[3:])] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def busy_cpus(cpus: list[int], sample_s: float = _SAMPLE_S) -> int:
    """How many of ``cpus`` other processes keep busy now: CPUs over 50% busy during a ``sample_s`` sample.

    Falls back to the 1-minute load average where /proc/stat is missing (macOS).
    """
    try:
        before = _cpu_times()
        time.sleep(sample_s)
        after = _cpu_times()
    except OSError:
        try:
            return min(int(os.getloadavg()[0] + 0.5), len(cpus))
        except OSError:
            return 0
    n = 0
    for c in cpus:
        if c in before and c in after:
            busy, total = after[c][0] - before[c][0], after[c][1] - before[c][1]
            n += total > 0 and busy / total > _BUSY
    return n


def default_threads() -> int:
    """Physical cores of this process's CPU set minus the CPUs other processes keep busy now, shared among the
    training processes of this machine (``LOCAL_WORLD_SIZE`` under torchrun / accelerate), at least 1."""
    cpus = usable_cpus()
    cores = physical_cores(cpus)
    free = len(cpus) - busy_cpus(cpus)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(cores, free) // local)


def apply_thread_defaults(threads: int = 0) -> int:
    """Set torch's intra-op threads: ``threads`` when positive, else :func:`default_threads`. Returns the count."""
    import torch

    n = threads if threads > 0 else default_threads()
    torch.set_num_threads(n)
    return n
