"""schemas/ holds exactly what `labsim schema` generates for the first-party plugins.

Regenerate with::

    LABSIM_LOAD_PLUGINS=labsim-gpus,labsim-collectives,labsim-llm,labsim-vllm,labsim-trtllm,labsim-training,labsim-sharing,labsim-cluster,labsim-report \
        labsim schema experiment --output schemas/experiment.schema.json
    (the same with `summary`)
"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from labsim.plugins import load_plugins
from labsim.registry import Registry
from labsim.schema import compose_experiment_schema, compose_summary_schema, dumps

FIRST_PARTY = "labsim-gpus,labsim-collectives,labsim-llm,labsim-vllm,labsim-trtllm,labsim-training,labsim-sharing,labsim-cluster,labsim-report"


@pytest.fixture
def first_party(monkeypatch):
    monkeypatch.setenv("LABSIM_LOAD_PLUGINS", FIRST_PARTY)
    return Registry(load_plugins())


@pytest.mark.parametrize(
    "name, compose",
    [("experiment", compose_experiment_schema), ("summary", compose_summary_schema)],
)
def test_published_schema_is_current(root, first_party, name, compose):
    path = root / "schemas" / f"{name}.schema.json"
    expected = dumps(compose(first_party))
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path.name} is stale; regenerate it (see this test's docstring)"
    )
    Draft202012Validator.check_schema(json.loads(expected))
