"""``labsim jobs RUN_DIR``: the jobs of a finished cluster run, filtered, as a table, CSV or JSON.

Reads ``run.sqlite`` (the ``sqlite`` metric sink) when the run has one, else the database its
``store.json`` names (the ``sql`` sink), else ``jobs.csv`` (``attempts.csv`` with
``--attempts``: one row per time a job ran, and how it ended). ``--url`` reads a run of a
shared database (``--run``: its run_id) without a run folder.

    labsim jobs runs/philly --status failed --user alice --format json
    labsim jobs runs/philly --attempts --job j42
    labsim jobs --url postgresql+psycopg://labsim@db/labsim --run philly --by user
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import click
from labsim.errors import UsageError

POINTER = "store.json"   # the sql sink's pointer to its database (labsim_cluster.sql_store)
FIELDS = ("policy", "job_id", "user", "group", "gpus", "arrival_s", "start_s", "end_s", "jct_s", "queue_s",
          "preemptions", "failures", "reclaims", "cost_usd", "status")


ATTEMPT_FIELDS = ("policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                  "failure", "lost_gpu_s", "cost_usd")
TEXT = ("job_id", "user", "group", "status", "policy", "outcome", "nodes", "failure")
BY_FIELDS = ("policy", "jobs", "completed", "failed", "failures", "reclaims", "cost_usd")


def load_jobs(run_dir: Path | None, where: dict, table: str = "jobs", url: str | None = None,
              run_id: str | None = None) -> list[dict]:
    """The rows of *table* (``jobs`` or ``attempts``) of *run_dir* (or of run *run_id* in the
    database *url*) matching every ``column: value`` of *where*."""
    if url is None and run_dir is not None and not (run_dir / "run.sqlite").is_file() \
            and (run_dir / POINTER).is_file():
        try:
            pointer = json.loads((run_dir / POINTER).read_text(encoding="utf-8"))
            url, run_id = pointer["url"], pointer["run_id"]
        except (ValueError, KeyError, TypeError) as ex:
            raise UsageError(f"RUN_DIR: {run_dir / POINTER} is not a store pointer of labsim ({ex})") from None
    if url is not None:
        return load_from_url(url, run_id, where, table)
    db = run_dir / "run.sqlite"
    if db.is_file():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if table not in names:
                raise UsageError(f"RUN_DIR: {db} has no {table} table (not a cluster run of this "
                                 f"labsim); it has {', '.join(sorted(names - {'labsim_meta'})) or 'no tables'}")
            clause = " AND ".join(f'"{k}" = ?' for k in where)
            sql = f'SELECT * FROM "{table}"' + (f" WHERE {clause}" if clause else "")
            return [dict(r) for r in con.execute(sql, [str(v) if k in TEXT else v
                                                        for k, v in where.items()])]
        finally:
            con.close()
    path = run_dir / f"{table}.csv"
    if not path.is_file():
        raise UsageError(f"RUN_DIR: {run_dir} has neither run.sqlite, {POINTER} nor {table}.csv (run a cluster "
                         "experiment with --out there first)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]


def load_from_url(url: str, run_id: str | None, where: dict, table: str) -> list[dict]:
    """The rows of *table* of the complete run *run_id* in the database *url* (the ``sql``
    sink's), matching *where*; without *run_id*, the database's only run."""
    from labsim_cluster.sql_store import RUNS, connect, public_url, sqlalchemy

    sa = sqlalchemy()
    engine = connect(url, "--url")
    try:
        with engine.connect() as con:
            inspector = sa.inspect(con)
            if not inspector.has_table(RUNS):
                raise UsageError(f"--url: {public_url(url)} holds no labsim runs (no {RUNS} table)")
            runs = sa.Table(RUNS, sa.MetaData(), autoload_with=con)
            done = {rid: key for key, rid in con.execute(
                sa.select(runs.c.run_key, runs.c.run_id).where(runs.c.status == "complete"))}
            if run_id is None and len(done) == 1:
                run_id = next(iter(done))
            if run_id not in done:
                listed = ", ".join(sorted(done)) or "none"
                what = f"no complete run {run_id!r}" if run_id is not None else "several runs"
                raise UsageError(f"--run: {public_url(url)} has {what}; its runs: {listed}")
            if not inspector.has_table(table):
                raise UsageError(f"--url: run {run_id!r} has no {table} table (not a cluster run)")
            t = sa.Table(table, sa.MetaData(), autoload_with=con)
            query = sa.select(t).where(t.c.run_key == done[run_id], *(t.c[k] == str(v) for k, v in where.items()))
            rows = [dict(r._mapping) for r in con.execute(query)]
    finally:
        engine.dispose()
    for r in rows:
        del r["run_key"]
    return rows


@click.command("jobs")
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option("--url", help="Read a run of this database (a SQLAlchemy URL the sql sink wrote to) instead of "
                            "a run folder.")
@click.option("--run", "run_id", help="With --url: the run's run_id (default: the database's only run).")
@click.option("--status", type=click.Choice(["completed", "failed"]), help="Only jobs that ended so.")
@click.option("--user", help="Only this user's jobs.")
@click.option("--policy", help="Only the jobs of this framework (scheduling policy).")
@click.option("--job", "job_id", help="Only this job.")
@click.option("--attempts", is_flag=True,
              help="One row per time a job ran (nodes, work done, completed / preempted / interrupted, "
                   "GPU-seconds lost) instead of one per job.")
@click.option("--failure", help="With --attempts: only the runs ended by this failure kind (xid, software, node, "
                                "partition, oom, image_pull, spot).")
@click.option("--by", "by", type=click.Choice(["user", "group"]),
              help="One row per user (or project) and policy: jobs, completed, failed, failures, spot "
                   "reclaims and what their GPUs cost.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def jobs_command(run_dir, url, run_id, status, user, policy, job_id, attempts, failure, by, fmt):
    """The jobs of a finished cluster run: when each arrived, started, ended, waited, failed
    and cost (with --attempts, each time it ran; with --by, totals per user or project)."""
    if (run_dir is None) == (url is None):
        raise UsageError("name a run folder (RUN_DIR) or a database (--url), one of them")
    if run_id and not url:
        raise UsageError("--run names a run of a database: add --url")
    run = None if run_dir is None else Path(run_dir)
    if run is not None and not run.is_dir():
        raise UsageError(f"RUN_DIR: no folder {run_dir}")
    if attempts and (status or user or by):
        raise UsageError("--status, --user and --by select jobs; with --attempts use --policy, --job and --failure")
    if failure and not attempts:
        raise UsageError("--failure selects attempts: add --attempts")
    where = {k: v for k, v in (("status", status), ("user", user), ("policy", policy), ("job_id", job_id),
                               ("failure", failure)) if v}
    table, fields = ("attempts", ATTEMPT_FIELDS) if attempts else ("jobs", FIELDS)
    rows = load_jobs(run, where, table, url, run_id)
    if by:
        rows = _totals(rows, by)
        fields = (by, *BY_FIELDS)
    cols = [c for c in fields if rows and c in rows[0]]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo("  ".join(f"{c:>10}" for c in cols))
        for r in rows:
            click.echo("  ".join(f"{_cell(r.get(c)):>10}" for c in cols))
        click.echo(f"{len(rows)} {by if by else 'attempt' if attempts else 'job'}(s)")


def _totals(rows: list[dict], by: str) -> list[dict]:
    """Per (*by*, policy): how many jobs, how they ended, their failures, reclaims and cost."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (str(r.get(by) or ""), str(r.get("policy")))
        t = out.setdefault(key, {by: key[0], "policy": key[1], "jobs": 0, "completed": 0, "failed": 0,
                                 "failures": 0, "reclaims": 0, "cost_usd": 0.0})
        t["jobs"] += 1
        t["completed"] += r.get("status") == "completed"
        t["failed"] += r.get("status") == "failed"
        t["failures"] += int(float(r.get("failures") or 0))
        t["reclaims"] += int(float(r.get("reclaims") or 0))
        t["cost_usd"] += float(r.get("cost_usd") or 0.0)
    return [out[k] for k in sorted(out)]


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    try:
        f = float(v)
        return f"{f:.6g}" if "." in str(v) else str(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
