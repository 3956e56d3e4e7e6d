"""``labsim jobs RUN_DIR``: the jobs of a finished cluster run, filtered, as a table, CSV or JSON.

Reads ``run.sqlite`` (the ``sqlite`` metric sink) when the run has one, else ``jobs.csv``
(``attempts.csv`` with ``--attempts``: one row per time a job ran, and how it ended).

    labsim jobs runs/philly --status failed --user alice --format json
    labsim jobs runs/philly --attempts --job j42
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import click
from labsim.errors import UsageError

FIELDS = ("policy", "job_id", "user", "group", "gpus", "arrival_s", "start_s", "end_s", "jct_s", "queue_s",
          "preemptions", "failures", "reclaims", "cost_usd", "status")


ATTEMPT_FIELDS = ("policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                  "failure", "lost_gpu_s", "cost_usd")
TEXT = ("job_id", "user", "group", "status", "policy", "outcome", "nodes", "failure")
BY_FIELDS = ("policy", "jobs", "completed", "failed", "failures", "reclaims", "cost_usd")


def load_jobs(run_dir: Path, where: dict, table: str = "jobs") -> list[dict]:
    """The rows of *table* (``jobs`` or ``attempts``) of *run_dir* matching every
    ``column: value`` of *where*."""
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
        raise UsageError(f"RUN_DIR: {run_dir} has neither run.sqlite nor {table}.csv (run a cluster "
                         "experiment with --out there first)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]


@click.command("jobs")
@click.argument("run_dir", type=click.Path(file_okay=False))
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
def jobs_command(run_dir, status, user, policy, job_id, attempts, failure, by, fmt):
    """The jobs of a finished cluster run: when each arrived, started, ended, waited, failed
    and cost (with --attempts, each time it ran; with --by, totals per user or project)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"RUN_DIR: no folder {run_dir}")
    if attempts and (status or user or by):
        raise UsageError("--status, --user and --by select jobs; with --attempts use --policy, --job and --failure")
    if failure and not attempts:
        raise UsageError("--failure selects attempts: add --attempts")
    where = {k: v for k, v in (("status", status), ("user", user), ("policy", policy), ("job_id", job_id),
                               ("failure", failure)) if v}
    table, fields = ("attempts", ATTEMPT_FIELDS) if attempts else ("jobs", FIELDS)
    rows = load_jobs(run, where, table)
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
