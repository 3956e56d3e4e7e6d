"""Choosing which replica serves a request: round robin, least outstanding, prefix affinity.

Replicas are objects with ``outstanding`` (requests queued or running) and
``index``. The router picks at every request, so the module is one of labsim-llm's compiled
twins (:mod:`labsim_llm.native`). ``prefix_affinity`` sends requests whose prompts start with the
same content (the first segment, e.g. a shared system prompt or the earlier
turns of one conversation) to the same replica, so its prefix cache hits;
ties between unseen prefixes go to the least loaded replica.

>>> router = Router("round_robin", replicas)          # doctest: +SKIP
>>> router.pick(request).index                         # doctest: +SKIP
0
"""

from __future__ import annotations

from operator import attrgetter

from labsim import native
from labsim.errors import UsageError

from labsim_llm import native as llm_native

POLICIES = ("round_robin", "least_outstanding", "prefix_affinity")

_outstanding = attrgetter("outstanding")


class Router:
    """Picks a replica for each request under one of :data:`POLICIES`."""

    def __init__(self, policy: str, replicas: list, max_affinity_entries: int = 1 << 16):
        if policy not in POLICIES:
            raise UsageError(f"router {policy!r} is not known; use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.replicas = replicas
        self._next = 0
        self._affinity: dict = {}
        self._max = max_affinity_entries
        indices = [r.index for r in replicas]
        self._in_order = indices == sorted(indices)

    def _least(self):
        """The replica with the fewest outstanding requests, the lowest index among ties."""
        if self._in_order:      # min keeps the first of equal keys: the lowest index
            return min(self.replicas, key=_outstanding)
        return min(self.replicas, key=lambda r: (r.outstanding, r.index))

    def pick(self, request):
        """The replica that should serve *request*."""
        if len(self.replicas) == 1:
            return self.replicas[0]
        if self.policy == "round_robin":
            replica = self.replicas[self._next]
            self._next = (self._next + 1) % len(self.replicas)
            return replica
        if self.policy == "least_outstanding":
            return self._least()
        key = request.segments[0] if request.segments else None
        if request.session_id is not None and request.session_id >= 0:
            key = ("session", request.session_id)
        replica = self._affinity.get(key)
        if replica is None:
            replica = self._least()
            if len(self._affinity) >= self._max:
                self._affinity.pop(next(iter(self._affinity)))
            self._affinity[key] = replica
        return replica


__all__ = ["Router", "POLICIES"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "router", globals(), PURE)
