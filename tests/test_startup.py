"""Start-up: a clean ``labsim run`` does not import structlog; its log lines still come out
configured as asked once there is one to write (labsim.log)."""

import json
import subprocess
import sys

EXPERIMENT = """\
name: startup
hardware_profile: {device: H100-SXM}
workload: {type: client_profiles, num_requests: NUM, client_profiles: [{profile_name: a, request_rate: 4,
  prompt_tokens_dist_config: {type: Constant, value: 512, is_int: true},
  max_output_tokens_dist_config: {type: Constant, value: 64, is_int: true}}]}
frameworks_to_test: [{name: vllm, type: vllm, config: {model: Llama-3.1-8B}}]
simulation: {max_simulation_time: 1.0}
"""

RUN = """
import sys
from labsim.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as ex:
    code = ex.code
print("structlog" in sys.modules, file=sys.stderr)
"""


def _run(tmp_path, requests: int, *options):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT.replace("NUM", str(requests)))
    out = subprocess.run([sys.executable, "-c", RUN, *options, "run", str(path), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, check=True)
    return out.stderr.strip().splitlines()


def test_a_clean_run_never_imports_structlog(tmp_path):
    lines = _run(tmp_path, 2)             # both finish within the simulated second: no warning
    assert lines == ["False"]


def test_a_warning_imports_it_and_comes_out_as_configured(tmp_path):
    lines = _run(tmp_path, 200, "--log-format", "json")
    assert lines[-1] == "True"
    logged = [json.loads(line) for line in lines[:-1]]
    assert any(r["event"] == "requests_left_out_of_statistics" and r["level"] == "warning"
               for r in logged)
