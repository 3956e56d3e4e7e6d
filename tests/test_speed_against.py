"""``benchmarks/speed_serving.py --against REV``: this tree and commit REV's sources measured in
turns, and issue 13's own figures scaled to this tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _git(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def checkout(root):
    """This tree as a git checkout (the script archives a commit of it), or skip."""
    if _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode:
        pytest.skip("not a git checkout")
    return root


def _run(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "benchmarks" / "speed_serving.py"), *args],
                          capture_output=True, text=True, cwd=root)


def test_a_revision_that_is_no_commit_is_one_line_and_exit_2(checkout):
    proc = _run(checkout, "--against", "no-such-commit", "--sizes", "200", "--repeat", "1")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "speed_serving.py: --against no-such-commit: not a commit of this repository"]


def test_the_two_trees_are_measured_in_turns_and_compared(checkout):
    proc = _run(checkout, "--against", "HEAD", "--sizes", "200", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    theirs = next(line for line in lines if line.split()[0] == "HEAD")
    ours = next(line for line in lines if line.startswith("   this tree"))
    assert theirs.endswith("(pure Python)")
    # the same simulation (HEAD's sources and this tree's): the same requests and steps
    assert theirs.split()[1:4] == ours.split()[2:5] == ["single", "vllm", "200"]
    assert theirs.split()[-3] == ours.split()[-1]
    assert any(line.strip().startswith("single vllm 200: this tree") and "as fast as HEAD" in line
               for line in lines)


def test_sources_of_a_commit_are_its_core_and_plugins(checkout, speed_serving, tmp_path):
    path = speed_serving.sources_of("HEAD", str(tmp_path)).split(os.pathsep)
    assert path[0] == str(tmp_path / "core" / "src")
    assert str(tmp_path / "plugins" / "vllm" / "src") in path
    assert (tmp_path / "core" / "src" / "labsim" / "__init__.py").is_file()


def test_issue_13s_figures_are_scaled_only_at_its_commit_and_rows(checkout, speed_serving):
    if speed_serving.reference_commit() is None:
        pytest.skip("a shallow clone: issue 13's commit is not here")
    ours = {"case": "single", "framework": "vllm", "cpu_s": 5.0}
    theirs = {"case": "single", "framework": "vllm", "cpu_s": 10.0}
    lines = speed_serving.against_lines(ours, theirs, speed_serving.REFERENCE_COMMIT, 100_000, True)
    assert lines[0] == "single vllm 100,000: this tree 2.00x as fast as 30df584 (CPU s, the median of the turns)"
    assert lines[1].startswith("issue 13 measured 30df584 at 11.7 s on its machine: this tree there about 5.85 s")
    assert len(speed_serving.against_lines(ours, theirs, speed_serving.REFERENCE_COMMIT, 20_000, True)) == 1
    assert len(speed_serving.against_lines(ours, theirs, "HEAD", 100_000, False)) == 1


def test_a_checkout_without_issue_13s_commit_only_leaves_its_figures_out(checkout, speed_serving,
                                                                         monkeypatch):
    """(A shallow clone: ``--against HEAD`` on a row issue 13 measured still gives its speed-up.)"""
    monkeypatch.setattr(speed_serving, "REFERENCE_COMMIT", "no-such-commit")
    assert speed_serving.reference_commit() is None
