"""Decode attention priced for fixed heads and hardware: :func:`labsim_gpus.kernels.decode_seconds_fn`'s
``f(num_seqs, total_context)`` and its ``f.run``, as a class that compiles (``labsim_gpus.native``).

A serving engine prices decode attention once or more per step, and a run of decode steps
taken in one event prices every step of it: this is the cost model's innermost loop. The
class does :func:`~labsim_gpus.kernels.decode_seconds`'s arithmetic, in its order, with the
terms that depend on neither argument worked out once, so its results equal it bit for bit
(tested); where mypyc and a C compiler were at hand at install, its compiled twin runs it.

>>> from labsim_gpus.params import CostParams
>>> f = DecodePricer(32, 8, 128, 2.0, 989e12, 3.35e12, 132, CostParams())
>>> f(16, 16 * 1024) == f.run(16, 16 * 1024, 16, 1)[0]
True
"""

from __future__ import annotations

from labsim import native
from labsim_gpus import native as gpus_native
from labsim_gpus.kernels import (DECODE_BLOCK_N, DOMINANCE_MARGIN, DOMINANCE_RUN, decode_side_seconds,
                                 num_splits)
from labsim_gpus.params import CostParams


class DecodePricer:
    """Seconds of one decode attention kernel over *num_seqs* sequences of equal length
    (``self(num_seqs, total_context)``; longest = mean), for fixed heads and hardware.

    :meth:`run` prices a run of decode steps (contexts ``first_total + i·step``) in one loop,
    element for element equal to calling it.
    """

    def __init__(self, num_heads, num_kv_heads, head_dim, kv_bytes, peak, mem_bw, sm_count,
                 p: CostParams) -> None:
        self.num_heads = int(num_heads)
        self.num_kv_heads = int(num_kv_heads)
        self.head_dim = int(head_dim)
        self.kv_bytes = float(kv_bytes)
        self.mem_bw = float(mem_bw)
        self.sm_count = int(sm_count)
        self.p = p
        self.per_token = 2.0 * self.num_kv_heads * self.head_dim * self.kv_bytes
        self.q_ints = 2 * self.num_heads * self.head_dim     # num_seqs · 2 · heads · head_dim, an exact int
        # (floats, as their values are: the compiled twin's arithmetic on them is then unboxed)
        self.bw = float(self.mem_bw * p.decode_mem_eff)
        self.share = float(self.mem_bw * p.sm_bw_share / self.sm_count)
        self.flop_coef = 4.0 * self.num_heads * self.head_dim
        self.flop_rate = float(float(peak) * p.attn_compute_eff)
        self.cta_s = float(p.decode_cta_s)
        self.fixed_a = float(p.kernel_overhead_s)
        self.fixed_b = float(p.attn_overhead_s)
        self.no_split = 0.8 * self.sm_count
        self.side = bool(p.decode_gqa_copies or p.decode_split_combine)
        #: (sequences, KV blocks of the longest) → (split, waves, t_ctas, side kernels' seconds):
        #: what :meth:`run` works out where the context split may change, kept (it recurs run
        #: after run)
        self.by_blocks: dict[tuple[int, int], tuple[int, int, float, float]] = {}

    def __call__(self, num_seqs: int, total_context: float) -> float:
        """Seconds of the kernel over *num_seqs* (≥ 1) sequences of *total_context* tokens (an
        int or a float: the compiled twin makes it a float, the same value below 2**53)."""
        longest_context = total_context / num_seqs
        dram = total_context * self.per_token + num_seqs * self.q_ints * 2.0
        ctas = num_seqs * self.num_kv_heads
        # the context split and what depends on it alone, by KV blocks of the longest (0 where
        # the CTAs fill the GPU unsplit), as run() keeps them
        blocks = 0 if ctas >= self.no_split else max(1, -(-int(longest_context) // DECODE_BLOCK_N))
        split, waves, t_ctas, side_s = self._split_terms(num_seqs, blocks, longest_context)
        t_stream = dram / self.bw
        slice_bytes = longest_context * 2.0 * self.head_dim * self.kv_bytes / split
        t_busiest = waves * slice_bytes / self.share
        t_flops = self.flop_coef * total_context / self.flop_rate
        hi = t_stream
        if t_busiest > hi:
            hi = t_busiest
        if t_flops > hi:
            hi = t_flops
        if self.side:
            return hi + t_ctas + self.fixed_a + self.fixed_b + side_s
        return hi + t_ctas + self.fixed_a + self.fixed_b

    def _split_terms(self, num_seqs: int, blocks: int, longest_context: float) -> tuple[int, int, float, float]:
        """``(split, waves, t_ctas, side kernels' seconds)`` of *num_seqs* sequences whose
        longest holds *blocks* KV blocks (0: enough CTAs to fill the GPU unsplit): kept in
        :attr:`by_blocks`, else worked out (:func:`~labsim_gpus.kernels.num_splits`,
        :func:`~labsim_gpus.kernels.decode_side_seconds`) and kept."""
        hit = self.by_blocks.get((num_seqs, blocks))
        if hit is not None:
            return hit
        ctas = num_seqs * self.num_kv_heads
        sm_count = self.sm_count
        split = 1 if blocks == 0 else num_splits(ctas, sm_count, longest_context)
        hit = (split, -(-(ctas * split) // sm_count), ctas * split * self.cta_s / sm_count,
               decode_side_seconds(num_seqs, self.num_heads, self.num_kv_heads, self.head_dim, split,
                                   self.mem_bw, self.p) if self.side else 0.0)
        if len(self.by_blocks) >= 1 << 16:
            self.by_blocks.clear()
        self.by_blocks[(num_seqs, blocks)] = hit
        return hit

    def _stream_dominates(self, lo: int, hi: int, num_seqs: int, waves: int, split: int) -> bool:
        """Whether the DRAM stream term exceeds both others by more than rounding at every
        context from *lo* to *hi* with this split: each term is affine in the context, so their
        differences are too, and a margin at both ends holds in between. Then the other two
        need not be worked out: the maximum is the stream term's bits either way."""
        for c in (lo, hi):
            t_stream = (c * self.per_token + num_seqs * self.q_ints * 2.0) / self.bw
            t_busiest = waves * (c / num_seqs * 2.0 * self.head_dim * self.kv_bytes / split) / self.share
            t_flops = self.flop_coef * c / self.flop_rate
            if not (t_stream > t_busiest * DOMINANCE_MARGIN and t_stream > t_flops * DOMINANCE_MARGIN):
                return False
        return True

    def run(self, num_seqs: int, first_total: int, step: int, count: int) -> list[float]:
        """``[self(num_seqs, first_total + i·step) for i in range(count)]`` (*first_total* ≥
        *num_seqs*, *step* ≥ 1: a run of decode steps), bit for bit: the same arithmetic,
        the context split looked up once per KV block count, and the contexts that keep it
        priced in one loop (one expression where the DRAM stream term dominates)."""
        n, first = num_seqs, first_total
        per_token, bw, share = self.per_token, self.bw, self.share
        flop_coef, flop_rate = self.flop_coef, self.flop_rate
        head_dim, kv_bytes = self.head_dim, self.kv_bytes
        fixed_a, fixed_b, side = self.fixed_a, self.fixed_b, self.side
        out: list[float] = []
        q_term = n * self.q_ints * 2.0
        ctas = n * self.num_kv_heads
        last_total = first + step * (count - 1)
        stop = first + step * count
        # the split holds while the context stays in its KV blocks: below `limit` tokens
        if ctas < self.no_split:
            limit = -1                                  # (the first step works it out, and
            stream_only = False                         # the terms that depend on the split)
        else:
            limit = NEVER
            split, waves, t_ctas, side_s = self._split_terms(n, 0, first / n)
            stream_only = (count >= DOMINANCE_RUN
                           and self._stream_dominates(first, last_total, n, waves, split))
        total_context = first
        while total_context < stop:
            longest_context = total_context / n
            if longest_context >= limit:
                blocks = max(1, -(-int(longest_context) // DECODE_BLOCK_N))
                limit = blocks * DECODE_BLOCK_N + 1
                split, waves, t_ctas, side_s = self._split_terms(n, blocks, longest_context)
                stream_only = (last_total - total_context >= DOMINANCE_RUN * step
                               and self._stream_dominates(total_context, last_total, n, waves, split))
            # the contexts this split holds for: up to the first whose longest reaches `limit`
            # (the longest only grows with the context, so all of them if the last does not;
            # the division rounds only up to a whole limit at worst, never down past it: the
            # estimate is checked against it both ways)
            end = stop
            if (stop - step) / n >= limit:              # (the last context leaves the blocks)
                i = max(1, -(-(limit * n - total_context) // step))
                while i > 1 and (total_context + (i - 1) * step) / n >= limit:
                    i -= 1
                while (total_context + i * step) / n < limit:
                    i += 1
                end = total_context + i * step
            # the contexts total_context, + step ... before end, by index: a range with a step
            # that is not a constant would be walked as Python objects when compiled
            span = -(-(end - total_context) // step)
            if stream_only:
                if side:
                    out += [((total_context + i * step) * per_token + q_term) / bw + t_ctas
                            + fixed_a + fixed_b + side_s for i in range(span)]
                else:
                    out += [((total_context + i * step) * per_token + q_term) / bw + t_ctas
                            + fixed_a + fixed_b for i in range(span)]
            else:
                for i in range(span):
                    c = total_context + i * step
                    hi = (c * per_token + q_term) / bw          # t_stream
                    t_busiest = waves * (c / n * 2.0 * head_dim * kv_bytes / split) / share
                    t_flops = flop_coef * c / flop_rate
                    if t_busiest > hi:
                        hi = t_busiest
                    if t_flops > hi:
                        hi = t_flops
                    if side:
                        out.append(hi + t_ctas + fixed_a + fixed_b + side_s)
                    else:
                        out.append(hi + t_ctas + fixed_a + fixed_b)
            total_context = end
        return out


#: a context limit no run reaches (the split never changes: enough CTAs to fill the GPU)
NEVER = 1 << 62

__all__ = ["DecodePricer"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {"DecodePricer": DecodePricer}

native.use_group_twin("labsim_gpus", gpus_native.MODULES, "decode_pricer", globals(), PURE)
