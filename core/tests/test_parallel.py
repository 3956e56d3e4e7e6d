"""labsim.parallel.map_processes: results in task order, a failing task named, a crash contained."""

from __future__ import annotations

import ctypes

import pytest
from labsim.parallel import map_processes


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
