"""A run's outputs appear together or not at all; unwritable destinations are refused before
the run; stale outputs and dead runs' temporaries are cleared; SIGTERM cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim.errors import UsageError
from labsim.orchestrator import Orchestrator, load_experiment

TESTS = Path(__file__).parent


def _run(path, registry, out, overrides=()):
    return Orchestrator(load_experiment(path, overrides), registry).run(out)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_out_under_a_file_is_refused_before_running(basic_file, registry, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    monkeypatch.setattr("labsim.orchestrator.get_registry", lambda: registry)
    result = CliRunner().invoke(cli_mod.cli, ["run", str(basic_file), "--out", str(tmp_path / "afile" / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write outputs to" in result.output and "afile" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(basic_file, registry, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="cannot write outputs to"):
            _run(basic_file, registry, folder)
    finally:
        folder.chmod(0o755)


def test_an_output_path_that_is_a_folder_leaves_nothing_written(basic_file, registry, tmp_path):
    out = tmp_path / "o"
    (out / "requests.csv").mkdir(parents=True)
    with pytest.raises(UsageError, match="requests.csv: it is a folder"):
        _run(basic_file, registry, out)
    assert _listing(out) == ["requests.csv"]  # no summary.json, no temporaries


def test_a_rerun_into_the_same_folder_removes_the_earlier_runs_other_outputs(
    basic_file, registry, tmp_path
):
    out = tmp_path / "o"
    _run(basic_file, registry, out)
    assert "requests.csv" in _listing(out)
    _run(basic_file, registry, out, ["metrics_config.sinks=[summary_json]"])
    assert _listing(out) == [".labsim-outputs.json", "summary.json"]


def test_temporaries_of_dead_runs_are_swept(basic_file, registry, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = out / f".requests.csv.tmp-{dead.pid}"
    leftover.write_text("half a file")
    mine = out / f".other.csv.tmp-{os.getpid()}"  # a live process's: kept
    mine.write_text("in progress")
    _run(basic_file, registry, out)
    assert not leftover.exists() and mine.exists()


LONG_RUN = """\
import signal
import sys
# Ctrl-C as a terminal delivers it: a parent that ignores SIGINT (a test runner's worker, nohup)
# passes the ignoring on to its children, and this test is about what labsim does with the signal
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
import kernel_test_plugin
from labsim import cli, orchestrator
from labsim.testing import make_registry
registry = make_registry(kernel_test_plugin)
cli.get_registry = orchestrator.get_registry = lambda: registry
cli.cli(sys.argv[1:])
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_run_cleans_up_and_exits_with_one_line(tmp_path, signum, code):
    experiment = tmp_path / "long.yaml"
    experiment.write_text(
        "simulation: {max_simulation_time: 1.0e9}\n"
        "workload: {type: ticks, count: 900000, interval_dist_config: {type: Constant, value: 1}}\n"
        "frameworks_to_test:\n"
        "  - {name: a, type: queue, config: {service_dist_config: {type: Constant, value: 0.5}}}\n"
    )
    script = tmp_path / "labsim_test_cli.py"
    script.write_text(LONG_RUN.format(tests=str(TESTS)))
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, str(script), "run", str(experiment), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # until the run is writing its temporary files
            if out.exists() and any(p.name.startswith(".requests.csv.tmp-") for p in out.iterdir()):
                break
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert len(stderr.strip().splitlines()) == 1 and "nothing was written" in stderr
    assert not [p for p in out.iterdir() if p.name != ".labsim-outputs.json"]


def test_a_table_stopped_while_it_opens_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A signal that lands while a CSV table opens (its temporary file made, its writer not yet
    kept by the sink) still has the file removed when the run discards its outputs: once
    seen under load, a SIGTERM left ``.requests.csv.tmp-PID`` behind."""
    from labsim.default_plugins import sinks

    sink = sinks.CsvSink(tmp_path)
    sink.open_table("steps", ["a"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sinks.csv, "writer", interrupted)      # after the file is made
    with pytest.raises(KeyboardInterrupt):
        sink.open_table("requests", ["a", "b"])
    assert any(p.name.startswith(".requests.csv.tmp-") for p in tmp_path.iterdir())
    sink.discard()
    assert list(tmp_path.iterdir()) == []
