"""Reading experiment files and applying ``--set`` overrides.

An experiment is YAML or JSON (JSON is read by the same YAML 1.2 parser).
Loading keeps the file position of every key and list item, so a validation
problem can name the line and column where the user has to look.
"""

from __future__ import annotations

import copy
import os
import re
import stat
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


#: the largest experiment (or model database) file read; real ones are a few kilobytes, and
#: bulk data (samples, traces) belongs in a CSV file the experiment names
MAX_FILE_BYTES = 1 << 20
#: the most mappings, lists and values a loaded document may expand to (aliases included),
#: so that a few lines of nested aliases (a "billion laughs") cannot exhaust memory
MAX_NODES = 200_000


class _Budget:
    """Counts the nodes of a document as it is converted, refusing one that expands too far."""

    def __init__(self, source: str, limit: int = MAX_NODES):
        self.source, self.left = source, limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ConfigError(
                [
                    Problem(
                        "",
                        f"the document expands to more than {MAX_NODES:,} values (through "
                        "aliases or sheer size); an experiment is a few hundred — put bulk "
                        "data in a CSV file",
                        self.source,
                    )
                ]
            )


#: the deepest nesting of [ ] and { } accepted (the YAML parser slows down sharply beyond)
MAX_FLOW_DEPTH = 64
_BRACKETS = re.compile(r"[\[\]{}]")


def _check_flow_depth(text: str, source: str) -> None:
    """Refuse ``[[[[…]]]]`` nested deeper than :data:`MAX_FLOW_DEPTH` before parsing it."""
    depth = 0
    for match in _BRACKETS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_FLOW_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(
                [Problem("", f"nested more than {MAX_FLOW_DEPTH} levels deep", source, line)]
            )
        depth = max(depth, 0)


def _plain(node: Any, path: tuple, positions: dict, budget: _Budget | None = None) -> Any:
    """Convert ruamel's round-trip nodes to plain dicts/lists, recording positions."""
    if budget is not None:
        budget.spend()
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                line, col = node.lc.key(key)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, child, positions, budget)
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
            out.append(_plain(value, child, positions, budget))
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


def loads(
    text: str, source: str = "<config>", base_dir: Path | None = None, what: str = "experiment"
) -> Experiment:
    """Parse experiment text (YAML or JSON); *what* names the document in messages."""
    _check_flow_depth(text, source)
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
    try:
        data = _fix_scalars(_plain(node, (), positions, _Budget(source)))
    except RecursionError:
        raise ConfigError([Problem("", "nested too deeply", source)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        shape = "a mapping of sections (simulation, workload, ...)" if what == "experiment" else "a mapping"
        raise ConfigError(
            [
                Problem(
                    "",
                    f"the {what} must be {shape}, not a {type(data).__name__}",
                    source,
                    1,
                    1,
                )
            ]
        )
    return Experiment(data, source, base_dir or Path.cwd(), positions)


def read_text_file(path: str | Path, what: str = "experiment file", limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most *limit* bytes.

    Anything else — a missing file, a folder, a named pipe or device (which would block
    or never end), a symbolic link loop, a file too large, binary or non-UTF-8 bytes —
    is a :class:`UsageError` naming *what* and the path.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if what == "experiment file":
            raise UsageError(f"Experiment file not found: {path}") from None
        raise UsageError(f"cannot read {what} {path}: no such file") from None
    except OSError as ex:  # a symbolic link loop, a name too long, no permission ...
        raise UsageError(f"cannot read {what} {path}: {ex.strerror or ex}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe or device?)"
        raise UsageError(f"cannot read {what} {path}: it is {kind}")
    if info.st_size > limit:
        raise UsageError(
            f"cannot read {what} {path}: {info.st_size:,} bytes is more than the "
            f"{limit:,} allowed; put bulk data (samples, traces) in a CSV file it names"
        )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as ex:
        raise UsageError(f"cannot read {what} {path}: {ex.strerror or ex}") from None
    if len(raw) > limit:
        raise UsageError(f"cannot read {what} {path}: more than {limit:,} bytes")
    if b"\0" in raw:
        raise UsageError(f"cannot read {what} {path}: it is a binary file, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as ex:
        line = raw[: ex.start].count(b"\n") + 1
        raise UsageError(
            f"cannot read {what} {path}: line {line} is not UTF-8 text "
            f"(byte {raw[ex.start]:#04x}); save the file as UTF-8"
        ) from None


def load(path: str | Path, what: str = "experiment file") -> Experiment:
    """Read an experiment file (or another YAML/JSON file the experiment names, as *what*)."""
    p = Path(path)
    text = read_text_file(p, what)
    noun = "experiment" if what == "experiment file" else what
    return loads(text, str(path), p.resolve().parent, noun)


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
