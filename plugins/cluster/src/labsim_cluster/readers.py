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

The production clusters' raw logs — each gives what ran, not what a job would need on an idle
cluster, so a job's duration is the time it ran there and its submit time is counted from the
first submission in the file; jobs that never ran or hold no GPU are left out and counted
(``summary.workload.skipped``, by reason):

* ``philly``: Microsoft Philly's ``cluster_job_log`` (Jeon et al., ATC'19;
  msr-fiddle/philly-traces ``README.md``): a JSON list of jobs, ``jobid, user, vc, status,
  submitted_time, attempts: [{start_time, end_time, detail: [{ip, gpus: [...]}]}]``, times as
  ``YYYY-MM-DD HH:MM:SS``. GPUs: those of the first attempt (the trace's own analysis notebook
  counts them so); duration: the first attempt's start to the last attempt's end (its
  ``run_time``); ``vc`` becomes the group. A job without attempts, a start or an end (still
  running when the log was taken) is skipped. A bad job exits 2 naming its line and key.
* ``helios``: SenseTime Helios' ``cluster_log.csv`` (Hu et al., SC'21;
  S-Lab-System-Group/HeliosData ``README.md``): ``job_id, user, vc, gpu_num, cpu_num,
  node_num, state, submit_time, start_time, end_time, duration, queue`` (``duration``: seconds
  run); ``gpu_num`` GPUs, ``cpu_num`` CPUs, ``vc`` the group. CPU-only jobs (``gpu_num`` 0)
  and jobs that ran 0 s are skipped.
* ``pai``: Alibaba PAI's ``cluster-trace-gpu-v2020`` (Weng et al., NSDI'22;
  alibaba/clusterdata ``cluster-trace-gpu-v2020/README.md``): ``pai_job_table.csv`` as the
  trace (no header: ``job_name, inst_id, user, status, start_time, end_time``; ``start_time``
  the submission, seconds) and ``pai: {tasks: pai_task_table.csv}`` (no header: ``job_name,
  task_name, inst_num, status, start_time, end_time, plan_cpu, plan_mem, plan_gpu,
  gpu_type``). A job asks for the GPUs of its tasks' instances, ``inst_num × plan_gpu / 100``
  summed and rounded up to whole GPUs (a 50 % GPU takes one), ``inst_num × plan_cpu / 100``
  CPUs and ``inst_num × plan_mem`` memory (GB, as given); it runs from its first task's start
  to its last task's end. Jobs whose tasks ask for no GPU or never ran are skipped.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path

from labsim.errors import UsageError

FORMATS = ("labsim", "tiresias", "gavel", "pollux", "philly", "helios", "pai")
HELIOS = ("job_id", "user", "vc", "gpu_num", "cpu_num", "node_num", "state", "submit_time", "start_time", "end_time",
          "duration", "queue")
PAI_JOBS = ("job_name", "inst_id", "user", "status", "start_time", "end_time")
PAI_TASKS = ("job_name", "task_name", "inst_num", "status", "start_time", "end_time", "plan_cpu", "plan_mem",
             "plan_gpu", "gpu_type")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EPOCH = datetime(1970, 1, 1)
GAVEL_SHORT = ("job_type", "command", "num_steps_arg", "needs_data_dir", "total_steps", "arrival_time",
               "scale_factor")
GAVEL_LONG = ("job_type", "command", "working_directory", "num_steps_arg", "needs_data_dir", "total_steps",
              "scale_factor", "priority_weight", "SLO", "arrival_time")

SCHEMA = {
    "format": {"enum": list(FORMATS), "default": "labsim",
               "description": "The trace's format: labsim (the normalized schema), tiresias, gavel (.trace), "
                              "pollux, or a production cluster's log: philly (cluster_job_log), helios "
                              "(cluster_log.csv), pai (pai_job_table.csv; see labsim_cluster.readers)."},
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
    "pai": {"type": "object", "additionalProperties": False, "required": ["tasks"],
            "description": "format: pai — the trace is pai_job_table.csv; the GPUs, CPUs, memory and run "
                           "times are in the task table.",
            "properties": {"tasks": {"type": "string", "description": "pai_task_table.csv (relative to the "
                                                                      "experiment file)."}}},
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


def _time(raw, where: str) -> float:
    """Seconds since the epoch of a ``YYYY-MM-DD HH:MM:SS`` time (Philly, Helios)."""
    try:
        return (datetime.strptime(str(raw).strip(), TIME_FORMAT) - EPOCH).total_seconds()   # no time zone
    except ValueError:
        raise UsageError(f"{where}: {raw!r} is not a time YYYY-MM-DD HH:MM:SS") from None


def _from_first(out: list) -> list:
    """Submit times counted from the first submission."""
    first = min((j.arrival_s for j in out), default=0.0)
    for j in out:
        j.arrival_s -= first
    return out


def _json_items(text: str, path: Path, label: str):
    """``(line, item)`` for each item of the JSON list *text* (the line it starts on)."""
    decoder = json.JSONDecoder()
    pos, line, counted = 0, 1, 0

    def skip(p):
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    def fail(ex: json.JSONDecodeError):
        raise UsageError(f"{label}: {path.name} line {ex.lineno}, column {ex.colno}: not JSON ({ex.msg}); "
                         "a Philly cluster_job_log is a JSON list of jobs") from None

    pos = skip(pos)
    if text[pos:pos + 1] != "[":
        raise UsageError(f"{label}: {path.name} line 1: a Philly cluster_job_log is a JSON list of jobs "
                         "([{...}, ...])")
    pos = skip(pos + 1)
    if text[pos:pos + 1] == "]":
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as ex:
            fail(ex)
        yield line, item
        pos = skip(pos)
        if text[pos:pos + 1] == ",":
            pos = skip(pos + 1)
        elif text[pos:pos + 1] == "]":
            return
        else:
            fail(json.JSONDecodeError("expected ',' or ']'", text, pos))


def read_philly(path: Path, label: str, job) -> tuple[list, Counter]:
    """The jobs of a Philly ``cluster_job_log`` and how many were skipped, by reason."""
    with _open(path, label) as fh:
        text = fh.read()
    out, skipped = [], Counter()
    for line, item in _json_items(text, path, label):
        where = f"{label}: {path.name} line {line}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: a job is a JSON object ({{\"jobid\": ..., \"attempts\": [...]}})")
        for key in ("jobid", "submitted_time", "attempts"):
            if key not in item:
                raise UsageError(f"{where}, key {key}: missing; a Philly job has jobid, user, vc, status, "
                                 "submitted_time and attempts")
        attempts = item["attempts"]
        if not isinstance(attempts, list):
            raise UsageError(f"{where}, key attempts: {attempts!r} is not a list")
        submit = _time(item["submitted_time"], f"{where}, key submitted_time")
        first = attempts[0] if attempts else {}
        start, end = first.get("start_time"), attempts[-1].get("end_time") if attempts else None
        if not attempts or start in (None, "", "None") or end in (None, "", "None"):
            reason = "no attempt" if not attempts else "no start or end time"
            skipped[reason] += 1
            continue
        try:
            gpus = sum(len(d["gpus"]) for d in first.get("detail") or [])
        except (TypeError, KeyError):
            raise UsageError(f"{where}, key attempts[0].detail: {first.get('detail')!r}; allowed: a list of "
                             "{\"ip\": ..., \"gpus\": [...]}") from None
        duration = (_time(end, f"{where}, key attempts[-1].end_time")
                    - _time(start, f"{where}, key attempts[0].start_time"))
        if gpus == 0:
            skipped["no GPU"] += 1
            continue
        if duration < 0:
            raise UsageError(f"{where}, key attempts: the last attempt ends before the first starts")
        if duration == 0:
            skipped["ran 0 s"] += 1
            continue
        out.append(job(str(item["jobid"]), gpus, duration, submit, user=str(item.get("user") or ""),
                       group=str(item.get("vc") or "")))
    return _from_first(out), skipped


def read_helios(path: Path, label: str, job) -> tuple[list, Counter]:
    """The GPU jobs of a Helios ``cluster_log.csv`` and how many were skipped, by reason."""
    out, skipped = [], Counter()
    with _open(path, label) as fh:
        for line, row in _rows(fh, path, label, ("job_id", "gpu_num", "submit_time", "duration")):
            where = f"{label}: {path.name} line {line}"
            gpus = _number(row["gpu_num"], f"{where}, column gpu_num", int)
            duration = _number(row["duration"], f"{where}, column duration")
            submit = _time(row["submit_time"], f"{where}, column submit_time")
            cpu = _number(row.get("cpu_num") or "0", f"{where}, column cpu_num")
            if gpus < 0 or duration < 0 or cpu < 0:
                bad = "gpu_num" if gpus < 0 else "duration" if duration < 0 else "cpu_num"
                raise UsageError(f"{where}, column {bad}: {row[bad]!r}; allowed: a number ≥ 0")
            if gpus == 0 or duration == 0:
                reason = "no GPU" if gpus == 0 else "ran 0 s"
                skipped[reason] += 1
                continue
            out.append(job(row["job_id"].strip(), gpus, duration, submit, user=(row.get("user") or "").strip(),
                           group=(row.get("vc") or "").strip(), cpu=cpu))
    return _from_first(out), skipped


def _headerless(path: Path, label: str, columns: tuple[str, ...]):
    """``(line, row)`` of a PAI table (its CSVs have no header; the columns are published apart)."""
    fh = _open(path, label)
    with fh:
        for line, fields in enumerate(csv.reader(fh), start=1):
            if not fields:
                continue
            if len(fields) != len(columns):
                raise UsageError(f"{label}: {path.name} line {line}: {len(fields)} columns; a PAI "
                                 f"{path.stem} has {len(columns)} ({', '.join(columns)}), without a header")
            yield line, dict(zip(columns, fields))


def read_pai(path: Path, label: str, job, options: dict, base_dir: Path) -> tuple[list, Counter]:
    """The GPU jobs of PAI's job and task tables and how many were skipped, by reason."""
    if not options.get("tasks"):
        raise UsageError(f"{label}: format pai needs workload.pai.tasks (pai_task_table.csv): the GPUs, CPUs, "
                         "memory and run times are there")
    tasks_path = Path(base_dir) / options["tasks"]
    need: dict[str, list[float]] = {}      # job_name → [gpus, cpu, mem, first start, last end]
    for line, row in _headerless(tasks_path, "workload.pai.tasks", PAI_TASKS):
        where = f"workload.pai.tasks: {tasks_path.name} line {line}"
        values = {}
        for col in ("inst_num", "plan_cpu", "plan_mem", "plan_gpu", "start_time", "end_time"):
            raw = row[col].strip()
            values[col] = None if raw == "" else _number(raw, f"{where}, column {col}")
            if values[col] is not None and (values[col] < 0 or math.isnan(values[col])):
                raise UsageError(f"{where}, column {col}: {raw!r}; allowed: a number ≥ 0 or empty")
        inst = values["inst_num"] or 0.0
        acc = need.setdefault(row["job_name"].strip(), [0.0, 0.0, 0.0, math.inf, -math.inf])
        acc[0] += inst * (values["plan_gpu"] or 0.0) / 100
        acc[1] += inst * (values["plan_cpu"] or 0.0) / 100
        acc[2] += inst * (values["plan_mem"] or 0.0)
        if values["start_time"] is not None and values["end_time"] is not None:
            acc[3] = min(acc[3], values["start_time"])
            acc[4] = max(acc[4], values["end_time"])
    out, skipped = [], Counter()
    for line, row in _headerless(path, label, PAI_JOBS):
        where = f"{label}: {path.name} line {line}"
        submit = _number(row["start_time"], f"{where}, column start_time")
        acc = need.get(row["job_name"].strip())
        reason = ("no task" if acc is None else "no GPU" if acc[0] <= 0
                  else "never ran" if not acc[4] > acc[3] else None)
        if reason:
            skipped[reason] += 1
            continue
        out.append(job(row["job_name"].strip(), math.ceil(acc[0] - 1e-9), acc[4] - acc[3], submit,
                       user=row["user"].strip(), cpu=acc[1], mem_gib=acc[2]))
    return _from_first(out), skipped


__all__ = ["FORMATS", "SCHEMA", "read_gavel", "read_helios", "read_pai", "read_philly", "read_pollux",
           "read_tiresias"]
