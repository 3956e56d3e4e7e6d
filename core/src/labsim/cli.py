"""The ``labsim`` command line.

Bad input (experiment files, CSVs, options) exits 2 with one clear message
and no traceback; an internal bug exits 1. Plugins add commands through the
``register_commands(cli)`` hook.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from pathlib import Path

from labsim.numeric_threads import single_threaded_blas

single_threaded_blas()   # before numpy is first imported (plugins and the run import it)

import click  # noqa: E402

from labsim import log as log_setup  # noqa: E402
from labsim import progress  # noqa: E402
from labsim.errors import LabsimError, UsageError  # noqa: E402
from labsim.registry import KINDS, get_registry  # noqa: E402


class Terminated(BaseException):
    """SIGTERM arrived: unwinds the run like Ctrl-C, so its outputs are discarded."""


def _on_sigterm(signum, frame):
    raise Terminated()


#: set by ``--log-level debug``: internal errors then show their traceback
_DEBUG = False


class LabsimGroup(click.Group):
    """A click group that turns errors into one line and an exit code.

    :class:`LabsimError` (bad input) exits 2; Ctrl-C 130 and SIGTERM 143, after the run
    has discarded its unfinished outputs; any other exception is a bug — exit 1 with one
    line naming the plugin it came from (the traceback only with ``--log-level debug``).
    """

    def invoke(self, ctx):
        previous = _install(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except LabsimError as ex:
            click.echo(f"Error: {ex}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted (Ctrl-C): nothing was written.", err=True)
            ctx.exit(130)
        except Terminated:
            click.echo("Terminated (SIGTERM): nothing was written.", err=True)
            ctx.exit(143)
        except SystemExit as ex:  # labsim's own exits pass; a plugin's is a plugin failure
            if _blame(ex) is None:
                raise
            if _DEBUG:
                traceback.print_exc()
            click.echo(f"Error: {internal_error_message(ex)}", err=True)
            ctx.exit(1)
        except Exception as ex:  # noqa: BLE001 - the last line of defence
            if _DEBUG:
                traceback.print_exc()
            click.echo(f"Error: {internal_error_message(ex)}", err=True)
            ctx.exit(1)
        finally:
            _install(signal.SIGTERM, previous)


def _install(signum, handler):
    """Set a signal handler where that is possible (the main thread); returns the old one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signum, handler)
    except (ValueError, OSError):
        return None


def _plugin_packages() -> dict[str, tuple[str, str]]:
    """Top-level package of every loaded third-party plugin → (plugin name, provider)."""
    out = {}
    try:
        loaded = get_registry().loaded
    except Exception:  # noqa: BLE001 - the registry itself may be what failed
        return out
    for name, info in loaded.info.items():
        if info.builtin:
            continue
        module = loaded.pm.get_plugin(name)
        package = getattr(module, "__name__", "") or ""
        top = package.split(".")[0]
        if top and top != "labsim":
            out[top] = (name, f"{info.distribution} {info.version}".strip())
    return out


def _blame(ex: BaseException):
    """(plugin name, provider, file:line) of the innermost plugin frame that raised *ex*."""
    packages = _plugin_packages()
    for frame, lineno in reversed(list(traceback.walk_tb(ex.__traceback__))):
        module = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if module in packages:
            name, provider = packages[module]
            return name, provider, f"{Path(frame.f_code.co_filename).name}:{lineno}"
    return None


def internal_error_message(ex: BaseException) -> str:
    """One line for an unexpected exception: which plugin raised it (or labsim), what, where."""
    if isinstance(ex, SystemExit):
        what = f"called sys.exit({ex.code!r})"
    else:
        what = f"{type(ex).__name__}: {ex}" if str(ex) else type(ex).__name__
    hint = " (run with --log-level debug for the traceback)"
    blamed = _blame(ex)
    if blamed:
        name, provider, where = blamed
        return (
            f"plugin {name!r} ({provider}) failed: {what} at {where}. This is a bug in "
            f"that plugin; report it to its authors{hint}."
        )
    frames = list(traceback.walk_tb(ex.__traceback__))
    where = ""
    if frames:
        frame, lineno = frames[-1]
        where = f" at {Path(frame.f_code.co_filename).name}:{lineno}"
    return f"internal error: {what}{where}. This is a bug in labsim{hint}."


@click.group(cls=LabsimGroup)
@click.version_option(package_name="labsim")
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="Log lines for people, or JSON lines for machines.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (they show only on a terminal).")
def cli(log_format, log_level, quiet):
    """labsim: predict how AI workloads behave on virtual hardware.

    \b
    labsim run experiment.yaml          simulate an experiment
    labsim validate experiment.yaml     check it without running
    labsim list devices                 what is available
    labsim compare runs/a runs/b        two finished runs side by side
    labsim predict --device H100-SXM --input ops.csv --output out.csv
    """
    global _DEBUG
    _DEBUG = log_level == "debug"
    log_setup.configure(log_format, log_level)
    progress.set_quiet(quiet)


# -- helpers ---------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def _lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def headline_rows(result_summary: dict, registry) -> tuple[list[str], list[list]]:
    """The short result table: one row per headline metric, one column per framework."""
    frameworks = result_summary.get("frameworks", {})
    names = list(frameworks)
    metrics: list[tuple[str, str]] = []
    for name in names:
        ftype = frameworks[name].get("type")
        cls = (
            registry.get("frameworks", ftype)
            if ftype and registry.has("frameworks", ftype)
            else None
        )
        items = getattr(cls, "headline", None) or []
        if not items:  # no headline: every top-level number of its section
            items = [(key, key) for key, value in frameworks[name].items()
                     if isinstance(value, (int, float)) and not isinstance(value, bool)]
        for item in items:
            if tuple(item) not in metrics:
                metrics.append(tuple(item))
    headers = ["metric", *names]
    if len(names) > 1:
        headers += [f"{n}/{names[0]}" for n in names[1:]]
    rows = []
    for label, dotted in metrics:
        values = [_lookup(frameworks[n], dotted) for n in names]
        row = [label, *[_number(v) for v in values]]
        for v in values[1:]:
            base = values[0]
            ok = isinstance(v, (int, float)) and isinstance(base, (int, float)) and base
            row.append(f"{v / base:.3g}x" if ok else "-")
        rows.append(row)
    return headers, rows


# -- commands ----------------------------------------------------------------------------------


@cli.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for summary.json and the CSVs (default: the file's metrics_config "
    "paths, else a fresh folder under runs/).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value, e.g. --set frameworks_to_test[0].config.max_num_seqs=128.",
)
@click.option(
    "--seed", type=click.IntRange(min=0, max=2**63 - 1), help="Overrides simulation.random_seed."
)
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of the table.")
@click.option("--report", "with_report", is_flag=True,
              help="Also write report.html into the outputs (labsim report; needs labsim-report).")
@click.pass_context
def run(ctx, experiment, out_dir, overrides, seed, as_json, with_report):
    """Simulate EXPERIMENT (YAML or JSON) and write its outputs."""
    from labsim.orchestrator import Orchestrator, load_experiment

    if with_report and "report" not in cli.commands:
        raise UsageError("--report needs the labsim-report plugin (pip install -e plugins/report in a "
                         "labsim checkout); nothing was run")
    registry = get_registry()
    exp = load_experiment(experiment, overrides)
    orchestrator = Orchestrator(exp, registry, seed)
    orchestrator.show_progress = True
    result = orchestrator.run(Path(out_dir) if out_dir else None)
    if with_report:
        ctx.invoke(cli.commands["report"], path=str(result.out_dir), out=None)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
        return
    s = result.summary
    click.echo(
        f"{s['experiment']}: seed {s['seed']}, {s['simulated_time_s']:.1f} simulated s "
        f"({s['stopped_by'].replace('_', ' ')}), {result.wall_time_s:.2f} s wall"
    )
    headers, rows = headline_rows(s, registry)
    if rows:
        click.echo(table(headers, rows, right=set(range(1, len(headers)))))
    for line in caveats(s):
        click.echo(line)
    click.echo(f"outputs: {result.out_dir}")


def caveats(summary: dict) -> list[str]:
    """One line per framework whose statistics leave requests out (unfinished or rejected)."""
    lines = []
    for name, section in summary.get("frameworks", {}).items():
        counts = section.get("requests") if isinstance(section, dict) else None
        if not isinstance(counts, dict):
            continue
        unfinished, rejected = counts.get("unfinished") or 0, counts.get("rejected") or 0
        if unfinished or rejected:
            left = ", ".join(
                f"{n:,} {what}" for n, what in ((unfinished, "unfinished"), (rejected, "rejected")) if n
            )
            cover = counts.get("percentiles_cover", "finished requests only")
            lines.append(f"note: {name}: {left} of {counts.get('total', 0):,} requests; "
                         f"percentiles cover {cover}")
    return lines


@cli.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="As for `labsim run`.")
def validate(experiment, overrides):
    """Check EXPERIMENT without running it: the composed schema, then every plugin's own checks
    of its settings (a model that does not fit, a replica larger than the topology ...)."""
    from labsim.orchestrator import Orchestrator, load_experiment

    orchestrator = Orchestrator(load_experiment(experiment, overrides), get_registry())
    orchestrator.check()     # the plugins' own checks of their settings, as a run makes them
    data = orchestrator.data
    names = ", ".join(f"{f['name']} ({f['type']})" for f in data["frameworks_to_test"])
    click.echo(f"{experiment}: valid. Frameworks: {names}.")


def _provides(registry, plugin_name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        clashing = registry.clashing(kind)
        for entry in registry.entries(kind):
            if entry.plugin == plugin_name:
                label = entry.name + (" (CONFLICT)" if entry.name.casefold() in clashing else "")
                out.setdefault(kind, []).append(label)
    return out


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include the kernel's built-in plugins.")
@click.option(
    "--check", is_flag=True, help="Exit 1 if a plugin failed to load or two claim one name."
)
def plugins(as_json, show_all, check):
    """List installed plugins and what they provide."""
    registry = get_registry()
    if check:
        registry.discard_invalid_schemas()  # slow (jsonschema's check_schema), so on demand
    loaded = registry.loaded
    records = []
    for name, info in loaded.info.items():
        if info.builtin and not show_all:
            continue
        records.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "provides": _provides(registry, name),
                "error": None,
            }
        )
    for name, error in loaded.failed.items():
        info = loaded.failed_info.get(name)
        existing = next((r for r in records if r["name"] == name), None)
        if existing:
            existing["error"] = error
        else:
            records.append(
                {
                    "name": name,
                    "distribution": info.distribution if info else "",
                    "version": info.version if info else "",
                    "builtin": False,
                    "provides": {},
                    "error": error,
                }
            )
    conflicts = registry.conflicts
    if as_json:
        click.echo(json.dumps({"plugins": records, "conflicts": conflicts}, indent=2))
    elif not records:
        click.echo("No plugins loaded. Install one, e.g. pip install labsim-gpus")
    else:
        rows = []
        for r in records:
            if r["error"]:
                provides = "ERROR " + r["error"]
            else:
                provides = (
                    "; ".join(
                        f"{kind}: {', '.join(names[:6])}{f' (+{len(names) - 6} more)' if len(names) > 6 else ''}"
                        for kind, names in r["provides"].items()
                    )
                    or "-"
                )
            rows.append([r["name"], r["distribution"], r["version"], provides])
        click.echo(table(["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES"], rows))
        for message in conflicts:
            click.echo(f"CONFLICT: {message}")
    if check and (loaded.failed or conflicts):
        sys.exit(1)


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(kind, as_json):
    """List the registered components of KIND with a one-line description each."""
    registry = get_registry()
    entries = registry.entries(kind)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "aliases": list(getattr(e.obj, "aliases", ()) or ()),
                        "description": e.description,
                        "distribution": e.distribution,
                        "plugin": e.plugin,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return
    if not entries:
        click.echo(
            f"No {kind.replace('_', ' ')} registered. A plugin that provides them may not be "
            "installed (see `labsim plugins`)."
        )
        return
    click.echo(
        table(
            ["NAME", "FROM", "DESCRIPTION"],
            [[e.name, e.distribution, e.description] for e in entries],
        )
    )


@cli.command()
@click.option("--device", required=True, help="A registered device (see `labsim list devices`).")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CSV of operations (column op = gemm | attention | collective | memcpy).",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the input rows plus predicted_ms.",
)
def predict(device, input_path, output_path):
    """Price single operations on a device: the cost oracle."""
    from labsim.predict import predict_file

    count = predict_file(device, Path(input_path), Path(output_path), get_registry())
    click.echo(f"{count} operations priced on {device}: {output_path}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
def compare(run_dirs):
    """Compare finished runs: every framework's headline metrics, with ratios to the first.

    RUN_DIRS are folders written by `labsim run --out`, or sweep / queue databases, each of whose
    finished points counts as a run labelled by its grid values (two runs or more in all).
    """
    from labsim.compare import describe, load_points, load_summary, merge_summaries, run_label

    runs: dict[str, dict] = {}
    for run_dir in run_dirs:
        if Path(run_dir).is_file() and Path(run_dir).suffix.lower() in (".sqlite", ".db", ".sqlite3"):
            for label, summary in load_points(run_dir).items():
                runs[run_label(label, set(runs))] = summary
        else:
            runs[run_label(run_dir, set(runs))] = load_summary(run_dir)
    if len(runs) < 2:
        raise UsageError("compare needs two runs: labsim compare RUN_DIR_A RUN_DIR_B, or a sweep "
                         "database with two finished points")
    for label, summary in runs.items():
        click.echo(describe(label, summary))
    merged = merge_summaries(runs)
    headers, rows = headline_rows(merged, get_registry())
    click.echo(table(headers, rows, right=set(range(1, len(headers)))))
    for line in caveats(merged):
        click.echo(line)


@cli.command()
@click.argument("which", type=click.Choice(["experiment", "summary"]), default="experiment")
@click.option(
    "--output", type=click.Path(dir_okay=False), help="Write to a file instead of stdout."
)
def schema(which, output):
    """Print the JSON Schema of experiment files (or of summary.json), with every plugin's part."""
    from labsim.schema import compose_experiment_schema, compose_summary_schema, dumps

    registry = get_registry()
    composed = (compose_experiment_schema if which == "experiment" else compose_summary_schema)(
        registry
    )
    text = dumps(composed)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as ex:
            raise UsageError(f"cannot write --output {output}: {ex.strerror or ex}") from None
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option(
    "--grid",
    "grid",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="A dimension of the sweep; repeat for a cartesian product.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed overrides.")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default="sweep.sqlite",
    show_default=True,
    help="SQLite file of results; an interrupted sweep resumes from it.",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, help="Worker processes (0: one per CPU this process may use); each point runs in a process of its own."
)
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1))
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address (with --backend ray).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="Fail a point that runs longer than this many seconds (the sweep goes on).")
@click.option("--memory-limit-mb", "memory_mb", type=click.IntRange(min=64),
              help="Fail a point whose process needs more memory than this (the sweep goes on).")
@click.option("--ray-cpus", "ray_cpus", type=click.FloatRange(min=0, min_open=True),
              help="With --backend ray: logical CPUs Ray reserves for each run (default 1).")
@click.option("--ray-memory-mb", "ray_memory_mb", type=click.IntRange(min=1),
              help="With --backend ray: memory Ray reserves for each run (it places a run only on a "
                   "node with that much free).")
def sweep(experiment, grid, overrides, db_path, workers, seed, backend, address, timeout_s, memory_mb,
          ray_cpus, ray_memory_mb):
    """Run EXPERIMENT once per point of a grid of --set values, in parallel.

    On a terminal a bar shows the points done of the grid, how many run now and how many
    failed, the wall time and the ETA."""
    from labsim.sweep import parse_grid, points, run_sweep

    if backend == "ray" and (timeout_s is not None or memory_mb is not None):
        raise UsageError("--timeout and --memory-limit-mb limit local worker processes; with --backend "
                         "ray give --ray-cpus and --ray-memory-mb (what Ray reserves for each run)")
    if backend != "ray" and (ray_memory_mb is not None or ray_cpus is not None):
        raise UsageError("--ray-cpus and --ray-memory-mb need --backend ray")
    registry = get_registry()
    dims = parse_grid(list(grid))  # a malformed --grid fails before anything else

    bar = progress.sweep_bar(len(points(dims)), "sweep")

    def report(point, status, error, summary):
        label = " ".join(point) or "(base)"
        line = f"{status:5}  {label}" + (f"  {error.splitlines()[0]}" if error else "")
        if bar is None:
            click.echo(line)
        else:
            bar.write(line)
            bar.finished(status == "ok")

    try:
        outcome = run_sweep(
            experiment,
            list(grid),
            list(overrides),
            Path(db_path),
            workers,
            seed,
            backend,
            address,
            on_result=report,
            registry=registry,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            on_plan=bar.planned if bar else None,
            on_running=bar.running if bar else None,
            ray_cpus=1.0 if ray_cpus is None else ray_cpus,
            ray_memory_mb=ray_memory_mb,
        )
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"{outcome.ok} of {outcome.total} points done: {db_path}")
    if outcome.failed:
        n = outcome.failed
        click.echo(f"{n} point{'s' if n != 1 else ''} failed (see above)", err=True)
        sys.exit(1)


@cli.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2,...",
              help="A dimension of points to queue; repeat for a cartesian product (none: one run).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed overrides.")
@click.option("--priority", type=click.Choice(["high", "normal", "background"]), default="normal",
              show_default=True, help="The server runs high before normal before background.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1))
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default="queue.sqlite", show_default=True,
              help="The queue (and its results) that `labsim serve` runs.")
def submit(experiment, grid, overrides, priority, seed, db_path):
    """Queue runs of EXPERIMENT (its resolved content, one per --grid point) for `labsim serve`."""
    from labsim.queue import Queue

    done = Queue(Path(db_path)).submit(experiment, list(grid), list(overrides), seed, priority)
    queued, skipped = done.queued, done.skipped
    note = f" ({skipped} already done or queued)" if skipped else ""
    click.echo(f"queued {queued} run{'s' if queued != 1 else ''} at {priority} priority{note}: {db_path} "
               f"(submission {done.id})")


@cli.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default="queue.sqlite", show_default=True,
              help="The queue `labsim submit` fills.")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Worker processes (0: one per CPU this process may use).")
@click.option("--once", is_flag=True, help="Exit when the queue is empty instead of waiting for more.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="Fail a run that takes longer than this many seconds.")
@click.option("--memory-limit-mb", "memory_mb", type=click.IntRange(min=64),
              help="Fail a run whose process needs more memory than this.")
@click.option("--http", "http", metavar="HOST:PORT",
              help="Also answer the HTTP API there (submit, poll, fetch summaries and reports; "
                   "needs labsim[serve]); port 0 picks a free one.")
@click.option("--outputs", "outputs", type=click.Path(file_okay=False),
              help="Each run also writes its outputs (summary.json, CSVs) to OUTPUTS/RUN_KEY, "
                   "from which its report is drawn (default with --http: DB's name + .runs).")
@click.option("--data-dir", "data_dir", type=click.Path(file_okay=False, exists=True),
              help="Where relative paths in experiments submitted over HTTP resolve (default: here).")
def serve(db_path, workers, once, timeout_s, memory_mb, http, outputs, data_dir):
    """Run the queued simulations of DB, highest priority first, each in a process of its own;
    results go to DB as each ends (`labsim results DB`). Ctrl-C stops; queued runs stay queued.

    With --http HOST:PORT the same process also serves the HTTP API of docs/service.md, whose
    submissions join the same queue."""
    from labsim.queue import serve as serve_queue

    path = Path(db_path)
    if http:
        from labsim.service import require, run_server

        if once:
            raise UsageError("--once and --http: a server waits for submissions; leave out one of them")
        require()
        out = Path(outputs) if outputs else path.parent / f"{path.stem}.runs"
        get_registry()                      # plugins load once, before the queue's process forks
        try:
            run_server(path, http, workers, timeout_s, memory_mb, out, Path(data_dir) if data_dir else None,
                       announce=lambda line: click.echo(line))
        except (KeyboardInterrupt, Terminated) as ex:
            click.echo("labsim serve: stopped; queued runs stay queued, running ones run again "
                       "on the next start", err=True)
            sys.exit(130 if isinstance(ex, KeyboardInterrupt) else 143)
        return
    if not path.is_file():
        raise UsageError(f"--db: no file {db_path} (queue runs with `labsim submit EXP --db {db_path}` first)")

    def report(point, status, error):
        label = " ".join(point) or "(base)"
        click.echo(f"{status:5}  {label}" + (f"  {error.splitlines()[0]}" if error else ""))

    counts = serve_queue(path, workers, once, timeout_s, memory_mb, on_result=report,
                         outputs=Path(outputs) if outputs else None)
    click.echo("queue: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if counts.get("failed"):
        sys.exit(1)


@cli.command()
@click.argument("db_path", metavar="DB", type=click.Path(dir_okay=False))
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only points whose grid value KEY is VALUE (repeat to narrow), or status=error.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="parquet needs --output and pyarrow (pip install -e 'core[parquet]').")
@click.option("--output", "output", type=click.Path(dir_okay=False),
              help="Write the table to this file (written whole or not at all) instead of stdout.")
def results(db_path, where, fmt, output):
    """A sweep's results as one table: each point's grid values, status and every framework's
    headline metrics (failed points with their error)."""
    import csv as csv_mod
    import io
    import json as json_mod

    from labsim.sweep import SweepStore

    path = Path(db_path)
    if not path.is_file():
        raise UsageError(f"DB: no file {db_path} (run `labsim sweep ... --db {db_path}` first)")
    if fmt == "parquet":
        if not output:
            raise UsageError("--format parquet writes a file: give --output results.parquet")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("--format parquet needs pyarrow: pip install -e 'core[parquet]' in a "
                             "labsim checkout, or pip install pyarrow") from None
    store = SweepStore(path)
    wanted = []
    for item in where:
        if "=" not in item:
            raise UsageError(f"--where {item!r}: allowed: KEY=VALUE (a --grid key, or status=ok|error)")
        wanted.append(tuple(item.split("=", 1)))
    registry = get_registry()
    table = []
    for point_json, seed, status, error, summary_json in store.rows():
        point = dict(p.split("=", 1) for p in json_mod.loads(point_json))
        row = {**point, "seed": seed, "status": status}
        if any((row.get(k) if k != "status" else status) != v for k, v in wanted):
            continue
        if summary_json:
            frameworks = json_mod.loads(summary_json).get("frameworks", {})
            for name, section in frameworks.items():
                ftype = section.get("type")
                cls = registry.get("frameworks", ftype) if ftype and registry.has("frameworks", ftype) else None
                for label, dotted in getattr(cls, "headline", None) or []:
                    value = _lookup(section, dotted)
                    key = f"{name}: {label}" if len(frameworks) > 1 else label
                    row[key] = _number(value) if fmt == "table" else value
        if error:
            row["error"] = error.splitlines()[-1] if fmt == "table" else error
        table.append(row)
    columns = list(dict.fromkeys(k for r in table for k in r))
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from labsim.outputs import atomic_path

        frame = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in table])
        with atomic_path(Path(output)) as tmp:
            pq.write_table(frame, tmp)
        click.echo(f"{len(table)} point(s): {output}")
        return
    if fmt == "json":
        text = json_mod.dumps(table, indent=2) + "\n"
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv_mod.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        text = buf.getvalue()
    else:
        cells = [columns] + [[str(r.get(c, "")) for c in columns] for r in table]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        text = "".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
                       for row in cells) + f"{len(table)} point(s)\n"
    if output:
        from labsim.outputs import atomic_path

        with atomic_path(Path(output)) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        click.echo(f"{len(table)} point(s): {output}")
    else:
        click.echo(text, nl=False)


def _register_plugin_commands() -> None:
    try:
        impls = get_registry().loaded.pm.hook.register_commands.get_hookimpls()
    except (Exception, SystemExit) as ex:  # a broken plugin must not take the CLI down
        click.echo(f"warning: plugin commands not loaded: {ex}", err=True)
        return
    for impl in impls:
        try:
            impl.function(cli=cli)
        except (Exception, SystemExit) as ex:
            from labsim.plugins import failure_text

            click.echo(
                f"warning: plugin {impl.plugin_name!r}: commands not loaded: {failure_text(ex)}",
                err=True,
            )


_register_plugin_commands()
