"""``labsim search``: the cheapest serving configuration that meets SLOs at a load.

    labsim search examples/search_llama8b_chat.yaml --slo "ttft_ms.p99<=500" \\
        --slo "tpot_ms.p99<=50" --devices H100-SXM,A100-SXM4-80GB,L40S --tp 1,2,4 \\
        [--pp 1,2] [--knob max_num_seqs=128,256]

The experiment gives the traffic (a ``client_profiles`` workload: its request rates are the
**target load**), the serving engines to try (``frameworks_to_test``, each with its knobs) and
the GPU. A **configuration** is one engine × one GPU type × one tensor-parallel size × one
pipeline-parallel size × one value of each ``--knob`` (any key of the engine's config). For
each, the search

1. finds its **capacity**: the highest load one replica sustains within every SLO, by
   doubling then bisecting a multiplier of every request rate (latency only grows with
   load: the monotonicity that makes bisection valid), to within ``--precision``;
   a run that leaves requests unfinished or rejects some breaks the SLOs;
2. sizes it: ``replicas = ceil(target / capacity)`` (replicas behind the router add capacity
   about linearly: the second monotonicity), then runs the target load on that many
   replicas to check, adding one while it misses (at most twice);
3. prices it: GPUs × the GPU's ``price_per_hour`` (the catalog's, or the file's), and the
   cost of a million output tokens at capacity.

The configurations that meet the SLOs at the target are ranked by cost per hour; the
**Pareto front** is those no other one beats on both cost and the first SLO's latency.
A configuration that cannot hold the model (too little memory at that TP) is reported as
such. Every run uses the file's seed, so the search is deterministic. Configurations run in
parallel, one process each (``--workers``, default: one per CPU this process may use).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass

import click
from labsim.errors import LabsimError, UsageError

#: ``METRIC<=VALUE`` or ``METRIC>=VALUE`` on a framework's summary (``ttft_ms.p99<=500``)
SLO_PATTERN = re.compile(r"\s*([A-Za-z0-9_.]+)\s*(<=|>=)\s*([0-9.eE+-]+)\s*")
#: the highest load multiplier the capacity search tries before calling a configuration unbounded
MAX_MULTIPLIER = 1024.0


@dataclass(frozen=True)
class Slo:
    """One service-level objective on a framework's summary."""

    path: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> Slo:
        m = SLO_PATTERN.fullmatch(text)
        if not m:
            raise UsageError(f"--slo {text!r}: allowed: METRIC<=VALUE or METRIC>=VALUE on a framework's "
                             "summary, e.g. ttft_ms.p99<=500 or tpot_ms.p90<=50")
        try:
            limit = float(m.group(3))
        except ValueError:
            raise UsageError(f"--slo {text!r}: {m.group(3)!r} is not a number") from None
        return cls(m.group(1), m.group(2), limit)

    def value(self, stats: dict) -> float:
        node = stats
        for part in self.path.split("."):
            if not isinstance(node, dict) or part not in node:
                have = ", ".join(sorted(k for k, v in stats.items() if isinstance(v, dict)))
                raise UsageError(f"--slo {self}: the summary has no {self.path!r} (percentiles come "
                                 f"from metrics_config.percentiles_to_calculate; metrics: {have})")
            node = node[part]
        if node is None:            # no request in the statistics to measure it on
            return None
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            raise UsageError(f"--slo {self}: {self.path!r} is not a number in the summary")
        return float(node)

    def met(self, stats: dict) -> bool:
        """Whether *stats* meet it; a metric with nothing measured does not."""
        value = self.value(stats)
        if value is None:
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.path}{self.op}{self.limit:g}"


def scaled(data: dict, factor: float) -> dict:
    """A copy of experiment *data* with every request rate of its workload times *factor*."""
    out = copy.deepcopy(data)
    workload = out.get("workload") or {}
    profiles = workload.get("client_profiles")
    if workload.get("type") != "client_profiles" or not profiles:
        raise UsageError("labsim search needs a client_profiles workload (its request rates are the "
                         f"target load); this experiment's workload is {workload.get('type')!r}")
    for profile in profiles:
        profile["request_rate"] = profile["request_rate"] * factor
    return out


def configuration(data: dict, framework: dict, device: str | None, tp: int, replicas: int,
                  pp: int = 1, knobs: dict | None = None) -> dict:
    """*data* with only *framework*, at *tp* × *pp*, *replicas* and the engine settings *knobs*,
    on *device* (None: the file's)."""
    out = copy.deepcopy(data)
    entry = copy.deepcopy(framework)
    entry.setdefault("config", {})
    entry["config"].update(knobs or {})
    entry["config"]["tensor_parallel_size"] = tp
    entry["config"]["num_replicas"] = replicas
    if pp > 1 or "pipeline_parallel_size" in entry["config"]:
        entry["config"]["pipeline_parallel_size"] = pp
    out["frameworks_to_test"] = [entry]
    hw = out.setdefault("hardware_profile", {})
    if device is not None and device != hw.get("device"):
        hw["device"] = device
        hw.pop("topology", None)   # the searched GPU runs on its own links (NVLink or PCIe)
    return out


def _verdict(summary: dict, name: str, slos) -> tuple[bool, dict]:
    stats = summary["frameworks"][name]
    requests = stats.get("requests") or {}
    clean = not requests.get("unfinished") and not requests.get("rejected")
    return clean and all(s.met(stats) for s in slos), stats


def cost_per_million_output_tokens(gpus: float, price_per_gpu_hour: float, tokens_per_s: float) -> float | None:
    """USD per million output tokens of *gpus* GPUs at *price_per_gpu_hour* serving
    *tokens_per_s* (a replica at its capacity); None when either is 0."""
    if tokens_per_s <= 0 or price_per_gpu_hour <= 0:
        return None
    return gpus * price_per_gpu_hour / (tokens_per_s * 3600) * 1e6


def search_one(task: dict) -> dict:
    """Capacity, size and cost of one configuration (see the module docstring); runs in a
    worker process. *task*: data, source, base_dir, framework, device, tp, slos, precision,
    max_replicas."""
    from labsim.orchestrator import summarize

    data, fw, slos = task["data"], task["framework"], task["slos"]
    name = fw["name"]
    out = {"framework": name, "engine": fw["type"], "device": task["device_name"],
           "tp": task["tp"], "pp": task["pp"], "knobs": task["knobs"], "runs": 0}

    def evaluate(factor: float, replicas: int = 1):
        out["runs"] += 1
        exp = scaled(configuration(data, fw, task["device"], task["tp"], replicas, task["pp"],
                                   task["knobs"]), factor)
        return _verdict(summarize(exp, task["source"], task["base_dir"]), name, slos)

    try:
        ok, stats = evaluate(1.0)
        first = stats
        lo, hi, lo_stats = (1.0, None, stats) if ok else (0.0, 1.0, None)
        while ok and hi is None:                    # double until it breaks
            if lo >= MAX_MULTIPLIER:
                break
            ok, stats = evaluate(lo * 2)
            if ok:
                lo, lo_stats = lo * 2, stats
            else:
                hi = lo * 2
        if hi is not None:
            if lo == 0.0:                           # breaks at the target: halve until it holds
                probe = 0.5
                while probe >= 1.0 / 1024:
                    ok, stats = evaluate(probe)
                    if ok:
                        lo, lo_stats = probe, stats
                        break
                    hi, probe = probe, probe / 2
            while lo > 0 and (hi - lo) / lo > task["precision"]:   # bisect
                mid = (lo + hi) / 2
                ok, stats = evaluate(mid)
                if ok:
                    lo, lo_stats = mid, stats
                else:
                    hi = mid
    except LabsimError as ex:
        lines = [line.strip() for line in str(ex).splitlines() if line.strip()]
        text = " ".join(lines[1:] if len(lines) > 1 and lines[0].startswith("Invalid") else lines)
        out["error"] = re.sub(r"^.*?frameworks_to_test\[\d+\](\.config)?: ", "", text)
        return out
    if lo_stats is None:
        worst = ", ".join(f"{s.path} {_fmt(s.value(first), '.1f')}" for s in slos)
        out["error"] = f"misses the SLOs down to 1/1024 of the target load (at the target: {worst})"
        return out
    target = task["target_rps"]
    out["capacity_rps"] = lo * target
    out["capacity_bounded"] = hi is not None
    out["output_tokens_per_s_at_capacity"] = lo_stats["throughput"]["output_tokens_per_s"]
    replicas = max(1, math.ceil(1.0 / lo - 1e-9))
    for _ in range(3):
        if replicas > task["max_replicas"]:
            out["error"] = f"needs more than --max-replicas {task['max_replicas']} replicas"
            return out
        ok, stats = evaluate(1.0, replicas)
        if ok:
            break
        replicas += 1
    else:
        out["error"] = f"misses the SLOs at the target with {replicas - 1} replicas"
        return out
    out["replicas"] = replicas
    out["at_target"] = {str(s): s.value(stats) for s in slos}
    return out


def search(data: dict, source: str, base_dir, slos, devices, tps, frameworks,
           precision: float = 0.05, max_replicas: int = 64, workers: int = 0,
           progress=None, pps=(), knobs=()) -> dict:
    """Every configuration's capacity, size and cost, the cheapest and the Pareto front.

    *knobs*: ``[(config key, [values])]`` crossed into every configuration."""
    import labsim

    entries = data.get("frameworks_to_test") or []
    chosen = [e for e in entries if not frameworks or e["name"] in frameworks]
    unknown = sorted(set(frameworks or ()) - {e["name"] for e in entries})
    if unknown:
        raise UsageError(f"--frameworks: no framework {', '.join(unknown)} in the experiment; "
                         f"it has {', '.join(e['name'] for e in entries)}")
    target = sum(p["request_rate"] for p in scaled(data, 1.0)["workload"]["client_profiles"])
    if target <= 0:
        raise UsageError("labsim search: the workload's request rates sum to 0; give the target load")
    file_device = (data.get("hardware_profile") or {}).get("device")
    if not devices:
        if not file_device:
            raise UsageError("labsim search needs hardware_profile.device (or --devices NAME,...): "
                             "it varies the GPU type by name")
        devices = [file_device]
    combos = [dict(zip([k for k, _ in knobs], values, strict=True))
              for values in itertools.product(*[v for _, v in knobs])] if knobs else [{}]
    tasks = []
    for entry in chosen:
        cfg = entry.get("config") or {}
        for combo in combos:
            _check(data, source, base_dir, entry, combo)   # a knob the engine lacks exits 2 now
        for device in devices:
            name = labsim.device(device).name     # unknown names exit 2 here, before any run
            for tp in (tps or [int(cfg.get("tensor_parallel_size", 1))]):
                for pp in (pps or [int(cfg.get("pipeline_parallel_size", 1))]):
                    for combo in combos:
                        tasks.append({"data": data, "source": source, "base_dir": base_dir,
                                      "framework": entry, "device": device, "device_name": name,
                                      "tp": int(tp), "pp": int(pp), "knobs": combo, "slos": slos,
                                      "precision": precision, "max_replicas": max_replicas,
                                      "target_rps": target})
    from labsim.parallel import map_processes

    results = map_processes(search_one, tasks, workers, progress)
    for r, task in zip(results, tasks, strict=True):
        price = float(labsim.device(task["device"]).price_per_hour)
        r["price_per_gpu_hour"] = price
        if "replicas" in r:
            per_replica = r["tp"] * r["pp"]
            r["gpus"] = r["replicas"] * per_replica
            r["cost_per_hour"] = r["gpus"] * price
            r["cost_per_million_output_tokens"] = cost_per_million_output_tokens(
                per_replica, price, r["output_tokens_per_s_at_capacity"])
    meeting = sorted((r for r in results if "replicas" in r),
                     key=lambda r: (r["cost_per_hour"], r["at_target"][str(slos[0])]))
    front, best_latency = [], math.inf
    for r in meeting:                     # cost ascending: on the front if it lowers the latency
        latency = r["at_target"][str(slos[0])]
        if latency < best_latency:
            front.append(r)
            best_latency = latency
    for r in results:
        r["pareto"] = r in front
    return {"target_rps": target, "slos": [str(s) for s in slos],
            "cheapest": meeting[0] if meeting else None, "configurations": results}


def _check(data: dict, source: str, base_dir, entry: dict, knobs: dict) -> None:
    """The experiment's schema with *knobs* set on *entry*: a key or value the engine does not
    take is a UsageError naming it, before anything runs."""
    from labsim.config import from_dict
    from labsim.orchestrator import Orchestrator

    if not knobs:
        return
    one = configuration(data, entry, None, int((entry.get("config") or {}).get("tensor_parallel_size", 1)), 1,
                        knobs=knobs)
    exp = from_dict(one, source)
    exp.base_dir = base_dir
    try:
        Orchestrator(exp)
    except LabsimError as ex:
        raise UsageError(f"--knob {', '.join(f'{k}={v}' for k, v in knobs.items())}: {ex}") from None


def parse_knob(text: str) -> tuple[str, list]:
    """``KEY=v1,v2`` → ``(KEY, [v1, v2])`` (values read as in --set)."""
    from labsim.config import parse_value

    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UsageError(f"--knob {text!r}: allowed: KEY=V1,V2,... with KEY a setting of the engine's "
                         "config, e.g. max_num_seqs=128,256")
    return key.strip(), [parse_value(v.strip()) for v in values.split(",") if v.strip()]


def _layout(r: dict) -> str:
    return f"{r['tp']}×{r['pp']}" if r.get("pp", 1) > 1 else str(r["tp"])


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_result(result: dict) -> None:
    slos = result["slos"]
    click.echo(f"target load {result['target_rps']:g} req/s; SLOs: {', '.join(slos)}")
    knobbed = any(r.get("knobs") for r in result["configurations"])
    piped = any(r.get("pp", 1) > 1 for r in result["configurations"])
    header = ["framework", "GPU", "TP×PP" if piped else "TP", *(["knobs"] if knobbed else []),
              "capacity req/s", "replicas", "GPUs", "$/hour", "$/1M out tok", f"{slos[0]} at target",
              "pareto"]
    rows = []
    slo0 = slos[0]
    for r in sorted(result["configurations"],
                    key=lambda r: (r.get("cost_per_hour", math.inf),
                                   r.get("at_target", {}).get(slo0) or 0.0,
                                   r["framework"], r["device"], r["tp"])):
        head = [r["framework"], r["device"], _layout(r)]
        if knobbed:
            head.append(" ".join(f"{k}={v}" for k, v in (r.get("knobs") or {}).items()))
        if "error" in r:
            error = r["error"] if len(r["error"]) <= 100 else r["error"][:97] + "..."
            rows.append([*head, "-", "-", "-", "-", "-", error, ""])
            continue
        cap = _fmt(r["capacity_rps"]) + ("" if r["capacity_bounded"] else "+")
        rows.append([*head, cap, str(r["replicas"]), str(r["gpus"]),
                     _fmt(r["cost_per_hour"]), _fmt(r["cost_per_million_output_tokens"], ".3f"),
                     _fmt(r["at_target"][slos[0]], ".1f"), "*" if r["pareto"] else ""])
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    best = result["cheapest"]
    if best:
        knobs = " ".join(f"{k}={v}" for k, v in (best.get("knobs") or {}).items())
        click.echo(f"cheapest meeting the SLOs: {best['framework']}{' (' + knobs + ')' if knobs else ''} on "
                   f"{best['replicas']} × {_layout(best)} {best['device']} ({best['gpus']} GPU{'s' if best['gpus'] > 1 else ''}, "
                   f"${best['cost_per_hour']:.2f}/hour)")
    else:
        click.echo("no configuration meets the SLOs at the target load")
    runs = sum(r["runs"] for r in result["configurations"])
    click.echo(f"{len(result['configurations'])} configurations, {runs} runs")


def _csv_ints(text: str | None, option: str) -> list[int]:
    if not text:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: allowed: whole numbers separated by commas, e.g. 1,2,4") from None
    if any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: every value must be ≥ 1")
    return values


@click.command("search")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--slo", "slos", multiple=True, required=True, metavar="METRIC<=VALUE",
              help="An SLO on each framework's summary (repeat), e.g. ttft_ms.p99<=500.")
@click.option("--devices", default=None, help="GPU types to try, comma-separated (default: the file's).")
@click.option("--tp", "tps", default=None, help="Tensor-parallel sizes to try, e.g. 1,2,4 "
              "(default: each framework's).")
@click.option("--pp", "pps", default=None, help="Pipeline-parallel sizes to try, e.g. 1,2 "
              "(default: each framework's).")
@click.option("--knob", "knobs", multiple=True, metavar="KEY=V1,V2",
              help="An engine setting to try at each value (repeat to cross several), e.g. "
                   "max_num_seqs=128,256.")
@click.option("--frameworks", default=None, help="Only these frameworks_to_test, comma-separated.")
@click.option("--precision", default=0.05, show_default=True, type=click.FloatRange(0.001, 1),
              help="Relative width at which the capacity bisection stops.")
@click.option("--max-replicas", default=64, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--workers", default=0, type=click.IntRange(0, 1024),
              help="Configurations searched at once (default: one per CPU this process may use).")
@click.option("--set", "overrides", multiple=True, help="key=value overrides, as for labsim run.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write every configuration's figures to this JSON file.")
def search_command(experiment, slos, devices, tps, pps, knobs, frameworks, precision, max_replicas,
                   workers, overrides, json_out):
    """The cheapest serving configuration meeting --slo at the experiment's load: each
    engine × GPU type × TP's capacity, replicas, cost and the Pareto front."""
    from labsim import progress as bars
    from labsim.orchestrator import load_experiment

    from labsim.orchestrator import Orchestrator

    parsed = [Slo.parse(s) for s in slos]
    exp = load_experiment(experiment, overrides)
    Orchestrator(exp)          # the composed schema: bad input exits 2 before any run
    names = [d.strip() for d in devices.split(",") if d.strip()] if devices else []
    fws = [f.strip() for f in frameworks.split(",") if f.strip()] if frameworks else []
    tp_values = _csv_ints(tps, "--tp")
    pp_values = _csv_ints(pps, "--pp")
    knob_values = [parse_knob(k) for k in knobs]
    total = max(1, len(names) or 1) * max(1, len(tp_values) or 1) * max(1, len(pp_values) or 1) * max(
        1, len(fws) or len(exp.data.get("frameworks_to_test") or []))
    for _, values in knob_values:
        total *= max(1, len(values))
    bar = bars.bar(total, "search", unit="configuration")
    try:
        result = search(exp.data, exp.source, exp.base_dir, parsed, names, tp_values, fws,
                        precision, max_replicas, workers, progress=bar.update if bar else None,
                        pps=pp_values, knobs=knob_values)
    finally:
        if bar:
            bar.close()
    print_result(result)
    if json_out:
        from pathlib import Path

        from labsim.default_plugins.sinks import write_json_atomic

        write_json_atomic(Path(json_out), result)


__all__ = ["Slo", "configuration", "parse_knob", "scaled", "search", "search_command", "search_one"]
