"""Every example experiment validates against the installed plugins, and `labsim validate`
runs the plugins' own checks of their settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from labsim.orchestrator import Orchestrator, load_experiment

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path, installed_registry):
    Orchestrator(load_experiment(path), installed_registry).check()


def test_validate_reports_what_a_plugin_refuses_with_exit_2(tmp_path):
    from click.testing import CliRunner
    from labsim import cli

    bad = tmp_path / "bad.yaml"
    text = (EXAMPLES[0].parent / "vllm_llama405b_tp8_pp2.yaml").read_text()
    bad.write_text(text.replace("topology: {type: dgx-h100, nodes: 2}", "topology: dgx-h100"))
    result = CliRunner().invoke(cli.cli, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "16 GPUs" in result.output and "nodes: 2" in result.output and "Traceback" not in result.output
