"""A calibration profile named in an experiment file is read from the file's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import labsim_gpus
from labsim.hardware import build_hardware
from labsim.orchestrator import Orchestrator, load_experiment


def test_profile_path_is_relative_to_the_experiment(tmp_path, installed_registry, monkeypatch):
    src = Path(labsim_gpus.__path__[0]) / "data" / "profiles" / "a100_sxm4_80gb.json"
    (tmp_path / "sub").mkdir()
    shutil.copy(src, tmp_path / "sub" / "my_a100.json")
    exp_path = tmp_path / "sub" / "exp.yaml"
    exp_path.write_text(
        "hardware_profile:\n"
        "  compute_devices:\n"
        "    - {device_id: gpu0, device_type: A100-SXM4-80GB, profile: my_a100.json}\n"
        "workload: {client_profiles: [{profile_name: p,\n"
        "  inter_arrival_time_dist_config: {type: Constant, value: 1},\n"
        "  prompt_tokens_dist_config: {type: Constant, value: 8},\n"
        "  max_output_tokens_dist_config: {type: Constant, value: 8}}],\n"
        "  num_requests: 1}\n"
        "frameworks_to_test: [{name: v, type: vllm, config: {model: Llama-3.1-8B, gpu_id: gpu0}}]\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path must not depend on the working directory
    exp = load_experiment(exp_path)
    orch = Orchestrator(exp, installed_registry)
    hardware = build_hardware(orch.data["hardware_profile"], installed_registry, exp)
    assert hardware.device("gpu0").gemm_time(1024, 1024, 1024) > 0
