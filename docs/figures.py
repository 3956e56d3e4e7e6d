"""Figures for README.md, docs/ and the example headers, made by running the command shown
beside them.

Each figure sits in a cog block (https://nedbatchelder.com/code/cog) whose one line of code
calls :func:`labsim_run`, :func:`script` or :func:`sweep`; the block's output starts with the
command itself. Regenerate every figure after a change, or check them (CI does)::

    cog -r -I docs README.md docs/*.md examples/*.yaml        # rewrite
    cog --check -I docs README.md docs/*.md examples/*.yaml   # exit 5 when one is stale

Only what the command prints to stdout is shown, minus what changes from run to run
(wall time, the output folder), so the same code always gives the same text.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cog

ROOT = Path(__file__).resolve().parents[1]
_WALL = re.compile(r", [0-9.]+ s wall")


def _emit(command: str, lines: list[str], prefix: str, fence: bool) -> None:
    body = [f"$ {command}", *lines]
    if fence:
        body = ["```text", *body, "```"]
    for line in body:
        cog.outl((prefix + line).rstrip())


def labsim_run(args: str, prefix: str = "", fence: bool = True, rows: tuple = ()) -> None:
    """``labsim run ARGS`` in this process; its table, without the wall time and the output
    folder. *rows*: only the table's header and these metric rows (default: all)."""
    from click.testing import CliRunner
    from labsim.cli import cli

    with tempfile.TemporaryDirectory() as out:
        argv = ["run", *shlex.split(args), "--out", out]
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"labsim {args} failed: {result.output}")
    lines = []
    for i, line in enumerate(result.stdout.splitlines()):
        if line.startswith("outputs: "):
            continue
        if rows and i > 1 and not line.startswith(rows) and not line.startswith("note:"):
            continue
        lines.append(_WALL.sub("", line))
    _emit(f"labsim run {args}", lines, prefix, fence)


def labsim(args: str, prefix: str = "", fence: bool = True) -> None:
    """``labsim ARGS`` in this process, run from the repository root: what it prints to stdout
    and stderr (for error messages), whatever its exit status."""
    import os

    from click.testing import CliRunner
    from labsim.cli import cli

    here = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(cli, shlex.split(args), catch_exceptions=False)
    finally:
        os.chdir(here)
    lines = (result.stdout + result.stderr).splitlines()
    _emit(f"labsim {args}", lines, prefix, fence)


def script(path: str, args: str = "", prefix: str = "", fence: bool = True,
           drop: tuple = ()) -> None:
    """``python PATH ARGS`` (a benchmark) from the repository root; its stdout, less the lines
    starting with one of *drop*."""
    proc = subprocess.run([sys.executable, path, *shlex.split(args)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"python {path} {args} failed ({proc.returncode}): {proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if not (drop and line.startswith(drop))]
    _emit(f"python {path}{' ' + args if args else ''}", lines, prefix, fence)


def sweep(experiment: str, key: str, values: list, metrics: list[tuple[str, str]],
          prefix: str = "", fence: bool = True) -> None:
    """One ``labsim run EXPERIMENT --set KEY=V`` per value, as a table: a row per value, a
    column per (label, dotted summary key) and framework (what ``labsim sweep`` stores)."""
    import labsim

    frameworks = None
    table = []
    for value in values:
        summary = labsim.run(str(ROOT / experiment), overrides=[f"{key}={value}"]).summary
        frameworks = frameworks or list(summary["frameworks"])
        row = [str(value)]
        for _, dotted in metrics:
            for name in frameworks:
                row.append(_fmt(_lookup(summary["frameworks"][name], dotted)))
        table.append(row)
    header = [key.rsplit(".", 1)[-1]] + [f"{label} {name}" for label, _ in metrics
                                          for name in frameworks]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *table]]
    command = (f"labsim run {experiment} --set '{key}=V'   for V in "
               f"{', '.join(str(v) for v in values)}")
    _emit(command, lines, prefix, fence)


def summary_table(experiment: str, metrics: list[tuple[str, str]], prefix: str = "", fence: bool = True) -> None:
    """``labsim run EXPERIMENT``: the summary.json values at each (unit, dotted path under a
    framework's section), one row per metric, one column per framework."""
    import labsim

    summary = labsim.run(str(ROOT / experiment)).summary
    names = list(summary["frameworks"])
    table = [["frameworks.<name>.", *names]]
    for label, dotted in metrics:
        table.append([f"{dotted} ({label})" if label else dotted,
                      *(_fmt(_lookup(summary["frameworks"][n], dotted)) for n in names)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in table]
    _emit(f"labsim run {experiment}   # summary.json", lines, prefix, fence)


def requests(experiment: str, prefix: str = "") -> None:
    """``labsim run EXPERIMENT``: how many requests its workload sent, and at what rate."""
    import labsim

    summary = labsim.run(str(ROOT / experiment)).summary
    workload = summary["workload"]
    duration = summary.get("workload", {}).get("total_duration") or _total_duration(experiment)
    sent, follow = workload["requests_sent"], workload.get("follow_up_requests", 0)
    cog.outl(f"{prefix}$ labsim run {experiment}".rstrip())
    cog.outl(f"{prefix}{sent:,} requests in {duration:g} s = {sent / duration:.1f} per second "
             f"({sent - follow:,} new conversations, {follow:,} follow-ups)")


def _total_duration(experiment: str) -> float:
    from labsim.orchestrator import load_experiment

    return float(load_experiment(str(ROOT / experiment)).data["workload"]["total_duration"])


def _lookup(data, dotted):
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def service_session(prefix: str = "", fence: bool = True) -> None:
    """A curl session against a real ``labsim serve --http`` (started here on a free port, shown
    as 127.0.0.1:8000): submit a two-point sweep, wait, read a summary and the report, and a
    refused submission. The requests go through urllib and each ``| jq FILTER`` shown is applied
    in Python (simple paths only), so the figure needs neither curl nor jq; the JSON is printed
    as ``jq -c`` prints it."""
    import json
    import shutil
    import signal
    import time
    import urllib.error
    import urllib.request

    shown = "http://127.0.0.1:8000"
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(ROOT / "examples" / "quickstart.yaml", Path(folder) / "quickstart.yaml")
        shutil.copytree(ROOT / "docs", Path(folder) / "docs", ignore=lambda d, names: [
            n for n in names if n != "broken.yaml"])
        args = ["serve", "--db", "queue.sqlite", "--http", "127.0.0.1:8000", "--workers", "1"]
        command = f"labsim {shlex.join(args)} &"
        args[args.index("127.0.0.1:8000")] = "127.0.0.1:0"              # any free port
        proc = subprocess.Popen([sys.executable, "-m", "labsim", *args], cwd=folder,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            first = proc.stdout.readline().strip()
            url = first.split()[2]
            lines += [f"$ {command}", first.replace(url, shown), f"$ URL={shown}"]

            def call(method, path, body=None):
                request = urllib.request.Request(url + path, data=body, method=method)
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        return response.status, response.read()
                except urllib.error.HTTPError as ex:
                    return ex.code, ex.read()

            def show(curl: str, path: str, jq: str, pick, method="GET", body=None):
                """*pick*: what ``jq`` outputs, as a list (one item a line)."""
                status, data = call(method, path, body)
                lines.append(f"$ curl -s {curl} | jq {jq}")
                for item in pick(json.loads(data)):
                    lines.append(item if jq.startswith("-r") else
                                 json.dumps(item, separators=(",", ":"), ensure_ascii=False))
                return json.loads(data)

            query = ("priority=high&grid=workload.client_profiles%5B0%5D.request_rate=4,8"
                     "&set=workload.total_duration=30&source=quickstart.yaml")
            entry = show(f"--data-binary @quickstart.yaml \"$URL/submissions?{query}\"",
                         f"/submissions?{query}",
                         "-c '{submission, priority}'",
                         lambda d: [{"submission": d["submission"], "priority": d["priority"]}], "POST",
                         (Path(folder) / "quickstart.yaml").read_bytes())
            for _ in range(600):
                if json.loads(call("GET", f"/submissions/{entry['submission']}")[1])["finished"]:
                    break
                time.sleep(0.2)
            done = show("$URL/submissions/1", "/submissions/1", "-c '.runs[] | {run, state, point}'",
                        lambda d: [{"run": r["run"], "state": r["state"], "point": r["point"]}
                                   for r in d["runs"]])
            key = done["runs"][0]["run"][:12]
            show(f"$URL/runs/{key}/summary.json", f"/runs/{key}/summary.json",
                 "-c '.frameworks.vllm.ttft_ms'", lambda d: [d["frameworks"]["vllm"]["ttft_ms"]])
            with urllib.request.urlopen(f"{url}/runs/{key}/report.html", timeout=120) as response:
                lines += [f"$ curl -s -o report.html -w '%{{http_code}} %{{content_type}}\\n' "
                          f"$URL/runs/{key}/report.html",
                          f"{response.status} {response.headers['Content-Type']}"]
            show("--data-binary @docs/broken.yaml \"$URL/submissions?source=docs/broken.yaml\"",
                 "/submissions?source=docs/broken.yaml", "-r .error", lambda d: d["error"].splitlines(),
                 "POST", (Path(folder) / "docs" / "broken.yaml").read_bytes())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    if fence:
        lines = ["```text", *lines, "```"]
    for line in lines:
        cog.outl((prefix + line).rstrip())
