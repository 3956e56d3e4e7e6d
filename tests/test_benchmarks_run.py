"""The fidelity benchmarks run from a fresh clone: their tables ship in benchmarks/data, a
missing one is one line and exit 2, and figures (stdout) never mix with logs (stderr)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPTS = {
    "collectives_local_copy.py": ["calibration/a100_sxm/nccl_a100_sxm.csv"],
    "fidelity_collectives.py": ["calibration/a100_sxm/nccl_a100_sxm.csv",
                                "calibration/a100_sxm/custom_ar_a100_sxm.csv"],
    "fidelity_kernels.py": ["calibration/a100_sxm/gemm_a100_sxm.csv",
                            "calibration/a100_sxm/attn_a100_sxm.csv",
                            "anchors/vidur_a30_qwen2_7b/mlp.csv",
                            "anchors/vidur_a30_qwen2_7b/attention.csv",
                            "anchors/vidur_a100_llama2_7b/mlp.csv",
                            "anchors/vidur_h100_llama2_7b/mlp.csv",
                            "anchors/vidur_a40_llama2_7b/mlp.csv",
                            "anchors/vidur_a100_llama2_70b_tp2/attention.csv"],
    "fidelity_serving.py": ["serving_reference.csv"],
    "fidelity_serving_trtllm.py": ["serving_reference.csv"],
    "fidelity_torch_measured.py": ["h100_torch/gemm_h100_sxm_torch.csv"],
    "fidelity_own_calibration.py": ["h100_torch/gemm_graph_h100_sxm_torch.csv",
                                    "h200_torch/gemm_graph_h200_torch.csv",
                                    "h200_torch/step_llama70b_tp4_h200_torch.csv"],
    "fidelity_sharing.py": ["traces/cluster/gavel_colocation_pairs.csv"],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_tables_each_script_reads_ship_with_it(root, script):
    data = root / "benchmarks" / "data"
    for name in SCRIPTS[script]:
        assert (data / name).is_file(), f"{script} needs benchmarks/data/{name}"
    assert "licence" in (data / "README.md").read_text().lower()


#: scripts that read this team's own tables in benchmarks/data only (no LABSIM_SHARED_DATA)
OWN_DATA = {"fidelity_torch_measured.py", "fidelity_own_calibration.py"}


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - OWN_DATA))
def test_a_missing_table_is_one_line_and_exit_2(root, script, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSIM_SHARED_DATA", str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / script)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0] and "nowhere" in lines[0]


def test_collectives_benchmark_prints_figures_to_stdout_only(root, tmp_path, monkeypatch):
    monkeypatch.delenv("LABSIM_SHARED_DATA", raising=False)
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "fidelity_collectives.py")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "overall: median |err|" in proc.stdout
