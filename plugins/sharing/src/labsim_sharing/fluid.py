"""The work of several tenants progressing at once on one GPU, each at a rate its mode grants.

A piece of work is the seconds it takes alone on the whole GPU (priced by the device cost
model) and the share of them bound by memory bandwidth. While pieces run together, each
progresses at a rate (alone-seconds per second, ≤ 1) that the sharing mode computes from the
set of running pieces; rates are recomputed whenever a piece starts or ends, so the result is
exact for piecewise-constant sharing (a fluid model, as max-min fair link sharing is in the
collectives' Fabric).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EPS = 1e-12


@dataclass(eq=False)
class Piece:
    """One tenant's piece of work in flight."""

    tenant: str
    remaining: float          # alone-seconds still to do
    membound: float           # share of it bound by memory bandwidth (0…1)
    done: object              # the SimPy event fired when it finishes
    rate: float = 0.0
    started: float = 0.0
    alone: float = 0.0        # its alone-seconds, for the slowdown
    extra: dict = field(default_factory=dict)


class FluidGpu:
    """The running pieces of one GPU and the clock that advances them.

    :param rates: ``rates(pieces) -> list[float]``: each piece's progress rate now.
    :param on_change: called with ``(now, pieces)`` after every change (for busy-time records).
    """

    def __init__(self, env, rates, on_change=None):
        self.env = env
        self.rates = rates
        self.on_change = on_change
        self.pieces: list[Piece] = []
        self._last = 0.0
        self._generation = 0

    def submit(self, tenant: str, seconds: float, membound: float):
        """An event that fires when *tenant*'s *seconds* of alone-work are done."""
        done = self.env.event()
        if seconds <= 0:
            done.succeed(self.env.now)
            return done
        self._advance()
        self.pieces.append(Piece(tenant, seconds, membound, done, started=self.env.now, alone=seconds))
        self._reschedule()
        return done

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            for p in self.pieces:
                p.remaining -= p.rate * dt
        self._last = now

    def _reschedule(self) -> None:
        pieces = self.pieces
        if pieces:
            for p, r in zip(pieces, self.rates(pieces), strict=True):
                p.rate = r
        if self.on_change is not None:
            self.on_change(self.env.now, pieces)
        self._generation += 1
        if not pieces:
            return
        nxt = min((p.remaining / p.rate if p.rate > 0 else float("inf")) for p in pieces)
        if nxt == float("inf"):
            return
        gen = self._generation
        self.env.timeout(max(0.0, nxt)).callbacks.append(lambda _e, g=gen: self._wake(g))

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return  # a later change rescheduled
        self._advance()
        finished = [p for p in self.pieces if p.remaining <= EPS * max(1.0, p.alone)]
        if not finished:  # rounding: finish the closest one
            finished = [min(self.pieces, key=lambda p: p.remaining / p.rate if p.rate > 0 else float("inf"))]
        for p in finished:
            self.pieces.remove(p)
        self._reschedule()
        for p in finished:
            p.done.succeed(self.env.now)
