"""``labsim jobs RUN_DIR``: the jobs of a finished cluster run, filtered, as a table, CSV or JSON.

Reads ``run.sqlite`` (the ``sqlite`` metric sink) when the run has one, else ``jobs.csv``.

    labsim jobs runs/philly --status failed --user alice --format json
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


def load_jobs(run_dir: Path, where: dict) -> list[dict]:
    """The jobs rows of *run_dir* matching every ``column: value`` of *where*."""
    db = run_dir / "run.sqlite"
    if db.is_file():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "jobs" not in names:
                raise UsageError(f"RUN_DIR: {db} has no jobs table (not a cluster run); it has "
                                 f"{', '.join(sorted(names - {'labsim_meta'})) or 'no tables'}")
            clause = " AND ".join(f'"{k}" = ?' for k in where)
            sql = 'SELECT * FROM "jobs"' + (f" WHERE {clause}" if clause else "")
            return [dict(r) for r in con.execute(sql, [str(v) if k in ("job_id", "user", "group", "status",
                                                                        "policy") else v
                                                        for k, v in where.items()])]
        finally:
            con.close()
    path = run_dir / "jobs.csv"
    if not path.is_file():
        raise UsageError(f"RUN_DIR: {run_dir} has neither run.sqlite nor jobs.csv (run a cluster "
                         "experiment with --out there first)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]


@click.command("jobs")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--status", type=click.Choice(["completed", "failed"]), help="Only jobs that ended so.")
@click.option("--user", help="Only this user's jobs.")
@click.option("--policy", help="Only the jobs of this framework (scheduling policy).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def jobs_command(run_dir, status, user, policy, fmt):
    """The jobs of a finished cluster run: when each arrived, started, ended, waited, failed."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"RUN_DIR: no folder {run_dir}")
    where = {k: v for k, v in (("status", status), ("user", user), ("policy", policy)) if v}
    rows = load_jobs(run, where)
    cols = [c for c in FIELDS if rows and c in rows[0]]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo("  ".join(f"{c:>10}" for c in cols))
        for r in rows:
            click.echo("  ".join(f"{_cell(r.get(c)):>10}" for c in cols))
        click.echo(f"{len(rows)} job(s)")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    try:
        f = float(v)
        return f"{f:.6g}" if "." in str(v) else str(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
