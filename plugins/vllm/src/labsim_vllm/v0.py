"""vLLM 0.6's V0 scheduling (``engine_version: v0``): prompts first, and lagged outputs.

Without chunked prefill, V0 (``vllm/core/scheduler.py``, ``_schedule_default``)
runs new whole prompts in steps of their own when any can start (FCFS, keeping
1 % of the blocks free); otherwise it runs the decodes and admits nobody. Its
asynchronous output processing hands a step's outputs to the client when the
next step ends.

:class:`V0Scheduler` is a part of :class:`labsim_vllm.scheduler.Replica`.
"""

from __future__ import annotations

from labsim_vllm.decode_group import DecodeGroup
from labsim_vllm.seq import Step


class V0Scheduler(DecodeGroup):
    """V0's prompt-only steps and its output lag (a part of the replica)."""

    def _schedule_prompts(self) -> Step | None:
        """A step of new whole prompts alone, or None when none can start (vLLM V0 without
        chunked prefill, ``Scheduler._schedule_default`` and ``_schedule_prefills``).

        Waiting requests are taken first come, first served while the token budget, the
        ``max_num_seqs`` limit (running ones included) and the free blocks less the
        watermark allow; the first that does not fit stops the scan. The decodes wait for
        the next step. Under multi-step scheduling prompts start only between rounds.
        """
        running = self._list if self._list is not None else self._special
        others = 0 if self._list is not None else self._nD
        gate = self.gate
        if self.multi_step and not gate.may_admit(others + len(running)):
            return None
        pool = self.pool
        bs = self.block_size
        budget = self.max_tokens
        waiting = self.waiting
        entries: list = []
        while waiting and others + len(running) < self.max_seqs:
            seq = waiting[0]
            hits = self._hits(seq) if self.caching else []
            n = seq.num_tokens - len(hits) * bs
            if n > budget:
                break
            need = -(-seq.num_tokens // bs) - len(hits)
            if need + (pool.evictable(hits) if hits else 0) > pool.num_free - self.watermark:
                break
            waiting.popleft()
            self._start(seq, hits, need, n, running, entries)
            budget -= n
        if not entries:
            return None
        step = Step(entries, False)
        self._computed(entries)
        return step

    def _release(self, end: float) -> None:
        """Hand the client the first tokens and finishes held back since the previous step
        (``async_output_processing``): they arrive as the step ending at *end* ends."""
        first, done = self._lag_first, self._lag_done
        self._lag_first, self._lag_done = [], []
        for req in first:
            req.first_token_s = end + self.fe_after
        for req in done:
            self.report(req, end)


__all__ = ["V0Scheduler"]
