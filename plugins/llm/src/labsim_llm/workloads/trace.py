"""The ``trace`` workload: replay LLM requests recorded in a CSV file.

Each row is one request: when it arrived, its prompt tokens and the tokens it
generated, optionally the conversation it belongs to::

    workload:
      type: trace
      path: builtin:splitwise_conv        # or a CSV file, relative to the experiment file
      time_scale: 0.5                     # replay twice as fast
      max_requests: 2000

Columns are found by their usual names (``arrived_at``/``timestamp``/``TIMESTAMP``,
``num_prefill_tokens``/``prompt_tokens``/``ContextTokens``,
``num_decode_tokens``/``output_tokens``/``GeneratedTokens``, ``session_id``) or
named with ``columns:``. Timestamps are numbers (in ``time_unit``) or ISO dates;
the first row is t = 0. A request arrives at ``(t - start_s) · time_scale``.
Each request generates exactly its recorded output tokens (at least 1).

Rows that share a session id form a conversation: a later row's prompt
carries the previous turn (its prompt and its answer) as a prefix when it is
at least that long, so a prefix cache can reuse it. Rows are replayed at
their recorded times (open loop), whether or not the previous turn finished.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np
from labsim.config import read_text_file
from labsim.errors import UsageError

from labsim_llm.workloads.base import RequestWorkload
from labsim_llm.workloads.draws import Uniforms
from labsim_llm.workloads.replay import TraceReplay
from labsim_llm.workloads.profiles import COMMON_PROPERTIES, POSITIVE, PROBABILITY

#: builtin:<name> → file in labsim_llm/data/traces (see the README there for their origin)
BUILTIN_TRACES = {"splitwise_conv": "splitwise_conv.csv", "splitwise_code": "splitwise_code.csv"}

COLUMN_GUESSES = {
    "timestamp": (
        "arrived_at",
        "timestamp",
        "arrival_time",
        "arrival_s",
        "time",
        "time_s",
        "start_time",
    ),
    "prompt_tokens": (
        "num_prefill_tokens",
        "prompt_tokens",
        "contexttokens",
        "context_tokens",
        "input_tokens",
        "prompt_len",
        "input_length",
        "num_prompt_tokens",
    ),
    "output_tokens": (
        "num_decode_tokens",
        "output_tokens",
        "generatedtokens",
        "generated_tokens",
        "output_len",
        "output_length",
        "completion_tokens",
        "num_output_tokens",
    ),
    "session_id": ("session_id", "conversation_id", "session", "conv_id", "chat_id"),
}
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
#: the largest token count of a trace row (no model has a context near it)
MAX_TOKENS = 2**31 - 1
#: the largest trace file read
MAX_TRACE_BYTES = 2 << 30

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        **COMMON_PROPERTIES,
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "CSV file (relative to the experiment "
            "file) or builtin:splitwise_conv | builtin:splitwise_code.",
        },
        "columns": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "string", "minLength": 1} for k in COLUMN_GUESSES},
            "description": "Column names in the file, when not the usual ones.",
        },
        "time_unit": {"enum": list(TIME_UNITS), "default": "s"},
        "time_scale": {
            **POSITIVE,
            "default": 1.0,
            "description": "Multiplies every recorded time (0.5 replays twice as fast).",
        },
        "start_s": {
            "type": "number",
            "minimum": 0,
            "default": 0,
            "description": "Skip the rows "
            "recorded in the first start_s seconds; the next row arrives at t = 0 (or later).",
        },
        "end_s": {**POSITIVE, "description": "Replay only rows recorded before this time."},
        "max_requests": {
            "type": "integer",
            "minimum": 1,
            "description": "Replay at most this many rows.",
        },
        "repeat": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Replay the (selected) rows this many times back to back; each copy "
            "starts one mean inter-arrival gap after the previous one's last row, and its "
            "conversations are new ones.",
        },
        "streaming_response_probability": {
            **PROBABILITY,
            "default": 1.0,
            "description": "Share of requests whose client streams the answer; the others get it "
            "in one response when generation ends (their TTFT is their E2E, TPOT 0, and the whole "
            "answer crosses the client link at once; labsim_llm.engine.frontend).",
        },
    },
}


def trace_path(value: str, context) -> Path:
    """The file named by *value*: ``builtin:NAME`` or a path relative to the experiment file."""
    if value.startswith("builtin:"):
        name = value.split(":", 1)[1]
        if name not in BUILTIN_TRACES:
            raise UsageError(
                f"workload.path: no built-in trace {name!r}; available: "
                + ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_TRACES))
            )
        return Path(
            str(resources.files("labsim_llm").joinpath("data", "traces", BUILTIN_TRACES[name]))
        )
    experiment = getattr(context, "experiment", None)
    path = experiment.resolve_path(value) if experiment is not None else Path(value)
    if not path.is_file():
        raise UsageError(
            f"workload.path: trace file not found: {value} (relative paths are read from "
            "the experiment file's folder)"
        )
    return path


def _column(header: list[str], field: str, given: str | None, path: Path) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if given is not None:
        if given.strip().lower() not in lowered:
            raise UsageError(
                f"trace {path}: no column {given!r} (columns.{field}); "
                f"the file has: {', '.join(header)}"
            )
        return lowered.index(given.strip().lower())
    for guess in COLUMN_GUESSES[field]:
        if guess in lowered:
            return lowered.index(guess)
    if field == "session_id":
        return None
    raise UsageError(
        f"trace {path}: no {field} column (looked for {', '.join(COLUMN_GUESSES[field])}); "
        f"the file has: {', '.join(header)}. Name it with workload.columns.{field}"
    )


def _time(text: str, unit: float) -> float | None:
    """Seconds of a timestamp cell: a number in *unit*, or an ISO date (None if neither)."""
    try:
        return float(text) * unit
    except ValueError:
        pass
    try:
        head, _, frac = text.strip().partition(".")
        return datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).timestamp()
    except ValueError:
        return None


@functools.lru_cache(maxsize=8)
def load_trace(path: str, stamp: tuple, columns: tuple, unit: float):
    """``(times_s, prompt, output, sessions | None)`` arrays of a trace file, sorted by time."""
    given = dict(columns)
    times, prompts, outputs, sessions, session_ids = [], [], [], [], {}
    text = read_text_file(path, "trace", limit=MAX_TRACE_BYTES).lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise UsageError(f"trace {path}: the file is empty")
        cols = {f: _column(header, f, given.get(f), Path(path)) for f in COLUMN_GUESSES}
        names = {f: header[i].strip() for f, i in cols.items() if i is not None}
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            cells = {}
            for field, index in cols.items():
                if index is None:
                    continue
                if index >= len(row) or not row[index].strip():
                    raise UsageError(
                        f"trace {path} line {lineno}: column {names[field]!r} is empty"
                    )
                cells[field] = row[index].strip()
            t = _time(cells["timestamp"], unit)
            if t is None or not math.isfinite(t):
                raise UsageError(
                    f"trace {path} line {lineno}: column {names['timestamp']!r}: "
                    f"{cells['timestamp']!r} is not a number or an ISO date"
                )
            times.append(t)
            for field, out, least in (("prompt_tokens", prompts, 1), ("output_tokens", outputs, 0)):
                try:
                    value = float(cells[field])
                except ValueError:
                    raise UsageError(
                        f"trace {path} line {lineno}: column {names[field]!r}: "
                        f"{cells[field]!r} is not a number"
                    ) from None
                if not math.isfinite(value) or value < least or value != int(value):
                    raise UsageError(
                        f"trace {path} line {lineno}: column {names[field]!r}: {cells[field]!r} "
                        f"is not a whole number ≥ {least}"
                    )
                if value > MAX_TOKENS:
                    raise UsageError(
                        f"trace {path} line {lineno}: column {names[field]!r}: {cells[field]!r} "
                        f"is more than the {MAX_TOKENS:,} tokens a request may have"
                    )
                out.append(int(value))
            if cols["session_id"] is not None:
                sessions.append(session_ids.setdefault(cells["session_id"], len(session_ids)))
    except csv.Error as ex:
        raise UsageError(f"trace {path} line {reader.line_num}: {ex}") from None
    if not times:
        raise UsageError(f"trace {path}: no requests (only a header)")
    t = np.asarray(times, dtype=float)
    order = np.argsort(t, kind="stable")
    t = t[order] - t[order[0]]
    sess = np.asarray(sessions, dtype=np.int64)[order] if sessions else None
    return (
        t,
        np.asarray(prompts, dtype=np.int64)[order],
        np.asarray(outputs, dtype=np.int64)[order],
        sess,
    )


def _repeated(times, prompts, outputs, sessions, repeat: int):
    """The rows *repeat* times back to back: copy *k* shifted by *k* spans (the rows' span plus
    one mean gap between arrivals), its session ids made distinct from every other copy's."""
    n = times.size
    span = float(times[-1] - times[0])
    span += span / (n - 1) if n > 1 else 1.0
    shift = np.repeat(np.arange(repeat, dtype=float) * span, n)
    times = np.tile(times, repeat) + shift
    if sessions is not None:
        stride = int(sessions.max()) + 1 if sessions.size else 1
        sessions = np.where(np.tile(sessions, repeat) >= 0,
                            np.tile(sessions, repeat) + np.repeat(np.arange(repeat), n) * stride, -1)
    return times, np.tile(prompts, repeat), np.tile(outputs, repeat), sessions


class TraceWorkload(RequestWorkload):
    """Replays a request trace from CSV (timestamp, prompt tokens, output tokens, session id)."""

    name = "trace"
    aliases = ("trace_replay", "replay")
    description = "Replays LLM requests from a CSV trace (built-in: splitwise_conv, splitwise_code)"
    config_schema = CONFIG_SCHEMA

    def __init__(self, config: dict, context):
        super().__init__(config, context)
        self.path = trace_path(config["path"], context)
        unit = TIME_UNITS[config.get("time_unit", "s")]
        columns = tuple(sorted((config.get("columns") or {}).items()))
        stat = self.path.stat()
        times, prompts, outputs, sessions = load_trace(
            str(self.path), (stat.st_mtime_ns, stat.st_size), columns, unit
        )
        start = float(config.get("start_s", 0.0))
        keep = times >= start
        if config.get("end_s") is not None:
            keep &= times < float(config["end_s"])
        index = np.flatnonzero(keep)[: config.get("max_requests")]
        if index.size == 0:
            raise UsageError(
                f"workload: no trace rows between start_s {start} and end_s "
                f"{config.get('end_s')} (the trace spans {times[-1]:.1f} s)"
            )
        scale = float(config.get("time_scale", 1.0))
        t = (times[index] - start) * scale
        prompts, outputs = prompts[index], np.maximum(outputs[index], 1)
        sessions = sessions[index] if sessions is not None else None
        repeat = int(config.get("repeat", 1))
        if repeat > 1:
            t, prompts, outputs, sessions = _repeated(t, prompts, outputs, sessions, repeat)
        self.rows = int(t.size)
        self._replay = TraceReplay(
            self, t.tolist(), prompts.tolist(), outputs.tolist(),
            sessions.tolist() if sessions is not None else None,
            float(config.get("streaming_response_probability", 1.0)),
            Uniforms(self.rng("workload", "trace", "streaming")))

    def _begin(self) -> None:
        self._replay.start()

    def summary(self) -> dict:
        out = super().summary()
        out.update(
            {
                "trace": self.config["path"],
                "trace_rows": self.rows,
                "time_scale": float(self.config.get("time_scale", 1.0)),
            }
        )
        if int(self.config.get("repeat", 1)) > 1:
            out["repeat"] = int(self.config["repeat"])
        return out
