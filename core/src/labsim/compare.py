"""Comparing finished runs: ``labsim compare RUN_DIR_A RUN_DIR_B`` (or the points of a sweep or
queue database: ``labsim compare sweep.sqlite``).

Each run folder holds the ``summary.json`` that ``labsim run`` wrote. The
frameworks of both runs go side by side — each named ``<run>:<instance>``
when the two runs use the same instance name — and every headline metric of
their framework types is shown per framework with its ratio to the first,
the same table ``labsim run`` prints for an experiment with several
frameworks.

>>> from labsim.compare import load_summary, merge_summaries
>>> merged = merge_summaries({"a": load_summary("runs/a"), "b": load_summary("runs/b")})  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from labsim.errors import UsageError


def load_summary(run_dir: str | Path) -> dict:
    """The ``summary.json`` of *run_dir*; a :class:`UsageError` when it is missing or unreadable."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "summary.json"
    elif path.name != "summary.json" and not path.is_file():
        raise UsageError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise UsageError(f"{run_dir}: no summary.json there — is it the --out folder of `labsim run`?")
    from labsim.config import read_text_file

    try:
        data = json.loads(read_text_file(path, "run summary", limit=1 << 28))
    except (ValueError, RecursionError) as ex:
        raise UsageError(f"{path}: not a readable summary.json ({ex})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frameworks"), dict) or not data["frameworks"]:
        raise UsageError(f"{path}: has no `frameworks` section; not a labsim run summary")
    bad = [name for name, section in data["frameworks"].items() if not isinstance(section, dict)]
    if bad:
        raise UsageError(
            f"{path}: frameworks.{bad[0]} is a {type(data['frameworks'][bad[0]]).__name__}, "
            "not a mapping of metrics; not a labsim run summary"
        )
    return data


def merge_summaries(runs: dict[str, dict]) -> dict:
    """One summary-shaped dict whose ``frameworks`` hold every framework of every run, in order.

    Instance names that occur in more than one run are prefixed with the run's label.
    """
    seen: dict[str, int] = {}
    for summary in runs.values():
        for name in summary["frameworks"]:
            seen[name] = seen.get(name, 0) + 1
    frameworks = {}
    for label, summary in runs.items():
        for name, section in summary["frameworks"].items():
            key = f"{label}:{name}" if seen[name] > 1 else name
            frameworks[key] = section
    return {"frameworks": frameworks}


def run_label(run_dir: str | Path, taken: set[str]) -> str:
    """A short label for a run folder, unique among *taken*."""
    path = Path(run_dir)
    base = (path.parent.name if path.name == "summary.json" else path.name) or str(path)
    label, i = base, 2
    while label in taken:
        label, i = f"{base}#{i}", i + 1
    return label


def load_points(db: str | Path) -> dict[str, dict]:
    """Every finished point of a sweep (or queue) database, labelled by its grid values."""
    from labsim.sweep import SweepStore

    out: dict[str, dict] = {}
    for point_json, _seed, status, _error, summary_json in SweepStore(Path(db)).rows():
        if status != "ok" or not summary_json:
            continue
        # the last part of each key names it well enough: request_rate=8
        label = " ".join(p.split("=", 1)[0].rsplit(".", 1)[-1] + "=" + p.split("=", 1)[1]
                         for p in json.loads(point_json)) or "(base)"
        label, base, i = label, label, 2
        while label in out:
            label, i = f"{base}#{i}", i + 1
        out[label] = json.loads(summary_json)
    if not out:
        raise UsageError(f"{db}: no finished point to compare")
    return out


def describe(label: str, summary: dict) -> str:
    """One line about a run: experiment, seed and simulated time."""
    sim = summary.get("simulated_time_s")
    sim_text = f", {sim:.1f} simulated s" if isinstance(sim, (int, float)) else ""
    return f"{label}: {summary.get('experiment', '?')} (seed {summary.get('seed', '?')}{sim_text})"


__all__ = ["load_points", "load_summary", "merge_summaries", "run_label", "describe"]
