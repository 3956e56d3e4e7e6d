"""The built-in sections of ``labsim report``: the run and its headline figures, then serving,
training, cluster and shared-GPU sections wherever the run wrote their tables."""

from __future__ import annotations

import numpy as np

from labsim_report.page import CDF_POINTS, TIME_BINS, esc, html_table

COLORS = {"forward": "#4c72b0", "backward": "#55a868", "recompute": "#8da0cb", "optimizer": "#c44e52",
          "bubble": "#dddddd", "tp": "#dd8452", "cp": "#937860", "ep": "#da8bc3", "pp": "#8c8c8c",
          "dp": "#ccb974", "param_gather": "#64b5cd"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _cdf(ax, values, label):
    if values.size == 0:
        return
    q = np.linspace(0, 100, min(CDF_POINTS, max(2, values.size)))
    ax.plot(np.percentile(values, q), q / 100.0, label=label)


def _binned(t, y, reduce=np.median):
    """(bin centres, *reduce* of *y* per bin): a time series in :data:`TIME_BINS` bins."""
    edges = np.linspace(t.min(), t.max() + 1e-9, TIME_BINS + 1)
    idx = np.digitize(t, edges) - 1
    return (edges[:-1] + edges[1:]) / 2, [reduce(y[idx == k]) if np.any(idx == k) else np.nan
                                          for k in range(TIME_BINS)]


def _axes(ax, xlabel, ylabel, legend=True):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=.3)
    if legend:
        ax.legend(fontsize=8)


def overview(run):
    from labsim.cli import _number, headline_rows
    from labsim.registry import get_registry

    s = run.summary
    facts = [("seed", s.get("seed")), ("simulated time (s)", _number(s.get("simulated_time_s"))),
             ("stopped by", s.get("stopped_by")), ("labsim", s.get("labsim_version"))]
    body = html_table(["", ""], [[k, v] for k, v in facts if v is not None])
    plugins = s.get("plugins") or {}
    if plugins:
        body += "<p class=\"note\">plugins: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(plugins.items())) + "</p>"
    pricing = (s.get("hardware") or {}).get("pricing") or {}
    for label, info in pricing.items():
        body += (f"<p class=\"note\">{esc(label)} ({esc(info.get('name', ''))}) priced by profile "
                 f"<code>{esc(info.get('profile') or 'none')}</code> ({esc(info.get('how', ''))})</p>")
    resolved = s.get("resolved_experiment")
    if resolved:
        import json

        body += ("<details><summary>the experiment as run (overrides applied, defaults filled in; "
                 "<code>labsim run</code> of it reproduces this run)</summary><pre>"
                 + esc(json.dumps(resolved, indent=2, sort_keys=True)) + "</pre></details>")
    yield "Run", body
    headers, rows = headline_rows(s, get_registry())
    if rows:
        yield "Headline figures", html_table(headers, rows)


def bottlenecks(run):
    items = []
    for name, fw in (run.summary.get("frameworks") or {}).items():
        b = fw.get("bottleneck") if isinstance(fw, dict) else None
        if isinstance(b, dict) and b.get("kind"):
            recs = "".join(f"<li>{esc(r)}</li>" for r in b.get("recommendations") or [])
            items.append(f"<p><b>{esc(name)}</b>: bound by {esc(b['kind'])}</p><ul>{recs}</ul>")
    if items:
        yield "Bottleneck and what to change", "".join(items)


def serving(run):
    rows = run.table("requests")
    if not rows:
        return
    plt = _plt()
    frameworks = sorted({r.get("framework", "") for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (col, label) in zip(axes, (("ttft_ms", "TTFT (ms)"), ("tpot_ms", "TPOT (ms)"), ("e2e_ms", "E2E (ms)"))):
        for fw in frameworks:
            _cdf(ax, run.column("requests", col, lambda r, fw=fw: r.get("framework") == fw), fw)
        _axes(ax, label, "share of requests", legend=False)
    axes[0].legend(fontsize=8)
    body = run.figure(fig)
    warm = float(((run.summary.get("metrics_config") or {}).get("warm_up_duration_s")) or 0.0)
    fig, ax = plt.subplots(figsize=(13, 3.2))
    for fw in frameworks:
        keep = lambda r, fw=fw: r.get("framework") == fw and r.get("ttft_ms") not in ("", None)  # noqa: E731
        t, y = run.column("requests", "arrival_s", keep), run.column("requests", "ttft_ms", keep)
        if t.size:
            ax.plot(*_binned(t, y), label=fw)
    if warm > 0:
        ax.axvspan(0, warm, color="#eeeeee", label="warm-up (left out)")
    _axes(ax, "arrival (s)", "TTFT median (ms)")
    body += run.figure(fig)
    steps = run.table("steps")
    if steps:
        fig, ax = plt.subplots(figsize=(13, 3.0))
        for fw in sorted({r.get("framework", "") for r in steps}):
            keep = lambda r, fw=fw: r.get("framework") == fw  # noqa: E731
            t = run.column("steps", "start_s", keep)
            for col in ("batch_size", "num_seqs", "running"):
                y = run.column("steps", col, keep)
                if y.size == t.size and y.size:
                    ax.plot(*_binned(t, y, np.mean), label=f"{fw} {col}")
                    break
        _axes(ax, "time (s)", "requests per step")
        body += run.figure(fig)
        body += _kv_and_preemptions(run, steps)
    yield "Serving: latency", body


def _kv_and_preemptions(run, steps) -> str:
    """KV-cache use and the waiting queue over time (from steps.csv), and preemptions as they
    happen to finished requests (from requests.csv)."""
    if not steps or "kv_blocks_used" not in steps[0]:
        return ""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.0))
    frameworks = (run.summary.get("frameworks") or {})
    for fw in sorted({r.get("framework", "") for r in steps}):
        keep = lambda r, fw=fw: r.get("framework") == fw  # noqa: E731
        t = run.column("steps", "start_s", keep)
        used = run.column("steps", "kv_blocks_used", keep)
        capacity = ((frameworks.get(fw) or {}).get("kv_cache") or {}).get("capacity_blocks_per_replica")
        if t.size and used.size == t.size:
            share = used / capacity if capacity else used
            axes[0].plot(*_binned(t, share, np.max), label=fw)
        waiting = run.column("steps", "waiting", keep)
        if waiting.size == t.size and t.size:
            axes[1].plot(*_binned(t, waiting, np.max), label=f"{fw} waiting")
        ended = lambda r, fw=fw: (r.get("framework") == fw and r.get("finish_s") not in ("", None)  # noqa: E731
                                  and r.get("preemptions") not in ("", None))
        pre = run.column("requests", "preemptions", ended)
        done = run.column("requests", "finish_s", ended)
        if pre.size and pre.size == done.size and pre.sum() > 0:
            order = np.argsort(done)
            axes[1].step(done[order], np.cumsum(pre[order]), where="post", label=f"{fw} preemptions (cumulative)")
    _axes(axes[0], "time (s)", "KV cache in use (share of blocks, step max)")
    _axes(axes[1], "time (s)", "requests")
    return run.figure(fig)


def training(run):
    fws = {n: f for n, f in (run.summary.get("frameworks") or {}).items()
           if isinstance(f, dict) and "time_breakdown_s" in f}
    rows = run.table("timeline")
    if not fws and not rows:
        return
    plt = _plt()
    body = ""
    if fws:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 3.2))
        names = list(fws)
        for i, n in enumerate(names):
            bd = fws[n]["time_breakdown_s"]
            parts = [("compute", bd.get("compute", 0.0))] + [
                (f"exposed {k}", v) for k, v in (bd.get("exposed_communication") or {}).items()] + [
                ("bubble", bd.get("pipeline_bubble", 0.0)), ("optimizer", bd.get("optimizer", 0.0))]
            left = 0.0
            for j, (label, v) in enumerate(parts):
                a1.barh(i, v, left=left, color=plt.cm.tab10(j % 10), label=label if i == 0 else None)
                left += v
            mem = fws[n].get("memory_per_gpu_gib") or {}
            left = 0.0
            for j, k in enumerate(("weights", "gradients", "optimizer", "activations", "buffers")):
                a2.barh(i, mem.get(k, 0.0), left=left, color=plt.cm.Set2(j), label=k if i == 0 else None)
                left += mem.get(k, 0.0)
        for a, xl in ((a1, "seconds per iteration"), (a2, "GiB per GPU")):
            a.set_yticks(range(len(names)), names)
            a.set_xlabel(xl)
            a.legend(fontsize=7, loc="lower right")
        body += run.figure(fig)
    if rows:
        for fw in sorted({r["framework"] for r in rows}):
            mine = [r for r in rows if r["framework"] == fw]
            stages = sorted({int(r["stage"]) for r in mine})
            fig, ax = plt.subplots(figsize=(13, 0.5 + 0.5 * len(stages)))
            for r in mine:
                y = int(r["stage"]) + (0.2 if r["stream"] == "comm" else -0.2)
                a, b = float(r["start_s"]), float(r["end_s"])
                ax.barh(y, b - a, left=a, height=0.38, color=COLORS.get(r["kind"], "#999999"))
            ax.set_yticks(stages, [f"stage {s}" for s in stages])
            ax.set_xlabel("time (s)")
            ax.invert_yaxis()
            handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
            ax.legend(handles, list(COLORS), fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.35))
            body += f"<p>{esc(fw)}: one iteration per pipeline stage (compute stream above, comm below)</p>"
            body += run.figure(fig)
    yield "Training: where the iteration goes", body


def cluster(run):
    rows = run.table("jobs")
    if not rows:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for p in sorted({r["policy"] for r in rows}):
        _cdf(ax, run.column("jobs", "jct_s", lambda r, p=p: r["policy"] == p) / 3600.0, p)
    ax.set_xscale("log")
    _axes(ax, "job completion time (h)", "share of jobs")
    body = run.figure(fig)
    usage = run.table("cluster_usage")
    if usage:
        fig, axes = plt.subplots(1, 2, figsize=(13, 3.0))
        for p in sorted({r["policy"] for r in usage}):
            keep = lambda r, p=p: r["policy"] == p  # noqa: E731
            t = run.column("cluster_usage", "time_s", keep) / 3600.0
            for ax, col in zip(axes, ("gpus_busy", "jobs_waiting")):
                y = run.column("cluster_usage", col, keep)
                tt = t
                if t.size > TIME_BINS * 4:
                    pick = np.linspace(0, t.size - 1, TIME_BINS * 4).astype(int)
                    tt, y = t[pick], y[pick]
                ax.step(tt, y, where="post", label=p)
        _axes(axes[0], "time (h)", "GPUs busy")
        _axes(axes[1], "time (h)", "jobs waiting")
        body += run.figure(fig)
    body += _gantt(run)
    yield "Cluster: job completion times", body


#: jobs drawn in a cluster's Gantt chart (the first to start), per policy
GANTT_JOBS = 120
OUTCOME_COLORS = {"completed": "C0", "preempted": "C1", "interrupted": "C3", "reclaimed": "C4"}


def _gantt(run) -> str:
    """Each job's runs (the attempts table) as bars over time, for the first two policies and
    the first :data:`GANTT_JOBS` jobs: preemptions and interruptions show as breaks."""
    attempts = run.table("attempts")
    if not attempts:
        return ""
    plt = _plt()
    present = {r["policy"] for r in attempts}
    policies = [p for p in (run.summary.get("frameworks") or {}) if p in present][:2]
    fig, axes = plt.subplots(1, len(policies), figsize=(13, 3.6), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        mine = [r for r in attempts if r["policy"] == policy]
        first: dict = {}
        for r in mine:
            first[r["job_id"]] = min(first.get(r["job_id"], float("inf")), float(r["start_s"]))
        order = sorted(first, key=lambda j: (first[j], j))[:GANTT_JOBS]
        row = {j: i for i, j in enumerate(order)}
        for outcome, color in OUTCOME_COLORS.items():
            bars = [(row[r["job_id"]], float(r["start_s"]) / 3600, (float(r["end_s"]) - float(r["start_s"])) / 3600)
                    for r in mine if r["job_id"] in row and r["outcome"] == outcome]
            if bars:
                ax.barh([b[0] for b in bars], [b[2] for b in bars], left=[b[1] for b in bars], height=0.8,
                        color=color, label=outcome)
        ax.invert_yaxis()
        ax.set_title(f"{policy}: the first {len(order)} jobs to start", fontsize=9)
        _axes(ax, "time (h)", "job")
    return run.figure(fig)


def sharing(run):
    rows = run.table("gpu_sharing")
    if not rows:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(13, 3.0))
    for gpu in sorted({r["gpu"] for r in rows}):
        keep = lambda r, g=gpu: r["gpu"] == g  # noqa: E731
        t = run.column("gpu_sharing", "time_s", keep)
        for col in ("sm_share", "bandwidth_share"):
            y = run.column("gpu_sharing", col, keep)
            if t.size > TIME_BINS * 4:  # keep a bounded number of steps
                pick = np.linspace(0, t.size - 1, TIME_BINS * 4).astype(int)
                t2, y2 = t[pick], y[pick]
            else:
                t2, y2 = t, y
            ax.step(t2, y2, where="post", label=f"{gpu} {col.replace('_', ' ')}")
    ax.set_ylim(0, 1.05)
    _axes(ax, "time (s)", "share in use")
    yield "Shared GPU: SMs and bandwidth in use", run.figure(fig)


BUILTIN = (overview, bottlenecks, serving, training, cluster, sharing)
