"""The report of a search: ``labsim search --json`` (serving), ``labsim scale --search --json``
(training layouts), ``labsim scale --json`` (a scaling study) or ``labsim sharing --json`` (the
sharing modes compared).

Serving: every configuration's figures, the cost–latency plane with the Pareto front drawn
through it, and each configuration's capacity and cost per million output tokens. Training:
the best layout per size and framework, its throughput against the GPU count, and the hours
to train against the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

from labsim.errors import UsageError

from labsim_report.page import STYLE, Run, esc, html_table


def _page(title: str, parts: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>labsim {esc(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def _num(value, spec=",.4g") -> str:
    return "" if value is None else format(value, spec)


def _label(r: dict) -> str:
    return f"{r['framework']} {r['device']} TP{r['tp']}"


def _gpu_axes(fig, axes) -> None:
    """GPU counts on a log₂ axis, grid and legend on each of *axes*."""
    for ax in axes:
        ax.set_xlabel("GPUs")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    fig.tight_layout()


def serving(result: dict, name: str) -> str:
    import matplotlib.pyplot as plt

    slos = result["slos"]
    rows = []
    for r in result["configurations"]:
        rows.append([r["framework"], r["device"], r["tp"], _num(r.get("capacity_rps")),
                     r.get("replicas", ""), r.get("gpus", ""), _num(r.get("cost_per_hour")),
                     _num(r.get("cost_per_million_output_tokens")),
                     *[_num((r.get("at_target") or {}).get(s)) for s in slos],
                     "yes" if r.get("pareto") else "", r.get("error", "")])
    parts = [f"<h1>Search {esc(name)}</h1>",
             f"<p>Target load {result['target_rps']:g} req/s; SLOs: {esc(', '.join(slos))}.</p>"]
    best = result.get("cheapest")
    parts.append("<p><b>Cheapest meeting the SLOs:</b> "
                 + (esc(f"{best['framework']} on {best['replicas']} × {best['tp']} {best['device']} "
                        f"({best['gpus']} GPU{'s' if best['gpus'] > 1 else ''}, ${best['cost_per_hour']:.2f}/hour)") if best
                    else "none") + "</p>")
    ok = [r for r in result["configurations"] if "replicas" in r]
    if ok:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4))
        ax = axes[0]
        for r in ok:
            y = r["at_target"][slos[0]]
            ax.scatter(r["cost_per_hour"], y, s=40, color="C3" if r["pareto"] else "C0", zorder=3)
            ax.annotate(_label(r), (r["cost_per_hour"], y), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        front = sorted((r for r in ok if r["pareto"]), key=lambda r: r["cost_per_hour"])
        ax.step([r["cost_per_hour"] for r in front], [r["at_target"][slos[0]] for r in front],
                where="post", color="C3", lw=1, label="Pareto front")
        ax.set_xlabel("$ per hour at the target load")
        ax.set_ylabel(f"{slos[0].split('<')[0].split('>')[0]} at the target")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
        ax = axes[1]
        ranked = sorted(ok, key=lambda r: r["cost_per_million_output_tokens"] or 0)
        ax.barh([_label(r) for r in ranked], [r["cost_per_million_output_tokens"] or 0 for r in ranked],
                color=["C3" if r["pareto"] else "C0" for r in ranked])
        ax.set_xlabel("$ per 1M output tokens at capacity (one replica)")
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
        fig.tight_layout()
        parts.append("<h2>Cost against latency</h2>" + Run.figure(fig))
    parts.append("<h2>Configurations</h2>" + html_table(
        ["framework", "GPU", "TP", "capacity req/s", "replicas", "GPUs", "$/hour", "$/1M out tok",
         *[f"{s} at target" for s in slos], "Pareto", "why not"], rows))
    return _page(f"search: {name}", parts)


def training(result: dict, name: str) -> str:
    import matplotlib.pyplot as plt

    rows, by_fw = [], {}
    for r in result["sizes"]:
        best = r.get("best")
        rows.append([r["gpus"], r["framework"], best["layout"] if best else r.get("why_none", ""),
                     _num(best and best["iteration_time_s"]), _num(best and best["tokens_per_s"]),
                     _num(best and best["mfu"], ".3f"), _num(r.get("hours_to_train")),
                     f"{r['ran']}/{r['tried']}"])
        if best:
            by_fw.setdefault(r["framework"], []).append((r["gpus"], best["tokens_per_s"],
                                                         r.get("hours_to_train")))
    parts = [f"<h1>Layout search {esc(name)}</h1>",
             f"<p>Best layout per size by {esc(result['objective'])}.</p>"]
    best = result.get("smallest_meeting_budget")
    if result.get("budget_hours") is not None:
        parts.append("<p><b>Smallest cluster meeting "
                     f"{result['budget_hours']:g} h:</b> "
                     + (esc(f"{best['gpus']} GPUs, {best['framework']} {best['best']['layout']}") if best
                        else "none of the sizes tried") + "</p>")
    if by_fw:
        fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
        for fw, pts in by_fw.items():
            pts.sort()
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=fw)
            if all(p[2] is not None for p in pts):
                axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=fw)
        axes[0].set_ylabel("tokens/s (best layout)")
        axes[1].set_ylabel("hours to train")
        if result.get("budget_hours") is not None:
            axes[1].axhline(result["budget_hours"], ls="--", color="k", lw=1, label="budget")
        _gpu_axes(fig, axes)
        parts.append("<h2>Scaling of the best layouts</h2>" + Run.figure(fig))
    parts.append("<h2>Best layouts</h2>" + html_table(
        ["GPUs", "framework", "layout", "iteration s", "tokens/s", "MFU", "hours to train", "ran/tried"],
        rows))
    return _page(f"layout search: {name}", parts)


def scaling(result: dict, name: str) -> str:
    """A plain scaling study (``labsim scale --json``): throughput and efficiency per size."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    by_fw: dict = {}
    for r in rows:
        if "error" not in r:
            by_fw.setdefault(r["framework"], []).append(r)
    parts = [f"<h1>Scaling study {esc(result.get('name') or name)}</h1>",
             f"<p>{esc(result['mode'])} scaling; efficiency is throughput per GPU against the first "
             "size each framework ran at.</p>"]
    if by_fw:
        fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
        for fw, pts in by_fw.items():
            pts.sort(key=lambda r: r["gpus"])
            axes[0].plot([r["gpus"] for r in pts], [r["tokens_per_s"] for r in pts], marker="o", label=fw)
            axes[1].plot([r["gpus"] for r in pts], [r["scaling_efficiency"] for r in pts], marker="o", label=fw)
        axes[0].set_ylabel("tokens/s")
        axes[1].set_ylabel("scaling efficiency")
        axes[1].set_ylim(0, 1.1)
        _gpu_axes(fig, axes)
        parts.append("<h2>Throughput and efficiency</h2>" + Run.figure(fig))
    parts.append("<h2>Sizes</h2>" + html_table(
        ["GPUs", "framework", "layout", "iteration s", "tokens/s", "MFU", "efficiency", "why not"],
        [[r["gpus"], r["framework"], r.get("layout", ""), _num(r.get("iteration_time_s")),
          _num(r.get("tokens_per_s")), _num(r.get("mfu"), ".3f"),
          _num(r.get("scaling_efficiency"), ".1%"), r.get("error", "")] for r in rows]))
    return _page(f"scaling study: {name}", parts)


def sharing_modes(result: dict, name: str) -> str:
    """``labsim sharing --json``: each tenant's headline metrics per mode against alone."""
    import matplotlib.pyplot as plt

    modes = result["modes"]
    tenants = result["tenants"]
    parts = [f"<h1>Sharing modes {esc(name)}</h1>",
             f"<p>Each tenant alone on its GPU, then all together under {esc(', '.join(modes))}, on "
             "the identical arrivals.</p>"]
    metrics = [m for m in ("TTFT p99 (ms)", "TPOT p99 (ms)", "output tokens/s", "iteration time (s)",
                           "tokens/s", "cell latency p95 (ms)")
               if any(m in t.get("metrics", {}) for t in tenants.values())][:3]
    if metrics:
        fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(13, 3.6), squeeze=False)
        axes = axes[0]
        width = 0.8 / max(1, len(tenants))
        for ax, metric in zip(axes, metrics):
            for i, (tenant, t) in enumerate(tenants.items()):
                row = t.get("metrics", {}).get(metric) or {}
                base = row.get("alone")
                ratios = [(row.get(m) / base) if isinstance(row.get(m), (int, float)) and base else 0.0
                          for m in modes]
                ax.bar([j + i * width for j in range(len(modes))], ratios, width, label=tenant)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks([j + width * (len(tenants) - 1) / 2 for j in range(len(modes))], modes)
            ax.set_ylabel(f"{metric} / alone")
            ax.grid(axis="y", alpha=.3)
        ax = axes[-1]
        for i, (tenant, t) in enumerate(tenants.items()):
            gpu = t.get("gpu") or {}
            ax.bar([j + i * width for j in range(len(modes))],
                   [(gpu.get(m) or {}).get("slowdown") or 0.0 for m in modes], width, label=tenant)
        ax.set_xticks([j + width * (len(tenants) - 1) / 2 for j in range(len(modes))], modes)
        ax.set_ylabel("GPU work slowdown")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        parts.append("<h2>Each mode against alone</h2>" + Run.figure(fig))
    for tenant, t in tenants.items():
        rows = [[metric, *[_num(v.get(k)) if isinstance(v.get(k), (int, float)) else (v.get(k) or "")
                           for k in ("alone", *modes)]] for metric, v in (t.get("metrics") or {}).items()]
        failures = [f"{m}: {(t.get('gpu') or {}).get(m, {}).get('failure')}" for m in modes
                    if ((t.get("gpu") or {}).get(m) or {}).get("failure")]
        parts.append(f"<h2>{esc(tenant)}</h2>" + html_table(["metric", "alone", *modes], rows)
                     + ("<p class=\"note\">failures: " + esc("; ".join(failures)) + "</p>" if failures else ""))
    return _page(f"sharing modes: {name}", parts)


def build_search(path: Path) -> str:
    """The HTML page of the search result *path* (JSON written with ``--json``)."""
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "labsim"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as ex:
        raise UsageError(f"PATH: {path} is not a search result (JSON from `labsim search --json`): {ex}") from None
    if isinstance(result, dict) and "configurations" in result and "slos" in result:
        return serving(result, path.name)
    if isinstance(result, dict) and "sizes" in result and "objective" in result:
        return training(result, path.name)
    if isinstance(result, dict) and result.get("study") == "scaling" and "rows" in result:
        return scaling(result, path.name)
    if isinstance(result, dict) and "modes" in result and "tenants" in result and "slo" not in result:
        return sharing_modes(result, path.name)
    raise UsageError(f"PATH: {path} is JSON but not a search result; allowed: the --json of "
                     "`labsim search`, `labsim scale [--search]` or `labsim sharing`")


__all__ = ["build_search"]
