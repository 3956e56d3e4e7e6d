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
          "preemptions", "failures", "status")


ATTEMPT_FIELDS = ("policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                  "lost_gpu_s")
TEXT = ("job_id", "user", "group", "status", "policy", "outcome", "nodes")


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
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def jobs_command(run_dir, status, user, policy, job_id, attempts, fmt):
    """The jobs of a finished cluster run: when each arrived, started, ended, waited, failed
    (with --attempts, each time it ran)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"RUN_DIR: no folder {run_dir}")
    if attempts and (status or user):
        raise UsageError("--status and --user select jobs; with --attempts use --policy and --job")
    where = {k: v for k, v in (("status", status), ("user", user), ("policy", policy), ("job_id", job_id))
             if v}
    table, fields = ("attempts", ATTEMPT_FIELDS) if attempts else ("jobs", FIELDS)
    rows = load_jobs(run, where, table)
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
        click.echo(f"{len(rows)} {'attempt' if attempts else 'job'}(s)")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    try:
        f = float(v)
        return f"{f:.6g}" if "." in str(v) else str(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
