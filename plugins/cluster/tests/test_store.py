"""labsim-cluster: the ``sql`` metric sink — a run's jobs, attempts and events in a database a
SQLAlchemy URL names, several runs and policies side by side — read back by ``labsim jobs``;
against SQLite, and against a throwaway PostgreSQL server where one can run (conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from labsim.cli import cli

REQUIRED = os.environ.get("LABSIM_REQUIRE_POSTGRES") == "1"
CLUSTER = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 4,
           "nic": "roce-100", "nics_per_node": 1}


def experiment(tmp_path, url: str | None, n: int = 30, run_id: str | None = None, sinks=("summary_json", "csv", "sql")):
    trace = tmp_path / "jobs.csv"
    trace.write_text("job_id,submit_time_s,duration_s,num_gpus,user,group\n"
                     + "".join(f"j{i},{i * 60},{600 + 37 * i},{(1, 2, 4, 8)[i % 4]},u{i % 3},g{i % 2}\n"
                               for i in range(n)))
    exp = {
        "name": "store", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": dict(CLUSTER)},
        "workload": {"type": "jobs", "trace": str(trace)},
        "frameworks_to_test": [{"name": p, "type": "cluster", "config": {"scheduler": {"type": p}}}
                               for p in ("fifo", "tiresias")],
        "metrics_config": {"sinks": list(sinks)},
    }
    if url is not None:
        exp["metrics_config"]["sql"] = {"url": url, **({"run_id": run_id} if run_id else {})}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    return path


def run(path, out):
    return CliRunner().invoke(cli, ["run", str(path), "--out", str(out)])


def jobs(*args) -> list[dict]:
    result = CliRunner().invoke(cli, ["jobs", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        if not REQUIRED:
            pytest.importorskip("sqlalchemy")
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def clean(store_url):
    """*store_url*, emptied of what an earlier test wrote (the PostgreSQL server is shared)."""
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
    return store_url


def test_runs_and_policies_keep_apart_and_read_back_as_the_csv(tmp_path, clean):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run(experiment(tmp_path, clean, n=30), first).exit_code == 0
    assert run(experiment(tmp_path, clean, n=12), second).exit_code == 0
    # each run by its run_id (the folder's name), its two policies apart by the policy column
    a = jobs("--url", clean, "--run", "first")
    b = jobs("--url", clean, "--run", "second")
    assert len(a) == 60 and len(b) == 24
    assert {r["policy"] for r in a} == {"fifo", "tiresias"}
    with open(first / "jobs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_key = {(r["policy"], r["job_id"]): r for r in a}
    for r in rows:
        got = by_key[(r["policy"], r["job_id"])]
        assert got["status"] == r["status"] and got["user"] == r["user"]
        assert float(got["end_s"]) == pytest.approx(float(r["end_s"]))
        assert float(got["cost_usd"]) == pytest.approx(float(r["cost_usd"]))
    # the run folder points at the database: labsim jobs RUN_DIR reads it there
    pointer = json.loads((first / "store.json").read_text())
    assert pointer["run_id"] == "first" and pointer["schema_version"] == 1
    assert jobs(str(first), "--policy", "tiresias", "--user", "u1") == [
        r for r in a if r["policy"] == "tiresias" and r["user"] == "u1"]
    attempts = jobs(str(first), "--attempts", "--job", "j3")
    assert attempts and all(r["job_id"] == "j3" for r in attempts)
    # a rerun of a run_id replaces it; without --run a database of several runs is ambiguous
    assert run(experiment(tmp_path, clean, n=6), tmp_path / "again" / "first").exit_code == 0
    assert len(jobs("--url", clean, "--run", "first")) == 12
    result = CliRunner().invoke(cli, ["jobs", "--url", clean])
    assert result.exit_code == 2 and "first, second" in result.output
    # the schema is versioned and lists each table's columns
    import sqlalchemy as sa

    engine = sa.create_engine(clean)
    with engine.connect() as con:
        meta = dict(con.execute(sa.text("SELECT key, value FROM labsim_meta")).all())
        statuses = con.execute(sa.text("SELECT run_id, status FROM labsim_runs ORDER BY run_id")).all()
    engine.dispose()
    assert meta["schema_version"] == "1"
    assert json.loads(meta["columns.jobs"])[:3] == ["policy", "job_id", "user"]
    assert [tuple(s) for s in statuses] == [("first", "complete"), ("second", "complete")]


def test_a_killed_run_leaves_nothing_readable_and_the_next_run_clears_it(tmp_path, clean, monkeypatch):
    from labsim_cluster import sql_store

    monkeypatch.setattr(sql_store, "BATCH", 5)
    out = tmp_path / "killed"
    out.mkdir()
    sink = sql_store.SqlSink(out, {"url": clean})
    table = sink.open_table("jobs", ["policy", "job_id", "status"])
    for i in range(12):
        table.append(("fifo", f"j{i}", "completed"))   # two batches of 5 committed, 2 rows pending
    sink.engine.dispose()                               # killed: neither prepare nor discard
    result = CliRunner().invoke(cli, ["jobs", "--url", clean, "--run", "killed"])
    assert result.exit_code == 2 and "no complete run 'killed'" in result.output

    import sqlalchemy as sa

    def count():
        engine = sa.create_engine(clean)
        with engine.connect() as con:
            n = con.execute(sa.text("SELECT count(*) FROM jobs")).scalar()
        engine.dispose()
        return n

    assert count() == 10
    assert run(experiment(tmp_path, clean, n=4, run_id="killed"), tmp_path / "ok").exit_code == 0
    assert count() == 8 and len(jobs("--url", clean, "--run", "killed")) == 8
    # a run that fails is taken back out
    sink = sql_store.SqlSink(out, {"url": clean, "run_id": "failed"})
    sink.open_table("jobs", ["policy", "job_id", "status"]).extend([("fifo", "x", "failed")] * 7)
    sink.discard()
    assert count() == 8


def test_a_bad_url_exits_2_naming_the_field_without_the_password(tmp_path):
    if not REQUIRED:
        pytest.importorskip("sqlalchemy")
    url = "postgresql+psycopg://alice:s3cret@/nodb?host=/nonexistent-socket-dir&port=1"
    result = run(experiment(tmp_path, url), tmp_path / "out")
    assert result.exit_code == 2 and "metrics_config.sql.url" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
    result = run(experiment(tmp_path, "nosuchdialect://x"), tmp_path / "out")
    assert result.exit_code == 2 and "metrics_config.sql.url" in result.output


def test_sqlite_needs_no_sqlalchemy_and_the_sql_sink_says_how_to_install_it(tmp_path, monkeypatch):
    # the plugin loads without importing SQLAlchemy
    code = ("import sys; from labsim.registry import get_registry; get_registry(); "
            "import labsim_cluster.query; print('sqlalchemy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)     # as if it were not installed
    out = tmp_path / "plain"
    assert run(experiment(tmp_path, None, n=8, sinks=("summary_json", "csv", "sqlite")), out).exit_code == 0
    assert len(jobs(str(out))) == 16
    result = run(experiment(tmp_path, "sqlite:///x.db", n=8), tmp_path / "sql")
    assert result.exit_code == 2 and "pip install 'labsim-cluster[postgres]'" in result.output


def test_columns_keep_whole_numbers_and_widen_for_values_that_do_not_fit(tmp_path, clean, monkeypatch):
    import sqlalchemy as sa
    from labsim_cluster import sql_store

    monkeypatch.setattr(sql_store, "BATCH", 2)
    for run_id, values in (("ints-then-floats", [1, 2, 2.5, None]), ("then-text", [3, "n/a"])):
        out = tmp_path / run_id
        out.mkdir()
        sink = sql_store.SqlSink(out, {"url": clean, "run_id": run_id})
        table = sink.open_table("t", ["policy", "x"])
        for v in values:
            table.append(("fifo", v))
        sink.prepare()
        sink.close(True)
    engine = sa.create_engine(clean)
    with engine.connect() as con:
        got = con.execute(sa.text("SELECT r.run_id, t.x FROM t JOIN labsim_runs r ON r.run_key = t.run_key "
                                  "ORDER BY r.run_id DESC")).all()
    engine.dispose()
    first = [x for rid, x in got if rid == "ints-then-floats"]
    second = [x for rid, x in got if rid == "then-text"]
    # PostgreSQL: the column widened from integer to double to text; SQLite stores each value as is
    assert sorted(map(str, first)) == ["1", "2", "2.5", "None"] and sorted(map(str, second)) == ["3", "n/a"]
    # whole numbers come back as integers while the column holds only them
    out = tmp_path / "ints"
    out.mkdir()
    sink = sql_store.SqlSink(out, {"url": clean, "run_id": "ints"})
    sink.open_table("u", ["policy", "gpus"]).extend([("fifo", 4), ("fifo", 8)])
    sink.prepare()
    sink.close(True)
    engine = sa.create_engine(clean)
    with engine.connect() as con:
        assert sorted(con.execute(sa.text("SELECT gpus FROM u")).scalars()) == [4, 8]
        assert all(isinstance(v, int) for v in con.execute(sa.text("SELECT gpus FROM u")).scalars())
    engine.dispose()
