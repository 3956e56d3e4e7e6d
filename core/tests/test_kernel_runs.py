"""Running experiments: determinism, random streams, outputs, overrides, warm-up."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from labsim.config import apply_overrides, loads, parse_override_path
from labsim.engine import Engine
from labsim.errors import UsageError
from labsim.orchestrator import Orchestrator, load_experiment, run


def _run(path, registry, out, seed=None, overrides=()):
    return Orchestrator(load_experiment(path, overrides), registry, seed).run(out)


def test_same_file_and_seed_give_identical_bytes(basic_file, registry, tmp_path):
    _run(basic_file, registry, tmp_path / "one")
    _run(basic_file, registry, tmp_path / "two")
    for name in ("summary.json", "requests.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    _run(basic_file, registry, tmp_path / "three", seed=4)
    assert (tmp_path / "one" / "requests.csv").read_bytes() != (
        tmp_path / "three" / "requests.csv"
    ).read_bytes()


def test_outputs_are_written_and_complete(basic_file, registry, tmp_path):
    result = _run(basic_file, registry, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["seed"] == 3 and summary["stopped_by"] == "drained"
    rows = list(csv.DictReader(open(tmp_path / "out" / "requests.csv")))
    assert len(rows) == 40 and rows[0]["framework"] == "a"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".labsim-outputs.json",  # the manifest: what this run wrote (stale files are removed)
        "requests.csv",
        "summary.json",
    ]


def test_failed_run_leaves_no_half_written_output(write, registry, tmp_path):
    path = write(
        "boom.yaml",
        (tmp_path / "x").as_posix()
        and """\
workload: {type: ticks, count: 3, interval_dist_config: {type: Constant, value: 1}}
frameworks_to_test:
  - {name: a, type: queue, config: {service_dist_config: {type: Empirical, path: missing.txt}}}
""",
    )
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="cannot read"):
        _run(path, registry, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_time_limit_stops_the_run(basic_file, registry, tmp_path):
    result = _run(
        basic_file, registry, tmp_path / "o", overrides=["simulation.max_simulation_time=5"]
    )
    assert result.summary["stopped_by"] == "max_simulation_time"
    assert result.summary["simulated_time_s"] == 5


def test_two_frameworks_see_the_identical_request_stream(write, registry):
    path = write(
        "two.yaml",
        """\
workload: {type: ticks, count: 30, interval_dist_config: {type: Exponential, rate: 1}}
frameworks_to_test:
  - {name: fast, type: queue, config: {service_dist_config: {type: Constant, value: 0.1}}}
  - {name: slow, type: queue, config: {service_dist_config: {type: Constant, value: 0.9}}}
""",
    )
    result = run(path, registry=registry)
    rows = result.table("requests")
    arrivals = {
        name: [r["arrival_s"] for r in rows if r["framework"] == name] for name in ("fast", "slow")
    }
    assert arrivals["fast"] == arrivals["slow"] and len(arrivals["fast"]) == 30
    assert result.summary["comparison"]["baseline"] == "fast"
    assert result.summary["comparison"]["ratios"]["slow"]["wait_s.mean"] > 1


def test_adding_a_component_does_not_change_another_components_stream():
    engine = Engine(7)
    before = engine.rng("workload", "gap").random(5)
    engine.rng("something", "new").random(100)
    assert np.array_equal(before, Engine(7).rng("workload", "gap").random(5))
    assert not np.array_equal(before, Engine(7).rng("workload", "other").random(5))


def test_warm_up_excludes_early_requests(basic_file, registry):
    full = run(basic_file, registry=registry).summary["frameworks"]["a"]["wait_s"]
    later = run(
        basic_file, registry=registry, overrides=["metrics_config.warm_up_duration_s=10"]
    ).summary["frameworks"]["a"]["wait_s"]
    assert full != later


def test_python_api_accepts_a_dict(registry):
    config = {
        "workload": {
            "type": "ticks",
            "count": 3,
            "interval_dist_config": {"type": "Constant", "value": 1},
        },
        "frameworks_to_test": [
            {
                "name": "q",
                "type": "queue",
                "config": {"service_dist_config": {"type": "Constant", "value": 0.5}},
            }
        ],
    }
    result = run(config, seed=2, registry=registry)
    assert result.summary["frameworks"]["q"]["served"] == 3
    assert [r["finish_s"] for r in result.table("requests")] == [1.5, 2.5, 3.5]


def test_defaults_are_filled_in(basic_file, registry):
    data = Orchestrator(load_experiment(basic_file), registry).data
    assert data["metrics_config"]["percentiles_to_calculate"] == [0.5, 0.9, 0.99]
    assert data["frameworks_to_test"][0]["is_target_for_workload"] is True
    assert data["frameworks_to_test"][0]["config"]["max_num_seqs"] == 8


@pytest.mark.parametrize(
    "key, path",
    [
        ("a.b.c", ("a", "b", "c")),
        ("frameworks_to_test[0].config.x", ("frameworks_to_test", 0, "config", "x")),
        ("frameworks_to_test.1.name", ("frameworks_to_test", 1, "name")),
    ],
)
def test_override_paths(key, path):
    assert parse_override_path(key) == path


def test_override_values_are_typed():
    exp = loads("a: {b: 1}\nl: [x, y]\n")
    apply_overrides(exp, ["a.b=2.5", "a.c=true", "l[1]=z", "a.d=[1, 2]", "a.e=80_000"])
    assert exp.data == {"a": {"b": 2.5, "c": True, "d": [1, 2], "e": 80000}, "l": ["x", "z"]}


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("novalue", "expected key=value"),
        ("l[5]=1", "l[5] does not exist (the list has 2 items)"),
        ("a.b.c=1", "a.b is not a mapping"),
        ("a..b=1", "bad key"),
    ],
)
def test_bad_overrides(assignment, message):
    exp = loads("a: {b: 1}\nl: [x, y]\n")
    with pytest.raises(UsageError, match=re.escape(message)):
        apply_overrides(exp, [assignment])


def test_underscored_integers_are_read_as_numbers():
    assert loads("memory: 80_000_000_000\nflag: True\n").data == {
        "memory": 80_000_000_000,
        "flag": True,
    }
