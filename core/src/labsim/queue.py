"""A shared simulation queue with priorities: ``labsim submit`` adds runs, ``labsim serve`` runs them.

    labsim submit examples/quickstart.yaml --grid workload.client_profiles[0].request_rate=4,8 \\
        --priority high --db queue.sqlite
    labsim serve --db queue.sqlite [--workers 7] [--once] [--http 127.0.0.1:8000]
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

Each submission — a ``labsim submit`` or an HTTP ``POST /submissions`` (:mod:`labsim.service`)
— is recorded with the keys of its points, so its progress can be asked for later; a run is
known by its key. With *outputs* (``labsim serve --outputs DIR``, the default under ``--http``)
each run also writes its ordinary outputs (summary.json, CSVs) to ``DIR/KEY``, from which
``labsim report`` draws its page.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from labsim.errors import UsageError
from labsim.sweep import SweepStore, parse_grid, points, resolve_points, run_key

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

SUBMISSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,        -- the experiment file, or the name an HTTP submission gave
    priority INTEGER NOT NULL,   -- 0 high, 1 normal, 2 background
    seed TEXT,
    grid TEXT NOT NULL,          -- the --grid specs, as a JSON list
    overrides TEXT NOT NULL,     -- the --set assignments, as a JSON list
    submitted_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS submission_runs (
    submission INTEGER NOT NULL, -- submissions.id
    position INTEGER NOT NULL,   -- the point's place in the grid
    key TEXT NOT NULL,           -- the run's key (runs.key, queue.key)
    point TEXT NOT NULL,         -- the point's --set assignments, as a JSON list
    queued INTEGER NOT NULL,     -- 1: queued by this submission; 0: already done or queued
    PRIMARY KEY (submission, position)
);
"""

#: what a run's state may be: waiting, being run, finished well, finished with an error
STATES = ("queued", "running", "done", "failed")


@dataclass
class Submission:
    """What one submission queued: its id, and ``(key, point, queued)`` per point of its grid."""

    id: int
    priority: str
    runs: list[tuple[str, list[str], bool]] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(q for _, _, q in self.runs)

    @property
    def skipped(self) -> int:
        return len(self.runs) - self.queued


class Queue:
    """The queue tables of a sweep-style SQLite file (its ``runs`` table holds the results)."""

    def __init__(self, path: Path, outputs: Path | None = None):
        self.outputs = None if outputs is None else Path(outputs)   # where runs write their files
        self.store = SweepStore(path)        # checks the file and makes the runs table
        self.db = self.store.db
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute(QUEUE_SCHEMA)
        self.db.executescript(SUBMISSIONS_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def submit(self, experiment, grid_specs: list[str], fixed: list[str], seed, priority: str,
               base_dir: Path | None = None) -> Submission:
        """Queue every point of the grid not already done or queued, as one submission.

        *experiment* is a file path or a loaded :class:`labsim.config.Experiment` (an HTTP body);
        every point is resolved — validated, defaults filled — before anything is queued, so a
        bad point queues nothing and raises its :class:`~labsim.errors.LabsimError`.
        """
        if priority not in PRIORITIES:
            raise UsageError(f"priority {priority!r}: allowed: {', '.join(PRIORITIES)}")
        if seed is not None and not (isinstance(seed, int) and 0 <= seed <= 2**63 - 1):
            raise UsageError(f"seed {seed!r}: allowed: an integer from 0 to 2**63 - 1")
        resolved = [(run_key(orchestrator), point, orchestrator)
                    for point, orchestrator in resolve_points(experiment, fixed, points(parse_grid(grid_specs)), seed)]
        done = self.store.done()
        waiting = {r[0] for r in self.db.execute("SELECT key FROM queue WHERE state IN ('queued', 'running')")}
        now = time.time()
        source = str(getattr(experiment, "source", experiment))
        cursor = self.db.execute(
            "INSERT INTO submissions (source, priority, seed, grid, overrides, submitted_s) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (source, PRIORITIES[priority], None if seed is None else str(seed), json.dumps(list(grid_specs)),
             json.dumps(list(fixed)), now))
        submission = Submission(cursor.lastrowid, priority)
        for position, (key, point, orchestrator) in enumerate(resolved):
            fresh = key not in done and key not in waiting
            if fresh:
                exp = orchestrator.exp
                self.db.execute(
                    "INSERT INTO queue (key, priority, point, seed, experiment, source, base_dir, state, "
                    "submitted_s) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (key, PRIORITIES[priority], json.dumps(point), None if seed is None else str(seed),
                     json.dumps(orchestrator.data, default=str), str(exp.source),
                     str(exp.base_dir or base_dir or Path.cwd()), now))
                waiting.add(key)
            self.db.execute("INSERT INTO submission_runs VALUES (?, ?, ?, ?, ?)",
                            (submission.id, position, key, json.dumps(point), int(fresh)))
            submission.runs.append((key, point, fresh))
        self.db.commit()
        return submission

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
        out_dir = None if self.outputs is None else str(self.outputs / key)
        return (entry_id, key, seed), json.loads(point), _run_entry, (experiment, source, base_dir, seed, out_dir)

    def finish(self, ident, point, status: str, error, summary) -> None:
        entry_id, key, seed = ident
        self.store.record(key, point, seed, status, error, summary)
        self.db.execute("UPDATE queue SET state = ?, finished_s = ? WHERE id = ?",
                        ("done" if status == "ok" else "failed", time.time(), entry_id))
        self.db.commit()

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM queue GROUP BY state").fetchall())

    # -- what the service reports ----------------------------------------------------------------

    def runs(self, keys: list[str] | None = None) -> list[dict]:
        """Every run this file knows (queued, running or recorded), or those of *keys*, as
        dicts: ``run`` (its key), ``state``, ``point``, ``seed``, ``source``, ``priority``, the
        times, ``error`` and whether its result and its outputs folder are there; oldest first."""
        latest = {}
        for row in self.db.execute(
                "SELECT q.key, q.state, q.point, q.seed, q.source, q.priority, q.submitted_s, q.started_s, "
                "q.finished_s FROM queue q JOIN (SELECT key, MAX(id) AS id FROM queue GROUP BY key) l "
                "ON q.id = l.id ORDER BY q.id"):
            latest[row[0]] = row
        recorded = {r[0]: r for r in self.db.execute("SELECT key, point, seed, status, error FROM runs")}
        names = {v: k for k, v in PRIORITIES.items()}
        out = []
        for key in (keys if keys is not None else list(dict.fromkeys([*latest, *recorded]))):
            entry, result = latest.get(key), recorded.get(key)
            if entry is None and result is None:
                continue
            if entry is not None and (entry[1] in ("queued", "running") or result is None):
                state = entry[1]
            else:
                state = "done" if result[3] == "ok" else "failed"
            out.append({
                "run": key,
                "state": state,
                "point": json.loads(entry[2] if entry else result[1]),
                "seed": entry[3] if entry else result[2],
                "source": entry[4] if entry else None,
                "priority": names.get(entry[5]) if entry else None,
                "submitted_s": entry[6] if entry else None,
                "started_s": entry[7] if entry else None,
                "finished_s": entry[8] if entry else None,
                "error": result[4] if result is not None and state == "failed" else None,
                "has_summary": result is not None and result[3] == "ok",
                "has_outputs": self.outputs is not None and (self.outputs / key / "summary.json").is_file(),
            })
        return out

    def summary(self, key: str) -> dict | None:
        """The recorded summary of run *key*, or None when it has none (yet)."""
        row = self.db.execute("SELECT summary FROM runs WHERE key = ? AND status = 'ok'", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def find(self, prefix: str) -> str | None:
        """The key of the one run whose key starts with *prefix* (at least 8 characters)."""
        if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        keys = {r[0] for r in self.db.execute(
            "SELECT key FROM queue WHERE substr(key, 1, ?) = ? UNION SELECT key FROM runs WHERE substr(key, 1, ?) = ?",
            (len(prefix), prefix, len(prefix), prefix))}
        return keys.pop() if len(keys) == 1 else None

    def submission(self, submission_id: int) -> dict | None:
        """A submission with its runs and the count of runs in each state, or None."""
        row = self.db.execute("SELECT id, source, priority, seed, grid, overrides, submitted_s FROM submissions "
                              "WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            return None
        members = self.db.execute("SELECT key, point, queued FROM submission_runs WHERE submission = ? "
                                  "ORDER BY position", (submission_id,)).fetchall()
        by_key = {r["run"]: r for r in self.runs(list(dict.fromkeys(k for k, _, _ in members)))}
        runs = []
        for key, point, queued in members:
            run = dict(by_key.get(key) or {"run": key, "state": "unknown"})
            run["point"] = json.loads(point)
            run["queued_by_this"] = bool(queued)
            runs.append(run)
        counts = {state: sum(r["state"] == state for r in runs) for state in STATES}
        names = {v: k for k, v in PRIORITIES.items()}
        return {
            "submission": row[0], "source": row[1], "priority": names.get(row[2]), "seed": row[3],
            "grid": json.loads(row[4]), "set": json.loads(row[5]), "submitted_s": row[6],
            "finished": counts["queued"] + counts["running"] == 0, "counts": counts, "runs": runs,
        }

    def submissions(self) -> list[dict]:
        """Every submission, newest first, with the count of its runs in each state."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM submissions ORDER BY id DESC")]
        out = []
        for submission_id in ids:
            entry = self.submission(submission_id)
            entry.pop("runs")
            out.append(entry)
        return out


def _run_entry(experiment: str, source: str, base_dir: str, seed, out_dir: str | None = None):
    """Run one queued experiment in a worker; ``(status, error, summary)``, never raises.
    With *out_dir* the run also writes its outputs (summary.json, CSVs) there."""
    from labsim.errors import LabsimError
    from labsim.orchestrator import summarize

    try:
        if out_dir is None:
            summary = summarize(json.loads(experiment), source, Path(base_dir),
                                None if seed is None else int(seed))
        else:
            summary = _run_to(json.loads(experiment), source, Path(base_dir),
                              None if seed is None else int(seed), Path(out_dir))
        return "ok", None, summary
    except LabsimError as ex:
        return "error", str(ex), None
    except Exception as ex:  # noqa: BLE001 - one broken run must not end the server
        from labsim.cli import internal_error_message

        return "error", internal_error_message(ex), None


def _run_to(data: dict, source: str, base_dir: Path, seed, out_dir: Path) -> dict:
    """Run experiment *data* writing its outputs to *out_dir* (as ``labsim run --out``); its summary."""
    from labsim import config as config_mod
    from labsim.default_plugins.sinks import MemorySink
    from labsim.orchestrator import Orchestrator

    exp = config_mod.from_dict(data, source)
    exp.base_dir = base_dir
    return Orchestrator(exp, seed=seed).run(out_dir, write_files=True, extra_sinks=[MemorySink()]).summary


def serve(path: Path, workers: int, once: bool, timeout_s=None, memory_mb=None, on_result=None,
          outputs: Path | None = None) -> dict:
    """Run the queue's entries until it is empty (*once*) or forever; the final counts.
    With *outputs*, each run writes its files to ``outputs/KEY``."""
    from labsim.parallel import default_workers
    from labsim.sweep import run_isolated

    queue = Queue(path, outputs)
    queue.recover()
    workers = workers or default_workers()

    def finish(ident, point, status, error, summary):
        queue.finish(ident, point, status, error, summary)
        if on_result:
            on_result(point, status, error)

    run_isolated(queue.take, workers, finish, timeout_s, memory_mb, poll_s=None if once else 0.5)
    return queue.counts()


__all__ = ["PRIORITIES", "STATES", "Queue", "Submission", "serve"]
