"""What a serving engine measures: per-request and per-step tables and the summary section.

Rows stream to the run's metric sinks as they happen (``requests`` and
``steps`` tables); the summary keeps running sums and, for each latency, a
:class:`LatencySample` (exact values up to 131,072 requests, then log-spaced
bins 0.1 % wide), so memory does not grow with the number of finished
requests. Every figure of the summary follows the output
contract in :data:`SUMMARY_SCHEMA`.

Definitions (as ``vllm bench serve`` reports them): TTFT = first token −
arrival; TPOT = (finish − first token) / (output tokens − 1); ITL = every gap
between consecutive tokens of a request; E2E = finish − arrival. Requests
arriving during ``warm_up_duration_s`` are left out of the statistics, not
of the tables; the GPU and KV-cache figures count only engine time after the
warm-up (a step that straddles it, by the share after it). The cost, the
preemption count and the step count cover the whole run (the GPUs are paid
for from the start).

>>> m = ServingMetrics(context, "vllm", num_gpus=1, device=gpu)   # doctest: +SKIP
>>> m.request_done(request); m.summary(sim_time=60.0)["ttft_ms"]["p99"]   # doctest: +SKIP
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

import numpy as np
from labsim import native
from labsim.log import get_logger
from labsim.accounting import utilisation

from labsim_llm import native as llm_native
from labsim_llm.request import Request

log = get_logger("labsim_llm.metrics")

#: What the latency percentiles and throughput of a serving summary are computed over.
PERCENTILES_COVER = "finished requests that arrived after the warm-up"

REQUEST_COLUMNS = [
    "request_id",
    "framework",
    "replica",
    "status",
    "reject_reason",
    "profile",
    "session_id",
    "turn",
    "arrival_s",
    "first_scheduled_s",
    "first_token_s",
    "finish_s",
    "prompt_tokens",
    "output_tokens",
    "cached_prompt_tokens",
    "preemptions",
    "ttft_ms",
    "tpot_ms",
    "itl_mean_ms",
    "e2e_ms",
]
STEP_COLUMNS = [
    "framework",
    "replica",
    "start_s",
    "duration_s",
    "num_steps",
    "batch_tokens",
    "num_prefills",
    "num_decodes",
    "running",
    "waiting",
    "kv_blocks_used",
]

_STATS = {
    "type": "object",
    "required": ["mean"],
    "properties": {"mean": {"type": ["number", "null"]}},
    "patternProperties": {r"^p[0-9]+(\.[0-9]+)?$": {"type": ["number", "null"]}},
}
_NUM = {"type": ["number", "null"]}

#: JSON Schema of one serving framework's section of summary.json
SUMMARY_SCHEMA = {
    "type": "object",
    "title": "serving framework summary",
    "required": ["framework", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "throughput", "requests"],
    "properties": {
        "framework": {"type": "string", "description": "The registered framework type."},
        "ttft_ms": {**_STATS, "description": "Time to first token, ms."},
        "tpot_ms": {**_STATS, "description": "Time per output token after the first, ms."},
        "itl_ms": {**_STATS, "description": "Inter-token latency over every gap, ms."},
        "e2e_ms": {**_STATS, "description": "Arrival to last token, ms."},
        "throughput": {
            "type": "object",
            "required": ["requests_per_s", "input_tokens_per_s", "output_tokens_per_s"],
            "properties": {
                "requests_per_s": _NUM,
                "input_tokens_per_s": _NUM,
                "output_tokens_per_s": _NUM,
                "duration_s": _NUM,
            },
        },
        "goodput": {
            "type": "object",
            "properties": {"requests_per_s": _NUM, "fraction": _NUM, "slo": {"type": "object"}},
        },
        "requests": {
            "type": "object",
            "properties": {
                "total": {"type": "integer"},
                "finished": {"type": "integer"},
                "rejected": {"type": "integer"},
                "unfinished": {"type": "integer",
                               "description": "Still queued or running when the run stopped "
                                              "(at simulation.max_simulation_time)."},
                "rejected_by_reason": {"type": "object"},
                "in_statistics": {"type": "integer",
                                  "description": "Requests the latency percentiles and "
                                                 "throughput are computed over."},
                "percentiles_cover": {"type": "string",
                                      "description": "Which requests the percentiles cover: "
                                                     "unfinished and rejected ones are left out."},
            },
        },
        "kv_cache": {"type": "object"},
        "preemption": {"type": "object"},
        "prefix_cache": {"type": "object"},
        "gpu": {"type": "object"},
        "cost": {"type": "object"},
        "config": {"type": "object"},
    },
}


def _uniform_shares(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``float(np.full(n[i], v[i]).sum())`` for each lane (each *n* ≥ 1) but for the sign of
    a zero sum, bit for bit: numpy's pairwise summation of the copies (blocks of 128 in eight
    running partial sums, a longer run split in two, its first part half of it rounded down to a
    multiple of 8), lane by lane with the same float operations: up to 7 copies added one by
    one; 8-31 copies as one product (each of numpy's eight partial sums holds at most three
    copies: ``3·v`` and ``v + v + v`` are both the double nearest to it, and eight times that is
    exact) and the rest added one by one; 32-128 copies as numpy sums them; more as numpy
    splits them, the two parts' shares worked out the same way (all lanes' parts together) and
    added."""
    out = np.empty_like(v)
    small = n < 8
    if small.any():
        vs, ns = v[small], n[small]
        out[small] = _copies(vs, int(ns.max()))[ns - 1, np.arange(len(vs))]
    block = (n >= 8) & (n <= 128)
    if block.any():
        vb, nb = v[block], n[block]
        lanes = np.arange(len(vb))
        eights = nb >> 3
        r = np.where(eights < 4, vb * (nb & ~7), vb)
        many = eights >= 4
        if many.any():
            r = np.where(many, _copies(vb, int(eights.max()))[eights - 1, lanes] * 8.0, r)
        rest = nb & 7
        top = int(rest.max())
        if top:
            r = _copies(vb, top + 1, r)[rest, lanes]
        out[block] = r
    big = n > 128
    if big.any():
        # numpy's split: the first part half the copies rounded down to a multiple of 8
        vg, ng = v[big], n[big]
        half = ng // 2
        half -= half % 8
        both = _uniform_shares(np.concatenate((vg, vg)), np.concatenate((half, ng - half)))
        k = len(vg)
        out[big] = both[:k] + both[k:]
    return out


def _int64s(counts: list) -> np.ndarray:
    """*counts* (ints) as an int64 array: packed by ``struct`` and read in place, several
    times as quick as ``np.array`` walking the list (ints beyond int64, which no count is, or
    other objects: by ``np.array``)."""
    try:
        return np.frombuffer(struct.pack(f"{len(counts)}q", *counts), dtype=np.int64)
    except struct.error:
        return np.array(counts, dtype=np.int64)


def _plain_counts(times: list) -> tuple[int, bool]:
    """``(sum(times), whether every count equals the first)`` when each of *times* (not empty)
    is a plain ``int`` above 0, as a span's counts are; ``(-1, False)`` otherwise (a 0 to
    leave out, a negative, or another type: numpy integers, bools), for the generic loop.
    Compiled, the counts are then compared and added as machine integers, not as objects."""
    first = times[0]
    if type(first) is not int:
        return -1, False
    f: int = first
    total = 0
    same = True
    for t in times:
        if type(t) is not int:
            return -1, False
        k: int = t
        if k <= 0:
            return -1, False
        if k != f:
            same = False
        total += k
    return total, same


def _copies(v: np.ndarray, rows: int, start: np.ndarray | None = None) -> np.ndarray:
    """Row *j* (< *rows*): *start* (default *v*) with *j* more copies of *v* added one at a
    time, lane by lane: the running sums of a loop of ``r = r + v``, each row one numpy add
    (``np.add.accumulate`` over the rows gives the same sums, many times slower)."""
    sums = np.empty((rows, len(v)))
    sums[0] = v if start is None else start
    for j in range(1, rows):
        np.add(sums[j - 1], v, out=sums[j])
    return sums


#: finished requests whose rows wait before their latencies join the statistics together
KEPT_CHUNK = 4096



class GapHistogram:
    """Counts of gaps in log-spaced bins 0.1 % wide, from 1 µs to ~3 hours.

    Percentiles are read at a bin's geometric centre (relative error < 0.05 %);
    the mean is exact. Memory is fixed, whatever the number of tokens.

    What a decode step adds (a gap seen by every stream: :meth:`add_uniform`, :meth:`add_repeated`,
    :meth:`add_repeated_each`) waits in a ledger of at most :attr:`LEDGER` entries and is
    binned and summed a ledger at a time with numpy (:meth:`_settle`): the same bins, and the
    same floating-point operations in the same order for the running total, as one value at a
    time, bit for bit. The ledger is settled whenever :attr:`counts` or :attr:`total` is read.
    """

    LOW = 1e-6
    RATIO = 1.001
    #: ledger entries kept before they are settled together
    LEDGER = 4096

    def __init__(self) -> None:
        self.nbins = int(math.log(1e4 / self.LOW) / math.log(self.RATIO)) + 2
        self._counts = np.zeros(self.nbins, dtype=np.int64)
        self._total = 0.0
        self.n: Any = 0       # (Any: an engine may count in numpy integers, as in the pure class)
        self._log_ratio = math.log(self.RATIO)
        # the ledger: one value per entry, in order, and each entry's *times* in runs (the
        # entries of a run of _run_counts[i] share _run_times[i]: a span's decode steps are seen
        # by as many streams each). times > 0: *value* seen by *times* streams, summed as numpy
        # sums that many copies (add_uniform); times < 0: *value* seen by -times streams, summed
        # as value * -times (add_repeated); times == 0: *value* is a sum to add to the total as
        # it is, its values binned already
        self._values: list[Any] = []
        self._run_times: list[Any] = []
        self._run_counts: list[int] = []

    @property
    def counts(self) -> np.ndarray:
        """The count of every bin."""
        if self._values:
            self._settle()
        return self._counts

    @property
    def total(self) -> float:
        """The sum of every value counted (seconds)."""
        if self._values:
            self._settle()
        return self._total

    @total.setter
    def total(self, value) -> None:
        if self._values:
            self._settle()
        self._total = value

    def _mark(self, times, count: int) -> None:
        """The ledger's latest *count* entries are seen by *times* streams (see ``__init__``)."""
        kinds = self._run_times
        if kinds and kinds[-1] == times:
            self._run_counts[-1] += count
        else:
            kinds.append(times)
            self._run_counts.append(count)

    def _bin(self, values):
        v = np.maximum(np.asarray(values, dtype=float), self.LOW)
        return np.minimum((np.log(v / self.LOW) / self._log_ratio).astype(np.int64), self.nbins - 1)

    def _bin1(self, value) -> int:
        """``_bin`` of one value, in plain Python unless it lies within rounding of a bin edge
        (numpy's logarithm and the math module's may then differ in the last place; away from
        an edge by more than 1e-7 of a bin, both truncate to the same bin)."""
        if value > self.LOW:
            x = math.log(value / self.LOW) / self._log_ratio
            b = int(x)
            if x - b > 1e-7 and b + 1 - x > 1e-7:
                return b if b < self.nbins - 1 else self.nbins - 1
        return int(self._bin(np.array([value], dtype=float))[0])

    def add(self, values) -> None:
        """Count each of *values* (seconds) once."""
        values = np.asarray(values, dtype=float)
        if values.size:
            np.add.at(self._counts, self._bin(values), 1)
            self._values.append(float(values.sum()))
            self._mark(0, 1)
            self.n += int(values.size)
            if len(self._values) >= self.LEDGER:
                self._settle()

    def add_uniform(self, value, times, tail=None) -> None:
        """Exactly ``add([value] * times + list(tail))``, without a bin per repeated value."""
        if not tail:
            # the usual decode step: every stream waited as long
            if times > 0:
                values = self._values
                values.append(value)
                self._mark(times, 1)
                self.n += times
                if len(values) >= self.LEDGER:
                    self._settle()
            return
        k = len(tail)
        if times <= 0:
            self.add(tail)
            return
        every = np.full(times + k, value, dtype=float)
        every[times:] = tail
        np.add.at(self._counts, self._bin(every[times:]), 1)
        self._counts[self._bin1(value)] += times
        self._values.append(float(every.sum()))
        self._mark(0, 1)
        self.n += times + k
        if len(self._values) >= self.LEDGER:
            self._settle()

    def add_uniform_each(self, values: list, times: list) -> None:
        """``add_uniform(v, t)`` for each *v* of *values* and *t* of *times* (counts ≥ 0) in
        order (decode steps of several groups, interleaved: the pipeline span's), with the same
        bins and the same running total, bit for bit: the pairs join the ledger."""
        if not times:
            return
        # one pass over the counts (a few a call): whether one is 0, whether all equal the
        # first, and their sum, added in order from 0 as sum() adds them
        first = times[0]
        total: Any
        total, same = _plain_counts(times)
        if total < 0:                               # (counts of other types, or a 0)
            same = True
            total = 0
            for t in times:
                if t == 0:
                    pairs = [(v, t) for v, t in zip(values, times) if t]
                    return self.add_uniform_each([v for v, _ in pairs], [t for _, t in pairs])
                if same and t != first:
                    same = False
                total += t
        ledger = self._values
        ledger.extend(values)
        if same:                                    # (as a span's steps mostly are)
            self._mark(first, len(times))
        else:                                       # runs of one entry each
            self._run_times.extend(times)
            self._run_counts.extend([1] * len(times))
        self.n += total
        if len(ledger) >= self.LEDGER:
            self._settle()

    def add_repeated(self, value, times) -> None:
        """Count *value* (seconds) *times* times (one decode step seen by *times* sequences)."""
        if times > 0:
            self._values.append(value)
            self._mark(-times, 1)
            self.n += times
            if len(self._values) >= self.LEDGER:
                self._settle()

    def add_repeated_each(self, values, times) -> None:
        """``add_repeated(v, times)`` for each of *values* in order (consecutive decode steps),
        with the same bins and the same running total, bit for bit."""
        if times <= 0 or not values:
            return
        ledger = self._values
        ledger.extend(values)
        self._mark(-times, len(values))
        self.n += times * len(values)
        if len(ledger) >= self.LEDGER:
            self._settle()

    def _settle(self) -> None:
        """Bin and sum the ledger: each entry's share of the total worked out as
        :meth:`add_uniform` (numpy's pairwise sum of its copies), :meth:`add_repeated` (one
        product) or :meth:`add` (a sum) gives it, lane by lane with the same operations, then
        added to the running total in order (``np.add.accumulate`` adds one at a time)."""
        values = self._values
        # packed as C doubles (float() of each, as np.array(values, dtype=float) converts them)
        # and read in place: about twice as quick as numpy converting the list itself
        v = np.frombuffer(struct.pack(f"{len(values)}d", *values), dtype=float)
        t = _int64s(self._run_times)
        if len(t) != len(v):            # runs longer than one entry: each to its entries
            t = np.repeat(t, _int64s(self._run_counts))
        self._values = []
        self._run_times = []
        self._run_counts = []
        counted = t != 0
        if counted.all():
            np.add.at(self._counts, self._bin(v), np.abs(t))
        elif counted.any():
            np.add.at(self._counts, self._bin(v[counted]), np.abs(t[counted]))
        share = v.copy()                            # times == 0: the sum itself
        neg = t < 0
        if neg.any():
            share[neg] = v[neg] * -t[neg]
        pos = t > 0
        if pos.any():
            share[pos] = 0.0 + _uniform_shares(v[pos], t[pos])     # (as add_uniform added it)
        self._total = float(np.add.accumulate(np.concatenate(([self._total], share)))[-1])

    def stats(self, percentiles) -> dict:
        """``{"mean": ms, "pNN": ms ...}``."""
        from labsim.metrics import percentile_key

        out = {"mean": self.total / self.n * 1e3 if self.n else None}
        if not self.n:
            out.update({percentile_key(p): None for p in percentiles})
            return out
        cum = np.cumsum(self.counts)
        for p in percentiles:
            idx = int(np.searchsorted(cum, p * self.n, side="left"))
            centre = self.LOW * self.RATIO ** (idx + 0.5)
            out[percentile_key(p)] = centre * 1e3
        return out


class LatencySample:
    """Mean and percentiles of one latency (milliseconds) in bounded memory.

    Values are kept exactly, and percentiles interpolate between order
    statistics as numpy does, until :attr:`EXACT_LIMIT` of them have been
    added; from then on they are counted in a :class:`GapHistogram` (0.1 %
    bins, percentiles within 0.05 %, the mean still exact), fed
    :attr:`EXACT_LIMIT` values at a time. A run of a million requests holds
    the same memory as one of a hundred thousand.

    >>> s = LatencySample()
    >>> for ms in (10.0, 20.0, 30.0):
    ...     s.add(ms)
    >>> s.stats([0.5])
    {'mean': 20.0, 'p50': 20.0}
    """

    EXACT_LIMIT = 1 << 17

    def __init__(self) -> None:
        self._values = array("d")
        self._hist: GapHistogram | None = None

    def add(self, ms) -> None:
        """Count one value (NaN — a one-token request's TPOT — is left out)."""
        if ms == ms:
            self._values.append(ms)
            if len(self._values) >= self.EXACT_LIMIT:
                self._fold()

    def extend(self, values) -> None:
        """:meth:`add` each of *values* in order: the same exact values and the same batches."""
        total = sum(values)
        if total != total:                     # a NaN among them (or infinities of both signs)
            values = [v for v in values if v == v]
        limit, start = self.EXACT_LIMIT, 0
        while start < len(values):
            room = limit - len(self._values)
            self._values.extend(values[start:start + room])
            start += room
            if len(self._values) >= limit:
                self._fold()

    def _fold(self) -> None:
        if self._hist is None:
            self._hist = GapHistogram()
        self._hist.add(np.frombuffer(self._values, dtype=float) / 1e3)
        self._values = array("d")

    def stats(self, percentiles) -> dict:
        """``{"mean": ms, "pNN": ms ...}`` of the values added so far."""
        from labsim.metrics import stats

        if self._hist is None:
            return stats(np.frombuffer(self._values, dtype=float) if self._values else np.zeros(0), percentiles)
        if self._values:
            self._fold()
        return self._hist.stats(percentiles)


class ServingMetrics:
    """Tables and summary of one serving framework instance.

    :param framework: the instance name written in every row.
    :param kind: the framework type (``vllm``) recorded in the summary.
    :param num_gpus: GPUs the instance holds (replicas × TP × PP), for cost and MFU.
    :param device: the GPU, for ``price_per_hour``, ``peak_flops`` and ``mem_bw``.
    :param record_steps: write the ``steps`` table.
    :param max_step_rows: write at most this many ``steps`` rows (0: no limit); a long run's
        later steps are left out, with a warning, so that steps.csv stays a few hundred MB
        at most (each row is about 80 bytes).

    Rows reach the ``requests`` and ``steps`` tables a chunk at a time; :meth:`flush` (which
    :meth:`summary` calls) hands over what waits.
    """

    def __init__(
        self,
        context,
        framework: str,
        kind: str,
        *,
        num_gpus,
        device,
        dtype: str = "bf16",
        kv_capacity_blocks=0,
        record_steps=True,
        max_step_rows=0,
    ):
        self.context = context
        self.framework = framework
        self.kind = kind
        self.num_gpus = num_gpus
        self.device = device
        self.dtype = dtype
        self.kv_capacity = kv_capacity_blocks
        self.warm_up = float(context.metrics.warm_up_s)
        self.requests = context.metrics.table("requests", REQUEST_COLUMNS)
        self.steps = context.metrics.table("steps", STEP_COLUMNS) if record_steps else None
        self._step_rows: list = []
        #: requests rows not yet handed to the table (:meth:`flush`, every KEPT_CHUNK rows):
        #: one list append per request instead of the table's and its writers' calls
        self._request_rows: list[list] = []
        self._step_room = max_step_rows or math.inf  # rows the steps table may still take
        self.steps_left_out = 0
        self.slo = dict(context.metrics.config.get("slo") or {})
        # finished requests: all of them, for the counts and the cost
        self.finished = 0
        self.output_tokens = 0
        # finished requests that arrived after the warm-up, for the statistics
        self.ttft = LatencySample()
        self.tpot = LatencySample()
        self.e2e = LatencySample()
        self.kept = 0
        self.kept_good = 0
        self.kept_prompt_tokens = 0
        self.warm_up_output_tokens = 0     # of finished requests that arrived in the warm-up
        self.kept_cached_tokens = 0
        self.kept_first_arrival = math.inf
        self.kept_last_finish = -math.inf
        #: rows of kept requests not yet counted in the statistics (:meth:`_count_kept`)
        self._kept_rows: list[list] = []
        self.rejected: dict[str, int] = {}
        self.unfinished = 0
        self.itl = GapHistogram()
        # per step
        # the steps' running sums take whatever numbers an engine hands :meth:`step` (numpy's
        # too): Any, so that the compiled twin holds them as the pure class does
        self.busy_s: Any = 0.0
        self.flops: Any = 0.0
        self.bytes: Any = 0.0
        self.kv_block_seconds: Any = 0.0
        self.kv_peak: Any = 0
        self.num_steps: Any = 0
        self.preemptions: Any = 0

    # -- records --------------------------------------------------------------------------

    def _row(self, r: Request) -> list:
        # times not reached yet are None on the request, nan in the row
        scheduled = math.nan if r.first_scheduled_s is None else r.first_scheduled_s
        first = math.nan if r.first_token_s is None else r.first_token_s
        finish = math.nan if r.finish_s is None else r.finish_s
        ttft = (first - r.arrival_s) * 1e3
        e2e = (finish - r.arrival_s) * 1e3
        out = r.output_tokens if r.status == "finished" else 0
        tpot = ((finish - first) / (out - 1) * 1e3) if out > 1 else math.nan
        return [
            r.request_id,
            self.framework,
            r.replica,
            r.status,
            r.reject_reason,
            r.profile,
            r.session_id,
            r.turn,
            r.arrival_s,
            scheduled,
            first,
            finish,
            r.prompt_tokens,
            out,
            r.cached_prompt_tokens,
            r.preemptions,
            ttft,
            tpot,
            tpot,
            e2e,
        ]

    def request_done(self, r: Request) -> None:
        """Record a finished request (row + summary arrays).

        :raises RuntimeError: when the engine never set its ``first_token_s`` or ``finish_s``
            (its latencies would be silently missing from every statistic).
        """
        if r.first_token_s is None or r.finish_s is None:
            raise RuntimeError(
                f"{self.kind} {self.framework!r}: request {r.request_id} finished without "
                f"{'first_token_s' if r.first_token_s is None else 'finish_s'}; an engine sets both "
                "(labsim_llm.engine.replica.ReplicaShell.emit_token and report do)")
        row = self._row(r)
        self._add_request_row(row)
        self.finished += 1
        self.output_tokens += r.output_tokens
        if self.warm_up > 0 and r.arrival_s < self.warm_up:
            self.warm_up_output_tokens += r.output_tokens
            return
        kept = self._kept_rows
        kept.append(row)
        if len(kept) >= KEPT_CHUNK:
            self._count_kept()

    @property
    def kept_output_tokens(self) -> int:
        """Output tokens of the finished requests that arrived after the warm-up."""
        return self.output_tokens - self.warm_up_output_tokens

    def _count_kept(self) -> None:
        """Add the waiting rows of kept requests to the statistics, a column at a time: the same
        values in the same order as one request at a time."""
        rows = self._kept_rows
        if not rows:
            return
        self._kept_rows = []
        # the columns the statistics read, one list each (zip(*rows) would make a tuple per
        # row, which costs more than the values themselves)
        ttft = [row[16] for row in rows]
        tpot = [row[17] for row in rows]
        e2e = [row[19] for row in rows]
        self.ttft.extend(ttft)
        self.tpot.extend(tpot)
        self.e2e.extend(e2e)
        self.kept += len(rows)
        slo = self.slo
        if slo:    # NaN TPOT (one output token) passes
            t_max, p_max, e_max = (slo.get(k, math.inf) for k in ("ttft_ms", "tpot_ms", "e2e_ms"))
            self.kept_good += sum(1 for t, p, e in zip(ttft, tpot, e2e)
                                  if not (t > t_max or p > p_max or e > e_max))
        self.kept_prompt_tokens += sum([row[12] for row in rows])
        self.kept_cached_tokens += sum([row[14] for row in rows])
        first = min([row[8] for row in rows])
        if first < self.kept_first_arrival:
            self.kept_first_arrival = first
        last = max([row[11] for row in rows])
        if last > self.kept_last_finish:
            self.kept_last_finish = last

    def request_rejected(self, r, reason: str) -> None:
        """Record a request the engine refused."""
        r.status, r.reject_reason = "rejected", reason
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._add_request_row(self._row(r))

    def request_unfinished(self, r) -> None:
        """Record a request still queued or running when the run stopped."""
        r.status = "unfinished"
        if not getattr(r, "streaming", True):
            r.first_token_s = None   # a non-streaming client gets nothing before the whole answer
        self.unfinished += 1
        self._add_request_row(self._row(r))

    def _add_request_row(self, row: list) -> None:
        rows = self._request_rows
        rows.append(row)
        if len(rows) >= KEPT_CHUNK:
            self.flush()

    def step_sums(self) -> tuple:
        """``(num_steps, busy_s, flops, bytes, kv_block_seconds, kv_peak)``: the running sums of
        :meth:`step`, for a loop that adds its steps to them itself and hands them back with
        :meth:`set_step_sums` (one call each way: from another compiled group, each attribute
        read or written is a generic lookup)."""
        return (self.num_steps, self.busy_s, self.flops, self.bytes, self.kv_block_seconds,
                self.kv_peak)

    def set_step_sums(self, num_steps, busy_s, flops, nbytes, kv_block_seconds, kv_peak) -> None:
        """Set the running sums :meth:`step_sums` gave, with the loop's steps added."""
        self.num_steps = num_steps
        self.busy_s = busy_s
        self.flops = flops
        self.bytes = nbytes
        self.kv_block_seconds = kv_block_seconds
        self.kv_peak = kv_peak

    def step(self, replica, start, duration, num_steps, tokens, prefills, decodes, running, waiting,
             kv_used, flops, nbytes, kv_block_seconds, busy=None) -> None:
        """Record one step, or *num_steps* identical decode steps taken together (counts and
        seconds as ints and floats, numpy's too: none is declared, as the compiled twin would
        then refuse numpy's).

        *busy*: when steps overlap (a pipeline with several batches in flight), the seconds
        at the end of this one that no earlier step covered; only they count as busy time,
        with their share of the KV-cache use. Default: all of *duration*.
        """
        self.num_steps += num_steps
        b_start, b_len = start, duration
        if busy is not None and busy < duration:
            kv_block_seconds = kv_block_seconds * busy / duration
            b_start, b_len = start + duration - busy, busy
        if b_start >= self.warm_up:
            self.busy_s += b_len
            self.flops += flops
            self.bytes += nbytes
            self.kv_block_seconds += kv_block_seconds
            if kv_used > self.kv_peak:
                self.kv_peak = kv_used
        elif b_start + b_len > self.warm_up:            # straddles the warm-up: its share after
            share = (b_start + b_len - self.warm_up) / b_len
            self.busy_s += b_len * share
            self.flops += flops * share
            self.bytes += nbytes * share
            self.kv_block_seconds += kv_block_seconds * share
            if kv_used > self.kv_peak:
                self.kv_peak = kv_used
        if self.steps is not None and self._step_room <= 0:
            self.steps_left_out += 1
        elif self.steps is not None:
            self._step_room -= 1
            self._step_rows.append(
                (
                    self.framework,
                    replica,
                    start,
                    duration,
                    num_steps,
                    tokens,
                    prefills,
                    decodes,
                    running,
                    waiting,
                    kv_used,
                )
            )
            if len(self._step_rows) >= 4096:
                self.flush()

    def flush(self) -> None:
        """Hand the buffered requests and steps rows to their tables."""
        if self._request_rows:
            self.requests.extend(self._request_rows)
            self._request_rows = []
        if self.steps is not None and self._step_rows:
            self.steps.extend(self._step_rows)
            self._step_rows = []

    # -- summary --------------------------------------------------------------------------

    def summary(self, sim_time, replicas=1, extra: dict | None = None,
                bill: dict | None = None) -> dict:
        """This framework's section of summary.json."""
        self.flush()
        self._count_kept()
        if self.steps_left_out:
            get_logger("labsim_llm").warning(
                "steps_table_truncated",
                framework=self.framework,
                rows_written=self.steps.rows if self.steps is not None else 0,
                rows_left_out=self.steps_left_out,
                hint="steps.csv holds the run's first steps only; raise max_step_rows "
                "(0: no limit) or set record_steps: false",
            )
        metrics = self.context.metrics
        n = self.kept
        duration = self.kept_last_finish - max(self.warm_up, self.kept_first_arrival) if n else 0.0

        def rate(x):
            return x / duration if duration > 0 else None

        throughput = {
            "requests_per_s": rate(n),
            "input_tokens_per_s": rate(float(self.kept_prompt_tokens)),
            "output_tokens_per_s": rate(float(self.kept_output_tokens)),
            "duration_s": duration,
        }
        slo = self.slo
        goodput = {
            "requests_per_s": rate(self.kept_good) if slo else None,
            "fraction": (self.kept_good / n if n else None) if slo else None,
            "slo": dict(slo),
        }
        finished = self.finished
        rejected = sum(self.rejected.values())
        total_out = self.output_tokens
        gpus = self.num_gpus
        price = float(getattr(self.device, "price_per_hour", 0.0) or 0.0)
        # billed by the kernel's accounting for this framework's own GPUs over its own time
        usd = bill["usd"] if bill is not None else price * gpus * sim_time / 3600.0
        replica_gpus = gpus / max(replicas, 1)
        section = {
            "framework": self.kind,
            "ttft_ms": self.ttft.stats(metrics.percentiles),
            "tpot_ms": self.tpot.stats(metrics.percentiles),
            "itl_ms": self.itl.stats(metrics.percentiles),
            "e2e_ms": self.e2e.stats(metrics.percentiles),
            "throughput": throughput,
            "goodput": goodput,
            "requests": {
                "total": finished + rejected + self.unfinished,
                "finished": finished,
                "rejected": rejected,
                "unfinished": self.unfinished,
                "rejected_by_reason": dict(sorted(self.rejected.items())),
                "in_statistics": n,
                "percentiles_cover": PERCENTILES_COVER,
            },
            "kv_cache": {
                "capacity_blocks_per_replica": self.kv_capacity,
                "mean_utilization": (
                    self.kv_block_seconds / (self.busy_s * self.kv_capacity)
                    if self.busy_s > 0 and self.kv_capacity
                    else None
                ),
                "peak_utilization": self.kv_peak / self.kv_capacity if self.kv_capacity else None,
            },
            "preemption": {
                "total": self.preemptions,
                "per_request": self.preemptions / finished if finished else None,
            },
            "prefix_cache": {
                "hit_tokens": self.kept_cached_tokens,
                "hit_rate": self.kept_cached_tokens / self.kept_prompt_tokens if self.kept_prompt_tokens else None,
            },
            "gpu": {
                "num_gpus": gpus,
                "steps": self.num_steps,
                **utilisation(busy_s=self.busy_s, groups=replicas, window_s=sim_time - self.warm_up,
                              flops=self.flops, bytes_moved=self.bytes, device=self.device,
                              dtype=self.dtype, gpus_per_group=replica_gpus),
            },
            "cost": {
                "usd_total": usd,
                "usd_per_million_output_tokens": usd / total_out * 1e6 if total_out else None,
                **({"gpu_hours": bill["gpu_hours"], "billed_s": bill["held_s"]} if bill is not None else {}),
            },
        }
        if extra:
            section.update(extra)
        self._warn_left_out(finished, rejected)
        return section

    def _warn_left_out(self, finished: int, rejected: int) -> None:
        """Say on the console when requests are missing from the percentiles."""
        if self.unfinished or rejected:
            log.warning(
                "requests_left_out_of_statistics",
                framework=self.framework,
                finished=finished,
                unfinished=self.unfinished,
                rejected=rejected,
                note="percentiles cover finished requests only"
                + ("; raise simulation.max_simulation_time to let the rest finish"
                   if self.unfinished else ""),
            )


__all__ = ["ServingMetrics", "GapHistogram", "LatencySample", "SUMMARY_SCHEMA", "REQUEST_COLUMNS", "STEP_COLUMNS",
           "PERCENTILES_COVER"]


#: The metrics `labsim run` prints for a serving framework: (label, dotted summary key).
HEADLINE = [
    ("finished requests", "requests.finished"),
    ("unfinished requests", "requests.unfinished"),
    ("rejected requests", "requests.rejected"),
    ("TTFT p50 (ms)", "ttft_ms.p50"),
    ("TTFT p99 (ms)", "ttft_ms.p99"),
    ("TPOT p50 (ms)", "tpot_ms.p50"),
    ("TPOT p99 (ms)", "tpot_ms.p99"),
    ("output tokens/s", "throughput.output_tokens_per_s"),
    ("goodput (req/s)", "goodput.requests_per_s"),
    ("KV cache peak use", "kv_cache.peak_utilization"),
    ("preemptions", "preemption.total"),
    ("prefix-cache hit rate", "prefix_cache.hit_rate"),
    ("MFU", "gpu.mfu"),
    ("$ per 1M output tokens", "cost.usd_per_million_output_tokens"),
]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in ("ServingMetrics", "GapHistogram", "LatencySample")}

native.use_group_twin("labsim_llm", llm_native.MODULES, "serving_metrics", globals(), PURE)
