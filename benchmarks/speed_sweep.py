"""What a sweep costs beyond its runs: labsim's scheduling overhead per run, locally and on Ray.

The same grid of short runs (the quickstart cut to ``--sim-s`` simulated seconds, one point per
seed) is run three ways, one run at a time so that the runs' own times add up:

1. in this process, each point's simulation alone, one after another: the runs' own time;
2. ``labsim sweep`` locally, one worker: each point resolved (read, overridden, validated) and
   keyed, forked into a process of its own, its result piped back and committed to SQLite;
3. ``labsim sweep --backend ray`` on a local one-CPU Ray cluster started here (``--ray``):
   each point resolved and keyed, shipped as its resolved experiment, validated again and run
   as a Ray task, its result fetched and committed. Ray's start and its first task (a worker
   process's start) are timed apart.

Overhead per run = (sweep's wall time − the runs' own time) / points. Targets (issue 17): < 50 ms
locally; a 1,000-point sweep of ~1 s runs within 9 minutes on 2 cores (projected here from the
overhead: points × (run + overhead) / workers).

That projection takes the workers to go as fast together as one alone. ``--parallel N``
measures instead: N longer runs (``--parallel-sim-s`` simulated seconds each) simulated one
after another in this process, then swept with the default workers, and the 1,000 runs of
1 s scaled from the sweep's wall time per second of run time, overhead and the workers'
contention for the machine included.

    python benchmarks/speed_sweep.py [--points 40] [--sim-s 2] [--ray] [--parallel 12 [--parallel-sim-s 600]]

Prints the figures on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def experiment(folder: Path, sim_s: float) -> Path:
    """The quickstart cut to *sim_s* simulated seconds of arrivals, as a file in *folder*."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["workload"]["total_duration"] = sim_s
    data["metrics_config"]["warm_up_duration_s"] = 0
    path = folder / "exp.json"
    path.write_text(json.dumps(data))
    return path


def simulations(path: Path, seeds: list[int]) -> float:
    """Seconds the points' simulations alone take one after another in this process: each
    point resolved first (untimed), then run as a sweep's worker runs it (after a warm-up)."""
    from labsim.sweep import _run_point, resolve_points

    points = [[f"simulation.random_seed={seed}"] for seed in [seeds[0] + 10_000, *seeds]]
    resolved = [orchestrator for _, orchestrator in resolve_points(str(path), [], points, None)]
    _run_point(resolved.pop(0))
    began, cpu = time.perf_counter(), cpu_s()
    for orchestrator in resolved:
        status, error, _ = _run_point(orchestrator)
        if status != "ok":
            raise SystemExit(f"speed_sweep: a run failed: {error}")
    return time.perf_counter() - began, cpu_s() - cpu


def cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (the sweep's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def sweep(path: Path, seeds: list[int], db: Path, **options) -> tuple[float, float]:
    """Wall and CPU seconds (this process and its workers) of a sweep over *seeds*; every
    point must succeed."""
    from labsim.sweep import run_sweep

    grid = [f"simulation.random_seed={','.join(str(s) for s in seeds)}"]
    began, cpu = time.perf_counter(), cpu_s()
    outcome = run_sweep(str(path), grid, [], db, **options)
    took = time.perf_counter() - began, cpu_s() - cpu
    if outcome.ok != len(seeds):
        raise SystemExit(f"speed_sweep: only {outcome.ok} of {len(seeds)} points ran")
    return took


def parallel(folder: Path, points: int, sim_s: float) -> None:
    """Print what a sweep of *points* runs of *sim_s* simulated seconds takes on the default
    workers against the same runs one after another, and the 1,000 runs of 1 s it implies."""
    from labsim.parallel import default_workers

    sub = folder / "parallel"
    sub.mkdir()
    path = experiment(sub, sim_s)
    seeds = list(range(101, 101 + points))
    own, _ = simulations(path, seeds)
    workers = default_workers(points)
    wall, _ = sweep(path, seeds, folder / "parallel.sqlite", workers=workers)
    minutes = 1000 * wall / own / 60
    print(f"{points} runs of {sim_s:g} simulated s ({own / points:.2f} s each alone): "
          f"{own:.1f} s one after another, {wall:.1f} s swept on {workers} "
          f"worker{'s' if workers > 1 else ''} ({own / wall:.2f}x); measured 1,000 runs of 1 s: "
          f"{minutes:.1f} min (target < 9 min on 2 cores)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--sim-s", type=float, default=2.0, help="simulated seconds of arrivals per run")
    parser.add_argument("--ray", action="store_true", help="also on a local one-CPU Ray cluster (needs core[ray])")
    parser.add_argument("--parallel", type=int, default=0, metavar="N",
                        help="also sweep N longer runs on the default workers (measured, not projected)")
    parser.add_argument("--parallel-sim-s", type=float, default=600.0,
                        help="simulated seconds of arrivals per run of --parallel (600: about 1 s of CPU)")
    args = parser.parse_args(argv)
    from labsim.parallel import default_workers

    seeds = list(range(1, args.points + 1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = experiment(folder, args.sim_s)
        own, own_cpu = simulations(path, seeds)
        n = len(seeds)
        print(f"{n} runs of {args.sim_s:g} simulated s: {own / n * 1e3:.1f} ms each simulating alone "
              f"({own_cpu / n * 1e3:.1f} ms CPU)")
        # one worker, each point in a process of its own (a timeout selects the isolated runner)
        local, local_cpu = sweep(path, seeds, folder / "local.sqlite", workers=1, timeout_s=3600)
        local_overhead = (local - own) / n
        print(f"local sweep, 1 worker: {local / n * 1e3:.1f} ms per point; overhead "
              f"{local_overhead * 1e3:.1f} ms per run, {(local_cpu - own_cpu) / n * 1e3:.1f} ms of CPU "
              "(target < 50 ms)")
        workers = default_workers()
        for count in sorted({workers, 2}):
            minutes = 1000 * (1.0 + local_overhead) / count / 60
            print(f"projected 1,000 runs of 1 s with {count} worker{'s' if count > 1 else ''}: "
                  f"{minutes:.1f} min (target < 9 min on 2 cores)")
        if args.parallel:
            parallel(folder, args.parallel, args.parallel_sim_s)
        if args.ray:
            try:
                import ray
            except ImportError:
                print("speed_sweep: --ray needs Ray: pip install -e 'core[ray]'", file=sys.stderr)
                return 2
            # a throwaway local cluster: no token authentication (which would also leave a token
            # file in ~/.ray that later clusters on this machine trip over)
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            began = time.perf_counter()
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                     runtime_env={"working_dir": str(folder)})
            started = time.perf_counter() - began
            try:
                first, _ = sweep(path, [10_001], folder / "warm.sqlite", backend="ray")
                took, _ = sweep(path, seeds, folder / "ray.sqlite", backend="ray")
                samples = [sweep(path, [20_000 + i], folder / f"one{i}.sqlite", backend="ray")[0]
                           for i in range(5)]
            finally:
                ray.shutdown()
            overhead = (took - own) / n
            print(f"ray sweep, 1 CPU: {took / n * 1e3:.1f} ms per point; overhead "
                  f"{overhead * 1e3:.1f} ms per run (Ray's start {started:.1f} s and its first task "
                  f"{first:.1f} s apart); a one-point sweep on a warm cluster "
                  f"{statistics.median(samples) * 1e3:.0f} ms (median of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
