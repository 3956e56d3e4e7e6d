"""Two ResNet-50 training jobs on one 16 GB V100, as Gavel co-located them
(``benchmarks/fidelity_sharing.py`` compares every pair with the measurements)."""

from __future__ import annotations

import labsim
import pytest

V100_16GB = {"device_id": "gpu0", "device_type": "V100-SXM2-32GB", "memory_capacity_bytes": 16 * 2**30}


def _job(name, batch, iterations):
    return {"name": name, "type": "ddp", "is_target_for_workload": False, "placement": {"gpu": "gpu0"},
            "config": {"micro_batch_size": batch, "precision": "fp32",
                       "job": {"model": "ResNet-50", "global_batch_size": batch, "iterations": iterations}}}


def _run(jobs, mode=None):
    hardware = {"compute_devices": [dict(V100_16GB)]}
    if mode:
        hardware["sharing"] = {"type": mode}
    return labsim.run({"name": "pair", "simulation": {"max_simulation_time": 1e5, "random_seed": 1},
                       "hardware_profile": hardware, "frameworks_to_test": jobs}).summary


def test_two_jobs_taking_turns_each_get_half_the_gpu_less_the_context_switches():
    alone = _run([_job("a", 64, 10)])["frameworks"]["a"]["iteration_time_s"]
    shared = _run([_job("a", 64, 10), _job("b", 64, 40)], "time_slicing")
    relative = alone / shared["frameworks"]["a"]["iteration_time_s"]
    assert relative == pytest.approx(0.5 * (1 - 50e-6 / 2e-3), rel=0.02)   # Gavel measured 0.498
    assert not shared["hardware"]["sharing"]["gpu0"].get("failures")


@pytest.mark.parametrize("other, fits", [(16, True), (64, False)])   # as Gavel: 16+128 ran, 64+128 did not
def test_a_batch_128_job_shares_16_gb_with_a_small_job_but_not_a_large_one(other, fits):
    shared = _run([_job("big", 128, 3), _job("other", other, 3)], "time_slicing")
    failures = shared["hardware"]["sharing"]["gpu0"].get("failures") or {}
    assert (not failures) == fits
    if not fits:
        assert failures["other"]["kind"] == "CUDA OOM"
