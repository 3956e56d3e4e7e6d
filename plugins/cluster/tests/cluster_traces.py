"""What the cluster tests share: a job trace written from rows, and a run's jobs by id."""

from __future__ import annotations


def write_trace(tmp_path, rows, header: str) -> str:
    """*rows* (tuples, one cell each column of *header*) as ``tmp_path/jobs.csv``; its path."""
    path = tmp_path / "jobs.csv"
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def jobs_of(result, policy: str = "fifo") -> dict:
    """The ``jobs`` rows of *policy* in *result*, by job id."""
    return {r["job_id"]: r for r in result.table("jobs") if r["policy"] == policy}
