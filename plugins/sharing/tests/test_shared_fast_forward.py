"""Fast-forward on a shared GPU gives exactly what one event per decode step gives.

Two vLLM servers share an A100 with a training job and two notebooks whose bursts start and
stop often, so runs of decode steps are cut by arrivals, by completions and by the other
tenants' changes. With ``fast_forward`` (the default) the servers time runs of steps with a
lease from the GPU's sharing mode; without it every step is a piece of work of its own. The
requests, the GPU's timeline and the whole summary (the run's end included) must be equal,
float for float.
"""

from __future__ import annotations

import copy

import labsim
import pytest
from labsim_sharing import fluid


def experiment(mode: str, caps: bool = False) -> dict:
    chat = {"model": "Llama-3.1-8B", "gpu_memory_utilization": 0.25, "max_model_len": 4096}
    tenants = [{"name": f"chat-{k}", "type": "vllm", "config": dict(chat),
                "placement": {"gpu": "gpu0", **({"mps_active_thread_percentage": 40 + 20 * k} if caps else {})}}
               for k in (1, 2)]
    tenants.append({"name": "bert", "type": "ddp", "is_target_for_workload": False, "placement": {"gpu": "gpu0"},
                    "config": {"micro_batch_size": 32,
                               "job": {"model": "BERT-base", "seq_len": 128, "global_batch_size": 32,
                                       "iterations": 400}}})
    tenants += [{"name": f"nb-{k}", "type": "notebook", "is_target_for_workload": False,
                 "placement": {"gpu": "gpu0"},
                 "config": {"model": "BERT-base", "cell": "forward", "batch_size": 16, "seq_len": 256,
                            "cells_per_burst_dist_config": {"type": "Constant", "value": 3},
                            "think_time_dist_config": {"type": "Exponential", "mean": 1.5}, "session_s": 40}}
                for k in (1, 2)]
    return {
        "name": "shared-fast-forward",
        "simulation": {"max_simulation_time": 100, "random_seed": 3},
        "hardware_profile": {"device": "A100-SXM4-80GB", "sharing": {"type": mode, "record_timeline": True}},
        "workload": {"type": "client_profiles", "total_duration": 40, "client_profiles": [{
            "profile_name": "chat", "weight": 1.0, "request_rate": 1.5,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 400, "sigma": 200, "is_int": True,
                                          "min": 8, "max": 2000},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 150, "sigma": 80, "is_int": True,
                                              "min": 8, "max": 600}}]},
        "frameworks_to_test": tenants,
        "metrics_config": {"warm_up_duration_s": 1.0},
    }


def _run(cfg, fast_forward: bool):
    cfg = copy.deepcopy(cfg)
    for fw in cfg["frameworks_to_test"]:
        if fw["type"] == "vllm":
            fw["config"]["fast_forward"] = fast_forward
    return labsim.run(cfg)


def _comparable(summary, path=()):
    """The summary less the setting compared and the KV cache's mean utilisation (a span adds
    its block-seconds as one sum, as fast-forward does on a GPU of its own)."""
    if isinstance(summary, dict):
        return {k: _comparable(v, (*path, k)) for k, v in summary.items()
                if k != "fast_forward" and (k, path[-1:]) != ("mean_utilization", ("kv_cache",))}
    if isinstance(summary, list):
        return [_comparable(v, path) for v in summary]
    return summary


@pytest.mark.parametrize(("mode", "caps"), [("mps", False), ("mps", True), ("time_slicing", False)])
def test_fast_forward_on_a_shared_gpu_equals_one_event_per_step(mode, caps, monkeypatch):
    taken, cut = [], []
    lease, resume = fluid.FluidGpu.lease, fluid.Lease.resume
    monkeypatch.setattr(fluid.FluidGpu, "lease", lambda self, *a, **k: taken.append(1) or lease(self, *a, **k))
    monkeypatch.setattr(fluid.Lease, "resume", lambda self, *a: cut.append(1) or resume(self, *a))
    cfg = experiment(mode, caps)
    fast = _run(cfg, True)
    assert len(taken) > 50 and len(cut) > 5          # spans ran, and co-tenants cut some
    taken.clear()
    slow = _run(cfg, False)
    assert not taken
    assert repr(fast.table("requests")) == repr(slow.table("requests"))
    assert repr(fast.table("gpu_sharing")) == repr(slow.table("gpu_sharing"))
    assert fast.summary["stopped_by"] == slow.summary["stopped_by"] == "drained"
    assert _comparable(fast.summary) == _comparable(slow.summary)
    for name in ("chat-1", "chat-2"):
        f, s = fast.summary["frameworks"][name]["kv_cache"], slow.summary["frameworks"][name]["kv_cache"]
        assert f["mean_utilization"] == pytest.approx(s["mean_utilization"], rel=1e-12)
    assert fast.summary["frameworks"]["chat-1"]["requests"]["finished"] > 40


def test_a_lone_tenant_of_a_shared_gpu_runs_at_full_speed_with_fast_forward():
    """Fast-forward on a shared GPU with one tenant used to hand the GPU overlapping pieces when
    an arrival cut a run (the run's rest and the step in progress), which then shared the GPU
    between them: the tenant ran slower than alone."""
    cfg = experiment("time_slicing")
    cfg["frameworks_to_test"] = cfg["frameworks_to_test"][:1]
    alone = copy.deepcopy(cfg)
    alone["hardware_profile"].pop("sharing")
    alone["frameworks_to_test"][0].pop("placement")
    shared = labsim.run(cfg).summary["frameworks"]["chat-1"]
    exclusive = labsim.run(alone).summary["frameworks"]["chat-1"]
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        for q, v in exclusive[key].items():
            assert shared[key][q] == pytest.approx(v, rel=1e-9), (key, q)


def test_mps_rates_looked_up_equal_the_rates_worked_out_at_every_change(monkeypatch):
    """MPS keeps the rates of each set of running pieces (tenant and intensity of each) it has
    solved: the run equals, float for float, one that solves them at every change."""
    from labsim_sharing import modes

    solved = []
    solve = modes.Mps._solve
    monkeypatch.setattr(modes.Mps, "_solve", lambda self, pieces: solved.append(1) or solve(self, pieces))
    cfg = experiment("mps", caps=True)
    kept = labsim.run(copy.deepcopy(cfg))
    n_kept = len(solved)
    solved.clear()
    monkeypatch.setattr(modes, "RATES_MEMO", 0)           # forgets every set: solves each change
    fresh = labsim.run(cfg)
    assert len(solved) > 2 * n_kept
    assert repr(kept.table("requests")) == repr(fresh.table("requests"))
    assert repr(kept.table("gpu_sharing")) == repr(fresh.table("gpu_sharing"))
    assert kept.summary == fresh.summary
