"""labsim.parallel: results in task order, a failing task named, a crash contained; as many
workers by default as the CPUs the process may use."""

from __future__ import annotations

import ctypes
import os

import pytest
from labsim import parallel
from labsim.parallel import default_workers, map_processes, usable_cpus


def _crash(task):
    if task == 2:
        ctypes.string_at(0)          # a native crash: the worker process dies on a segfault
    return task


def test_results_come_back_in_task_order():
    seen = []
    assert map_processes(abs, [-5, 4, -3, 2, -1], workers=2, progress=seen.append) == [5, 4, 3, 2, 1]
    assert seen == [1] * 5


def test_a_task_that_raises_is_reported_with_its_reason():
    with pytest.raises(RuntimeError, match="ValueError"):
        map_processes(int, ["1", "not a number", "3"], workers=2)


def test_a_crashing_task_fails_the_map_not_the_caller():
    with pytest.raises(RuntimeError, match="worker died"):
        map_processes(_crash, [1, 2, 3], workers=2)


def test_the_default_is_a_worker_per_cpu_the_process_may_use(monkeypatch):
    # a 2-core machine ran sweeps on one worker (one fewer than the cores): half its CPU idle
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 2)
    assert default_workers() == 2
    assert default_workers(tasks=1) == 1        # no more workers than tasks
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 1)
    assert default_workers() == 1


def test_usable_cpus_follow_the_affinity_mask_not_the_machine(monkeypatch):
    # a container (or taskset) allowing 2 of a 64-core host's CPUs: 2 workers, not 63
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 7}, raising=False)
    assert usable_cpus() == 2
    assert default_workers(tasks=100) == 2


def test_usable_cpus_honour_loky_max_cpu_count(monkeypatch):
    # (joblib's own cap, which also stands in here for a container's CPU quota)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "3")
    assert usable_cpus() == 3
