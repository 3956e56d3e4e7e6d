"""Simulation speed of the serving engines: wall and CPU time, requests per second, peak memory.

The workload of issue 13's table: Llama-3.1-8B on H100-SXM, 1024 prompt / 256
output tokens, Poisson arrivals at 16 requests/s per replica. Each run is a
fresh process writing requests.csv and summary.json to a temporary folder, on
one core, that loads labsim as the ``labsim`` command does (``labsim.__main__``); each
figure is the median of ``--repeat`` runs (CPU seconds, user + system, are steadier than
wall seconds on a shared machine).

    python benchmarks/speed_serving.py                      # vLLM at 20k, 100k, 1M requests
    python benchmarks/speed_serving.py --framework trtllm --sizes 100000
    python benchmarks/speed_serving.py --table              # issue 13's whole table
    python benchmarks/speed_serving.py --case pp2 --framework vllm --sizes 20000

``--table`` takes its first six rows (each engine's one H100, PP=2 and trace) in turns, a round
at a time, and ends with issue 13's ratios among them (PP=2 over one H100, the trace's seconds
per request over the synthetic workload's): rows taken one after another, minutes apart, meet
different loads of a shared machine, and their ratios move with it.

``--table --scaled`` judges issue 13's targets where the issue set them, on the machine it
measured on. Every row but start-up takes turns with the two rows the issue measured itself
(its commit ``30df584``, each engine at 100,000 requests: 11.7 s and 34.9 s there); each
engine's factor, the issue's seconds over this machine's for that row in the same rounds,
carries its rows' CPU seconds over, and the last lines say which target is met and by how
much (start-up is measured after the turns and goes by vLLM's factor):

    python benchmarks/speed_serving.py --table --scaled --repeat 3

Cases (``--case``):

``single``    one replica (the default);
``pp2``       one replica over two GPUs with pipeline parallelism 2;
``replicas``  8 replicas behind the least-outstanding router, 8 × 16 = 128 requests/s
              (``--sizes`` counts every replica's requests: 800,000 is issue 13's row);
``trace``     the built-in Azure conversation trace (splitwise_conv, 19,366 rows) replayed
              ``--sizes`` / 19,366 times back to back (193,660 is 10 copies);
``startup``   ``labsim run`` of a 10-request experiment file, the whole process.

``--instructions`` counts instructions instead of seconds (``valgrind --tool=callgrind``, which
must be installed): two fresh processes of different sizes, the difference divided by the
difference in requests, so start-up cancels (a small run outside callgrind first caches the
modules' bytecode, which a fresh checkout's first run would compile). Unlike seconds it does
not move with the machine's load, so code before and after a change can be compared on a
busy machine:

    python benchmarks/speed_serving.py --instructions --case trace         # per request, 1 vs 2 replays
    python benchmarks/speed_serving.py --instructions --sizes 2000,8000 --framework trtllm

The first line says whether the compiled twins of the hot modules ran (``labsim.native``:
labsim-llm, labsim-gpus, labsim-vllm and labsim-trtllm build them at install where mypyc and a
C compiler are at hand);
``LABSIM_NATIVE=0`` measures pure Python.

``--against REV`` measures each figure twice in one sitting, the two taking turns: once with
this tree and once with the sources of commit *REV* of this repository (``git archive``,
imported ahead of the installed packages: pure Python, as its twins are not built there). The
seconds of one machine move by a factor of two from one day to the next; the ratio of runs
taken in turns moves far less. Issue 13 measured its own figures at commit ``30df584``
(:data:`REFERENCE`), so

    python benchmarks/speed_serving.py --against 30df584 --sizes 100000 --framework trtllm

also says what this tree would take on the machine that issue measured on: its seconds over
the speed-up, to set against the 5 s target. A row the older code cannot run (the trace's
``repeat`` is newer than ``30df584``) is reported as not measured, and the exit status is 1.

Targets (issue 13): 100,000 requests < 5 s and 1,000,000 < 50 s and < 200 MB per engine;
PP=2 within 1.5× of PP=1; 800,000 requests on 8 replicas < 60 s; the trace within 1.5× of
the synthetic rate; start-up < 0.6 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

TRACE_ROWS = 19366

#: the commit issue 13 measured at, and what it measured there (its 2-core machine, the whole
#: process, the median of 3): seconds by (case, framework, requests)
REFERENCE_COMMIT = "30df584"
REFERENCE = {("single", "vllm", 100_000): 11.7, ("single", "trtllm", 100_000): 34.9}
#: issue 13's target for those rows, in seconds on the same machine
REFERENCE_TARGET_S = 5.0


def experiment(n: int, fast_forward: bool, framework: str = "vllm", case: str = "single") -> dict:
    """The experiment of *case* with *n* requests in all."""
    cfg = {"model": "Llama-3.1-8B", "record_steps": False}
    if framework == "vllm":
        cfg["fast_forward"] = fast_forward
    hardware = {"device": "H100-SXM"}
    if case == "pp2":
        cfg["pipeline_parallel_size"] = 2
        hardware["topology"] = "dgx-h100"              # 8 GPUs; the replica uses 2
    replicas = 8 if case == "replicas" else 1
    if replicas > 1:
        cfg.update(num_replicas=replicas, router="least_outstanding")
        hardware["topology"] = "dgx-h100"
    if case == "trace":
        workload = {"type": "trace", "path": "builtin:splitwise_conv",
                    "repeat": max(1, round(n / TRACE_ROWS))}
    else:
        workload = {"type": "client_profiles", "num_requests": n, "client_profiles": [{
            "profile_name": "fixed", "request_rate": 16.0 * replicas,
            "prompt_tokens_dist_config": {"type": "Constant", "value": 1024, "is_int": True},
            "max_output_tokens_dist_config": {"type": "Constant", "value": 256, "is_int": True}}]}
    return {
        "name": f"speed-{case}-{n}", "simulation": {"max_simulation_time": 1e9, "random_seed": 1},
        "hardware_profile": hardware, "workload": workload,
        "frameworks_to_test": [{"name": framework, "type": framework, "config": cfg}],
        "metrics_config": {"sinks": ["summary_json", "csv"]},
    }


def _loading_as_the_command_does():
    """Where the child loads labsim and its plugins: as the ``labsim`` command loads them (the
    garbage collector paused, what loaded frozen: ``labsim.gc_pace.start_up_frozen``), where
    the sources measured have that (``--against`` an older commit may not)."""
    try:
        from labsim.gc_pace import start_up_frozen
    except ImportError:
        return contextlib.nullcontext()
    return start_up_frozen()


def child(n: int, fast_forward: bool, framework: str, case: str) -> None:
    from pathlib import Path

    with _loading_as_the_command_does():
        from labsim.orchestrator import Orchestrator, load_experiment
        from labsim.registry import get_registry

        get_registry()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        orch = Orchestrator(load_experiment(experiment(n, fast_forward, framework, case)))
        result = orch.run(Path(out))
    wall = time.perf_counter() - started
    s = result.summary["frameworks"][framework]
    print(json.dumps({"n": n, "wall_s": wall, "finished": s["requests"]["finished"],
                      "simulated_s": result.summary["simulated_time_s"],
                      "steps": s["gpu"]["steps"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run(cmd: list[str], import_path: str | None = None,
         one_blas_thread: bool = True) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system) of *cmd* in a child process, and its stdout
    (*import_path*: directories it imports from ahead of the installed packages).

    *one_blas_thread*: run numpy's BLAS on one thread, as ``labsim``'s command line does
    itself (:mod:`labsim.numeric_threads`); ``labsim run`` is measured without it, as a
    user starts it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = dict(os.environ)
    if one_blas_thread:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)       # as installed: modules compiled once, cached
    if import_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (import_path, env.get("PYTHONPATH")) if p)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def _child_cmd(n: int, fast_forward: bool, framework: str, case: str) -> list[str]:
    cmd = [sys.executable, __file__, "--child", str(n), "--framework", framework, "--case", case]
    return cmd + (["--no-fast-forward"] if not fast_forward else [])


def _median(case: str, framework: str, samples: list) -> dict:
    """The figure of *samples* (``_run``'s answers for one row): median seconds, peak memory."""
    results = [json.loads(stdout.strip().splitlines()[-1]) for _, _, stdout in samples]
    return {"case": case, "framework": framework, "requests": results[-1]["finished"],
            "wall_s": statistics.median(wall for wall, _, _ in samples),
            "cpu_s": statistics.median(cpu for _, cpu, _ in samples),
            "peak_mb": max(r["peak_rss_mb"] for r in results), "steps": results[-1]["steps"]}


def measure(n: int, fast_forward: bool, framework: str, case: str, repeat: int) -> dict:
    """Median wall and CPU seconds of *repeat* fresh processes simulating *case*."""
    if case == "startup":
        return startup(repeat)
    cmd = _child_cmd(n, fast_forward, framework, case)
    return _median(case, framework, [_run(cmd) for _ in range(repeat)])


def measure_in_turns(runs: list, fast_forward: bool, repeat: int) -> list[dict]:
    """:func:`measure` of each row of *runs* (``(case, framework, requests)``), the rows taking
    turns: *repeat* rounds of one fresh process each, then each row's medians. Seconds move
    with the machine's load by tens of per cent within minutes; rows taken in turns share it,
    so their ratios (:func:`ratio_lines`) hold far better than those of rows taken one after
    another.

    A row may name the sources it runs as a fourth item (an import path, :func:`sources_of`),
    as :func:`measure_scaled`'s reference rows do; the others run this tree."""
    samples: dict = {r: [] for r in runs}
    for _ in range(repeat):
        for r in runs:
            case, framework, n = r[:3]
            path = r[3] if len(r) > 3 else None
            samples[r].append(_run(_child_cmd(n, fast_forward, framework, case), path))
    return [_median(r[0], r[1], samples[r]) for r in runs]


def measure_scaled(runs: list, fast_forward: bool, repeat: int,
                   reference_path: str) -> tuple[list[dict], dict[str, dict]]:
    """*runs* measured in turns with issue 13's own rows (:data:`REFERENCE`) at its commit,
    whose sources are at *reference_path* (:func:`sources_of`): each round runs the reference
    rows first, then every row of *runs*. ``(figures of runs, reference figure by engine)``:
    the two share the machine's load of the same minutes, so each engine's :func:`scale_factors`
    carries this tree's seconds over to the machine issue 13 measured on."""
    references = [(*key, reference_path) for key in REFERENCE]
    figures = measure_in_turns(references + list(runs), fast_forward, repeat)
    return figures[len(references):], {r["framework"]: r for r in figures[:len(references)]}


def scale_factors(references: dict[str, dict]) -> dict[str, float]:
    """Each engine's seconds on issue 13's machine per CPU second of this one: what the issue
    measured of its commit (:data:`REFERENCE`) over what this machine took for the same row in
    the same turns (*references*, :func:`measure_scaled`'s second answer). The two engines' old
    codes do not slow down together: in the same rounds one machine ran ``30df584``'s vLLM at
    0.89-1.00x the speed of issue 13's and its TensorRT-LLM at 1.16-1.27x (docs/speed.md), so
    each engine's rows go by its own factor."""
    return {framework: seconds / references[framework]["cpu_s"]
            for (_case, framework, _n), seconds in REFERENCE.items() if framework in references}


#: issue 13's targets in seconds on its machine, by (case, requests); the ratios are
#: :func:`ratio_lines`'s
TARGET_S = {("single", 100_000): 5.0, ("single", 1_000_000): 50.0, ("replicas", 800_000): 60.0,
            ("startup", 10): 0.6}
#: issue 13's peak memory target for the 1,000,000-request rows
TARGET_PEAK_MB = 200.0


def target_lines(results: list[dict], factors: dict[str, float]) -> list[str]:
    """Each of *results* that issue 13 sets a time for, in seconds on its machine (CPU seconds
    here times the engine's :func:`scale_factors`) against that target, with the margin."""
    lines = []
    for r in results:
        target = TARGET_S.get((r["case"], r["requests"]))
        factor = factors.get(r["framework"])
        if target is None or factor is None:
            continue
        there = r["cpu_s"] * factor
        verdict = (f"met, {1 - there / target:.0%} under" if there < target
                   else f"NOT met, {there / target - 1:.0%} over")
        line = (f"{r['case']} {r['framework']} {r['requests']:,}: {r['cpu_s']:.2f} CPU s here, "
                f"about {there:.2f} s there (target {target:g} s): {verdict}")
        if r["requests"] >= 1_000_000:
            peak = r["peak_mb"]
            line += (f"; peak {peak:.0f} MB (target {TARGET_PEAK_MB:g} MB): "
                     + ("met" if peak < TARGET_PEAK_MB else "NOT met"))
        lines.append(line)
    return lines


def ratio_lines(results: list[dict]) -> list[str]:
    """Issue 13's ratios among *results* (:func:`measure`'s figures, CPU seconds): each
    engine's PP=2 over its one H100 (target 1.5x), and its trace's seconds per request over
    the synthetic workload's (target 1.5x)."""
    by = {(r["case"], r["framework"]): r for r in results}
    lines = []
    for framework in ("vllm", "trtllm"):
        one = by.get(("single", framework))
        if one is None:
            continue
        per_one = one["cpu_s"] / one["requests"]
        pp2 = by.get(("pp2", framework))
        if pp2 is not None and pp2["requests"] == one["requests"]:
            lines.append(f"{framework} PP=2: {pp2['cpu_s'] / one['cpu_s']:.2f}x one H100 "
                         "(target 1.5x)")
        trace = by.get(("trace", framework))
        if trace is not None:
            per_trace = trace["cpu_s"] / trace["requests"]
            lines.append(f"{framework} trace: {per_trace * 1e6:.0f} us a request, "
                         f"{per_trace / per_one:.2f}x the synthetic's {per_one * 1e6:.0f} us "
                         "(target 1.5x)")
    return lines


def measure_against(n: int, fast_forward: bool, framework: str, case: str, repeat: int,
                    import_path: str) -> tuple[dict, dict]:
    """:func:`measure` of this tree and of the sources at *import_path*, the two taking turns
    (theirs first): ``(ours, theirs)``."""
    theirs, ours = measure_in_turns([(case, framework, n, import_path), (case, framework, n)],
                                    fast_forward, repeat)
    return ours, theirs


def _git(*args: str, binary: bool = False):
    """Run git in this repository; its stdout (:class:`BadRevision`, with git's last line, if it
    fails)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # (archive: the whole tree)
    out = subprocess.run(["git", "-C", root, *args], capture_output=True, text=not binary)
    if out.returncode:
        err = out.stderr if not binary else out.stderr.decode(errors="replace")
        raise BadRevision(f"git {' '.join(args)}: {err.strip().splitlines()[-1] if err.strip() else 'failed'}")
    return out.stdout


class BadRevision(Exception):
    """``--against`` names no commit of this repository (or this is no git checkout)."""


def sources_of(rev: str, into: str) -> str:
    """Extract the sources of commit *rev* under *into*; the import path of its core and
    plugins (``core/src`` and each ``plugins/*/src``)."""
    archive = _git("archive", "--format=tar", f"{rev}^{{commit}}", binary=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # (a tree of this repository's own: the "data" filter where this Python has it, 3.11.4+)
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    plugins = os.path.join(into, "plugins")
    dirs = [os.path.join(into, "core", "src")] + sorted(
        os.path.join(plugins, name, "src") for name in os.listdir(plugins)
        if os.path.isdir(os.path.join(plugins, name, "src")))
    return os.pathsep.join(dirs)


def reference_commit() -> str | None:
    """The full hash of :data:`REFERENCE_COMMIT`, or None where this checkout lacks it (a
    shallow clone)."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{REFERENCE_COMMIT}^{{commit}}").strip()
    except BadRevision:
        return None


def against_lines(ours: dict, theirs: dict, rev: str, n: int, at_reference: bool) -> list[str]:
    """What a pair of figures says: the speed-up, and where *rev* is issue 13's commit
    (*at_reference*) and the row one it measured, this tree's seconds on that issue's machine."""
    speedup = theirs["cpu_s"] / ours["cpu_s"]
    lines = [f"{ours['case']} {ours['framework']} {n:,}: this tree {speedup:.2f}x as fast as "
             f"{rev} (CPU s, the median of the turns)"]
    measured = REFERENCE.get((ours["case"], ours["framework"], n))
    if measured is not None and at_reference:
        lines.append(f"issue 13 measured {REFERENCE_COMMIT} at {measured} s on its machine: this "
                     f"tree there about {measured / speedup:.2f} s (target {REFERENCE_TARGET_S:g} s, "
                     f"a speed-up of {measured / REFERENCE_TARGET_S:.2f}x)")
    return lines


def startup(repeat: int) -> dict:
    """``labsim run`` of a 10-request experiment, the whole process (median of *repeat*)."""
    text = ("name: startup\nhardware_profile: {device: H100-SXM}\n"
            "workload: {type: client_profiles, num_requests: 10, client_profiles: "
            "[{profile_name: a, request_rate: 4,\n"
            "  prompt_tokens_dist_config: {type: Constant, value: 512, is_int: true},\n"
            "  max_output_tokens_dist_config: {type: Constant, value: 64, is_int: true}}]}\n"
            "frameworks_to_test: [{name: vllm, type: vllm, config: {model: Llama-3.1-8B}}]\n")
    labsim = os.path.join(os.path.dirname(sys.executable), "labsim")
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "startup.yaml")
        with open(path, "w") as handle:
            handle.write(text)
        _run([labsim, "run", path, "--out", os.path.join(tmp, "warm")])   # bytecode cached
        for i in range(repeat):
            wall, cpu, _ = _run([labsim, "run", path, "--out", os.path.join(tmp, f"out{i}")],
                                one_blas_thread=False)
            walls.append(wall)
            cpus.append(cpu)
    return {"case": "startup", "framework": "vllm", "requests": 10,
            "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "peak_mb": float("nan"), "steps": 0}


def instructions(sizes: list[int], fast_forward: bool, framework: str, case: str) -> dict:
    """Instructions per simulated request of *case*: callgrind's total of fresh processes at
    the two *sizes* (whole replays for the trace), their difference over the difference in
    requests."""
    # a small run first, outside callgrind: on a fresh checkout the first run compiles every
    # module's bytecode (and caches it), which only the first size counted would pay
    warm = _child_cmd(TRACE_ROWS if case == "trace" else 10, fast_forward, framework, case)
    out = subprocess.run(warm, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(warm)} failed:\n{out.stderr[-2000:]}")
    counts = []
    for n in sizes:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
               __file__, "--child", str(n), "--framework", framework, "--case", case]
        cmd += ["--no-fast-forward"] if not fast_forward else []
        out = subprocess.run(cmd, capture_output=True, text=True)
        found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
        if out.returncode or not found:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
        counts.append(int(found.group(1).replace(",", "")))
    (n1, c1), (n2, c2) = sorted(zip(sizes, counts))
    return {"case": case, "framework": framework, "sizes": (n1, n2), "instructions": (c1, c2),
            "per_request": (c2 - c1) / (n2 - n1)}


def native_line() -> str:
    """How the hot modules run in the child processes (compiled twins or pure Python,
    ``labsim.native``): the figures depend on it."""
    from labsim_gpus import native as gpus
    from labsim_llm import native as llm
    from labsim_trtllm import native as trtllm
    from labsim_vllm import native as vllm

    def group(status: dict) -> str:
        # a replica's layers run together: compiled, or pure Python for the first reason
        return ([how for how in status.values() if "its group" not in how] or ["compiled"])[0]

    found = {**llm.status(), **gpus.status(), "vllm replica": group(vllm.status()),
             "trtllm replica": group(trtllm.status())}
    return "compiled twins: " + ", ".join(f"{k} {v}" for k, v in found.items())


def row(r: dict) -> str:
    per = r["requests"] / r["cpu_s"] if r["cpu_s"] else float("nan")
    return (f"{r['case']:>9} {r['framework']:>7} {r['requests']:>10,} {r['wall_s']:>8.2f} "
            f"{r['cpu_s']:>8.2f} {per:>12,.0f} {r['peak_mb']:>8.0f} {r['steps']:>10}")


#: issue 13's table: (case, framework, requests)
TABLE = [("single", "vllm", 100_000), ("single", "trtllm", 100_000),
         ("pp2", "vllm", 100_000), ("pp2", "trtllm", 100_000),
         ("trace", "vllm", 10 * TRACE_ROWS), ("trace", "trtllm", 10 * TRACE_ROWS),
         ("replicas", "vllm", 800_000),
         ("single", "vllm", 1_000_000), ("single", "trtllm", 1_000_000),
         ("startup", "vllm", 10)]

#: the rows of :data:`TABLE` that issue 13's ratios compare (PP=2 with one H100, the trace with
#: the synthetic workload), measured in turns: a round runs each once, so a row and the row it is
#: set against share the machine's load of the same minutes
TURNS = TABLE[:6]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--no-fast-forward", action="store_true")
    ap.add_argument("--framework", choices=["vllm", "trtllm"], default="vllm")
    ap.add_argument("--case", choices=["single", "pp2", "replicas", "trace", "startup"],
                    default="single")
    ap.add_argument("--table", action="store_true", help="issue 13's whole table")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per figure (median)")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per request (callgrind) between the two --sizes")
    ap.add_argument("--against", metavar="REV",
                    help="also measure commit REV's sources, taking turns (see above)")
    ap.add_argument("--scaled", action="store_true",
                    help="with --table: every row in turns with issue 13's own rows at its "
                    "commit, and its targets judged in seconds on the issue's machine")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scaled and (not args.table or args.against or args.instructions):
        ap.error("--scaled goes with --table (and neither --against nor --instructions)")
    ff = not args.no_fast_forward
    if args.child:
        child(args.child, ff, args.framework, args.case)
        return 0
    if args.instructions:
        default = f"{TRACE_ROWS},{2 * TRACE_ROWS}" if args.case == "trace" else "2000,8000"
        sizes = [int(x) for x in (default if args.sizes == ap.get_default("sizes") else args.sizes).split(",")]
        if args.case == "trace":                # whole replays
            sizes = [TRACE_ROWS * max(1, round(n / TRACE_ROWS)) for n in sizes]
        if len(set(sizes)) != 2 or args.case == "startup":
            ap.error("--instructions takes two different --sizes (e.g. 2000,8000) of a case "
                     "other than startup")
        if shutil.which("valgrind") is None:
            ap.error("--instructions needs valgrind (its callgrind tool) on the PATH")
        r = instructions(sizes, ff, args.framework, args.case)
        (n1, n2), (c1, c2) = r["sizes"], r["instructions"]
        print(native_line())
        print(f"{r['case']} {r['framework']}: {c1:,} instructions at {n1:,} requests, {c2:,} at "
              f"{n2:,}: {r['per_request']:,.0f} per request")
        return 0
    if args.against:
        try:
            _git("rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}")
        except BadRevision:
            print(f"speed_serving.py: --against {args.against}: not a commit of this repository",
                  file=sys.stderr)
            return 2
    print(native_line())
    print(f"{'code':>12} " * bool(args.against or args.scaled) + f"{'case':>9} {'engine':>7} {'requests':>10} {'wall s':>8} {'CPU s':>8} "
          f"{'req/CPU s':>12} {'peak MB':>8} {'steps':>10}")
    runs = TABLE if args.table else [(args.case, args.framework, int(x))
                                     for x in args.sizes.split(",")]
    if args.case == "startup" and not args.table:
        runs = [("startup", "vllm", 10)]
    if args.against:
        return _main_against(args.against, runs, ff, args.repeat)
    if args.scaled:
        return _main_scaled(ff, args.repeat)
    if args.table:
        turns = measure_in_turns(TURNS, ff, args.repeat)
        for r in turns:
            print(row(r))
        sys.stdout.flush()
        runs = [r for r in runs if r not in TURNS]
    for case, framework, n in runs:
        print(row(measure(n, ff, framework, case, args.repeat)))
        sys.stdout.flush()
    if args.table:
        print(f"ratios (the first {len(TURNS)} rows taken in turns):")
        for line in ratio_lines(turns):
            print("  " + line)
    return 0


def _main_scaled(fast_forward: bool, repeat: int) -> int:
    """``--table --scaled``: the table's rows in turns with issue 13's reference rows, then its
    ratios and each target judged on the issue's machine (:func:`target_lines`)."""
    if reference_commit() is None:
        print(f"speed_serving.py: --scaled needs issue 13's commit {REFERENCE_COMMIT}, which this "
              "checkout lacks (a shallow clone: git fetch --unshallow)", file=sys.stderr)
        return 2
    runs = [r for r in TABLE if r[0] != "startup"]
    with tempfile.TemporaryDirectory() as tmp:
        results, references = measure_scaled(runs, fast_forward, repeat,
                                             sources_of(REFERENCE_COMMIT, tmp))
    for r in results:
        print(f"{'':>12} " + row(r))
    for r in references.values():
        print(f"{REFERENCE_COMMIT:>12} " + row(r) + "  (pure Python)")
    start = measure(10, fast_forward, "vllm", "startup", repeat)
    print(f"{'':>12} " + row(start) + "  (after the turns)")
    factors = scale_factors(references)
    print(f"all rows but start-up taken in turns ({repeat} rounds) with {REFERENCE_COMMIT}'s:")
    for line in ratio_lines(results[:len(TURNS)]):      # (the 1M rows are not the ratios')
        print("  " + line)
    print(f"issue 13's machine: it measured {REFERENCE_COMMIT} at "
          + ", ".join(f"{REFERENCE[key]} s ({key[1]})" for key in REFERENCE)
          + "; this one, in these turns, at "
          + ", ".join(f"{references[fw]['cpu_s']:.2f} s ({fw})" for fw in references)
          + ": seconds there per CPU second here "
          + ", ".join(f"{factors[fw]:.3f} ({fw})" for fw in factors))
    for line in target_lines(results + [start], factors):
        print("  " + line)
    return 0


def _main_against(rev: str, runs: list, fast_forward: bool, repeat: int) -> int:
    """Each row of *runs* measured with this tree and with commit *rev*, taking turns."""
    failed = 0
    at_reference = _git("rev-parse", f"{rev}^{{commit}}").strip() == reference_commit()
    with tempfile.TemporaryDirectory() as tmp:
        import_path = sources_of(rev, tmp)
        for case, framework, n in runs:
            if case == "startup":
                continue                # (the other tree's labsim command is not installed)
            try:
                ours, theirs = measure_against(n, fast_forward, framework, case, repeat, import_path)
            except SystemExit as error:     # (_run: a child failed; an older tree may lack the case)
                failed += 1
                last = [line for line in str(error).splitlines() if line.strip()][-1:]
                print(f"  {case} {framework} {n:,}: not measured: {' '.join(last) or 'a run failed'}")
                continue
            print(f"{rev:>12} " + row(theirs) + "  (pure Python)")
            print(f"{'this tree':>12} " + row(ours))
            for line in against_lines(ours, theirs, rev, n, at_reference):
                print("  " + line)
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
