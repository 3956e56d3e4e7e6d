"""``benchmarks/speed_serving.py --instructions``: the per-request count is the difference of two
callgrind runs, so nothing but the requests may differ between them."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize("case", ["single", "trace"])
def test_a_run_outside_callgrind_caches_the_bytecode_first(speed_serving, monkeypatch, case):
    """On a fresh checkout the first process compiles (and caches) every module's bytecode: had
    that been the first callgrind run, its extra instructions would come off the per-request
    figure (a fresh tree's first figures came out negative). A plain run of the same case
    goes first."""
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(list(cmd))
        n = int(cmd[cmd.index("--child") + 1])
        stderr = f"==1== I   refs:      {1_000_000 + 100 * n:,}\n" if cmd[0] == "valgrind" else ""
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr=stderr)

    monkeypatch.setattr(speed_serving.subprocess, "run", fake_run)
    sizes = [2 * speed_serving.TRACE_ROWS, speed_serving.TRACE_ROWS] if case == "trace" else [8000, 2000]
    result = speed_serving.instructions(sizes, True, "trtllm", case)
    assert calls[0][0] != "valgrind" and "--case" in calls[0] and calls[0][calls[0].index("--case") + 1] == case
    assert [c[0] for c in calls[1:]] == ["valgrind", "valgrind"]
    assert result["per_request"] == 100.0
