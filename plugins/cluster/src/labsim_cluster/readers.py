"""Readers of published cluster traces in their own formats (``workload.format``), each row
checked: a missing column, a value that is not a number, a negative time or a duration ≤ 0
exits 2 naming the line and the column.

* ``tiresias``: the Tiresias simulator's job CSV (Gu et al., NSDI'19; SymbioticLab/Tiresias
  ``simulator/``): ``job_id, num_gpu, submit_time, duration`` (seconds) and ``model_name``
  (the job type); other columns (``iterations``, ``interval``) ignored.
* ``gavel``: Gavel's tab-separated ``.trace`` files (Narayanan et al., OSDI'20;
  stanford-futuredata/gavel ``scheduler/traces``), one job a line: ``job_type, command,
  num_steps_arg, needs_data_dir, total_steps, arrival_time, scale_factor`` (the generated
  traces) or ``job_type, command, working_directory, num_steps_arg, needs_data_dir,
  total_steps, scale_factor, priority_weight, SLO, arrival_time`` (the physical ones). A job
  asks for ``scale_factor`` GPUs and runs ``total_steps / steps_per_s``, its throughput on the
  reference GPU type (``gavel: {throughputs: builtin:gavel, reference_type: v100}``) — how
  Gavel's simulator turns steps into time. A job type the table has no throughput for at that
  GPU count cannot be priced: ``unpriced: drop`` (default; counted in the workload's summary)
  or ``error``. ``builtin:gavel_philly`` is this reader's output for Gavel's
  ``seed0_vc6214e9.trace``.
* ``pollux``: the Pollux simulator's workload CSVs (Qiao et al., OSDI'21; petuum/adaptdl
  ``simulator/workloads``): ``name, time, application, num_replicas`` (``batch_size``
  ignored). The files give no durations — Pollux derives them from per-application profiles
  it does not publish with the workload — so ``pollux: {durations_s: {cifar10: 3600, ...}}``
  gives one per application (a row whose application has none exits 2 naming it).

The Philly, Helios and Alibaba PAI raw formats have no reader yet: convert them to the
normalized schema (``columns:`` maps other column names).
"""

from __future__ import annotations

import csv
from pathlib import Path

from labsim.errors import UsageError

FORMATS = ("labsim", "tiresias", "gavel", "pollux")
GAVEL_SHORT = ("job_type", "command", "num_steps_arg", "needs_data_dir", "total_steps", "arrival_time",
               "scale_factor")
GAVEL_LONG = ("job_type", "command", "working_directory", "num_steps_arg", "needs_data_dir", "total_steps",
              "scale_factor", "priority_weight", "SLO", "arrival_time")

SCHEMA = {
    "format": {"enum": list(FORMATS), "default": "labsim",
               "description": "The trace's format: labsim (the normalized schema), tiresias, gavel (.trace) "
                              "or pollux (see labsim_cluster.readers)."},
    "gavel": {"type": "object", "additionalProperties": False,
              "description": "format: gavel — how steps become seconds.",
              "properties": {
                  "throughputs": {"type": "string", "default": "builtin:gavel",
                                  "description": "The steps/s table (as the cluster's throughputs)."},
                  "reference_type": {"type": "string", "default": "v100",
                                     "description": "The GPU type whose throughput sets the durations."},
                  "unpriced": {"enum": ["drop", "error"], "default": "drop",
                               "description": "A job type the table has no throughput for at its GPU count: "
                                              "leave it out (counted), or exit 2."}}},
    "pollux": {"type": "object", "additionalProperties": False,
               "description": "format: pollux — the files give no durations.",
               "properties": {"durations_s": {"type": "object",
                                              "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                                              "description": "Seconds per application (cifar10, bert, ...)."}}},
}


def _open(path: Path, label: str):
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as ex:
        raise UsageError(f"{label}: cannot read {path}: {ex.strerror}") from None


def _number(raw, where: str, kind=float):
    raw = (raw or "").strip()
    try:
        return kind(float(raw))
    except ValueError:
        raise UsageError(f"{where}: {raw!r} is not a number") from None


def _check(submit: float, duration: float, gpus: int, where: str, names: tuple[str, str, str]) -> None:
    if submit < 0:
        raise UsageError(f"{where}, column {names[0]}: {submit:g}; allowed: a submit time ≥ 0")
    if duration <= 0:
        raise UsageError(f"{where}, column {names[1]}: {duration:g}; allowed: a duration > 0")
    if gpus < 1:
        raise UsageError(f"{where}, column {names[2]}: {gpus}; allowed: GPUs ≥ 1")


def _rows(fh, path: Path, label: str, required: tuple[str, ...]):
    reader = csv.DictReader(fh)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise UsageError(f"{label}: {path.name} has no column {', '.join(missing)}; it has "
                         f"{', '.join(header) or 'no header'}")
    return enumerate(reader, start=2)


def read_tiresias(path: Path, label: str, job) -> list:
    out = []
    with _open(path, label) as fh:
        for line, row in _rows(fh, path, label, ("job_id", "num_gpu", "submit_time", "duration")):
            where = f"{label}: {path.name} line {line}"
            submit = _number(row["submit_time"], f"{where}, column submit_time")
            duration = _number(row["duration"], f"{where}, column duration")
            gpus = _number(row["num_gpu"], f"{where}, column num_gpu", int)
            _check(submit, duration, gpus, where, ("submit_time", "duration", "num_gpu"))
            out.append(job(row["job_id"].strip(), gpus, duration, submit, kind=(row.get("model_name") or "").strip()))
    return out


def read_gavel(path: Path, label: str, job, options: dict, base_dir: Path) -> tuple[list, int]:
    """The jobs of a Gavel ``.trace`` and how many were left out unpriced."""
    from labsim_cluster.rates import read_throughputs

    table = read_throughputs(options.get("throughputs", "builtin:gavel"), base_dir)
    ref = options.get("reference_type", "v100")
    if not any(k[0] == ref for k in table):
        types = sorted({k[0] for k in table})
        raise UsageError(f"{label}: gavel.reference_type {ref!r} is not in the throughput table "
                         f"(it has {', '.join(types)})")
    strict = options.get("unpriced", "drop") == "error"
    out, dropped = [], 0
    with _open(path, label) as fh:
        for line, text in enumerate(fh, start=1):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split("\t")
            if len(fields) not in (len(GAVEL_SHORT), len(GAVEL_LONG)):
                raise UsageError(f"{label}: {path.name} line {line}: {len(fields)} tab-separated fields; a Gavel "
                                 f"trace has {len(GAVEL_SHORT)} ({', '.join(GAVEL_SHORT)}) or {len(GAVEL_LONG)} "
                                 f"({', '.join(GAVEL_LONG)})")
            row = dict(zip(GAVEL_SHORT if len(fields) == len(GAVEL_SHORT) else GAVEL_LONG, fields))
            where = f"{label}: {path.name} line {line}"
            steps = _number(row["total_steps"], f"{where}, field total_steps")
            submit = _number(row["arrival_time"], f"{where}, field arrival_time")
            gpus = _number(row["scale_factor"], f"{where}, field scale_factor", int)
            if steps <= 0:
                raise UsageError(f"{where}, field total_steps: {steps:g}; allowed: steps > 0")
            kind = row["job_type"].strip()
            rate = (table.get((ref, kind, gpus)) or (0.0, None))[0]
            if rate <= 0:
                if strict:
                    raise UsageError(f"{where}, field job_type: {kind!r} on {gpus} {ref} GPU(s) has no throughput "
                                     "in the table, so its steps have no duration (gavel.unpriced: drop leaves "
                                     "such jobs out)")
                dropped += 1
                continue
            _check(submit, steps / rate, gpus, where, ("arrival_time", "total_steps", "scale_factor"))
            out.append(job(str(line - 1), gpus, steps / rate, submit, kind=kind))
    return out, dropped


def read_pollux(path: Path, label: str, job, options: dict) -> list:
    durations = dict(options.get("durations_s") or {})
    out = []
    with _open(path, label) as fh:
        for line, row in _rows(fh, path, label, ("name", "time", "application", "num_replicas")):
            where = f"{label}: {path.name} line {line}"
            app = (row["application"] or "").strip()
            if app not in durations:
                raise UsageError(f"{where}, column application: {app!r} has no duration; Pollux workloads give "
                                 f"none, so set workload.pollux.durations_s.{app or 'APP'} (seconds)"
                                 + (f" (given: {', '.join(sorted(durations))})" if durations else ""))
            submit = _number(row["time"], f"{where}, column time")
            gpus = _number(row["num_replicas"], f"{where}, column num_replicas", int)
            _check(submit, float(durations[app]), gpus, where, ("time", "application", "num_replicas"))
            out.append(job(row["name"].strip(), gpus, float(durations[app]), submit, kind=app))
    return out


__all__ = ["FORMATS", "SCHEMA", "read_gavel", "read_pollux", "read_tiresias"]
