"""Collecting what a run measures: streamed per-record tables and summary statistics.

Frameworks write per-record rows (one per request, step, job) through
:meth:`MetricsCollector.table`; the rows go straight to every metric sink, so
memory does not grow with the number of records. Summary statistics use
:func:`stats`, which leaves out the warm-up period when told to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def percentile_key(fraction: float) -> str:
    """``0.5`` → ``"p50"``, ``0.999`` → ``"p99.9"``."""
    value = round(fraction * 100, 6)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return f"p{text}"


def clean(value):
    """A JSON-safe Python number: numpy scalars unwrapped, NaN and infinities → None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    return value


def stats(values: Iterable[float], percentiles: Sequence[float]) -> dict:
    """``{"mean": ..., "p50": ..., ...}`` of *values* (None entries when there are none).

    Percentiles use linear interpolation between order statistics (numpy's
    default, the same as ``vllm bench serve``).
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    arr = arr[~np.isnan(arr)]
    out = {"mean": clean(arr.mean()) if arr.size else None}
    if arr.size:
        points = np.percentile(arr, [p * 100 for p in percentiles])
        out.update({percentile_key(p): clean(v) for p, v in zip(percentiles, points)})
    else:
        out.update({percentile_key(p): None for p in percentiles})
    return out


class Table:
    """One per-record table, fanned out to every sink that accepts it."""

    def __init__(self, name: str, columns: list[str], writers: list):
        self.name = name
        self.columns = list(columns)
        self._writers = writers
        self.rows = 0

    def append(self, row: Sequence) -> None:
        """Write one row (values in column order)."""
        self.rows += 1
        for writer in self._writers:
            writer.append(row)

    def extend(self, rows: Sequence[Sequence]) -> None:
        """Write many rows at once (faster than appending one by one)."""
        self.rows += len(rows)
        for writer in self._writers:
            writer.extend(rows)


class MetricsCollector:
    """The run's metric settings and its tables."""

    def __init__(self, sinks: list, metrics_config: dict):
        self.sinks = sinks
        self.config = metrics_config
        self.percentiles: list[float] = list(
            metrics_config.get("percentiles_to_calculate", [0.5, 0.9, 0.99])
        )
        self.warm_up_s: float = float(metrics_config.get("warm_up_duration_s", 0.0))
        self.tables: dict[str, Table] = {}

    def table(self, name: str, columns: list[str]) -> Table:
        """The table *name*, opened on every sink the first time it is asked for.

        :raises PluginError: when *name* is open with other columns (rows of two shapes
            under one header would be a corrupt file).
        """
        table = self.tables.get(name)
        if table is not None and table.columns != list(columns):
            from labsim.errors import PluginError

            raise PluginError(
                f"table {name!r} is open with columns {table.columns}; another component asked for it "
                f"with {list(columns)}. Frameworks sharing a table write the same columns "
                "(serving engines: build on labsim_llm.engine.serving_engine.ServingEngine), "
                "or name a table of their own")
        if name not in self.tables:
            writers = [
                w for w in (s.open_table(name, columns) for s in self.sinks) if w is not None
            ]
            self.tables[name] = Table(name, columns, writers)
        return self.tables[name]

    def stats(self, values, arrivals=None) -> dict:
        """:func:`stats` over *values*, leaving out those whose arrival is in the warm-up."""
        values = np.asarray(values, dtype=float)
        if arrivals is not None and self.warm_up_s > 0:
            values = values[np.asarray(arrivals, dtype=float) >= self.warm_up_s]
        return stats(values, self.percentiles)
