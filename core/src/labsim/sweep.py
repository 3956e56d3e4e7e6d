"""Sweeps: many runs of one experiment over a grid of ``--set`` values, in parallel.

Each point of the grid is one ordinary run. Runs go to a pool of local worker
processes (or a Ray cluster with ``--backend ray``), and each result lands
in a SQLite file as soon as it finishes, so an interrupted sweep resumes
where it stopped: points already recorded as ``ok`` are not run again.

A point is recorded under a key over everything its result depends on (see
:func:`run_key`), so editing the experiment or sharing the database between
experiments re-runs what changed. A point that fails — bad input or an internal
error — is recorded with its reason and the sweep goes on. Workers exit when the
main process dies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from labsim.config import parse_value
from labsim.errors import LabsimError, UsageError
from labsim.numeric_threads import BLAS_THREAD_VARIABLES, single_threaded_blas

#: the columns of the ``runs`` table, in order
COLUMNS = ("key", "point", "seed", "status", "error", "summary")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,        -- hash of the resolved experiment, seed and plugin versions
    point TEXT NOT NULL,         -- the point's --set assignments, as a JSON list
    seed TEXT,                   -- the seed the point ran with (text: any size)
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


def resolve_point(path, fixed: list[str], point: list[str], seed, registry=None, schema=None):
    """The :class:`~labsim.orchestrator.Orchestrator` of one point: its experiment validated,
    defaults filled (``.data``); a bad point raises here, before anything runs. *path* is the
    experiment's file or its loaded :class:`~labsim.config.Experiment` (copied, not changed)."""
    from labsim.orchestrator import Orchestrator, load_experiment

    return Orchestrator(load_experiment(path, [*fixed, *point]), registry, seed, schema)


def resolve_points(path, fixed: list[str], grid_points: list[list[str]], seed, registry=None):
    """:func:`resolve_point` of each point, the file read and the schema composed once for all."""
    from labsim import orchestrator as orchestrator_mod
    from labsim.config import Experiment
    from labsim.schema import compose_experiment_schema

    registry = registry or orchestrator_mod.get_registry()
    load_experiment = orchestrator_mod.load_experiment
    base = path if isinstance(path, Experiment) else load_experiment(path)
    schema = compose_experiment_schema(registry)
    for point in grid_points:
        yield point, resolve_point(base, fixed, point, seed, registry, schema)


def run_key(orchestrator) -> str:
    """What a resolved point's result depends on: its experiment (file content after every
    override, defaults filled), the seed, the model database's content and the plugin versions.

    Editing the file, pointing another experiment at the same database, or upgrading a plugin
    changes the key, so a stale result is never returned for it.
    """
    data = orchestrator.data
    extra = {}
    db = data.get("model_characteristics_db_path")
    if isinstance(db, str):
        try:
            extra["model_db"] = hashlib.sha256(
                orchestrator.exp.resolve_path(db).read_bytes()
            ).hexdigest()
        except OSError:
            pass
    text = json.dumps(
        {
            "experiment": data,
            "seed": str(orchestrator.seed),
            "plugins": orchestrator._plugin_versions(),
            **extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _run_point(orchestrator):
    """Run one resolved point (in a worker forked from the sweep, which resolved it); returns
    (status, error, summary). Never raises: an internal error fails this point only, with its
    reason."""
    from labsim.default_plugins.sinks import MemorySink

    try:
        result = orchestrator.run(None, write_files=False, extra_sinks=[MemorySink()])
        return "ok", None, result.summary
    except LabsimError as ex:
        return "error", str(ex), None
    except Exception as ex:  # noqa: BLE001 - one broken point must not end the sweep
        from labsim.cli import internal_error_message

        return "error", internal_error_message(ex), None


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as the sweep's main process is gone (even SIGKILLed)."""
    import threading
    import time

    try:  # Linux: the kernel kills us with the parent
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the thread below does it
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="labsim-parent-watch").start()


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: the store, points of this grid done, failed now, and total."""

    store: "SweepStore"
    ok: int
    failed: int
    total: int


class SweepStore:
    """The sweep's SQLite file: one row per point key."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path)
            tables = [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if "runs" in tables:
                columns = tuple(r[1] for r in self.db.execute("PRAGMA table_info(runs)"))
                if columns != COLUMNS:
                    raise UsageError(
                        f"--db {path}: its `runs` table has columns {', '.join(columns)}, not a "
                        "sweep database of this labsim (an older one keyed results without the "
                        "experiment's content); give a new --db file"
                    )
            elif tables:
                raise UsageError(
                    f"--db {path}: an SQLite database of something else (tables "
                    f"{', '.join(sorted(tables))}); give a new --db file"
                )
            self.db.execute(SCHEMA)
            self.db.commit()
        except sqlite3.DatabaseError as ex:
            raise UsageError(f"--db {path}: not a sweep database ({ex})") from None
        except OSError as ex:
            raise UsageError(f"--db {path}: {ex.strerror or ex}") from None

    def done(self) -> set[str]:
        """Keys of the points already finished successfully."""
        return {row[0] for row in self.db.execute("SELECT key FROM runs WHERE status = 'ok'")}

    def record(self, key: str, point, seed, status: str, error, summary) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                json.dumps(point),
                None if seed is None else str(seed),
                status,
                error,
                json.dumps(summary) if summary else None,
            ),
        )
        self.db.commit()

    def rows(self):
        """(point, seed, status, error, summary) of every recorded point."""
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
    registry=None,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    on_plan=None,
    on_running=None,
    ray_cpus: float = 1.0,
    ray_memory_mb: int | None = None,
):
    """Run every point not yet in *db_path*; call ``on_result(point, status, error, summary)``
    per run, ``on_plan(already_done)`` once the grid is resolved (how many of its points the
    database holds already) and ``on_running(n)`` whenever the number of points running changes.
    *ray_cpus* and *ray_memory_mb* are what Ray reserves for each run (``--backend ray``).

    :raises LabsimError: when a point's experiment is invalid (before anything runs).
    """
    if seed is not None and not 0 <= int(seed) <= 2**63 - 1:
        raise UsageError(f"--seed {seed}: must be between 0 and 2**63 - 1")
    grid = parse_grid(grid_specs)
    store = SweepStore(db_path)
    done = store.done()
    todo = []
    failed = 0

    def finish(key, point, status, error, summary):
        nonlocal failed
        failed += status != "ok"
        store.record(key, point, seed, status, error, summary)
        if on_result:
            on_result(point, status, error, summary)

    keys = []
    resolved = {}          # each point to run, resolved: run (or shipped to Ray) as it is
    for point, orchestrator in resolve_points(path, fixed, points(grid), seed, registry):
        keys.append(run_key(orchestrator))      # a point with bad input fails the sweep here
        if keys[-1] not in done and keys[-1] not in resolved:   # (two points may be one run)
            todo.append((keys[-1], point))
            resolved[keys[-1]] = orchestrator

    def outcome() -> SweepOutcome:
        finished = store.done()
        return SweepOutcome(store, sum(k in finished for k in keys), failed, len(keys))

    if on_plan:
        on_plan(len(keys) - len(todo))
    if not todo:
        return outcome()
    if backend == "ray":
        _run_ray(path, fixed, todo, seed, address, finish, cpus=ray_cpus, memory_mb=ray_memory_mb,
                 resolved=resolved, on_running=on_running)
        return outcome()
    from labsim.parallel import default_workers

    workers = workers or default_workers(len(todo))
    if workers <= 1 and timeout_s is None and memory_mb is None:
        for key, point in todo:
            if on_running:
                on_running(1)
            finish(key, point, *_run_point(resolved.pop(key)))
        if on_running:
            on_running(0)
        return outcome()
    _run_isolated(todo, resolved, workers, finish, timeout_s, memory_mb, on_running)
    return outcome()


def _point_process(conn, parent, fn, args, memory_mb):
    """A worker process of one run: ``fn(*args)`` and send its (status, error, summary) back."""
    _watch_parent(parent)
    if memory_mb:
        import resource

        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = fn(*args)
    except MemoryError:
        result = ("error", f"out of memory: the run needed more than --memory-limit-mb {memory_mb}", None)
    try:
        conn.send(result)
    except MemoryError:
        conn.send(("error", f"out of memory: the run needed more than --memory-limit-mb {memory_mb}", None))
    conn.close()
    for stream in (sys.stdout, sys.stderr):   # the result is sent: skip the interpreter's teardown
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream has nothing to lose
            pass
    os._exit(0)


def _run_isolated(todo, resolved, workers, finish, timeout_s=None, memory_mb=None, on_running=None):
    """The sweep's points, each in a process of its own (see :func:`run_isolated`): a worker is
    forked from this process, so it starts with its point resolved and its plugins loaded."""
    queue = list(todo)

    def take():
        if not queue:
            return None
        key, point = queue.pop(0)
        return key, point, _run_point, (resolved.pop(key),)

    run_isolated(take, workers, finish, timeout_s, memory_mb, on_running=on_running)


def run_isolated(take, workers, finish, timeout_s=None, memory_mb=None, poll_s=None, on_running=None):
    """Runs, each in a process of its own, *workers* at a time: a crash, a segfault, a memory
    limit or a timeout fails that run with the reason, and the others go on.

    :param take: called whenever a worker is free: the next ``(key, point, fn, args)`` to run
        (``fn(*args)`` returns ``(status, error, summary)``), or None when there is none now.
    :param finish: ``finish(key, point, status, error, summary)`` as each run ends.
    :param poll_s: with nothing to run and nothing running, ask *take* again after this many
        seconds instead of returning (a server waiting for submissions).
    :param on_running: ``on_running(n)`` whenever the number of runs in progress changes.
    """
    import gc
    import multiprocessing as mp
    import time
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    # a forked worker's garbage collector would walk (and so copy, page by page) every object
    # it inherited; frozen, they are left alone (gc.freeze's documented use before fork)
    gc.collect()
    gc.freeze()
    running: dict = {}  # connection → (process, key, point, started)
    parent = os.getpid()
    exhausted = False
    shown = [0]

    def count():
        if on_running and len(running) != shown[0]:
            shown[0] = len(running)
            on_running(shown[0])

    try:
        while True:
            while len(running) < workers:
                job = take()
                if job is None:
                    exhausted = True
                    break
                exhausted = False
                key, point, fn, args = job
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_point_process, args=(send, parent, fn, args, memory_mb), daemon=True)
                proc.start()
                send.close()
                running[recv] = (proc, key, point, time.monotonic())
            count()
            if not running:
                if exhausted and poll_s is None:
                    return
                time.sleep(poll_s or 0.0)
                continue
            budget = poll_s if exhausted and poll_s is not None else None
            if timeout_s is not None:
                left = max(0.0, min(started + timeout_s for _, _, _, started in running.values()) - time.monotonic())
                budget = left if budget is None else min(budget, left)
            ready = wait(list(running), timeout=budget)
            now = time.monotonic()
            for conn in ready:
                proc, key, point, _ = running.pop(conn)
                try:
                    result = conn.recv()
                except (EOFError, OSError):
                    proc.join(5)
                    code = proc.exitcode
                    why = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}")
                    result = ("error", f"worker died ({why}) before reporting: a crash or the memory limit", None)
                conn.close()
                proc.join(5)
                count()
                finish(key, point, *result)
            if timeout_s is not None:
                for conn, (proc, key, point, started) in list(running.items()):
                    if now - started >= timeout_s:
                        proc.kill()
                        proc.join(5)
                        conn.close()
                        running.pop(conn)
                        count()
                        finish(key, point, "error", f"timed out after --timeout {timeout_s:g} s", None)
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, keep what finished
        for proc, *_ in running.values():
            proc.kill()
        raise
    finally:
        gc.unfreeze()


def ray_runs(path, fixed, todo, seed, resolved=None):
    """What a Ray sweep ships: ``(runtime_env, [(key, point, experiment JSON, source)])``;
    *resolved*: the points' orchestrators by key when the caller has them already.

    Each point travels as its resolved experiment (the file after its overrides, defaults
    filled), not as a path; the experiment's folder travels as the job's runtime environment
    (``working_dir``), so the files it names by relative path (traces, model database, profiles)
    are there on every node, where the run resolves them, with numpy's BLAS on one thread as
    the command line runs it (each run holds one CPU: :mod:`labsim.numeric_threads`; a count
    the user set travels instead). (A process that already called ``ray.init`` keeps its own
    runtime environment: Ray uploads folders only per job.)
    """
    runs = []
    folder = None
    for key, point in todo:
        orchestrator = (resolved or {}).get(key) or resolve_point(path, fixed, point, seed)
        folder = folder or Path(orchestrator.exp.base_dir or Path(path).resolve().parent)
        runs.append((key, point, json.dumps(orchestrator.data, default=str), str(path)))
    blas = {name: os.environ[name] for name in BLAS_THREAD_VARIABLES if name in os.environ}
    single_threaded_blas(blas)
    return {"working_dir": str(folder), "env_vars": blas}, runs


def ray_options(cpus: float = 1.0, memory_mb: int | None = None) -> dict:
    """What Ray reserves for each run (``ray.remote(...).options``): *cpus* logical CPUs and,
    when given, *memory_mb* MiB of memory; Ray places a run only on a node with both free."""
    options = {"num_cpus": float(cpus)}
    if memory_mb:
        options["memory"] = int(memory_mb) << 20
    return options


def _check_fits(nodes: list[dict], cpus: float, memory_mb) -> None:
    """Refuse per-run resources no live node of the cluster has (Ray would wait for one forever)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and (not memory_mb or r.get("memory", 0) >= int(memory_mb) << 20)
               for r in alive):
        most_cpus = max((r.get("CPU", 0) for r in alive), default=0)
        most_mb = max((r.get("memory", 0) for r in alive), default=0) / (1 << 20)
        raise UsageError(
            f"--ray-cpus {cpus:g}" + (f" --ray-memory-mb {memory_mb}" if memory_mb else "")
            + f": no node of the Ray cluster has that much (the largest: {most_cpus:g} CPUs, "
            f"{most_mb:,.0f} MiB of memory for tasks); ask for less per run")


def _run_ray(path, fixed, todo, seed, address, finish, cpus: float = 1.0, memory_mb=None, resolved=None,
             on_running=None):
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install -e 'core[ray]' "
                         "in a labsim checkout, or pip install ray") from None
    from labsim.queue import _run_entry

    runtime_env, runs = ray_runs(path, fixed, todo, seed, resolved)
    started_here = not ray.is_initialized()
    if started_here:   # Ray uploads a local folder only as the job's runtime environment
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    remote = ray.remote(_run_entry).options(**ray_options(cpus, memory_mb))
    try:
        _check_fits(ray.nodes(), cpus, memory_mb)
        # runs at once: as many as the cluster's CPUs hold (the rest wait in Ray's queue)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-9)))
        pending = {remote.remote(experiment, source, ".", seed): (key, point)
                   for key, point, experiment, source in runs}
        while pending:
            if on_running:
                on_running(min(slots, len(pending)))
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                key, point = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as ex:  # noqa: BLE001 - a worker died
                    outcome = ("error", f"worker failed: {type(ex).__name__}: {ex}", None)
                finish(key, point, *outcome)
        if on_running:
            on_running(0)
    finally:
        if started_here:
            ray.shutdown()
