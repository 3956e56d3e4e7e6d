"""The simulation engine: a SimPy environment plus seeded random streams.

Every component draws from its own stream, derived from the experiment seed
and the component's *stream name* (not from the order components were
built). So adding a component never changes the numbers another one sees,
and two copies of a workload asking for the same stream name get the
identical request sequence (common random numbers across frameworks).
"""

from __future__ import annotations

import hashlib

import numpy as np
import simpy


def stream_key(*names: str) -> tuple[int, ...]:
    """A stable integer key for a stream name (independent of Python's hash seed)."""
    return tuple(
        int.from_bytes(hashlib.blake2b(str(n).encode(), digest_size=8).digest(), "little")
        for n in names
    )


class Engine:
    """A SimPy environment with named, independent random streams."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.env = simpy.Environment()

    def rng(self, *names: str) -> np.random.Generator:
        """A fresh generator for the stream called *names* (same names → same numbers)."""
        seq = np.random.SeedSequence(entropy=self.seed, spawn_key=stream_key(*names))
        return np.random.Generator(np.random.PCG64(seq))
