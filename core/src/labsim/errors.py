"""Error types that reach users.

Library code raises these; only :mod:`labsim.cli` turns them into a message
and exit code 2. Anything else escaping a command is an internal bug (exit 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class LabsimError(Exception):
    """Base class of every error caused by the user's input or environment."""


class UsageError(LabsimError):
    """A bad argument or input value (a shape, a precision, a CLI option)."""


class PluginError(LabsimError):
    """A plugin misbehaved: a clash of names, a bad registration, a bad result."""


class UnknownNameError(LabsimError, KeyError):
    """A component name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, available: Iterable[str], failed=None):
        self.kind = kind
        self.name = name
        self.available = sorted(available, key=str.lower)
        self.failed = dict(failed or {})
        super().__init__(self.message())

    def message(self) -> str:
        noun = kind_noun(self.kind)
        text = f"No {noun} named {self.name!r}."
        if self.available:
            text += " Available: " + ", ".join(self.available) + "."
        guess = nearest(self.name, self.available)
        if guess:
            text += f" Did you mean {guess!r}?"
        else:
            text += " A plugin that provides it may not be installed (see `labsim plugins`)."
        if self.failed:
            text += " Plugins that failed to load: " + "; ".join(
                f"{name}: {error}" for name, error in sorted(self.failed.items())
            )
        return text

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message()


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to *name* (case-insensitive), or None if none is close."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def kind_noun(kind: str) -> str:
    """The singular noun of a registry kind: ``"metric_sinks"`` → ``"metric sink"``."""
    singular = {"sharing_modes": "sharing mode", "metric_sinks": "metric sink"}
    if kind in singular:
        return singular[kind]
    if kind.endswith("ies"):
        return kind[:-3] + "y"
    return kind[:-1] if kind.endswith("s") else kind


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file, located by JSON path and file position."""

    path: str
    message: str
    source: str = ""
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        path = self.path or "(top level)"
        return f"{where}: {path}: {self.message}"


class ConfigError(LabsimError):
    """An experiment file that does not validate; lists every problem at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        return f"Invalid experiment ({head}):\n" + "\n".join(f"  {p}" for p in self.problems)
