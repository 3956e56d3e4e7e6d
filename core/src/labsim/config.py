"""Reading experiment files and applying ``--set`` overrides.

An experiment is YAML or JSON (JSON is read by the same YAML 1.2 parser).
Loading keeps the file position of every key and list item, so a validation
problem can name the line and column where the user has to look.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from labsim.errors import ConfigError, Problem, UsageError

Path_ = tuple  # a JSON path: a tuple of keys and list indices


@dataclass
class Experiment:
    """A loaded (not yet validated) experiment: the data and where each part came from."""

    data: dict
    source: str = "<config>"
    base_dir: Path = field(default_factory=Path.cwd)
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    overridden: dict[tuple, str] = field(default_factory=dict)

    def locate(self, path: tuple) -> tuple[str, int | None, int | None]:
        """(source, line, column) of the deepest known part of *path*."""
        for i in range(len(path), -1, -1):
            prefix = tuple(path[:i])
            if prefix in self.overridden:
                return self.overridden[prefix], None, None
            if prefix in self.positions:
                line, col = self.positions[prefix]
                return self.source, line, col
        return self.source, None, None

    def problem(self, path: tuple, message: str) -> Problem:
        source, line, col = self.locate(path)
        return Problem(format_path(path), message, source, line, col)

    def resolve_path(self, value: str) -> Path:
        """A path written in the file, relative to the file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def format_path(path: tuple) -> str:
    """``("frameworks_to_test", 0, "config")`` → ``frameworks_to_test[0].config``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _plain(node: Any, path: tuple, positions: dict) -> Any:
    """Convert ruamel's round-trip nodes to plain dicts/lists, recording positions."""
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                line, col = node.lc.key(key)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        out = []
        for i, value in enumerate(node):
            child = (*path, i)
            try:
                line, col = node.lc.item(i)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            out.append(_plain(value, child, positions))
        return out
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


_UNDERSCORE_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")


def _fix_scalars(value: Any) -> Any:
    """Accept ``80_000_000_000`` (YAML 1.1 style, as users write it) as an integer."""
    if isinstance(value, dict):
        return {k: _fix_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_scalars(v) for v in value]
    if isinstance(value, str) and "_" in value and _UNDERSCORE_INT.match(value):
        return int(value.replace("_", ""))
    return value


def loads(text: str, source: str = "<config>", base_dir: Path | None = None) -> Experiment:
    """Parse experiment text (YAML or JSON)."""
    try:
        node = _yaml().load(StringIO(text))
    except MarkedYAMLError as ex:
        mark = ex.problem_mark or ex.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = (ex.problem or ex.context or "not valid YAML").strip()
        duplicate = re.match(r'found duplicate key "(.*?)"', what)
        if duplicate:
            what = f"duplicate key {duplicate.group(1)!r} (each key may appear once in a mapping)"
        raise ConfigError(
            [Problem("", f"not valid YAML/JSON: {what}", source, line, col)]
        ) from None
    except Exception as ex:  # ruamel raises a few unmarked errors too
        raise ConfigError([Problem("", f"not valid YAML/JSON: {ex}", source)]) from None
    positions: dict = {}
    data = _fix_scalars(_plain(node, (), positions))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    "",
                    "the experiment must be a mapping of sections "
                    f"(simulation, workload, ...), not a {type(data).__name__}",
                    source,
                    1,
                    1,
                )
            ]
        )
    return Experiment(data, source, base_dir or Path.cwd(), positions)


def load(path: str | Path) -> Experiment:
    """Read an experiment file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"Experiment file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as ex:
        raise UsageError(f"Cannot read experiment file {path}: {ex}") from None
    return loads(text, str(path), p.resolve().parent)


def from_dict(data: dict, source: str = "<dict>") -> Experiment:
    """Wrap an experiment given as a Python dict (no file positions)."""
    if not isinstance(data, dict):
        raise UsageError(f"An experiment must be a dict, not {type(data).__name__}")
    return Experiment(copy.deepcopy(data), source, Path.cwd(), {})


# -- overrides -----------------------------------------------------------------------------

_INDEX = re.compile(r"\[(\d+)\]")


def parse_override_path(key: str) -> tuple:
    """``frameworks_to_test[0].config.x`` or ``frameworks_to_test.0.config.x`` → a path."""
    key = _INDEX.sub(r".\1", key.strip())
    parts = [p for p in key.split(".")]
    if not key or any(not p for p in parts):
        raise UsageError(
            f"--set: bad key {key!r}; write a dotted path such as "
            "frameworks_to_test[0].config.max_num_seqs"
        )
    return tuple(int(p) if p.isdigit() else p for p in parts)


def parse_value(text: str) -> Any:
    """A ``--set`` value is read as a YAML scalar or flow collection (``8``, ``true``, ``[1, 2]``)."""
    try:
        value = YAML(typ="safe").load(StringIO(text))
    except Exception:
        return text
    return _fix_scalars(value if value is not None or text.strip() in ("null", "~") else text)


def apply_overrides(exp: Experiment, assignments: list[str]) -> None:
    """Apply ``key=value`` assignments in order, remembering them for error messages."""
    for assignment in assignments:
        if "=" not in assignment:
            raise UsageError(f"--set {assignment!r}: expected key=value")
        key, text = assignment.split("=", 1)
        path = parse_override_path(key)
        _assign(exp.data, path, parse_value(text), assignment)
        exp.overridden[path] = f"--set {assignment}"


def _assign(data: Any, path: tuple, value: Any, assignment: str) -> None:
    node = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        where = format_path(path[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise UsageError(
                    f"--set {assignment}: {format_path(path[:i]) or 'top level'} is not a list"
                )
            if part >= len(node):
                raise UsageError(
                    f"--set {assignment}: {where} does not exist (the list has {len(node)} items)"
                )
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise UsageError(
                    f"--set {assignment}: {format_path(path[:i]) or 'top level'} is not a mapping"
                )
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
