"""Built-in random distributions for ``*_dist_config`` blocks.

Every distribution accepts ``is_int`` (round samples to integers) and
``min``/``max`` (clip samples), besides its own parameters::

    inter_arrival_time_dist_config: {type: Exponential, rate: 10.0}     # 10 per second
    prompt_tokens_dist_config: {type: LogNormal, mean: 50, sigma: 20, is_int: true}
    max_output_tokens_dist_config: {type: Uniform, low: 50, high: 200, is_int: true}
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from labsim.components import Distribution
from labsim.errors import UsageError
from labsim.hookspecs import hookimpl

POSITIVE = {"type": "number", "exclusiveMinimum": 0}


def _one_of(*groups):
    return [{"required": list(g)} for g in groups]


class Exponential(Distribution):
    """Exponential: memoryless gaps between arrivals (``rate`` per unit, or ``mean``)."""

    name = "Exponential"
    config_schema = {
        "type": "object",
        "properties": {"rate": POSITIVE, "mean": POSITIVE},
        "oneOf": _one_of(["rate"], ["mean"]),
    }

    def mean(self):
        return self.config["mean"] if "mean" in self.config else 1.0 / self.config["rate"]

    def draw(self, size):
        return self.rng.exponential(self.mean(), size)


class Gamma(Distribution):
    """Gamma: bursty gaps (``shape`` and ``scale``, or ``mean`` and coefficient of variation ``cv``)."""

    name = "Gamma"
    config_schema = {
        "type": "object",
        "properties": {"shape": POSITIVE, "scale": POSITIVE, "mean": POSITIVE, "cv": POSITIVE},
        "oneOf": _one_of(["shape", "scale"], ["mean", "cv"]),
    }

    def _params(self):
        c = self.config
        if "shape" in c:
            return c["shape"], c["scale"]
        shape = 1.0 / c["cv"] ** 2
        return shape, c["mean"] / shape

    def mean(self):
        shape, scale = self._params()
        return shape * scale

    def draw(self, size):
        shape, scale = self._params()
        return self.rng.gamma(shape, scale, size)


class LogNormal(Distribution):
    """Log-normal: long-tailed lengths (``mean``/``sigma`` of the samples, or ``log_mean``/``log_sigma``)."""

    name = "LogNormal"
    config_schema = {
        "type": "object",
        "properties": {
            "mean": {**POSITIVE, "description": "Mean of the samples themselves."},
            "sigma": {
                "type": "number",
                "minimum": 0,
                "description": "Standard deviation of the samples themselves.",
            },
            "log_mean": {"type": "number", "description": "Mean of log(samples)."},
            "log_sigma": {
                "type": "number",
                "minimum": 0,
                "description": "Standard deviation of log(samples).",
            },
        },
        "oneOf": _one_of(["mean", "sigma"], ["log_mean", "log_sigma"]),
    }

    def _params(self):
        c = self.config
        if "log_mean" in c:
            return c["log_mean"], c["log_sigma"]
        m, s = c["mean"], c["sigma"]
        var_log = math.log1p((s / m) ** 2)
        return math.log(m) - var_log / 2, math.sqrt(var_log)

    def mean(self):
        mu, s = self._params()
        return math.exp(mu + s * s / 2)

    def draw(self, size):
        mu, s = self._params()
        return self.rng.lognormal(mu, s, size)


class Normal(Distribution):
    """Normal (Gaussian): ``mean`` and standard deviation ``sigma``."""

    name = "Normal"
    config_schema = {
        "type": "object",
        "required": ["mean", "sigma"],
        "properties": {"mean": {"type": "number"}, "sigma": {"type": "number", "minimum": 0}},
    }

    def mean(self):
        return self.config["mean"]

    def draw(self, size):
        return self.rng.normal(self.config["mean"], self.config["sigma"], size)


class Uniform(Distribution):
    """Uniform between ``low`` and ``high`` (inclusive of both when ``is_int``)."""

    name = "Uniform"
    config_schema = {
        "type": "object",
        "required": ["low", "high"],
        "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
    }

    @classmethod
    def config_problems(cls, config):
        if config["high"] < config["low"]:
            return [f"high ({config['high']}) is below low ({config['low']})"]
        return []

    def mean(self):
        return (self.config["low"] + self.config["high"]) / 2

    def draw(self, size):
        low, high = self.config["low"], self.config["high"]
        if self.is_int:  # every integer in [low, high] equally likely
            return self.rng.integers(math.ceil(low), math.floor(high) + 1, size)
        return self.rng.uniform(low, high, size)


class Constant(Distribution):
    """Always ``value``."""

    name = "Constant"
    aliases = ("Fixed", "Deterministic")
    config_schema = {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "number"}},
    }

    def mean(self):
        return self.config["value"]

    def draw(self, size):
        return np.full(size, float(self.config["value"]))


class Poisson(Distribution):
    """Poisson counts with mean ``lam`` (integers)."""

    name = "Poisson"
    config_schema = {
        "type": "object",
        "properties": {
            "lam": {"type": "number", "minimum": 0},
            "mean": {"type": "number", "minimum": 0},
        },
        "oneOf": _one_of(["lam"], ["mean"]),
    }

    def mean(self):
        return self.config.get("lam", self.config.get("mean"))

    def draw(self, size):
        return self.rng.poisson(self.mean(), size)


class Empirical(Distribution):
    """Resample measured values: inline ``values``, or a ``path`` to a file of samples.

    The file is one number per line, or a CSV with a header whose ``column``
    holds the samples. Relative paths are read from the experiment file's folder.
    """

    name = "Empirical"
    config_schema = {
        "type": "object",
        "properties": {
            "values": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            "path": {"type": "string"},
            "column": {"type": "string"},
        },
        "oneOf": _one_of(["values"], ["path"]),
    }

    def __init__(self, config, rng):
        super().__init__(config, rng)
        self._values = np.asarray(config["values"], float) if "values" in config else None

    def prepare(self, base_dir: Path) -> None:
        if self._values is None:
            self._values = load_samples(
                Path(base_dir) / self.config["path"], self.config.get("column")
            )

    def mean(self):
        self.prepare(Path.cwd())
        return float(np.mean(self._values))

    def draw(self, size):
        self.prepare(Path.cwd())
        return self.rng.choice(self._values, size=size, replace=True)


def read_csv_rows(path: Path, what: str) -> list[list[str]]:
    """Every row of the CSV (or one-value-per-line) file *path*, read as UTF-8 text.

    A missing, unreadable, non-regular, binary or non-UTF-8 file, or a cell larger than
    the csv module accepts, is a :class:`UsageError` naming *what*, the path and the line.
    """
    from labsim.config import read_text_file

    text = read_text_file(path, what, limit=1 << 30)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
    except csv.Error as ex:
        raise UsageError(f"{what} {path} line {reader.line_num}: {ex}") from None


def load_samples(path: Path, column: str | None = None) -> np.ndarray:
    """Numbers from a one-column file or a CSV column; a clear error for anything else."""
    rows = read_csv_rows(path, "Empirical distribution sample file")
    numbered = [(i, r) for i, r in enumerate(rows, start=1) if r and any(c.strip() for c in r)]
    start, index = 0, 0
    if numbered and column is not None:
        header = [c.strip() for c in numbered[0][1]]
        if column not in header:
            raise UsageError(
                f"Empirical distribution: {path} has no column {column!r}; "
                f"columns: {', '.join(header)}"
            )
        start, index = 1, header.index(column)
    values = []
    for position, (lineno, row) in enumerate(numbered[start:], start=start):
        try:
            value = float(row[index])
        except (ValueError, IndexError):
            if position == 0 and column is None:
                continue  # a header line
            shown = ",".join(row)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise UsageError(
                f"Empirical distribution: {path} line {lineno}: expected a number, got {shown!r}"
            ) from None
        if not math.isfinite(value):
            raise UsageError(
                f"Empirical distribution: {path} line {lineno}: {row[index].strip()!r} is not a "
                "finite number"
            )
        values.append(value)
    if not values:
        raise UsageError(f"Empirical distribution: {path} holds no samples")
    return np.asarray(values, float)


@hookimpl
def register_distributions(register):
    for cls in (Exponential, Gamma, LogNormal, Normal, Uniform, Constant, Poisson, Empirical):
        register(cls)
