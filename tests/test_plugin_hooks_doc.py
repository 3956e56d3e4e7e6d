"""docs/plugin_hooks.md documents every hook with an example, and every example works:
each is executed as a plugin module, registered, and its component used."""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import kinds_test_plugin  # noqa: E402
import labsim  # noqa: E402
from labsim import hookspecs  # noqa: E402
from labsim.kinds import KINDS_TABLE  # noqa: E402
from labsim.testing import make_registry  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("register_"))


def sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## (register_\w+)\(", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def example_module(hook: str) -> types.ModuleType:
    body = sections()[hook]
    code = re.search(r"```python\n(.*?)```", body, flags=re.S).group(1)
    module = types.ModuleType(f"doc_example_{hook}")
    exec(compile(code, f"{DOC.name}:{hook}", "exec"), module.__dict__)
    return module


def test_every_hook_and_kind_is_documented():
    documented = sections()
    assert sorted(documented) == HOOKS
    for hook in HOOKS:
        assert "```python" in documented[hook], f"{hook} has no example"
    text = DOC.read_text(encoding="utf-8")
    for kind in KINDS_TABLE:
        assert f"| {kind.plural} |" in text, f"kind {kind.plural} missing from the kinds table"
        assert f"register_{kind.plural}" in HOOKS


@pytest.fixture(scope="module")
def documented_registry():
    modules = [example_module(h) for h in HOOKS if h != "register_commands"]
    return make_registry(kinds_test_plugin, *modules, load_entrypoints=True)


@pytest.mark.parametrize("kind, name", [
    ("devices", "H100-SXM-lowpower"), ("topologies", "dgx-h100-x4"), ("collectives", "barrier"),
    ("sharing_modes", "take-turns"), ("models", "Acme-9B"), ("frameworks", "echo"),
    ("workloads", "burst"), ("distributions", "Pareto"), ("schedulers", "first-fit"),
    ("metric_sinks", "jsonl"),
])
def test_each_example_registers_its_component(documented_registry, kind, name):
    assert documented_registry.has(kind, name)
    assert not [m for m in documented_registry.conflicts if name.lower() in m.lower()]


def run(registry, text: str, tmp_path, monkeypatch):
    from labsim import cli as cli_mod

    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli_mod.cli, ["run", str(path), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    import json

    return json.loads((tmp_path / "out" / "summary.json").read_text())


def test_the_framework_and_workload_examples_run_together(documented_registry, tmp_path, monkeypatch):
    summary = run(documented_registry, """\
hardware_profile: {device: H100-SXM-lowpower}
workload: {type: burst, count: 5}
frameworks_to_test: [{name: echo, type: echo}]
metrics_config: {sinks: [summary_json, jsonl]}
""", tmp_path, monkeypatch)
    assert summary["frameworks"]["echo"]["finished"] == 5
    assert summary["frameworks"]["echo"]["cost"]["num_gpus"] == 1


def test_the_sharing_mode_example_arbitrates_tenants(documented_registry, tmp_path, monkeypatch):
    summary = run(documented_registry, """\
hardware_profile: {device: H100-SXM, sharing: {type: take-turns}}
workload: {type: toy_training_job, iterations: 2}
frameworks_to_test:
  - {name: a, type: toy_trainer, placement: {gpus: [gpu0]}}
  - {name: b, type: toy_trainer, placement: {gpus: [gpu0]}}
""", tmp_path, monkeypatch)
    a, b = (summary["frameworks"][n]["iteration_time_s"] for n in "ab")
    assert b == pytest.approx(2 * a * 2 / 3, rel=1e-9)  # a: T then 2T; b: 2T, 2T


def test_the_scheduler_example_lets_small_jobs_overtake(documented_registry, tmp_path, monkeypatch):
    summary = run(documented_registry, """\
hardware_profile: {device: H100-SXM}
workload: {type: toy_jobs, jobs: [{gpus: 6, duration_s: 10}, {gpus: 4, duration_s: 5}, {gpus: 2, duration_s: 5}]}
frameworks_to_test:
  - {name: ff, type: toy_cluster, config: {gpus: 8, scheduler: {type: first-fit}}}
""", tmp_path, monkeypatch)
    # first fit starts the 2-GPU job beside the 6-GPU one; the 4-GPU job follows at 10 s
    assert summary["frameworks"]["ff"]["makespan_s"] == pytest.approx(15.0)
    assert summary["frameworks"]["ff"]["mean_wait_s"] == pytest.approx(10 / 3)


def test_the_distribution_collective_device_and_topology_examples_price(documented_registry):
    pareto = documented_registry.get("distributions", "Pareto")
    import numpy as np

    dist = pareto({"type": "Pareto", "a": 3, "scale": 2}, np.random.default_rng(0))
    assert dist.mean() == 3.0 and dist.sample_n(1000).min() >= 2
    barrier = documented_registry.get("collectives", "barrier")
    assert barrier.time(0, ranks=8, device=labsim.device("H100-SXM")) > 0
    assert documented_registry.get("topologies", "dgx-h100-x4").world_size == 32
    assert documented_registry.get("devices", "H100-SXM-lowpower").gemm_time(4096, 4096, 4096) > 0


def test_the_command_example_adds_a_subcommand():
    import click

    group = click.Group()
    example_module("register_commands").register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello", "labsim"])
    assert result.output == "Hello, labsim\n"
