"""What a running component may use: the engine, hardware, registry and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from labsim.log import get_logger
from labsim.accounting import Accounting
from labsim.config import Experiment
from labsim.engine import Engine
from labsim.hardware import Hardware
from labsim.metrics import MetricsCollector
from labsim.registry import Registry


@dataclass
class RunContext:
    """Everything one experiment run shares between its components."""

    engine: Engine
    registry: Registry
    hardware: Hardware
    metrics: MetricsCollector
    experiment: Experiment
    config: dict
    #: the experiment's own model file, once a plugin has read it (labsim-llm does)
    model_db: dict[str, Any] | None = None
    #: GPU-seconds held and busy per framework, and their cost (see :mod:`labsim.accounting`)
    accounting: Accounting | None = None
    log: Any = field(default_factory=lambda: get_logger("labsim"))

    @property
    def env(self):
        """The SimPy environment."""
        return self.engine.env

    @property
    def base_dir(self) -> Path:
        """The experiment file's folder (relative paths in the file are read from here)."""
        return self.experiment.base_dir

    def rng(self, *names: str):
        """The random generator of stream *names* (see :meth:`labsim.engine.Engine.rng`)."""
        return self.engine.rng(*names)

    def distribution(self, config: dict, *stream: str):
        """A :class:`labsim.Distribution` built from a ``*_dist_config`` block."""
        cls = self.registry.get("distributions", config["type"])
        dist = cls(config, self.rng(*stream))
        prepare = getattr(dist, "prepare", None)
        if prepare is not None:
            prepare(self.base_dir)
        return dist
