"""The per-step loops of a run of decode steps, in a module that compiles (``labsim_llm.native``).

An engine that takes a run of identical decode steps in one event (vLLM's fast-forward
spans) still owes each step its own arithmetic: whether the free KV blocks allow it, its
end, its gap since the previous one, the KV blocks it held over that gap, its price. These
functions are those loops, written so that mypyc can compile them (``labsim_llm.native``:
the compiled twin runs them several times as fast); each does the same floating-point
operations in the same order as one step at a time, so a caller gets the same bits whether
it runs compiled or not.

>>> # four steps ending at 1.0 … 3.0, from 0.5, holding 10 blocks, 2 steps to a block: the
>>> # second step of each period needs 1 block more, each period 4 more (10, 11, 14, 15 held)
>>> gaps_and_block_seconds([1.0, 1.5, 2.5, 3.0], 4, 0.5, 10, [0, 1, 3], 4)
([0.5, 0.5, 1.0, 0.5], 32.0)
"""

from __future__ import annotations

from labsim import native

from labsim_llm import native as llm_native


def gaps_and_block_seconds(bounds: list[float], count: int, start: float, held: int,
                           prefix: list[int], per: int) -> tuple[list[float], float]:
    """The gaps between the first *count* step ends *bounds* (the first from *start*) and the
    KV block-seconds the steps hold: step ``i`` holds ``held + (i // bs) · per + prefix[i %
    bs]`` blocks over its gap, with ``bs = len(prefix) − 1`` steps to a block (a run's steps
    cross block boundaries ``per`` at a time every ``bs`` steps; *prefix* gives the blocks
    the steps of one period need so far). The products are summed in step order from 0.0."""
    gaps: list[float] = []
    block_seconds = 0.0
    prev = start
    bs = len(prefix) - 1
    r = 0                                   # step i's phase i % bs ...
    for t in bounds if count == len(bounds) else bounds[:count]:
        # ... and held + (i // bs) · per: step i holds held + prefix[r]
        d = t - prev                        # the same subtraction one event per step makes
        prev = t
        gaps.append(d)
        block_seconds += (held + prefix[r]) * d
        r += 1
        if r == bs:
            r = 0
            held += per
    return gaps, block_seconds


def extend_ends(ends: list[float], prices, t: float, j: int, k: int, least: int, horizon: float,
                chunk: int) -> None:
    """Append to *ends* (a span's step end times, *j* of them so far, the last at *t*) the ends
    of its next steps, at least up to step *least* and past *horizon*, at most *k* steps in
    all. ``prices(j0, j1)``: the list of the prices of steps ``j0 … j1 − 1``; they are asked
    for *chunk* steps at a time, twice as many each time. Each end is the previous one plus
    its step's price; the first end at or past *horizon*, from step *least* on, is the last
    taken."""
    while True:
        n = min(k, max(least, j + chunk))
        chunk *= 2
        lo = least - 1          # from step lo on (counted from 0), an end past horizon stops it
        for p in prices(j, n):
            t = t + float(p)        # (a float already: typed, the sum is worked out unboxed)
            ends.append(t)
            j += 1
            if j > lo and t >= horizon:
                return
        if j >= k:
            return


def span_blocks(counts: list[int], phase: int, free: int, per: int, most: int) -> tuple[int, list[int]]:
    """How many decode steps of a group can run on *free* KV blocks, at most *most*, and the
    blocks its steps need by phase. ``counts[q]``: members that start a new block at a step
    of phase ``q`` (``len(counts)`` steps to a block, *per* members in all, each
    crossing a boundary once a period); the run's second step has phase *phase*.

    Returns ``(k, prefix)``: ``prefix[r]`` = blocks the steps 2 … r + 1 need (``Σ counts[(phase
    + i) % bs]``, i < r); the first *s* steps after the first need ``(s // bs) · per +
    prefix[s % bs]``, and *k* is the first step count whose need exceeds *free* (capped at
    *most*)."""
    bs = len(counts)
    prefix = [0]
    total = 0
    for q in range(phase, bs):
        total += counts[q]
        prefix.append(total)
    for q in range(phase):
        total += counts[q]
        prefix.append(total)
    k = most
    low = free - total          # the least slack of any r (prefix grows): its s bounds theirs
    if low < 0 or (low // per + 1) * bs + 1 < k:
        for r in range(1, bs + 1):
            slack = free - prefix[r]
            s = (slack // per + 1 if slack >= 0 else 0) * bs + r
            if s < k:
                k = s
    return k, prefix


def graph_step_prices(attention: list[float], layers: float, dense: float, head: float,
                      launch: float, then: float, and_then: float) -> list[float]:
    """Seconds of decode steps in a CUDA graph on one GPU stage, from each step's attention
    seconds per layer: ``dense + attention · layers + head + launch + then + and_then`` (the
    step's dense layers, attention, LM head and graph launch, then what the engine adds)."""
    return [dense + a * layers + head + launch + then + and_then for a in attention]


def eager_step_prices(attention: list[float], layers: float, dense: float, head: float,
                      launches: float, then: float, and_then: float) -> list[float]:
    """:func:`graph_step_prices` for eager steps: the GPU time ``dense + attention · layers +
    head``, or the kernels' launch cost *launches* when that is longer, then the additions."""
    out = [dense + a * layers + head for a in attention]
    return [(gpu if gpu >= launches else launches) + then + and_then for gpu in out]


__all__ = ["eager_step_prices", "extend_ends", "gaps_and_block_seconds", "graph_step_prices",
           "span_blocks"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "step_runs", globals(), PURE)
