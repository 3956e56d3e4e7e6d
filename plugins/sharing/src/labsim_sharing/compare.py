"""``labsim sharing``: the same tenants on one GPU under each sharing mode, against each alone.

    labsim sharing examples/sharing_two_chat_servers.yaml --modes time_slicing,mps,mig

The experiment places its frameworks (tenants) on shared GPUs. Each tenant first runs alone
(the others removed, the GPU exclusive: its baseline), then all of them run together under each
mode, on the identical arrivals (the seed is the file's). For every tenant, each of its
framework's headline metrics is printed per mode with the ratio to alone, and the GPU time its
work took against alone (``slowdown``) and any failure (an out-of-memory tenant, an MPS fault).
Settings under ``hardware_profile.sharing`` that a mode does not know are dropped for it. Under
``mig`` a tenant without ``mig_profile`` gets the largest profile that gives every tenant of its
GPU the same instance, and a serving tenant's ``gpu_memory_utilization`` (the share it leaves the
others under time-slicing and MPS) is dropped: the instance is its own.
"""

from __future__ import annotations

import copy

import click
from labsim.errors import LabsimError, UsageError


def _placed(entry: dict) -> list[str]:
    placement = entry.get("placement") or {}
    return [str(g) for g in placement.get("gpus") or ([placement["gpu"]] if placement.get("gpu") else [])]


def _run(data: dict, exp) -> dict:
    from labsim.orchestrator import summarize

    return summarize(data, exp.source, exp.base_dir)


def _even_mig_profile(device_name: str, tenants: int) -> str:
    from labsim_sharing.mig import MIG_PROFILES, place

    table = MIG_PROFILES.get(device_name)
    if table is None:
        raise UsageError(f"--modes mig: {device_name} has no MIG; GPUs with MIG: {', '.join(MIG_PROFILES)}")
    fitting = [p for p in table.values() if place([p] * tenants) is not None]
    if not fitting:
        raise UsageError(f"--modes mig: {tenants} tenants on one {device_name} is more than MIG's 7 instances")
    return max(fitting, key=lambda p: (p.compute, p.memory)).name


def under(data: dict, mode: str, registry) -> dict:
    """A copy of experiment *data* with every shared GPU under *mode*."""
    out = copy.deepcopy(data)
    hw = out.setdefault("hardware_profile", {})
    cls = registry.get("sharing_modes", mode)
    known = set((cls.config_schema or {}).get("properties", {}))
    hw["sharing"] = {"type": mode, **{k: v for k, v in (hw.get("sharing") or {}).items()
                                      if k in known and k != "type"}}
    if mode == "mig":
        by_gpu: dict[str, list[dict]] = {}
        for entry in out.get("frameworks_to_test", []):
            for gpu in _placed(entry):
                by_gpu.setdefault(gpu, []).append(entry)
        import labsim

        device = hw.get("device") or "GPU"
        device_name = labsim.device(device).name if isinstance(device, str) else str(device)
        for entries in by_gpu.values():
            for entry in entries:
                if not entry["placement"].get("mig_profile"):
                    entry["placement"]["mig_profile"] = _even_mig_profile(device_name, len(entries))
                # the share of memory a tenant leaves the others under time-slicing and MPS: its
                # instance is its own under MIG, so the engine's default applies
                (entry.get("config") or {}).pop("gpu_memory_utilization", None)
    return out


def alone(data: dict, name: str) -> dict:
    """A copy of *data* with only tenant *name*, on a GPU of its own."""
    out = copy.deepcopy(data)
    out["frameworks_to_test"] = [e for e in out.get("frameworks_to_test", []) if e["name"] == name]
    out.setdefault("hardware_profile", {}).pop("sharing", None)
    return out


def compare(exp, modes: list[str], registry) -> dict:
    """Every tenant's headline metrics alone and under each mode (see the module docs)."""
    from labsim.cli import _lookup

    data = exp.data
    tenants = [e["name"] for e in data.get("frameworks_to_test", []) if _placed(e)]
    if not tenants:
        raise UsageError("labsim sharing: no framework is placed on a shared GPU; give tenants "
                         "`placement: {gpu: gpu0}`")
    runs: dict[str, dict] = {}
    for name in tenants:
        try:
            runs[f"alone:{name}"] = _run(alone(data, name), exp)
        except LabsimError as ex:
            raise UsageError(f"{name} alone: {str(ex).splitlines()[-1].strip()}") from None
    for mode in modes:
        try:
            runs[mode] = _run(under(data, mode, registry), exp)
        except LabsimError as ex:
            runs[mode] = {"error": str(ex).splitlines()[-1].strip()}
    out = {"modes": modes, "tenants": {}}
    for name in tenants:
        base = runs[f"alone:{name}"]["frameworks"][name]
        ftype = base.get("type")
        cls = registry.get("frameworks", ftype) if ftype and registry.has("frameworks", ftype) else None
        metrics = list(getattr(cls, "headline", None) or [])
        rows = {}
        for label, path in metrics:
            row = {"alone": _lookup(base, path)}
            for mode in modes:
                fw = runs[mode].get("frameworks", {}).get(name)
                row[mode] = _lookup(fw, path) if fw else None
            rows[label] = row
        gpu = {}
        for mode in modes:
            sharing = runs[mode].get("hardware", {}).get("sharing", {})
            for info in sharing.values():
                t = info.get("tenants", {}).get(name)
                if t is not None:
                    gpu[mode] = {"slowdown": t.get("slowdown"),
                                 "failure": (info.get("failures") or {}).get(name)}
            if "error" in runs[mode]:
                gpu[mode] = {"error": runs[mode]["error"]}
        out["tenants"][name] = {"metrics": rows, "gpu": gpu}
    return out


def _fmt(v) -> str:
    from labsim.cli import _number

    return _number(v)


def print_comparison(result: dict) -> None:
    modes = result["modes"]
    for name, t in result["tenants"].items():
        click.echo(f"tenant {name}")
        head = ["metric", "alone", *modes, *[f"{m}/alone" for m in modes]]
        lines = [head]
        for label, row in t["metrics"].items():
            base = row["alone"]
            ratios = [f"{row[m] / base:.3g}x" if isinstance(row[m], (int, float)) and isinstance(base, (int, float))
                      and base else "-" for m in modes]
            lines.append([label, _fmt(base), *[_fmt(row[m]) for m in modes], *ratios])
        slow = ["GPU work slowdown", "1"]
        for m in modes:
            g = t["gpu"].get(m, {})
            slow.append("error" if "error" in g else "failed" if g.get("failure") else _fmt(g.get("slowdown")))
        lines.append(slow + ["-"] * len(modes))
        widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
        for r in lines:
            click.echo("  " + "  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i])
                                        for i, c in enumerate(r)))
        for m in modes:
            g = t["gpu"].get(m, {})
            if g.get("failure"):
                f = g["failure"]
                click.echo(f"  {m}: {f['kind']} at {f['at_s']:g} s: {f['detail']}")
            if g.get("error"):
                click.echo(f"  {m}: {g['error']}")


def _copies(data: dict, tenant: str, n: int, mode: str) -> dict:
    """*data* with *n* copies of *tenant* (``chat``, ``chat-2``, …) on its GPU; under MIG every
    tenant of that GPU gets the even profile."""
    out = copy.deepcopy(data)
    entries = out.get("frameworks_to_test", [])
    base = next((e for e in entries if e["name"] == tenant), None)
    if base is None:
        raise UsageError(f"--stress: no tenant {tenant!r}; tenants: {', '.join(e['name'] for e in entries)}")
    for k in range(2, n + 1):
        twin = copy.deepcopy(base)
        twin["name"] = f"{tenant}-{k}"
        entries.append(twin)
    if mode == "mig":
        gpu = _placed(base)[0]
        for e in entries:
            if gpu in _placed(e):
                e["placement"].pop("mig_profile", None)
    return out


def _worst(fw_summaries: list[dict], path: str, upper: bool) -> float | None:
    from labsim.cli import _lookup

    values = [_lookup(s, path) for s in fw_summaries]
    if any(v is None for v in values):
        return None
    return max(values) if upper else min(values)


def stress(exp, tenant: str, slo: str, modes: list[str], registry, most: int = 8) -> dict:
    """Per mode: add copies of *tenant* one at a time until the worst copy breaks *slo*
    (``dotted.path<=value`` or ``>=``); the most copies that kept it, and the cost per 1,000 of
    their inferences (cells, iterations) there."""
    import re

    m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(<=|>=)\s*([0-9.eE+-]+)\s*", slo)
    if not m:
        raise UsageError(f"--slo: {slo!r}; allowed: a summary path, <= or >=, and a number "
                         "(e.g. tpot_ms.p99<=50)")
    path, op, limit = m.group(1), m.group(2), float(m.group(3))
    upper = op == "<="
    out = {"tenant": tenant, "slo": slo, "modes": {}}
    for mode in modes:
        steps, held = [], None
        for n in range(1, most + 1):
            data = under(_copies(exp.data, tenant, n, mode), mode, registry)
            try:
                summary = _run(data, exp)
            except LabsimError as ex:
                steps.append({"tenants": n, "error": str(ex).splitlines()[-1].strip()})
                break
            names = [tenant] + [f"{tenant}-{k}" for k in range(2, n + 1)]
            fws = [summary["frameworks"][x] for x in names]
            worst = _worst(fws, path, upper)
            ok = worst is not None and (worst <= limit if upper else worst >= limit)
            done = sum(_served(f) for f in fws)
            usd = max(_usd(f) for f in fws)  # the tenants hold the same GPU: its bill
            step = {"tenants": n, "worst": worst, "meets_slo": ok,
                    "usd_per_1000": usd / done * 1000 if done else None}
            failures = [f["kind"] for info in summary.get("hardware", {}).get("sharing", {}).values()
                        for t, f in (info.get("failures") or {}).items() if t in names]
            if failures:
                step["failure"] = failures[0]
            steps.append(step)
            if not ok:
                break
            held = step
        out["modes"][mode] = {"steps": steps, "capacity": held["tenants"] if held else 0,
                              "usd_per_1000_at_capacity": held["usd_per_1000"] if held else None}
    return out


def _usd(fw: dict) -> float:
    cost = fw.get("cost") or {}
    return float(cost.get("usd", cost.get("usd_total", 0.0)) or 0.0)


def _served(fw: dict) -> int:
    """What a tenant served: finished requests, cells, or iterations."""
    if isinstance(fw.get("requests"), dict):
        return int(fw["requests"].get("finished", 0))
    if "cells" in fw:
        return int(fw["cells"])
    return int(fw.get("iterations", 0) or 0)


def print_stress(result: dict) -> None:
    click.echo(f"stress: copies of {result['tenant']} until {result['slo']} breaks")
    for mode, r in result["modes"].items():
        cells = []
        for s in r["steps"]:
            if "error" in s:
                cells.append(f"{s['tenants']}: {s['error']}")
            else:
                mark = "ok" if s["meets_slo"] else "breaks"
                if s.get("failure"):
                    cells.append(f"{s['tenants']}: {s['failure']}")
                else:
                    cells.append(f"{s['tenants']}: {_fmt(s['worst'])} {mark}")
        cost = r["usd_per_1000_at_capacity"]
        click.echo(f"  {mode:<13} capacity {r['capacity']} tenant(s)"
                   + (f", ${cost:.4g} per 1,000 served there" if cost is not None else "")
                   + "  [" + "; ".join(cells) + "]")


@click.command("sharing")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False))
@click.option("--modes", default="time_slicing,mps,mig", show_default=True,
              help="Sharing modes to compare, comma-separated (`labsim list sharing_modes`).")
@click.option("--set", "overrides", multiple=True, help="key=value overrides, as for labsim run.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the comparison to this JSON file.")
@click.option("--stress", "stress_tenant", metavar="TENANT",
              help="Stress test: add copies of TENANT one at a time until --slo breaks, per mode.")
@click.option("--slo", default=None, metavar="PATH<=VALUE",
              help="The SLO of --stress on the tenant's summary, e.g. tpot_ms.p99<=50 or "
                   "cell_latency_ms.p95<=500.")
@click.option("--max-tenants", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Stop the stress test at this many copies.")
def sharing_command(experiment, modes, overrides, json_out, stress_tenant, slo, max_tenants):
    """The same tenants on a shared GPU under each sharing mode, against each tenant alone."""
    from labsim.orchestrator import load_experiment
    from labsim.registry import get_registry

    registry = get_registry()
    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    for m in wanted:
        if not registry.has("sharing_modes", m):
            raise UsageError(f"--modes: no sharing mode {m!r}; allowed: "
                             f"{', '.join(sorted(registry.names('sharing_modes')))}")
    exp = load_experiment(experiment, overrides)
    if stress_tenant:
        if not slo:
            raise UsageError("--stress needs --slo PATH<=VALUE (e.g. tpot_ms.p99<=50)")
        result = stress(exp, stress_tenant, slo, wanted, registry, max_tenants)
        click.echo(f"{exp.data.get('name', experiment)}: {', '.join(wanted)}")
        print_stress(result)
    else:
        result = compare(exp, wanted, registry)
        click.echo(f"{exp.data.get('name', experiment)}: tenants alone and under {', '.join(wanted)}")
        print_comparison(result)
    if json_out:
        from pathlib import Path

        from labsim.default_plugins.sinks import write_json_atomic

        write_json_atomic(Path(json_out), result)
