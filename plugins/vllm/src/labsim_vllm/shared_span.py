"""Fast-forward on a shared GPU: a run of identical decode steps timed at the GPU's shared rate.

On a GPU shared with other frameworks (``hardware_profile.sharing``) a step's end depends on
what the others run. While the sharing state holds, though, this replica's steps progress at
one rate, so a run of identical decode steps needs no event per step: the replica takes a
lease on the run from the GPU's sharing mode (:meth:`~labsim_llm.engine.replica.ReplicaShell.gpu_span`,
which holds as many steps as keep the first one's intensity) and times its steps with it, a
chunk at a time (priced in one loop; one wake-up per chunk, chunks doubling). An arrival cuts
the run at the step in progress, as in :mod:`labsim_vllm.fast_forward`; a change of
the sharing state (another tenant starting or ending work) that changes this replica's rate
cuts it too: the step in progress goes back to the GPU as a piece of its own and the loop
carries on from its end. The outputs equal, bit for bit, one event per step (tested).

:class:`SharedSpan` is a part of :class:`labsim_vllm.scheduler.Replica`.
"""

from __future__ import annotations

import bisect

from labsim_vllm.pipeline_span import SpanSteps

#: steps a span prices and times before its first wake-up (then twice as many each time): a
#: wake-up costs about what timing a few dozen steps does, and half the spans are cut before 30
FIRST_CHUNK = 32


class SharedSpan(SpanSteps):
    """Spans of identical decode steps on a shared GPU (a part of the replica)."""

    def _run_shared_span(self, step, span, start: float, dt: float, lease):
        """Run up to ``lease.steps`` steps of *span* from *start* (the first lasts *dt* alone)
        at the GPU's shared rate; then apply the steps run (``yield from``)."""
        env = self.env
        arrival = self._arrival = env.event()
        yield lease.ready                       # the rates of this instant are settled
        k = 1 if arrival.triggered else min(span[0], lease.steps)   # arrived as the step formed
        cut_short = arrival.triggered           # an arrival fixed the last step
        prices = self._decode_prices(self._nD, span[2])
        bounds = [lease.end(start, dt)]
        box: list = [None]

        def poke(_e):
            if not box[0].triggered:
                box[0].succeed()
        arrival.callbacks.append(poke)
        lease.cut.callbacks.append(poke)
        chunk = FIRST_CHUNK
        while True:
            # time the steps in chunks, at least up to the one in progress at the next
            # scheduled event (only then can an arrival or a rate change cut the run)
            horizon = env.peek()
            while len(bounds) < k:
                j = len(bounds)
                n = min(k, j + chunk)
                chunk *= 2
                bounds += lease.ends_from(bounds[-1], prices(j, n))
                if bounds[-1] >= horizon:
                    break
            wake = box[0] = env.event()
            lease.at(bounds[-1]).callbacks.append(lambda _e, w=wake: w.triggered or w.succeed())
            yield wake
            now = env.now
            if len(bounds) >= k and now >= bounds[k - 1]:
                j = k                           # every step ran
                break
            if lease.cut.triggered:             # the rate changed during step i
                i = bisect.bisect_right(bounds, now)
                if i == len(bounds):            # step i begins now
                    bounds += lease.ends_from(bounds[-1], prices(i, i + 1))
                began = bounds[i - 1] if i else start
                bounds[i] = yield lease.resume(i, began)
                j = i + 1
                break
            if arrival.triggered and not cut_short:
                cut_short = True
                k = bisect.bisect_left(bounds, now) + 1   # the step in progress is the last
                del bounds[k:]
        self._arrival = None
        del bounds[j:]
        lease.close(bounds)
        self._commit_span(step, span, j, start, bounds)


__all__ = ["SharedSpan"]
