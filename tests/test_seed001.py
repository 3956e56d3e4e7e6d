"""The experiment file users know (seed 001) validates and runs as written."""

from __future__ import annotations

import pytest
from labsim.orchestrator import Orchestrator, load_experiment, run


@pytest.fixture
def seed001(root):
    path = root / "examples" / "seed001.yaml"
    if not path.exists():
        pytest.fail("examples/seed001.yaml is missing")
    return path


def test_validates_as_written(seed001, installed_registry):
    data = Orchestrator(load_experiment(seed001), installed_registry).data
    assert data["frameworks_to_test"][0]["type"] == "VLLM"
    assert data["model_characteristics_db_path"]


def test_validates_without_the_model_database(seed001, installed_registry, tmp_path):
    text = "".join(
        line
        for line in seed001.read_text().splitlines(keepends=True)
        if not line.startswith("model_characteristics_db_path")
    )
    path = tmp_path / "no_db.yaml"
    path.write_text(text)
    Orchestrator(load_experiment(path), installed_registry)
    from labsim_llm.models import resolve_model

    class Ctx:
        model_db = {}
        registry = installed_registry

    names = {
        resolve_model(Ctx, alias).name
        for alias in ("Llama3-8B", "meta-llama/Meta-Llama-3-8B", "llama-3-8b")
    }
    assert len(names) == 1


def test_runs_briefly(seed001, installed_registry):
    result = run(
        seed001,
        overrides=["workload.total_duration=10", "metrics_config.warm_up_duration_s=0"],
        registry=installed_registry,
    )
    section = next(iter(result.summary["frameworks"].values()))
    assert section["throughput"]["requests_per_s"] > 0
    assert {"p50", "p90", "p95", "p99", "mean"} <= set(section["ttft_ms"])


def test_a_missing_model_database_is_named_with_its_line(seed001, installed_registry, tmp_path):
    """labsim-llm owns ``model_characteristics_db_path``: validate (which builds the
    experiment) names the key and its line when the file is not there."""
    from labsim.errors import ConfigError

    text = seed001.read_text().replace("seed001_models.json", "nowhere.json")
    path = tmp_path / "missing_db.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Orchestrator(load_experiment(path), installed_registry).check()
    assert "model_characteristics_db_path: file not found: nowhere.json" in str(info.value)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "model_characteristics_db_path" in t)
    assert f"missing_db.yaml:{line}:" in str(info.value)


def test_the_client_network_link_is_priced(seed001, installed_registry):
    """seed 001's network_links was validated and ignored: a 100 ms client link must add
    ~200 ms to TTFT (the prompt up, the first token down) and leave TPOT alone."""
    short = ["workload.total_duration=20", "metrics_config.warm_up_duration_s=0"]
    base = run(seed001, overrides=short, registry=installed_registry)
    slow = run(seed001, overrides=[*short, "hardware_profile.network_links[0].latency_s=0.1"],
               registry=installed_registry)
    a = next(iter(base.summary["frameworks"].values()))
    b = next(iter(slow.summary["frameworks"].values()))
    assert b["ttft_ms"]["p50"] - a["ttft_ms"]["p50"] == pytest.approx(200 - 0.2, abs=25)
    assert b["tpot_ms"]["p50"] == pytest.approx(a["tpot_ms"]["p50"], rel=0.05)
    thin = run(seed001, overrides=[*short, "hardware_profile.network_links[0].bandwidth_bps=1000",
                                   "frameworks_to_test[0].config.bytes_per_token_estimate_for_network=100"],
               registry=installed_registry)
    c = next(iter(thin.summary["frameworks"].values()))
    # ~50-token prompts at 100 bytes/token over 1 kbit/s: ~40 s to upload each
    assert c["ttft_ms"]["p50"] > 10_000


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"[1, 2]", "the model database must be a mapping, not a list"),
        (b"\x00\x01", "cannot read model database .*binary"),
        (b"m: {hidden_size: .nan}", "m.hidden_size: must be a finite number"),
    ],
)
def test_bad_model_databases_are_named(seed001, installed_registry, tmp_path, content, message):
    """labsim-llm reads model_characteristics_db_path: a bad file exits 2 naming it."""
    from labsim.errors import ConfigError, UsageError

    (tmp_path / "db.yaml").write_bytes(content)
    path = tmp_path / "e.yaml"
    path.write_text(seed001.read_text().replace("seed001_models.json", "db.yaml"))
    with pytest.raises((ConfigError, UsageError), match=message):
        Orchestrator(load_experiment(path), installed_registry).check()
