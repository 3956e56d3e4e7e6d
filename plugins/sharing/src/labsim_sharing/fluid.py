"""The work of several tenants progressing at once on one GPU, each at a rate its mode grants.

A piece of work is the seconds it takes alone on the whole GPU (priced by the device cost
model) and the share of them bound by memory bandwidth. While pieces run together, each
progresses at a rate (alone-seconds per second, ≤ 1) that the sharing mode computes from the
set of running pieces, so the result is exact for piecewise-constant sharing (a fluid model, as
max-min fair link sharing is in the collectives' Fabric).

Rates are *settled* once per instant, after every ordinary event of that simulated time: a
tenant whose piece ends and who submits its next one at the same instant leaves the others'
rates as they were, and a piece's rate is only rebased (its remaining work recomputed) when it
actually changes. Pieces are ordered by tenant (admission order), then by submission. So the
arithmetic depends on the sharing state over time and not on how the tenants cut their work
into pieces — which lets a tenant time a run of identical pieces itself (a :class:`Lease`,
fast-forward on a shared GPU) and get, bit for bit, what submitting them one by one gives.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass

from simpy.core import NORMAL
from simpy.events import Event

#: priority of the fluid's own events: after every ordinary event of the same instant
LATE = NORMAL + 1
INF = math.inf


def cancel(env, event) -> None:
    """Take *event*, scheduled and not yet processed, off *env*'s queue (SimPy has no public
    call for it): a timer that is no longer needed must not be the run's last event, which
    would move a drained run's end."""
    queue = env._queue
    for i, entry in enumerate(queue):
        if entry[3] is event:
            last = queue.pop()
            if i < len(queue):
                queue[i] = last
                heapq.heapify(queue)
            return


class At(Event):
    """An event processed at exactly the simulated time *when* (≥ now), after the ordinary
    events of that instant when *late* (a SimPy timeout of ``when - now`` may land an ulp off)."""

    def __init__(self, env, when: float, late: bool = False):
        super().__init__(env)
        self._ok = True
        self._value = None
        now = env.now
        delay = max(0.0, when - now)
        while now + delay < when:
            delay = math.nextafter(delay, INF)
        while delay > 0.0 and now + delay > when:
            delay = math.nextafter(delay, -INF)
        env.schedule(self, LATE if late else NORMAL, delay)


@dataclass(eq=False, slots=True)
class Piece:
    """One tenant's piece of work in flight."""

    tenant: str
    remaining: float          # alone-seconds still to do at ``since``
    membound: float           # share of it bound by memory bandwidth (0…1)
    done: object              # the SimPy event fired when it finishes (None: a lease's)
    since: float = 0.0        # when ``remaining`` was last set
    rate: float | None = None
    end: float = INF          # when it finishes at its rate
    order: tuple = ()         # (tenant rank, submission): its place among the pieces
    lease: Lease | None = None
    extra: float = 0.0        # extra memory-bandwidth demand the mode found (MPS: lost L2 reuse)


class Lease:
    """A run of consecutive pieces of one tenant at one intensity, timed by the tenant itself.

    The GPU counts the run as one running piece of *membound*; the tenant reads its ``rate``
    once ``ready`` has fired, computes when each of its pieces ends with :meth:`end` (exactly
    what the fluid computes for a piece submitted then) and waits with :meth:`at`. When the
    sharing state changes its rate, ``cut`` fires (at that instant, after the rates settle):
    the tenant then hands the piece in progress back with :meth:`resume` and times the rest one
    by one. :meth:`close` ends the run (its pieces' work is recorded as if submitted one by one).

    ``steps``: how many pieces the mode lets the run hold (the tenant asked for at most that
    many; later ones would change its intensity).
    """

    def __init__(self, fluid: FluidGpu, piece: Piece, steps: int, record=None):
        env = fluid.env
        self.fluid = fluid
        self.piece = piece
        self.steps = steps
        self.record = record               # record(alone_s, taken_s): lists, a value per piece; or None
        self.ready = env.event()
        self.cut = env.event()
        self.rate = 0.0
        self.was = 0.0                     # the rate before the cut
        self.alones: list[float] = []      # each piece's alone-seconds, in order
        self.ends: list[float] = []        # when each ends at the rate it was priced at
        self._recorded = 0                 # pieces recorded so far
        self._begin = env.now
        self._resumed: int | None = None
        self._closed = False
        self._timer: Event | None = None

    def end(self, start: float, seconds: float) -> float:
        """When a piece of the engine's clock arithmetic ``start + seconds`` (submitted at
        *start*) ends at the current rate; its alone-seconds are kept for :meth:`resume`."""
        alone = (start + seconds) - start        # what the engine asks the GPU for at *start*
        self.alones.append(alone)
        end = start + alone / self.rate
        self.ends.append(end)
        return end

    def ends_from(self, start: float, seconds) -> list[float]:
        """:meth:`end` of consecutive pieces, each submitted when the one before ends (the
        first at *start*): their ends, in order."""
        rate = self.rate
        alones = self.alones
        out = []
        t = start
        for s in seconds:
            alone = (t + s) - t
            alones.append(alone)
            t = t + alone / rate
            out.append(t)
        self.ends += out
        return out

    def at(self, when: float) -> Event:
        """An event processed at exactly *when* (the lease's timer: one at a time, the one
        before it is cancelled)."""
        self._cancel_timer()
        self._timer = At(self.fluid.env, when)
        return self._timer

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.callbacks is not None:     # scheduled, not processed
            cancel(self.fluid.env, timer)
        self._timer = None

    def resume(self, index: int, began: float) -> Event:
        """After ``cut``: piece *index* (begun at *began*) goes on as a piece of its own from
        now; the event fires when it is done (value: that time). The run's later pieces are
        dropped."""
        fluid, env = self.fluid, self.fluid.env
        alone = self.alones[index]
        left = alone - self.was * (env.now - began)
        self._resumed = index
        self._cancel_timer()
        self._record_upto(self.ends, index)
        fluid._remove(self.piece)
        done = fluid.submit(self.piece.tenant, left, self.piece.membound)
        if self.record is not None:
            record = self.record
            done.callbacks.append(lambda _e: record((alone,), (env.now - began,)))
        return done

    def close(self, bounds: list[float]) -> None:
        """The run ends now: its pieces ended at *bounds* (the first began when the lease was
        taken); the one handed back by :meth:`resume`, if any, is recorded when it ends."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self._resumed is None:
            self._record_upto(bounds, len(bounds))
            self.fluid._remove(self.piece)

    def flush(self) -> None:
        """Record the pieces of a run still open that have ended by now (the run is being
        summarised: pieces submitted one by one would have been recorded as they ended)."""
        if not self._closed and self._resumed is None:
            now = self.fluid.env.now
            self._record_upto(self.ends, bisect.bisect_right(self.ends, now))

    def _record_upto(self, ends: list[float], n: int) -> None:
        """Record pieces ``_recorded`` … *n* − 1, which ended at *ends*."""
        k = self._recorded
        if self.record is not None and n > k:
            prev = ends[k - 1] if k else self._begin
            self.record(self.alones[k:n], [b - a for a, b in zip([prev, *ends[k:n - 1]], ends[k:n])])
        self._recorded = max(k, n)


class FluidGpu:
    """The running pieces of one GPU and the clock that advances them.

    :param rates: ``rates(pieces) -> list[float]``: each piece's progress rate now.
    :param on_change: called with ``(now, pieces)`` whenever the rates settle (for busy-time records).
    """

    def __init__(self, env, rates, on_change=None):
        self.env = env
        self.rates = rates
        self.on_change = on_change
        self.pieces: list[Piece] = []
        self._ranks: dict[str, int] = {}
        self._seq = 0
        self._settling = False
        self._wake_at = INF
        self._wake_event: Event | None = None

    def rank(self, tenant: str) -> int:
        """*tenant*'s place among the tenants (the order it was first seen in: admission)."""
        return self._ranks.setdefault(tenant, len(self._ranks))

    def submit(self, tenant: str, seconds: float, membound: float):
        """An event that fires when *tenant*'s *seconds* of alone-work are done (value: that time)."""
        done = self.env.event()
        if seconds <= 0:
            done.succeed(self.env.now)
            return done
        self._add(Piece(tenant, seconds, membound, done, since=self.env.now))
        return done

    def lease(self, tenant: str, membound: float, steps: int, record=None) -> Lease:
        """A :class:`Lease` for a run of *tenant*'s pieces of *membound*, from now."""
        piece = Piece(tenant, INF, membound, None, since=self.env.now)
        piece.lease = Lease(self, piece, steps, record)
        self._add(piece)
        return piece.lease

    # -- internals ----------------------------------------------------------------------------

    def _add(self, piece: Piece) -> None:
        self._seq += 1
        piece.order = (self.rank(piece.tenant), self._seq)
        bisect.insort(self.pieces, piece, key=lambda p: p.order)
        self._unsettle()

    def _remove(self, piece: Piece) -> None:
        self.pieces.remove(piece)
        self._unsettle()

    def _unsettle(self) -> None:
        if not self._settling:
            self._settling = True
            At(self.env, self.env.now, late=True).callbacks.append(self._settle)

    def _settle(self, _event) -> None:
        """The instant's changes are in: new rates; pieces whose rate changed are rebased."""
        self._settling = False
        now = self.env.now
        pieces = self.pieces
        nxt = INF
        if pieces:
            for p, r in zip(pieces, self.rates(pieces), strict=True):
                old = p.rate
                if r != old:
                    p.rate = r
                    lease = p.lease
                    if lease is not None:
                        lease.rate = r
                        if old is None:
                            lease.ready.succeed()
                        elif not lease.cut.triggered:
                            lease.was = old
                            lease.cut.succeed()
                        continue
                    if old is not None:
                        p.remaining -= old * (now - p.since)
                        p.since = now
                    p.end = p.since + p.remaining / r if r > 0 else INF
                if p.end < nxt:
                    nxt = p.end
        if self.on_change is not None:
            self.on_change(now, pieces)
        if nxt != self._wake_at:
            if self._wake_event is not None:
                cancel(self.env, self._wake_event)      # superseded: it must not fire
            self._wake_at = nxt
            self._wake_event = None
            if nxt < INF:
                self._wake_event = At(self.env, nxt, late=True)
                self._wake_event.callbacks.append(self._wake)

    def _wake(self, _event) -> None:
        self._wake_at = INF
        self._wake_event = None
        now = self.env.now
        finished = [p for p in self.pieces if p.end <= now]
        for p in finished:
            self.pieces.remove(p)
        self._unsettle()     # after the finished pieces' owners have reacted at this instant
        for p in finished:
            p.done.succeed(now)
