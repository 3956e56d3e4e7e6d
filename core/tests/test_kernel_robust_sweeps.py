"""Sweeps: results keyed on what they depend on, one failing point does not end the sweep,
bad databases are refused, workers die with the main process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import types

import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim import hookimpl
from labsim.errors import UsageError
from labsim.sweep import SweepStore, run_sweep
from labsim.testing import make_registry

import kernel_test_plugin
from conftest import BASIC


class _Fragile(kernel_test_plugin.Queue):
    """Crashes (a plugin bug) when max_num_seqs is 13."""

    name = "fragile"
    aliases = ()

    def summary(self):
        if self.config["max_num_seqs"] == 13:
            raise ZeroDivisionError("unlucky")
        if self.config["max_num_seqs"] == 11:  # a native crash: the process dies on a segfault
            import ctypes

            ctypes.string_at(0)
        if self.config["max_num_seqs"] == 12:  # a run that never ends
            time.sleep(60)
        return super().summary()


def _register(register):
    register(_Fragile)


@pytest.fixture
def sweep_runner(monkeypatch):
    module = types.SimpleNamespace(__name__="fragile_plugin", register_frameworks=hookimpl(_register))
    registry = make_registry(kernel_test_plugin, module)
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    monkeypatch.setattr("labsim.orchestrator.get_registry", lambda: registry)
    return CliRunner()


def _sweep(runner, path, db, *grid, workers=1):
    args = ["sweep", str(path), "--db", str(db), "--workers", str(workers)]
    for g in grid:
        args += ["--grid", g]
    return runner.invoke(cli_mod.cli, args, catch_exceptions=False)


def test_editing_the_experiment_reruns_its_points(sweep_runner, tmp_path):
    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC)
    first = _sweep(sweep_runner, path, db, "workload.count=5,10")
    assert first.exit_code == 0 and first.output.count("ok ") == 2
    again = _sweep(sweep_runner, path, db, "workload.count=5,10")
    assert again.output.count("ok ") == 0 and "2 of 2 points done" in again.output
    path.write_text(BASIC.replace("rate: 2", "rate: 5"))  # the file changed: stale results
    edited = _sweep(sweep_runner, path, db, "workload.count=5,10")
    assert edited.output.count("ok ") == 2
    other = tmp_path / "other.yaml"  # another experiment sharing the database
    other.write_text(BASIC.replace("mean: 0.3", "mean: 0.1"))
    assert _sweep(sweep_runner, other, db, "workload.count=5,10").output.count("ok ") == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_one_failing_point_is_recorded_and_the_sweep_goes_on(sweep_runner, tmp_path, workers):
    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC.replace("type: queue", "type: fragile"))
    result = _sweep(
        sweep_runner, path, db, "frameworks_to_test[0].config.max_num_seqs=4,13,16", workers=workers
    )
    assert result.exit_code == 1
    assert "2 of 3 points done" in result.output
    assert "Traceback" not in result.output
    rows = sqlite3.connect(db).execute("SELECT point, status, error FROM runs").fetchall()
    statuses = sorted(r[1] for r in rows)
    assert statuses == ["error", "ok", "ok"]
    error = next(r[2] for r in rows if r[1] == "error")
    assert "ZeroDivisionError: unlucky" in error


def test_the_sweep_bar_shows_points_done_running_failed_and_an_eta(sweep_runner, tmp_path, monkeypatch):
    from labsim import progress

    monkeypatch.setattr(progress, "_on_terminal", lambda: True)   # a person watching
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    progress.set_quiet(False)
    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC.replace("type: queue", "type: fragile"))
    grid = "frameworks_to_test[0].config.max_num_seqs=4,13,16"
    result = _sweep(sweep_runner, path, db, grid, workers=2)
    assert result.exit_code == 1
    bar = result.stderr
    assert "0/3 points, 0 running, 0 failed" in bar
    assert "2 running" in bar                       # two workers, both busy at first
    assert "3/3 points, 0 running, 1 failed" in bar
    assert "ETA" in bar and "ZeroDivisionError" not in bar    # lines go to stdout, the bar to stderr
    assert "error  frameworks_to_test[0].config.max_num_seqs=13" in result.stdout
    # resumed: the two points done count from the start, only the failed one runs again
    again = _sweep(sweep_runner, path, db, grid, workers=2).stderr
    assert "2/3 points, 0 running, 0 failed" in again and "3/3 points" in again and "1 failed" in again


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p.write_bytes(b"this is not a database, just text" * 100), "not a sweep database"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE runs (point TEXT, x INT)").connection.commit(),
         "its `runs` table has columns point, x"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE people (name TEXT)").connection.commit(),
         "an SQLite database of something else"),
    ],
)
def test_a_db_that_is_not_a_sweep_database_is_refused(tmp_path, setup, message):
    db = tmp_path / "s.sqlite"
    setup(db)
    with pytest.raises(UsageError, match=message):
        SweepStore(db)


def test_a_seed_beyond_int64_is_refused(sweep_runner, tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(BASIC)
    result = sweep_runner.invoke(
        cli_mod.cli, ["sweep", str(path), "--grid", "workload.count=5", "--seed", str(2**64)]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(UsageError, match="seed"):
        run_sweep(str(path), ["workload.count=5"], [], tmp_path / "s.sqlite", seed=2**64)


ORPHAN = """\
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from labsim.sweep import _watch_parent

def work():
    print(os.getpid(), flush=True)
    time.sleep(300)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, initializer=_watch_parent, initargs=(os.getpid(),))
    pool.submit(work)
    time.sleep(300)
"""


def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(main.stdout.readline())
    main.send_signal(signal.SIGKILL)
    main.wait()
    for _ in range(200):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it became our child's zombie
            os.waitpid(worker, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its main process")


def test_a_segfault_and_a_hung_run_fail_their_points_and_the_sweep_goes_on(sweep_runner, tmp_path):
    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC.replace("type: queue", "type: fragile"))
    args = ["sweep", str(path), "--db", str(db), "--workers", "2", "--timeout", "5",
            "--grid", "frameworks_to_test[0].config.max_num_seqs=4,11,12,16"]
    began = time.monotonic()
    result = sweep_runner.invoke(cli_mod.cli, args, catch_exceptions=False)
    assert time.monotonic() - began < 30
    assert result.exit_code == 1 and "2 of 4 points done" in result.output
    rows = dict(sqlite3.connect(db).execute("SELECT point, error FROM runs WHERE status = 'error'").fetchall())
    errors = {p.rsplit("=", 1)[-1].rstrip('"]'): e for p, e in rows.items()}
    assert "killed by signal 11" in errors["11"]
    assert "timed out after --timeout 5 s" in errors["12"]


def test_labsim_results_tabulates_points_and_failures(sweep_runner, tmp_path):
    import json

    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC.replace("type: queue", "type: fragile"))
    _sweep(sweep_runner, path, db, "frameworks_to_test[0].config.max_num_seqs=4,13,16")
    out = sweep_runner.invoke(cli_mod.cli, ["results", str(db), "--format", "json"], catch_exceptions=False)
    assert out.exit_code == 0
    rows = json.loads(out.output)
    assert sorted(r["frameworks_to_test[0].config.max_num_seqs"] for r in rows) == ["13", "16", "4"]
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and "ZeroDivisionError: unlucky" in failed[0]["error"]
    only = sweep_runner.invoke(cli_mod.cli, ["results", str(db), "--where", "status=ok"], catch_exceptions=False)
    assert only.exit_code == 0 and "2 point(s)" in only.output
    bad = sweep_runner.invoke(cli_mod.cli, ["results", str(tmp_path / "none.sqlite")])
    assert bad.exit_code == 2 and "DB: no file" in bad.output


SWEEP_CLI = """\
import sys
sys.path.insert(0, {tests!r})
import kernel_test_plugin
from labsim import cli, orchestrator
from labsim.testing import make_registry
registry = make_registry(kernel_test_plugin)
cli.get_registry = orchestrator.get_registry = lambda: registry
cli.cli(sys.argv[1:])
"""


def test_a_sweep_killed_midway_resumes_to_the_same_rows(tmp_path):
    import pathlib

    basic = BASIC

    tests = str(pathlib.Path(__file__).resolve().parent)
    script = tmp_path / "sweep_cli.py"
    script.write_text(SWEEP_CLI.format(tests=tests))
    path = tmp_path / "e.yaml"
    path.write_text(basic.replace("count: 40", "count: 4000"))
    grid = ["--grid", "workload.count=3000,3100,3200,3300,3400,3500"]

    def sweep(db, wait=True):
        args = [sys.executable, str(script), "sweep", str(path), "--db", str(db), "--workers", "1", *grid]
        return subprocess.run(args, capture_output=True, text=True) if wait else \
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    whole = tmp_path / "whole.sqlite"
    assert sweep(whole).returncode == 0
    killed = tmp_path / "killed.sqlite"
    proc = sweep(killed, wait=False)
    for _ in range(600):  # until at least one point has committed
        time.sleep(0.05)
        try:
            if sqlite3.connect(killed).execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 1:
                break
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done_before = sqlite3.connect(killed).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert 1 <= done_before < 6
    resumed = sweep(killed)
    assert resumed.returncode == 0 and resumed.stdout.count("ok ") == 6 - done_before
    rows = lambda db: sqlite3.connect(db).execute(  # noqa: E731
        "SELECT key, point, seed, status, error, summary FROM runs ORDER BY key").fetchall()
    assert rows(killed) == rows(whole)


@pytest.mark.parametrize("args, message", [
    (["--ray-cpus", "2"], "--ray-cpus and --ray-memory-mb need --backend ray"),
    (["--backend", "ray", "--timeout", "5"], "--timeout and --memory-limit-mb limit local worker processes"),
])
def test_options_of_the_other_backend_are_refused(sweep_runner, tmp_path, args, message):
    path = tmp_path / "e.yaml"
    path.write_text(BASIC)
    result = sweep_runner.invoke(cli_mod.cli, ["sweep", str(path), "--grid", "workload.count=5",
                                               "--db", str(tmp_path / "s.sqlite"), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("workers", [1, 2])
def test_two_points_that_are_one_run_run_once(sweep_runner, tmp_path, workers):
    path, db = tmp_path / "e.yaml", tmp_path / "s.sqlite"
    path.write_text(BASIC)
    result = _sweep(sweep_runner, path, db, "workload.count=5,5,10", workers=workers)
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == 2 and "3 of 3 points done" in result.output
