"""Sweeps: many runs of one experiment over a grid of ``--set`` values, in parallel.

Each point of the grid is one ordinary run. Runs go to a pool of local worker
processes (or a Ray cluster with ``--backend ray``), and each result lands
in a SQLite file as soon as it finishes, so an interrupted sweep resumes
where it stopped: points already recorded as ``ok`` are not run again.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from labsim.config import parse_value
from labsim.errors import LabsimError, UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    point TEXT PRIMARY KEY,      -- the point's --set assignments, as a JSON list
    seed INTEGER,
    status TEXT NOT NULL,        -- ok | error
    error TEXT,
    summary TEXT                 -- summary.json of the run
)
"""


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["a.b=1,2", "c=x"]`` → ``[("a.b", ["1", "2"]), ("c", ["x"])]``; a value may be a YAML list."""
    grid = []
    for spec in specs:
        if "=" not in spec:
            raise UsageError(f"--grid {spec!r}: expected key=value1,value2,...")
        key, text = spec.split("=", 1)
        parsed = parse_value(text) if text.strip().startswith("[") else None
        values = (
            [json.dumps(v) if not isinstance(v, str) else v for v in parsed]
            if isinstance(parsed, list)
            else [v.strip() for v in text.split(",")]
        )
        if not values or any(v == "" for v in values):
            raise UsageError(f"--grid {spec!r}: empty value")
        grid.append((key.strip(), values))
    return grid


def points(grid: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination of the grid as a list of ``key=value`` assignments."""
    if not grid:
        return [[]]
    keys = [k for k, _ in grid]
    return [
        [f"{k}={v}" for k, v in zip(keys, combo)]
        for combo in itertools.product(*[vals for _, vals in grid])
    ]


def _run_point(path: str, fixed: list[str], point: list[str], seed):
    """Run one point in a worker; returns (status, error, summary)."""
    from labsim.orchestrator import run

    try:
        result = run(path, seed=seed, overrides=[*fixed, *point])
        return "ok", None, result.summary
    except LabsimError as ex:
        return "error", str(ex), None


class SweepStore:
    """The sweep's SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute(SCHEMA)
        self.db.commit()

    def done(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT point FROM runs WHERE status = 'ok'")}

    def record(self, point_key: str, seed, status: str, error, summary) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
            (point_key, seed, status, error, json.dumps(summary) if summary else None),
        )
        self.db.commit()

    def rows(self):
        return list(
            self.db.execute("SELECT point, seed, status, error, summary FROM runs ORDER BY point")
        )


def run_sweep(
    path: str,
    grid_specs: list[str],
    fixed: list[str],
    db_path: Path,
    workers: int = 0,
    seed=None,
    backend: str = "local",
    address: str | None = None,
    on_result=None,
):
    """Run every point not yet in *db_path*; call ``on_result(point, status, error, summary)`` per run."""
    import os

    grid = parse_grid(grid_specs)
    store = SweepStore(db_path)
    todo = [p for p in points(grid) if json.dumps(p) not in store.done()]
    if not todo:
        return store
    if backend == "ray":
        _run_ray(path, fixed, todo, seed, address, store, on_result)
        return store
    workers = workers or min(len(todo), os.cpu_count() or 1)
    if workers <= 1:
        for point in todo:
            status, error, summary = _run_point(path, fixed, point, seed)
            store.record(json.dumps(point), seed, status, error, summary)
            if on_result:
                on_result(point, status, error, summary)
        return store
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_run_point, path, fixed, point, seed): point for point in todo}
        for future in as_completed(futures):
            point = futures[future]
            status, error, summary = future.result()
            store.record(json.dumps(point), seed, status, error, summary)
            if on_result:
                on_result(point, status, error, summary)
    return store


def _run_ray(path, fixed, todo, seed, address, store, on_result):
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install -e 'core[ray]' "
                         "in a labsim checkout, or pip install ray") from None
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(_run_point)
    pending = {remote.remote(path, fixed, point, seed): point for point in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            point = pending.pop(ref)
            status, error, summary = ray.get(ref)
            store.record(json.dumps(point), seed, status, error, summary)
            if on_result:
                on_result(point, status, error, summary)
