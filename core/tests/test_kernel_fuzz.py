"""Property-based fuzzing of the experiment loader and validator.

Random values (NaN, infinities, huge integers, empty strings, nested junk) go into every field
of the composed experiment schema and of a valid example; loading and validating (what
``labsim validate`` does) must give a valid experiment or a :class:`LabsimError` (exit 2),
never another exception, in bounded time. The installed plugins' composed schema is fuzzed too
when they are installed.
"""

from __future__ import annotations

import copy
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim import config as config_mod
from labsim.errors import LabsimError
from labsim.orchestrator import Orchestrator
from labsim.schema import compose_experiment_schema
from labsim.testing import make_registry
from ruamel.yaml import YAML

import kernel_test_plugin
from conftest import BASIC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-3, max_value=100)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e3, max_value=1e6)
    | st.text(max_size=12)
    | st.sampled_from(["", "nan", ".inf", "1e400", "H100-SXM", "vllm", "Exponential", "builtin:x"])
)
JUNK = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["type", "mean", "min", "max"]),
                      children, max_size=3),
    max_leaves=8,
)


def _schema_paths(schema: dict, root: dict, path=(), depth=0, out=None) -> list[tuple]:
    """Every property path the composed schema describes (lists as index 0)."""
    out = [] if out is None else out
    if depth > 9 or not isinstance(schema, dict):
        return out
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        _schema_paths(root["$defs"][ref.split("/")[-1]], root, path, depth + 1, out)
    for key, sub in (schema.get("properties") or {}).items():
        out.append((*path, key))
        _schema_paths(sub, root, (*path, key), depth + 1, out)
    if isinstance(schema.get("items"), dict):
        _schema_paths(schema["items"], root, (*path, 0), depth + 1, out)
    for word in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(word) or []:
            _schema_paths(branch, root, path, depth + 1, out)
            if isinstance(branch, dict):
                _schema_paths(branch.get("then") or {}, root, path, depth + 1, out)
    return out


def _document_paths(value, path=()) -> list[tuple]:
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _document_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _document_paths(v, (*path, i))
    return out


def _set(doc, path, value, delete=False):
    node = doc
    for part in path[:-1]:
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                return
            node = node[part]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {} if not isinstance(part, int) else []
            node = node[part]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            del node[last]
        else:
            node[last] = value


def _dump(doc) -> str:
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(doc, stream)
    return stream.getvalue()


def _check(registry, doc, base_dir: Path):
    """What `labsim validate` does; only a LabsimError may escape."""
    try:
        text = _dump(doc)
    except Exception:  # noqa: BLE001 - a value YAML cannot write: try the dict itself
        exp = config_mod.from_dict(doc)
    else:
        try:
            exp = config_mod.loads(text, "fuzz.yaml", base_dir)
        except LabsimError:
            return
    try:
        Orchestrator(exp, registry).check()
    except LabsimError:
        pass


#: LABSIM_FUZZ_EXAMPLES=2000 fuzzes deeper than CI does (scales every test below)
SCALE = float(os.environ.get("LABSIM_FUZZ_EXAMPLES", "100")) / 100


def _fuzz(registry, base: dict, base_dir: Path, examples: int):
    schema = compose_experiment_schema(registry)
    paths = sorted(set(_schema_paths(schema, schema)) | set(_document_paths(base)), key=str)

    @settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=timedelta(seconds=10),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
        database=None,
    )
    @given(
        st.lists(
            st.tuples(st.sampled_from(paths), JUNK, st.booleans()), min_size=1, max_size=3
        )
    )
    def run(mutations):
        doc = copy.deepcopy(base)
        for path, value, delete in mutations:
            _set(doc, path, value, delete and len(path) > 1)
        _check(registry, doc, base_dir)

    run()


def test_fuzz_the_kernel_schema(tmp_path):
    registry = make_registry(kernel_test_plugin)
    base = config_mod.loads(BASIC).data
    _fuzz(registry, base, tmp_path, 150)


@pytest.mark.parametrize("example", ["quickstart.yaml", "fifo_vs_vllm.yaml", "seed001.yaml"])
def test_fuzz_the_installed_plugins_schema(example):
    pytest.importorskip("labsim_llm")
    from labsim.registry import get_registry

    path = EXAMPLES / example
    if not path.is_file():
        pytest.skip(f"{example} not in this checkout")
    base = config_mod.load(path).data
    _fuzz(get_registry(), base, path.parent, 40)


@settings(max_examples=200, deadline=timedelta(seconds=10), derandomize=True, database=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_fuzz_raw_text(text):
    try:
        exp = config_mod.loads(text, "fuzz.yaml")
        Orchestrator(exp, make_registry(kernel_test_plugin)).check()
    except LabsimError:
        pass
