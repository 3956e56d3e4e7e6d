"""``labsim sweep --backend ray`` against a real local Ray cluster: a head and a second node on
this machine. Each point travels as its resolved experiment and the experiment's folder as the
runtime environment, so the data it names reaches every node; results equal a local sweep's.

Needs Ray (``pip install -e 'core[ray]'``); ``.ci/run`` installs it and sets
``LABSIM_REQUIRE_RAY=1`` so that CI fails rather than skips without it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from labsim.cli import cli

ray = pytest.importorskip("ray") if os.environ.get("LABSIM_REQUIRE_RAY") != "1" else __import__("ray")
ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    # a throwaway cluster on this machine: without token authentication, so that a token file
    # another Ray left in ~/.ray (Ray 2.5x+ writes one) cannot split the head from the node
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        yield from _cluster()
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _cluster():
    port = _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                   check=True, capture_output=True, timeout=180)
    try:
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common],
                       check=True, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=180)


def _trace_experiment(folder: Path) -> Path:
    """A serving experiment replaying a trace that sits beside it (a relative path)."""
    from ruamel.yaml import YAML

    folder.mkdir(parents=True)
    data = YAML(typ="safe").load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["workload"] = {"type": "trace", "path": "trace.csv"}
    data["metrics_config"]["warm_up_duration_s"] = 0
    (folder / "exp.json").write_text(json.dumps(data))
    rows = "".join(f"{i * 0.25},{300 + i},{50 + i}\n" for i in range(40))
    (folder / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n" + rows)
    return folder / "exp.json"


def _rows(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        return {p: (st, json.loads(s)["frameworks"] if s else None)
                for p, st, s in con.execute("SELECT point, status, summary FROM runs")}
    finally:
        con.close()


def test_a_ray_sweep_gives_what_a_local_sweep_gives(tmp_path, cluster):
    exp = _trace_experiment(tmp_path / "exp")
    grid = "frameworks_to_test[0].config.max_num_seqs=4,64"
    for backend, db in (("local", tmp_path / "local.sqlite"), ("ray", tmp_path / "ray.sqlite")):
        args = ["sweep", str(exp), "--grid", grid, "--db", str(db), "--workers", "1"]
        if backend == "ray":
            args += ["--backend", "ray", "--address", cluster]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    local, remote = _rows(tmp_path / "local.sqlite"), _rows(tmp_path / "ray.sqlite")
    assert set(local) == set(remote) and all(v[0] == "ok" for v in remote.values())
    assert local == remote


def test_the_experiment_and_its_data_travel_with_the_runs(tmp_path, cluster):
    """The file and the trace it names are gone from where they were written by the time the
    runs execute: what runs is the shipped content and folder."""
    from labsim.queue import _run_entry
    from labsim.sweep import ray_runs

    exp = _trace_experiment(tmp_path / "exp")
    runtime_env, runs = ray_runs(str(exp), [], [("k", [])], None)
    shipped = tmp_path / "shipped"
    shutil.copytree(runtime_env["working_dir"], shipped)
    shutil.rmtree(tmp_path / "exp")
    ray.init(address=cluster, log_to_driver=False, runtime_env={"working_dir": str(shipped)})
    try:
        remote = ray.remote(_run_entry).options(num_cpus=1)
        (_key, _point, experiment, source), = runs
        status, error, summary = ray.get(remote.remote(experiment, source, ".", None))
    finally:
        ray.shutdown()
    assert status == "ok", error
    assert summary["frameworks"]["vllm"]["requests"]["finished"] == 40


def test_per_run_resources_reach_ray_and_a_run_no_node_can_hold_is_refused(tmp_path, cluster):
    from labsim.sweep import ray_options

    exp = _trace_experiment(tmp_path / "exp")
    grid = "frameworks_to_test[0].config.max_num_seqs=4,64"
    args = ["sweep", str(exp), "--grid", grid, "--backend", "ray", "--address", cluster]
    half = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "half.sqlite"), "--ray-cpus", "0.5",
                                    "--ray-memory-mb", "64"])
    assert half.exit_code == 0, half.output
    assert all(v[0] == "ok" for v in _rows(tmp_path / "half.sqlite").values())
    # each node of the test cluster has one CPU: Ray would wait forever for a 2-CPU slot
    big = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "big.sqlite"), "--ray-cpus", "2"])
    assert big.exit_code == 2 and "no node of the Ray cluster has that much" in big.output
    # what a run is given is what was asked for
    ray.init(address=cluster, log_to_driver=False)
    try:
        assigned = ray.get(ray.remote(_assigned).options(**ray_options(0.5, 64)).remote())
    finally:
        ray.shutdown()
    assert assigned["CPU"] == 0.5 and assigned["memory"] == 64 << 20


def _assigned():
    return ray.get_runtime_context().get_assigned_resources()
