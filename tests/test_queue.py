"""``labsim submit`` / ``labsim serve``: a shared queue run highest priority first, on the
content submitted, nothing run twice, a killed server's runs taken up again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from labsim.cli import cli

ROOT = Path(__file__).resolve().parents[1]
RATE = "workload.client_profiles[0].request_rate"


def _experiment(tmp_path, rate=4.0) -> Path:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["workload"]["total_duration"] = 8
    data["workload"]["client_profiles"][0]["request_rate"] = rate
    data["metrics_config"]["warm_up_duration_s"] = 0
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data))
    return path


def _cli(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _order(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return [(json.loads(p)[0].split("=")[1] if json.loads(p) else "", s) for p, s in con.execute(
            "SELECT point, state FROM queue ORDER BY finished_s, id")]
    finally:
        con.close()


def test_the_server_runs_high_priority_first_and_nothing_twice(tmp_path):
    exp, db = _experiment(tmp_path), tmp_path / "q.sqlite"
    assert "queued 2 runs at background" in _cli("submit", exp, "--grid", f"{RATE}=2,3", "--priority",
                                                  "background", "--db", db)
    out = _cli("submit", exp, "--grid", f"{RATE}=3,6", "--priority", "high", "--db", db)
    assert "queued 1 run at high priority (1 already done or queued)" in out
    out = _cli("serve", "--db", db, "--once", "--workers", "1")
    assert "queue: 3 done" in out
    assert _order(db) == [("6", "done"), ("2", "done"), ("3", "done")]
    # results read like a sweep's
    assert "3 point(s)" in _cli("results", db)
    # submitted again: already done, nothing queued
    assert "queued 0 runs at normal priority (2 already done or queued)" in _cli(
        "submit", exp, "--grid", f"{RATE}=2,6", "--db", db)


def test_the_queue_runs_what_was_submitted_not_the_file_as_edited_later(tmp_path):
    exp, db = _experiment(tmp_path, rate=2.0), tmp_path / "q.sqlite"
    _cli("submit", exp, "--db", db)
    _experiment(tmp_path, rate=30.0)                     # edited after submitting
    _cli("serve", "--db", db, "--once", "--workers", "1")
    out = json.loads(_cli("results", db, "--format", "json"))
    # the file now says 30 req/s; the queued run is the 2 req/s that was submitted
    submitted = json.loads(_cli("run", exp, "--json", "--set", f"{RATE}=2.0"))
    assert out[0]["finished requests"] == submitted["frameworks"]["vllm"]["requests"]["finished"]


def test_a_killed_servers_running_entries_run_again(tmp_path):
    exp, db = _experiment(tmp_path), tmp_path / "q.sqlite"
    _cli("submit", exp, "--db", db)
    con = sqlite3.connect(db)
    con.execute("UPDATE queue SET state = 'running'")    # what a SIGKILLed server leaves
    con.commit()
    con.close()
    assert "queue: 1 done" in _cli("serve", "--db", db, "--once", "--workers", "1")


def test_a_failing_run_is_recorded_and_the_server_exits_1(tmp_path):
    exp, db = _experiment(tmp_path), tmp_path / "q.sqlite"
    _cli("submit", exp, "--grid", f"{RATE}=2,3", "--db", db)
    out = _cli("serve", "--db", db, "--once", "--workers", "1", "--timeout", "0.001", code=1)
    assert "timed out" in out and "queue: 2 failed" in out


def test_bad_queue_arguments_exit_2(tmp_path):
    _cli("serve", "--db", tmp_path / "none.sqlite", "--once", code=2)
    _cli("submit", _experiment(tmp_path), "--priority", "urgent", "--db", tmp_path / "q.sqlite", code=2)


def test_compare_takes_the_points_of_a_sweep_or_queue_database(tmp_path):
    exp, db = _experiment(tmp_path), tmp_path / "q.sqlite"
    _cli("submit", exp, "--grid", f"{RATE}=2,6", "--db", db)
    _cli("serve", "--db", db, "--once", "--workers", "1")
    out = _cli("compare", db)
    assert "request_rate=2: quickstart" in out and "request_rate=6: quickstart" in out
    assert "request_rate=6:vllm/request_rate=2:vllm" in out
    lonely = tmp_path / "one.sqlite"
    _cli("submit", exp, "--db", lonely)
    _cli("serve", "--db", lonely, "--once", "--workers", "1")
    assert "compare needs two runs" in _cli("compare", lonely, code=2)


def test_results_as_parquet_and_to_a_file(tmp_path):
    import os

    import pytest

    if os.environ.get("LABSIM_REQUIRE_PARQUET") != "1":
        pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    exp, db = _experiment(tmp_path), tmp_path / "q.sqlite"
    _cli("submit", exp, "--grid", f"{RATE}=2,6", "--db", db)
    _cli("serve", "--db", db, "--once", "--workers", "1")
    out = tmp_path / "r.parquet"
    assert "2 point(s)" in _cli("results", db, "--format", "parquet", "--output", out)
    table = pq.read_table(out).to_pylist()
    as_json = json.loads(_cli("results", db, "--format", "json"))
    assert table == as_json                     # the same rows and values as the JSON
    assert "give --output" in _cli("results", db, "--format", "parquet", code=2)
    csv_file = tmp_path / "r.csv"
    _cli("results", db, "--format", "csv", "--output", csv_file)
    assert csv_file.read_text().splitlines()[0].startswith(RATE)
    assert not list(tmp_path.glob(".r.*.tmp-*"))    # nothing half-written left behind
