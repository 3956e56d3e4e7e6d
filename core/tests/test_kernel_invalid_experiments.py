"""Invalid experiment files and the exact message each must produce.

Each case is a complete file with one mistake; the expected text is the one
problem line the user sees (file:line:column: json.path: what is wrong).
"""

from __future__ import annotations

import pytest
from labsim.errors import ConfigError
from labsim.orchestrator import Orchestrator, load_experiment

HEAD = """\
simulation: {max_simulation_time: 100}
workload:
  type: ticks
  count: 5
  interval_dist_config: {type: Exponential, rate: 2}
"""
FW = """\
frameworks_to_test:
  - name: a
    type: queue
    config:
      service_dist_config: {type: Constant, value: 0.1}
"""

CASES = [
    (
        "yaml syntax",
        "simulation: {max_simulation_time: 100\nworkload: x\n",
        "f.yaml:2:9: (top level): not valid YAML/JSON: expected ',' or '}', but got ':'",
    ),
    (
        "not a mapping",
        "- a\n- b\n",
        "f.yaml:1:1: (top level): the experiment must be a mapping of sections (simulation, workload, ...), not a list",
    ),
    ("no frameworks", HEAD, "f.yaml: frameworks_to_test: missing required key"),
    (
        "unknown top-level key",
        HEAD + FW + "metrics: {}\n",
        "f.yaml:11:1: metrics: unknown key 'metrics'; allowed: description, frameworks_to_test, hardware_profile, "
        "metrics_config, name, simulation, workload. Did you mean 'metrics_config'?",
    ),
    (
        "negative time",
        HEAD.replace("100", "-1") + FW,
        "f.yaml:1:14: simulation.max_simulation_time: must be > 0; got -1",
    ),
    (
        "seed is a string",
        "simulation: {random_seed: abc}\n" + HEAD[HEAD.index("workload") :] + FW,
        "f.yaml:1:14: simulation.random_seed: expected an integer, got 'abc'",
    ),
    (
        "unknown framework type",
        HEAD + FW.replace("type: queue", "type: qeue"),
        "f.yaml:8:5: frameworks_to_test[0].type: No framework named 'qeue'. Available: queue. Did you mean 'queue'?",
    ),
    (
        "framework without name",
        HEAD + FW.replace("  - name: a\n    type: queue", "  - type: queue"),
        "f.yaml:7:5: frameworks_to_test[0].name: missing required key",
    ),
    (
        "empty framework list",
        HEAD + "frameworks_to_test: []\n",
        "f.yaml:6:1: frameworks_to_test: must have at least 1 item",
    ),
    (
        "bad framework config value",
        HEAD + FW + "      max_num_seqs: 0\n",
        "f.yaml:11:7: frameworks_to_test[0].config.max_num_seqs: must be ≥ 1; got 0",
    ),
    (
        "misspelt framework config key",
        HEAD + FW + "      max_num_seq: 4\n",
        "f.yaml:11:7: frameworks_to_test[0].config.max_num_seq: unknown key 'max_num_seq'; "
        "allowed: max_num_seqs, service_dist_config. Did you mean 'max_num_seqs'?",
    ),
    (
        "wrong type in config",
        HEAD + FW + "      max_num_seqs: many\n",
        "f.yaml:11:7: frameworks_to_test[0].config.max_num_seqs: expected an integer, got 'many'",
    ),
    (
        "unknown distribution",
        HEAD.replace("type: Exponential", "type: Exponental") + FW,
        "f.yaml:5:26: workload.interval_dist_config.type: No distribution named 'Exponental'. Available: "
        "Constant, Empirical, Exponential, Gamma, LogNormal, Normal, Poisson, Uniform. Did you mean 'Exponential'?",
    ),
    (
        "distribution missing its parameter",
        HEAD.replace("rate: 2", "sigma: 2") + FW,
        "f.yaml:5:3: workload.interval_dist_config: needs one of: rate | mean",
    ),
    (
        "distribution with two parameterisations",
        HEAD.replace("rate: 2", "rate: 2, mean: 3") + FW,
        "f.yaml:5:3: workload.interval_dist_config: give only one of: rate | mean (found rate, mean)",
    ),
    (
        "unknown workload",
        HEAD.replace("type: ticks", "type: tick") + FW,
        "f.yaml:3:3: workload.type: No workload named 'tick'. Available: ticks. Did you mean 'ticks'?",
    ),
    (
        "workload count missing",
        HEAD.replace("  count: 5\n", "") + FW,
        "f.yaml:2:1: workload.count: missing required key",
    ),
    (
        "duplicate framework names",
        HEAD + FW + FW[FW.index("  - name") :],
        "f.yaml:11:5: frameworks_to_test[1].name: duplicate framework name 'a' (also "
        "frameworks_to_test[0].name); names must be unique",
    ),
    (
        "percentile as percent",
        HEAD + FW + "metrics_config: {percentiles_to_calculate: [0.5, 99]}\n",
        "f.yaml:11:50: metrics_config.percentiles_to_calculate[1]: must be < 1; got 99",
    ),
    (
        "unknown sink",
        HEAD + FW + "metrics_config: {sinks: [csv, parquet]}\n",
        "f.yaml:11:31: metrics_config.sinks[1]: No metric sink named 'parquet'. Available: csv, memory, "
        "sqlite, summary_json. A plugin that provides it may not be installed (see `labsim plugins`).",
    ),
    (
        "a key only a plugin owns",
        HEAD + FW + "model_characteristics_db_path: nowhere.json\n",
        "f.yaml:11:1: model_characteristics_db_path: unknown key 'model_characteristics_db_path'; allowed: "
        "description, frameworks_to_test, hardware_profile, metrics_config, name, simulation, workload",
    ),
    (
        "duplicate key",
        HEAD + FW + "simulation: {}\n",
        "f.yaml:11:1: (top level): not valid YAML/JSON: duplicate key 'simulation' (each key may appear "
        "once in a mapping)",
    ),
    (
        "bad uniform",
        HEAD.replace("{type: Exponential, rate: 2}", "{type: Uniform, low: 2, high: 1}") + FW,
        "f.yaml:5:3: workload.interval_dist_config: high (1) is below low (2)",
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_experiment_message(write, registry, monkeypatch, text, expected):
    path = write("f.yaml", text)
    monkeypatch.chdir(path.parent)
    with pytest.raises(ConfigError) as info:
        Orchestrator(load_experiment("f.yaml"), registry).run(write_files=False)
    problems = [str(p) for p in info.value.problems]
    assert problems == [expected]


def test_every_problem_is_listed_at_once(write, registry, monkeypatch):
    text = (
        HEAD.replace("100", "-1").replace("type: ticks", "type: tick")
        + FW
        + "      max_num_seqs: 0\n"
    )
    path = write("f.yaml", text)
    monkeypatch.chdir(path.parent)
    with pytest.raises(ConfigError) as info:
        Orchestrator(load_experiment("f.yaml"), registry)
    assert len(info.value.problems) == 3
    assert str(info.value).startswith("Invalid experiment (3 problems):\n  f.yaml:1:14: ")


def test_set_override_problem_names_the_override(basic_file, registry):
    exp = load_experiment(basic_file, ["frameworks_to_test[0].config.max_num_seqs=-2"])
    with pytest.raises(ConfigError) as info:
        Orchestrator(exp, registry)
    assert [str(p) for p in info.value.problems] == [
        "--set frameworks_to_test[0].config.max_num_seqs=-2: "
        "frameworks_to_test[0].config.max_num_seqs: must be ≥ 1; got -2"
    ]
