"""Hostile experiment files: refused with exit 2 and a located message, never a hang or a
silently different answer (non-finite numbers, inconsistent ranges, absurd sizes, files that
are not regular text files)."""

from __future__ import annotations

import os

import pytest
from labsim import config as config_mod
from labsim.errors import ConfigError, UsageError
from labsim.orchestrator import Orchestrator, load_experiment

from conftest import BASIC


def _validate(registry, text, tmp_path, overrides=()):
    path = tmp_path / "e.yaml"
    path.write_text(text, encoding="utf-8")
    return Orchestrator(load_experiment(path, overrides), registry)


@pytest.mark.parametrize(
    "assignment, field",
    [
        ("simulation.max_simulation_time=.nan", "simulation.max_simulation_time"),
        ("simulation.max_simulation_time=.inf", "simulation.max_simulation_time"),
        ("metrics_config.percentiles_to_calculate=[0.5, .nan]", "percentiles_to_calculate[1]"),
        ("metrics_config.warm_up_duration_s=.nan", "metrics_config.warm_up_duration_s"),
        ("workload.interval_dist_config.rate=-.inf", "interval_dist_config.rate"),
        ("frameworks_to_test[0].config.service_dist_config={type: Empirical, values: [1, .nan]}",
         "service_dist_config.values[1]"),
        ("simulation.random_seed=99999999999999999999999", "simulation.random_seed"),
    ],
)
def test_non_finite_and_huge_numbers_are_refused_naming_the_field(
    registry, tmp_path, assignment, field
):
    with pytest.raises(ConfigError) as info:
        _validate(registry, BASIC, tmp_path, [assignment])
    text = str(info.value)
    assert field in text and ("finite" in text or "too large" in text)


def test_nan_in_the_file_names_its_line(registry, tmp_path):
    text = BASIC.replace("rate: 2", "rate: .nan")
    with pytest.raises(ConfigError) as info:
        _validate(registry, text, tmp_path)
    assert "e.yaml:6:" in str(info.value) and "finite" in str(info.value)


@pytest.mark.parametrize(
    "block, message",
    [
        ("{type: Exponential, rate: 2, min: 5000, max: 10}", "min (5000) is above max (10)"),
        ("{type: Constant, value: 50, min: 100}", "below min"),
        ("{type: LogNormal, mean: 600, sigma: 400, max: 100}", "above max"),
        ("{type: LogNormal, mean: 1e308, sigma: 1}", "out of range"),
        ("{type: Empirical, values: [1, 1e300]}", "out of range"),
    ],
)
def test_inconsistent_distributions_are_refused(registry, tmp_path, block, message):
    text = BASIC.replace("{type: Exponential, rate: 2}", block)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _validate(registry, text, tmp_path)


def test_an_absurd_amount_of_work_is_refused_up_front(registry, tmp_path):
    with pytest.raises(ConfigError, match=r"asks for about 1e\+09 requests"):
        _validate(registry, BASIC, tmp_path, ["workload.count=1000000000"])


def test_a_large_run_warns_up_front(registry, tmp_path, capsys):
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        _validate(registry, BASIC, tmp_path, ["workload.count=5000000"])
    assert any(entry["event"] == "large_run" for entry in logs)


# -- reading the file ------------------------------------------------------------------------


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        config_mod.load(fifo)


def test_a_device_file_is_refused():
    with pytest.raises(UsageError, match="not a regular file"):
        config_mod.load("/dev/zero")


def test_a_symlink_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    with pytest.raises(UsageError, match="cannot read experiment file .*a.yaml"):
        config_mod.load(tmp_path / "a.yaml")


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("description: '" + "x" * (config_mod.MAX_FILE_BYTES + 10) + "'\n")
    with pytest.raises(UsageError, match="more than the"):
        config_mod.load(path)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        (b"name: caf\xe9\n", "line 1 is not UTF-8"),
    ],
)
def test_binary_and_non_utf8_files_are_refused(tmp_path, raw, message):
    path = tmp_path / "e.yaml"
    path.write_bytes(raw)
    with pytest.raises(UsageError, match=message):
        config_mod.load(path)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        config_mod.load(path)


def test_an_omitted_block_whose_default_lacks_a_required_key_is_a_config_error(registry, tmp_path):
    # found by the fuzz test: `config` defaults to {}, which the framework's schema refuses
    text = BASIC.replace("    config: {service_dist_config: {type: Exponential, mean: 0.3}}\n", "")
    with pytest.raises(ConfigError, match=r"frameworks_to_test\[0\].config.service_dist_config: "
                                          "missing required key"):
        _validate(registry, text, tmp_path)


def test_a_non_mapping_hardware_profile_is_a_config_error(registry, tmp_path):
    # found by the fuzz test: the semantic checks assumed a mapping
    with pytest.raises(ConfigError, match="hardware_profile: expected a mapping"):
        _validate(registry, BASIC + "hardware_profile: true\n", tmp_path)


def test_a_distribution_block_that_is_not_a_mapping_is_a_config_error(registry, tmp_path):
    # found by the fuzz test: the one-of-these-keys message assumed a mapping
    text = BASIC.replace("{service_dist_config: {type: Exponential, mean: 0.3}}",
                         "{service_dist_config: true}")
    with pytest.raises(ConfigError, match="service_dist_config: expected a mapping, got True"):
        _validate(registry, text, tmp_path)


def test_deeply_nested_flow_collections_are_refused_quickly():
    with pytest.raises(ConfigError, match="nested more than 64 levels deep"):
        config_mod.loads("a: " + "[" * 5000 + "]" * 5000)
    assert config_mod.loads("a: " + "[" * 20 + "]" * 20).data["a"] == [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]


def test_a_warm_up_as_long_as_the_run_is_refused(registry, tmp_path):
    with pytest.raises(ConfigError, match=r"warm-up \(1e\+300 s\) is not shorter than "
                                          r"simulation.max_simulation_time"):
        _validate(registry, BASIC, tmp_path, ["metrics_config.warm_up_duration_s=1e300"])
