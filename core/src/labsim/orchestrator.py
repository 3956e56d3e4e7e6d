"""Building and running one experiment: hardware → frameworks → workload → metrics.

Each part is found by registry lookup. Several frameworks may run side by
side in one simulated world; every framework marked
``is_target_for_workload`` gets its own copy of the workload, drawing from
the same random streams, so all of them see the identical request stream.

The run ends when nothing is left to happen (every request served: the
event queue is empty) or at ``simulation.max_simulation_time``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from labsim import config as config_mod
from labsim import outputs
from labsim.log import get_logger
from labsim.accounting import Accounting
from labsim import progress
from labsim.config import Experiment
from labsim.context import RunContext
from labsim.engine import Engine
from labsim.errors import ConfigError, LabsimError, PluginError, UsageError
from labsim.gc_pace import young_collections_spaced
from labsim.hardware import build_hardware
from labsim.metrics import MetricsCollector, clean
from labsim.registry import Registry, get_registry
from labsim.validation import validate

log = get_logger("labsim.run")


@dataclass
class Result:
    """What one run produced.

    ``summary`` is the summary dict (as in summary.json); ``tables`` maps a
    table name (``requests``, ``steps`` ...) to its rows as dicts when the run
    kept them in memory; ``paths`` lists the files written.
    """

    summary: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    out_dir: Path | None = None
    paths: list[Path] = field(default_factory=list)
    wall_time_s: float = 0.0

    def table(self, name: str) -> list[dict]:
        """Rows of table *name* as dicts."""
        if name not in self.tables:
            raise KeyError(
                f"no table {name!r}; tables: {', '.join(sorted(self.tables)) or '(none kept)'}"
            )
        return self.tables[name]


def load_experiment(source: dict | str | Path | Experiment, overrides=()) -> Experiment:
    """An :class:`Experiment` from a dict, a file path or a loaded :class:`Experiment` (copied,
    so that one document serves many sets of overrides), with ``key=value`` overrides."""
    if isinstance(source, Experiment):
        exp = copy.deepcopy(source)
    elif isinstance(source, dict):
        exp = config_mod.from_dict(source)
    else:
        exp = config_mod.load(source)
    config_mod.apply_overrides(exp, list(overrides))
    return exp


def default_out_dir(exp: Experiment, data: dict) -> Path:
    """A fresh folder under ``runs/`` named after the experiment and the time."""
    stem = data.get("name") or Path(exp.source).stem or "experiment"
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    base = Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def output_plan(data: dict, out_dir: Path | None, exp: Experiment) -> tuple[Path, dict]:
    """The output folder and per-sink settings (``--out`` beats the file's own paths)."""
    metrics = data.get("metrics_config", {})
    if out_dir is not None:
        return Path(out_dir), {}
    sink_config: dict[str, dict] = {}
    if metrics.get("output_summary_json_path"):
        sink_config["summary_json"] = {
            "path": exp.resolve_path(metrics["output_summary_json_path"])
        }
    if metrics.get("output_requests_csv_path"):
        sink_config["csv"] = {
            "paths": {"requests": exp.resolve_path(metrics["output_requests_csv_path"])}
        }
    if metrics.get("output_dir"):
        return exp.resolve_path(metrics["output_dir"]), sink_config
    if sink_config:
        first = next(iter(sink_config.values()))
        anchor = first.get("path") or next(iter(first["paths"].values()))
        return Path(anchor).parent, sink_config
    return default_out_dir(exp, data), sink_config


def _planned_files(sink_config: dict) -> list[Path]:
    """The output files the experiment names itself (metrics_config paths)."""
    files = []
    for config in sink_config.values():
        if config.get("path"):
            files.append(Path(config["path"]))
        files += [Path(p) for p in (config.get("paths") or {}).values()]
    return files


def _finish_sinks(sinks, ok: bool, out_dir) -> list:
    """Commit (ok) or discard every sink's outputs; staged sinks' files are renamed as one set."""
    staged, paths = [], []
    plain = [s for s in sinks if not hasattr(s, "prepare")]
    if ok:
        try:
            for sink in sinks:
                if hasattr(sink, "prepare"):
                    staged += sink.prepare()
            paths += outputs.commit(staged, out_dir)
        except BaseException:
            outputs.discard(staged)
            for sink in sinks:
                if hasattr(sink, "discard"):
                    sink.discard()
            for sink in plain:
                sink.close(False)
            raise
    else:
        for sink in sinks:
            if hasattr(sink, "discard"):
                sink.discard()
    for sink in plain:
        paths += sink.close(ok) or []
    return paths


class Orchestrator:
    """Assembles and runs one validated experiment."""

    def __init__(self, exp: Experiment, registry: Registry | None = None, seed: int | None = None,
                 schema: dict | None = None):
        """*schema*: the registry's composed experiment schema, when the caller validates many
        experiments against one registry (a sweep's points) and composed it once."""
        self.exp = exp
        self.registry = registry or get_registry()
        if seed is not None and not 0 <= int(seed) <= 2**63 - 1:
            raise UsageError(f"seed {seed}: must be between 0 and 2**63 - 1")
        self.data = validate(exp, self.registry, schema)
        if seed is not None:
            self.data["simulation"]["random_seed"] = int(seed)
        self.seed = self.data["simulation"]["random_seed"]
        self.show_progress = False   # a progress bar while simulating (labsim run on a terminal)

    def _make_sinks(self, names, out_dir, sink_config, extra_sinks):
        sinks = []
        for name in names:
            cls = self.registry.get("metric_sinks", name)
            # a sink's settings: metrics_config.<its name>, where a plugin declares that key
            own = self.data["metrics_config"].get(cls.name) or {}
            sinks.append(cls(out_dir, {**own, **sink_config.get(cls.name, {})}))
        return sinks + list(extra_sinks)

    def run(self, out_dir: Path | None = None, write_files: bool = True, extra_sinks=()) -> Result:
        """Build everything, simulate, and hand the results to the sinks."""
        started = time.perf_counter()
        data = self.data
        names = data["metrics_config"]["sinks"] if write_files else []
        target_dir, sink_config = (
            output_plan(data, out_dir, self.exp) if write_files else (None, {})
        )
        if write_files:
            outputs.prepare_folders(
                [target_dir, *(Path(p).parent for p in _planned_files(sink_config))],
                _planned_files(sink_config),
            )
        sinks = self._make_sinks(names, target_dir, sink_config, extra_sinks)
        ok = False
        try:
            result = self._simulate(sinks)
            ok = True
        finally:
            paths = _finish_sinks(sinks, ok, target_dir)
        result.out_dir = target_dir
        result.paths = [Path(p) for p in paths]
        for sink in extra_sinks:
            if getattr(sink, "rows", None) is not None:
                result.columns = dict(sink.columns)
                result.tables = {
                    t: [dict(zip(sink.columns[t], row)) for row in rows]
                    for t, rows in sink.rows.items()
                }
        result.wall_time_s = time.perf_counter() - started
        log.info(
            "run_finished",
            experiment=result.summary["experiment"],
            seed=self.seed,
            simulated_s=round(result.summary["simulated_time_s"], 3),
            wall_s=round(result.wall_time_s, 3),
            out=str(target_dir) if target_dir else None,
        )
        return result

    def check(self) -> None:
        """Build the experiment's hardware, frameworks and workload without running it, so that
        every check their plugins make on their settings runs (``labsim validate``).

        :raises LabsimError: the first problem found, as a run would report it.
        """
        self._build([])

    def _build(self, sinks):
        """(engine, metrics, hardware, frameworks, [(workload, framework)]) ready to start."""
        data = self.data
        exp = self.exp
        engine = Engine(self.seed)
        metrics = MetricsCollector(sinks, data["metrics_config"])
        hardware = build_hardware(data.get("hardware_profile", {}), self.registry, exp)
        ctx = RunContext(engine, self.registry, hardware, metrics, exp, data,
                         accounting=Accounting(lambda: engine.env.now))
        hardware.bind(ctx)
        hardware.framework_names = {entry["name"] for entry in data["frameworks_to_test"]}
        for entry in data["frameworks_to_test"]:
            if entry.get("placement"):
                hardware.placements[entry["name"]] = entry["placement"]

        frameworks = []
        for i, entry in enumerate(data["frameworks_to_test"]):
            cls = self.registry.get("frameworks", entry["type"])
            fw = self._construct(
                cls, (entry["name"], entry["config"], ctx),
                ("frameworks_to_test", i, "config"),
            )
            fw.config_path = ("frameworks_to_test", i, "config")
            fw.is_target = entry["is_target_for_workload"]
            frameworks.append(fw)

        workloads = []
        workload_cfg = data.get("workload")
        targets = [fw for fw in frameworks if fw.is_target]
        if targets and workload_cfg is None:
            raise ConfigError(
                [
                    exp.problem(
                        ("workload",),
                        "missing: the frameworks marked is_target_for_workload need a workload",
                    )
                ]
            )
        if workload_cfg is not None:
            wl_cls = self.registry.get("workloads", workload_cfg["type"])
            self._check_item_kinds(wl_cls, workload_cfg["type"], frameworks)
            for _ in targets:
                wl = self._construct(wl_cls, (workload_cfg, ctx), ("workload",))
                workloads.append(wl)
        return engine, metrics, hardware, frameworks, list(zip(workloads, targets))

    def _simulate(self, sinks) -> Result:
        data = self.data
        exp = self.exp
        engine, metrics, hardware, frameworks, pairs = self._build(sinks)
        workloads = [wl for wl, _ in pairs]
        for fw in frameworks:
            fw.start()
        for wl, fw in pairs:
            wl.start(fw)

        limit = float(data["simulation"]["max_simulation_time"])
        env = engine.env
        peek = env.peek
        bar = progress.run_bar(data, limit) if self.show_progress else None
        with young_collections_spaced():
            progress.run_events(env, limit, bar)
        stopped_by = "drained" if peek() == float("inf") else "max_simulation_time"
        sim_time = env.now if stopped_by == "drained" else limit

        summary = {
            "labsim_version": _version("labsim"),
            "experiment": data.get("name") or Path(exp.source).stem,
            "seed": self.seed,
            "simulated_time_s": sim_time,
            "stopped_by": stopped_by,
            "plugins": self._plugin_versions(),
            "hardware": hardware.summary(),
            "workload": workloads[0].summary() if workloads else {},
            "metrics_config": {
                "percentiles_to_calculate": metrics.percentiles,
                "warm_up_duration_s": metrics.warm_up_s,
                **plugin_metric_settings(data["metrics_config"]),
            },
            "frameworks": {},
            # the experiment as run (overrides applied, defaults filled, the seed it ran with):
            # rerunning it reproduces this summary byte for byte
            "resolved_experiment": _plain(data),
        }
        accounting = frameworks[0].context.accounting if frameworks else None
        for fw in frameworks:
            try:
                section = {"type": fw.name, **fw.summary()}
                if "cost" not in section and accounting is not None and fw.instance_name in accounting.owners():
                    section["cost"] = accounting.bill(fw.instance_name, end=sim_time)
                summary["frameworks"][fw.instance_name] = section
            except LabsimError:
                raise
            except NotImplementedError:
                raise PluginError(f"framework {fw.name!r} does not implement summary()") from None
        if len(frameworks) > 1:
            summary["comparison"] = comparison(summary["frameworks"])
        summary = _jsonable(summary)
        for sink in sinks:
            sink.write_summary(summary)
        return Result(summary)

    def _check_item_kinds(self, wl_cls, wl_type: str, frameworks) -> None:
        """Refuse a target framework that does not take the items the workload makes."""
        makes = getattr(wl_cls, "makes", "") or ""
        problems = []
        for i, fw in enumerate(frameworks):
            accepts = tuple(getattr(fw, "accepts", ()) or ())
            if fw.is_target and makes and accepts and makes not in accepts:
                problems.append(self.exp.problem(
                    ("frameworks_to_test", i, "type"),
                    f"framework {fw.name!r} takes {' or '.join(accepts)}; workload {wl_type!r} "
                    f"makes {makes} (pick a workload that makes {accepts[0]}, or set "
                    "is_target_for_workload: false)"))
        if problems:
            raise ConfigError(problems)

    def _construct(self, cls, args, path):
        try:
            return cls(*args)
        except ConfigError:
            raise
        except LabsimError as ex:
            raise ConfigError([self.exp.problem(path, str(ex))]) from None

    def _plugin_versions(self) -> dict:
        versions = {}
        for info in self.registry.loaded.info.values():
            if info.distribution and info.distribution != "(test)":
                versions[info.distribution] = info.version
        return dict(sorted(versions.items()))


#: the kernel's own ``metrics_config`` keys; the others were added by plugins
KERNEL_METRIC_KEYS = {"percentiles_to_calculate", "warm_up_duration_s", "output_dir",
                      "output_summary_json_path", "output_requests_csv_path", "sinks"}


def plugin_metric_settings(metrics_config: dict) -> dict:
    """The ``metrics_config`` settings plugins own (``slo`` ...), echoed into the summary."""
    return {k: v for k, v in sorted(metrics_config.items()) if k not in KERNEL_METRIC_KEYS}


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value


def comparison(frameworks: dict) -> dict:
    """Each numeric metric of every framework as a ratio to the first framework's."""
    names = list(frameworks)
    flat = {}
    for name in names:
        flat[name] = {}
        _flatten("", frameworks[name], flat[name])
    baseline = names[0]
    ratios = {}
    for name in names[1:]:
        ratios[name] = {
            key: value / flat[baseline][key]
            for key, value in flat[name].items()
            if key in flat[baseline] and flat[baseline][key] not in (0, None)
        }
    return {"baseline": baseline, "ratios": ratios}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return clean(value)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def summarize(data: dict, source: str = "<dict>", base_dir=None, seed: int | None = None) -> dict:
    """The summary of experiment *data* run in memory (no files written): *source* names it in
    messages, *base_dir* is where its relative paths (traces, profiles) resolve. What the
    searches, studies and comparisons run for each of their points."""
    from labsim.default_plugins.sinks import MemorySink

    exp = config_mod.from_dict(data, source)
    exp.base_dir = base_dir
    return Orchestrator(exp, seed=seed).run(None, write_files=False, extra_sinks=[MemorySink()]).summary


def run(
    config: dict | str | Path,
    seed: int | None = None,
    *,
    out: str | Path | None = None,
    overrides=(),
    registry: Registry | None = None,
) -> Result:
    """Run an experiment and return its :class:`Result`.

    :param config: an experiment as a dict, or the path of a YAML/JSON file.
    :param seed: overrides ``simulation.random_seed``.
    :param out: also write the outputs (summary.json, CSVs) to this folder.
    :param overrides: ``"key=value"`` strings, as ``--set`` on the command line.

    >>> result = labsim.run("examples/quickstart.yaml", seed=1)   # doctest: +SKIP
    >>> result.summary["frameworks"]["vllm"]["ttft_ms"]["p99"]     # doctest: +SKIP
    """
    from labsim.default_plugins.sinks import MemorySink

    exp = load_experiment(config, overrides)
    orchestrator = Orchestrator(exp, registry, seed)
    memory = MemorySink()
    if out is not None:
        return orchestrator.run(Path(out), write_files=True, extra_sinks=[memory])
    return orchestrator.run(None, write_files=False, extra_sinks=[memory])


__all__ = ["Orchestrator", "Result", "run", "load_experiment", "UsageError"]


def _plain(data):
    """*data* as JSON-ready plain values (a deep copy: the run may not alter the summary's)."""
    import json

    return json.loads(json.dumps(data, default=str))
