"""The report of a sweep database: every point's headline figures, and per framework the
throughput-latency curve over the points (ordered by throughput), with its capacity — the
highest throughput whose latency metric meets the SLO — marked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from labsim.errors import UsageError

from labsim_report.page import STYLE, Run, esc, html_table

THROUGHPUT = "output tokens/s"
LATENCIES = ("TTFT p50 (ms)", "TTFT p99 (ms)", "TPOT p50 (ms)", "TPOT p99 (ms)")


def _points(db: Path):
    from labsim.cli import _lookup
    from labsim.registry import get_registry
    from labsim.sweep import SweepStore

    registry = get_registry()
    out = []
    for point_json, _seed, status, error, summary_json in SweepStore(db).rows():
        point = " ".join(json.loads(point_json)) or "(base)"
        if status != "ok" or not summary_json:
            out.append((point, status, error, {}))
            continue
        figures = {}
        for name, section in json.loads(summary_json).get("frameworks", {}).items():
            ftype = section.get("type")
            cls = registry.get("frameworks", ftype) if ftype and registry.has("frameworks", ftype) else None
            figures[name] = {label: _lookup(section, path) for label, path in getattr(cls, "headline", ()) or ()}
        out.append((point, status, error, figures))
    return out


def build_sweep(db: Path, slo: str | None) -> str:
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "labsim"
    import matplotlib.pyplot as plt

    metric = limit = None
    if slo:
        m = re.fullmatch(r"\s*(.+?)\s*<=\s*([0-9.eE+-]+)\s*", slo)
        if not m:
            raise UsageError(f"--slo {slo!r}: allowed: METRIC<=VALUE, METRIC a headline label such as "
                             "'TTFT p99 (ms)'")
        metric, limit = m.group(1), float(m.group(2))
    points = _points(db)
    if not points:
        raise UsageError(f"PATH: {db} has no sweep points")
    frameworks = sorted({f for _, _, _, figs in points for f in figs})
    parts = [f"<h1>Sweep {esc(db.name)}</h1>"]
    rows = []
    for point, status, error, figs in points:
        for fw in frameworks or [""]:
            f = figs.get(fw, {})
            rows.append([point, fw, status, *[f.get(k, "") for k in (THROUGHPUT, *LATENCIES)],
                         (error or "").splitlines()[-1] if error else ""])
    parts.append("<h2>Points</h2>" + html_table(["point", "framework", "status", THROUGHPUT, *LATENCIES, "error"],
                                                [[_fmt(c) for c in r] for r in rows]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    capacity = {}
    for fw in frameworks:
        pts = sorted((figs[fw][THROUGHPUT], figs[fw]) for _, s, _, figs in points
                     if s == "ok" and fw in figs and isinstance(figs[fw].get(THROUGHPUT), (int, float)))
        if not pts:
            continue
        x = [p[0] for p in pts]
        for ax, lat in zip(axes, ("TTFT p99 (ms)", "TPOT p99 (ms)")):
            ax.plot(x, [p[1].get(lat) for p in pts], marker="o", label=fw)
        if metric:
            ok = [p for p in pts if isinstance(p[1].get(metric), (int, float)) and p[1][metric] <= limit]
            if ok:
                capacity[fw] = ok[-1][0]
                for ax in axes:
                    ax.axvline(ok[-1][0], ls="--", lw=1, color=ax.lines[-1].get_color())
    for ax, lat in zip(axes, ("TTFT p99 (ms)", "TPOT p99 (ms)")):
        ax.set_xlabel(THROUGHPUT)
        ax.set_ylabel(lat)
        ax.set_yscale("log")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    parts.append("<h2>Throughput and latency</h2>" + Run.figure(fig))
    if metric:
        parts.append("<h2>Capacity</h2>" + html_table(
            ["framework", f"highest {THROUGHPUT} with {metric} ≤ {limit:g}"],
            [[fw, _fmt(capacity.get(fw, "none meets it"))] for fw in frameworks]))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>labsim sweep: {esc(db.name)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:,.4g}"
    return "" if v is None else v
