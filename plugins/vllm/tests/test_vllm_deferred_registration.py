"""Deferred prefix-cache registration (``BlockPool.defer``) equals registering eagerly.

The vLLM scheduler leaves a request's block keys out of the cache map until a
lookup of its first key (or its preemption) needs them; freed while deferred,
its blocks enter the free queue as one group. These tests drive a deferring
pool and an eager one through the same sharing-heavy operations, and run the
simulator with deferral switched off.
"""

from __future__ import annotations

import copy
import random

import labsim
import pytest
from labsim_llm.engine import kv_cache
from labsim_llm.engine.kv_cache import BlockPool, block_ids
from labsim_vllm import scheduler


def experiment(rate, duration, prompt, output, vllm, profile, seed=5):
    prof = {"profile_name": "p", "weight": 1.0, "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                          "is_int": True, "min": 4, "max": 4 * prompt},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output,
                                              "sigma": output / 2, "is_int": True, "min": 1,
                                              "max": 4 * output}, **profile}
    return {
        "name": "t", "simulation": {"max_simulation_time": 3600, "random_seed": seed},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "client_profiles", "total_duration": duration, "client_profiles": [prof]},
        "frameworks_to_test": [{"name": "v", "type": "vllm",
                                "config": {"model": "Llama-3.1-8B", **vllm}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.9, 0.99], "warm_up_duration_s": 0.5},
    }


TIGHT = {"gpu_memory_utilization": 0.24, "max_model_len": 4096}


class _Held:
    def __init__(self, keys, hits, held, dref, lazy_hashed, eager_hashed):
        self.keys, self.held = keys, held
        self.n_reg = hits
        self.dref = dref
        self.lazy, self.eager = lazy_hashed, eager_hashed


def _register(lazy, eager, h, full):
    d = h.dref
    if d is not None and d.state == 0:
        d.n = full
    else:
        h.lazy.extend(lazy.register_many(h.keys[h.n_reg:full]))
    h.eager.extend(eager.register_many(h.keys[h.n_reg:full]))
    h.n_reg = full


def _free(lazy, eager, h, preempt):
    d = h.dref
    if preempt and d is not None:
        lazy.materialize(d)
    if d is not None and d.state == 0:
        lazy.free_deferred(d, h.held - d.n)
    else:
        assert h.lazy == h.eager
        lazy.free(h.lazy, h.held - len(h.lazy))
    eager.free(h.eager, h.held - len(h.eager))


@pytest.mark.parametrize("seed", range(60))
def test_deferred_registration_matches_eager(seed):
    rng = random.Random(seed)
    cap = rng.randint(6, 120)
    bs = rng.choice([4, 8])
    lazy, eager = BlockPool(cap, bs), BlockPool(cap, bs)
    held: list[_Held] = []
    deferred = materialised = 0
    for _ in range(400):
        r = rng.random()
        if r < 0.4 or not held:
            # few contents: identical prompts and shared prefixes are common
            segs = tuple((rng.randint(0, 3), rng.choice([bs, 2 * bs, rng.randint(1, 5 * bs)]))
                         for _ in range(rng.randint(1, 3)))
            keys = block_ids(segs, bs)
            limit = rng.choice([len(keys), max(len(keys) - 1, 0)])
            hit = lazy.match(keys, limit)
            assert hit == eager.match(keys, limit)
            ev = lazy.evictable(keys[:hit])
            assert ev == eager.evictable(keys[:hit])
            need = len(keys) - hit + rng.randint(0, 3)
            if need + ev > lazy.num_free:
                continue
            for pool in (lazy, eager):
                pool.touch(keys[:hit])
                pool.allocate(need)
            lazy_hashed = list(keys[:hit])
            d = lazy.defer(keys, lazy_hashed) if not hit else None
            deferred += d is not None
            h = _Held(keys, hit, hit + need, d, lazy_hashed, list(keys[:hit]))
            held.append(h)
            if rng.random() < 0.5:                       # computed at once
                _register(lazy, eager, h, len(keys))
        elif r < 0.7:                                    # a chunk of prefill
            h = rng.choice(held)
            if h.n_reg < len(h.keys):
                _register(lazy, eager, h, rng.randint(h.n_reg + 1, len(h.keys)))
        elif r < 0.8:                                    # a lookup by someone else
            h = rng.choice(held)
            d = h.dref
            was = d is not None and d.state == 0
            assert lazy.match(h.keys, len(h.keys)) == eager.match(h.keys, len(h.keys))
            if was:
                materialised += 1
                assert d.state == 2 and h.lazy == h.eager
        else:
            h = held.pop(rng.randrange(len(held)))
            _free(lazy, eager, h, preempt=rng.random() < 0.3)
        lazy.check()
        eager.check()
        assert lazy.num_free == eager.num_free
        assert lazy.evictions == eager.evictions
        assert lazy.num_cached == eager.num_cached
        assert lazy.free_order() == eager.free_order()
        probe = block_ids(((rng.randint(0, 3), rng.randint(1, 6 * bs)),), bs)
        assert lazy.match(probe, len(probe)) == eager.match(probe, len(probe))
    assert deferred > 0


SHARING = {
    "prefix-cache": experiment(rate=8, duration=5, prompt=300, output=150, vllm={**TIGHT, "block_size": 8},
                               profile={"conversational_probability": 0.9,
                                        "system_prompt_tokens": 1024, "num_system_prompts": 2,
                                        "think_time_dist_config": {"type": "Exponential", "mean": 0.5}}),
    "preemption": experiment(rate=200, duration=0.4, prompt=1500, output=600, vllm=TIGHT,
                             profile={"conversational_probability": 0.5,
                                      "think_time_dist_config": {"type": "Exponential", "mean": 0.1}}),
    "identical-prompts": experiment(rate=60, duration=2, prompt=200, output=60, vllm={
        **TIGHT, "block_size": 8,
        "max_num_batched_tokens": 128},
        profile={"conversational_probability": 0.95, "system_prompt_tokens": 512,
                 "num_system_prompts": 1, "think_time_dist_config": {"type": "Exponential",
                                                                      "mean": 0.2}}),
}


@pytest.mark.parametrize("case", sorted(SHARING))
def test_simulation_with_deferral_equals_without(case, monkeypatch, pure_replica):
    # the pure-Python pool, counted (a compiled twin's methods call each other directly, so
    # patching its class would miss the calls from inside it)
    calls = {"defer": 0, "materialize": 0}

    class Counting(kv_cache.PURE["BlockPool"]):
        def defer(self, keys, hashed):
            d = super().defer(keys, hashed)
            calls["defer"] += d is not None
            return d

        def materialize(self, rec):
            calls["materialize"] += rec.state in (0, 1)
            super().materialize(rec)

    class Eager(kv_cache.PURE["BlockPool"]):
        def defer(self, keys, hashed):
            return None

    monkeypatch.setattr(scheduler, "BlockPool", Counting)
    cfg = SHARING[case]
    lazy = labsim.run(copy.deepcopy(cfg))
    assert calls["defer"] > 0 and calls["materialize"] > 0
    monkeypatch.setattr(scheduler, "BlockPool", Eager)
    eager = labsim.run(copy.deepcopy(cfg))
    assert repr(lazy.table("requests")) == repr(eager.table("requests"))
    assert repr(lazy.table("steps")) == repr(eager.table("steps"))
    assert repr(lazy.summary["frameworks"]) == repr(eager.summary["frameworks"])
    assert lazy.summary["frameworks"]["v"]["requests"]["finished"] > 10
