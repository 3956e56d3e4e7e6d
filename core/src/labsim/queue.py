"""A shared simulation queue with priorities: ``labsim submit`` adds runs, ``labsim serve`` runs them.

    labsim submit examples/quickstart.yaml --grid workload.client_profiles[0].request_rate=4,8 \\
        --priority high --db queue.sqlite
    labsim serve --db queue.sqlite [--workers 7] [--once]
    labsim results queue.sqlite

The queue is one SQLite file (WAL: submitters and the server write it at once). A submission
stores each point's **resolved experiment** (the file after its overrides, defaults filled), so
editing the file later does not change what runs, with its key (:func:`labsim.sweep.run_key`:
a point whose result is already there, or already queued, is not queued again). The server
takes the queued runs highest priority first (``high``, ``normal``, ``background``), oldest
first within one, each in a process of its own on N − 1 workers: a crash, a timeout or a memory
limit fails that run with its reason and the others go on. Each result lands in the ``runs``
table of the same file as it ends, so ``labsim results`` and ``labsim report`` read it like a
sweep's. A server that is killed leaves its running entries to be run again by the next one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from labsim.errors import UsageError
from labsim.sweep import SweepStore, parse_grid, points, resolve_point, run_key

PRIORITIES = {"high": 0, "normal": 1, "background": 2}

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,           -- the run's key (resolved experiment, seed, plugin versions)
    priority INTEGER NOT NULL,   -- 0 high, 1 normal, 2 background
    point TEXT NOT NULL,         -- the --set assignments of the point, as a JSON list
    seed TEXT,
    experiment TEXT NOT NULL,    -- the resolved experiment, JSON
    source TEXT NOT NULL,        -- the experiment file it came from (for messages)
    base_dir TEXT NOT NULL,      -- the folder its relative paths (traces, profiles) resolve in
    state TEXT NOT NULL,         -- queued | running | done | failed
    submitted_s REAL NOT NULL,
    started_s REAL,
    finished_s REAL
)
"""


class Queue:
    """The queue tables of a sweep-style SQLite file (its ``runs`` table holds the results)."""

    def __init__(self, path: Path):
        self.store = SweepStore(path)        # checks the file and makes the runs table
        self.db = self.store.db
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute(QUEUE_SCHEMA)
        self.db.commit()

    def submit(self, path: str, grid_specs: list[str], fixed: list[str], seed, priority: str) -> tuple[int, int]:
        """Queue every point of the grid not already done or queued; ``(queued, skipped)``."""
        if priority not in PRIORITIES:
            raise UsageError(f"--priority {priority!r}; allowed: {', '.join(PRIORITIES)}")
        done = self.store.done()
        waiting = {r[0] for r in self.db.execute("SELECT key FROM queue WHERE state IN ('queued', 'running')")}
        queued = skipped = 0
        for point in points(parse_grid(grid_specs)):
            orchestrator = resolve_point(path, fixed, point, seed)
            key = run_key(orchestrator)
            if key in done or key in waiting:
                skipped += 1
                continue
            exp = orchestrator.exp
            self.db.execute(
                "INSERT INTO queue (key, priority, point, seed, experiment, source, base_dir, state, submitted_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                (key, PRIORITIES[priority], json.dumps(point), None if seed is None else str(seed),
                 json.dumps(orchestrator.data, default=str), str(exp.source), str(exp.base_dir or Path.cwd()),
                 time.time()))
            waiting.add(key)
            queued += 1
        self.db.commit()
        return queued, skipped

    def recover(self) -> int:
        """Entries a killed server left running go back to the queue; how many."""
        n = self.db.execute("UPDATE queue SET state = 'queued', started_s = NULL WHERE state = 'running'").rowcount
        self.db.commit()
        return n

    def take(self):
        """The next queued entry (highest priority, then oldest), marked running; or None."""
        row = self.db.execute("SELECT id, key, point, seed, experiment, source, base_dir FROM queue "
                              "WHERE state = 'queued' ORDER BY priority, id LIMIT 1").fetchone()
        if row is None:
            return None
        self.db.execute("UPDATE queue SET state = 'running', started_s = ? WHERE id = ?", (time.time(), row[0]))
        self.db.commit()
        entry_id, key, point, seed, experiment, source, base_dir = row
        return (entry_id, key, seed), json.loads(point), _run_entry, (experiment, source, base_dir, seed)

    def finish(self, ident, point, status: str, error, summary) -> None:
        entry_id, key, seed = ident
        self.store.record(key, point, seed, status, error, summary)
        self.db.execute("UPDATE queue SET state = ?, finished_s = ? WHERE id = ?",
                        ("done" if status == "ok" else "failed", time.time(), entry_id))
        self.db.commit()

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM queue GROUP BY state").fetchall())


def _run_entry(experiment: str, source: str, base_dir: str, seed):
    """Run one queued experiment in a worker; ``(status, error, summary)``, never raises."""
    from labsim.errors import LabsimError
    from labsim.orchestrator import summarize

    try:
        summary = summarize(json.loads(experiment), source, Path(base_dir),
                            None if seed is None else int(seed))
        return "ok", None, summary
    except LabsimError as ex:
        return "error", str(ex), None
    except Exception as ex:  # noqa: BLE001 - one broken run must not end the server
        from labsim.cli import internal_error_message

        return "error", internal_error_message(ex), None


def serve(path: Path, workers: int, once: bool, timeout_s=None, memory_mb=None, on_result=None) -> dict:
    """Run the queue's entries until it is empty (*once*) or forever; the final counts."""
    from labsim.parallel import default_workers
    from labsim.sweep import run_isolated

    queue = Queue(path)
    queue.recover()
    workers = workers or default_workers()

    def finish(ident, point, status, error, summary):
        queue.finish(ident, point, status, error, summary)
        if on_result:
            on_result(point, status, error)

    run_isolated(queue.take, workers, finish, timeout_s, memory_mb, poll_s=None if once else 0.5)
    return queue.counts()


__all__ = ["PRIORITIES", "Queue", "serve"]
