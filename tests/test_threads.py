"""The torch thread default of ``--threads 0`` (common.threads)."""

import os
import subprocess
import sys
import time

import pytest
import torch

from common import threads


def test_a_busy_cpu_is_seen_and_left_out(monkeypatch):
    if not hasattr(os, "sched_setaffinity") or len(threads.usable_cpus()) < 2:
        pytest.skip("needs Linux CPU affinity and two CPUs")
    cpu = threads.usable_cpus()[0]
    spin = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_cpus([cpu], 0.3) == 1
        monkeypatch.setattr(threads, "usable_cpus", lambda: [cpu])
        assert threads.default_threads() == 1  # never fewer than one
    finally:
        spin.kill()
        spin.wait()


def test_default_threads_is_within_the_cores_and_shared_among_local_processes(monkeypatch):
    cores = threads.physical_cores(threads.usable_cpus())
    monkeypatch.setattr(threads, "busy_cpus", lambda cpus, sample_s=0.1: 0)
    assert threads.default_threads() == min(cores, len(threads.usable_cpus()))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))
    assert threads.default_threads() == 1
    before = torch.get_num_threads()
    try:
        assert threads.apply_thread_defaults(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
