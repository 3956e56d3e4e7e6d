"""The decode group: running requests that decode one token a step, kept as aggregates.

Running requests that decode (one new token each step, as most do) advance in
lockstep, so the group is kept as aggregates — how many, their total context,
how many reach a KV-block boundary at each step (a request crosses one every
``block_size`` steps, so a count per phase suffices), and the step at which
each finishes. A member's own counters are brought up to date only when it
leaves the group (finishes, or the scheduler needs every request one by one).
The one-by-one path and the group path give identical results (tested).

:class:`DecodeGroup` is a part of :class:`labsim_vllm.scheduler.Replica`, whose
``__init__`` sets the group's fields.
"""

from __future__ import annotations

import heapq

from labsim_vllm.fast_forward import FastForward
from labsim_vllm.seq import Seq, Step, _by_no


class DecodeGroup(FastForward):
    """Entering, leaving and stepping the decode group (a part of the vLLM replica)."""

    def _enter(self, seq: Seq, g: int) -> None:
        """Make *seq* a group member whose counters are those at group step *g*."""
        seq.g = g
        self._group[seq.no] = seq
        self._nD += 1
        if seq.warm:
            self._nW += 1
        c = seq.computed
        self._S += c - g
        self._cnt[(g - c) % self.block_size] += 1
        key = g + seq.target - seq.out
        fin = self._fin.get(key)
        if fin is None:
            self._fin[key] = [seq]
            heapq.heappush(self._fin_keys, key)
        else:
            fin.append(seq)
        if seq.no > self._dmax:
            self._dmax = seq.no

    def _materialise(self, seq: Seq) -> None:
        """Bring a member's counters up to date (after a step's outputs) and mark it out."""
        d = self.G - seq.g
        if d:
            seq.computed += d
            seq.out += d
            seq.num_tokens += d
            seq.last_token = self._g_end
        seq.held = -(-seq.computed // self.block_size)
        seq.g = -1

    def _leave(self, seq: Seq) -> None:
        """Take a finished member out of the group (its counters brought up to date)."""
        self._materialise(seq)
        del self._group[seq.no]
        self._nD -= 1
        if seq.warm:
            self._nW -= 1
        c = seq.computed
        self._S -= c - self.G
        self._cnt[(self.G - c) % self.block_size] -= 1

    def _ungroup(self) -> None:
        """Switch to one-by-one mode: every running request in ``_list``, counters exact."""
        members = list(self._group.values())
        for seq in members:
            self._materialise(seq)
        members.extend(self._special)
        members.sort(key=_by_no)
        self._list = members
        self._special = []
        self._group = {}
        self._nD = self._nW = self._S = 0
        self._cnt = [0] * self.block_size
        self._fin = {}
        self._fin_keys = []
        self._dmax = -1
        self._fresh = []
        self._fresh_mixed = False

    def _decoding(self, seq: Seq) -> bool:
        """Whether *seq* (counters exact, after a step's outputs) decodes one token next step."""
        return (seq.out > 0 and seq.computed == seq.num_tokens - 1 and seq.out < seq.target
                and (not self.caching or seq.n_reg >= len(seq.keys or ())))

    def _regroup(self) -> None:
        """Back to group mode after a one-by-one step (at its end, time ``self.clock``)."""
        lst = self._list
        assert lst is not None                      # (one-by-one mode: the step just ended)
        self._list = None
        end = self.clock
        fresh = self._fresh
        special = self._special
        for seq in lst:
            if self._decoding(seq):
                self._enter(seq, self.G)
                if seq.last_token != end:           # it did not run in that step
                    fresh.append(seq)
                elif fresh:
                    self._fresh_mixed = True
            else:
                special.append(seq)
        self._g_end = end

    def _absorb(self, entries: list[tuple[Seq, int, int]], g: int) -> None:
        """Make the (decode) *entries* of the step being formed group members from step *g*."""
        for seq, _n, before in entries:
            seq.computed = before
            self._enter(seq, g)
            self._fresh.append(seq)

    def _group_gaps(self, end: float, prev: float, tail=None) -> None:
        """Inter-token gaps of a step the group decoded in, ending at *end*, in running order."""
        itl = self.metrics.itl
        fresh = self._fresh
        if not fresh:
            itl.add_uniform(end - prev, self._nW, tail)
            return
        self._fresh = []
        if self._fresh_mixed:
            self._fresh_mixed = False
            ids = set(map(id, fresh))
            gaps = [end - (s.last_token if id(s) in ids else prev)
                    for s in sorted(self._group.values(), key=_by_no) if s.warm]
            itl.add(gaps + list(tail or ()))
            return
        own = [end - s.last_token for s in fresh if s.warm]
        if tail:
            own.extend(tail)
        itl.add_uniform(end - prev, self._nW - sum(1 for s in fresh if s.warm), own)

    def _commit_group(self, step: Step, start: float, end: float) -> None:
        if step.entries:
            finished, gaps, joined = self._emit(step.entries, end)
        else:                                       # the group alone: nothing to walk
            finished, gaps, joined = [], None, False
        if step.group:
            # from the group's last decode: the previous step's end, unless prompts ran alone
            self._group_gaps(end, self._g_end, gaps)
        elif gaps:
            self.metrics.itl.add(gaps)
        if step.group or not self._nD:
            self._g_end = end
        self._record(step, start, end)
        self._after_step(finished, joined, end)

    def _after_step(self, finished: list, joined: bool, end: float) -> None:
        """Members that finish leave the group, requests that start decoding join it."""
        G = self.G
        done = self._fin.pop(G, None)
        if done:
            done.sort(key=_by_no)
            for seq in done:
                self._leave(seq)
            finished = done + finished
        if finished or joined:
            keep = []
            for seq in self._special:
                if seq.out >= seq.target:
                    continue
                if self._decoding(seq):
                    self._enter(seq, G)
                    if seq.last_token != self._g_end:
                        self._fresh.append(seq)
                        if self._g_end == end:      # (not expected: it decoded without running)
                            self._fresh_mixed = True
                        # else prompts ran alone while the group waited: the newcomers come
                        # after every member in running order
                else:
                    keep.append(seq)
            self._special = keep
        if finished:
            self._finish(finished, end)


__all__ = ["DecodeGroup"]
