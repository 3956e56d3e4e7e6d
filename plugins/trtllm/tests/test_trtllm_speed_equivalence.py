"""The TensorRT-LLM executor's tightened bookkeeping gives exactly what the plain one gives.

``trtllm_reference_executor.Replica`` walks every active request each step with one tuple
per scheduled request, as written from the executor's description; the shipped executor
must produce identical request and step tables and summary across both capacity policies,
preemption (pauses), block reuse with conversations, chunked context, no overlap, PP and
several replicas.
"""

import copy
import importlib.util
from pathlib import Path

import labsim
import pytest
from labsim_trtllm import executor, plugin

_spec = importlib.util.spec_from_file_location(
    "trtllm_reference_executor", Path(__file__).with_name("trtllm_reference_executor.py"))
trtllm_reference_executor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trtllm_reference_executor)


def experiment(rate=25.0, duration=3.0, prompt=600, output=150, trt=None, profile=None, seed=5):
    prof = {"profile_name": "p", "weight": 1.0, "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                          "is_int": True, "min": 4, "max": 4 * prompt},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output,
                                              "sigma": output / 2, "is_int": True, "min": 1,
                                              "max": 4 * output}}
    prof.update(profile or {})
    return {
        "name": "t", "simulation": {"max_simulation_time": 3600, "random_seed": seed},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "client_profiles", "total_duration": duration, "client_profiles": [prof]},
        "frameworks_to_test": [{"name": "t", "type": "trtllm",
                                "config": {"model": "Llama-3.1-8B", **(trt or {})}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.9, 0.99], "warm_up_duration_s": 0.5},
    }


#: a few hundred KV blocks, so memory runs out
TIGHT = {"kv_cache_max_tokens": 12000, "max_seq_len": 4096}
CONV = {"conversational_probability": 0.9, "system_prompt_tokens": 1024, "num_system_prompts": 2,
        "think_time_dist_config": {"type": "Exponential", "mean": 0.5}}

CASES = {
    "plain": experiment(),
    "no-overlap": experiment(trt={"disable_overlap_scheduler": True}),
    "guaranteed-tight": experiment(rate=60, duration=1.5, prompt=900, output=300, trt=TIGHT),
    "max-utilization-pauses": experiment(rate=60, duration=1.5, prompt=900, output=300,
                                         trt={**TIGHT, "capacity_scheduler_policy": "MAX_UTILIZATION"}),
    "reuse-conversations": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                      trt={**TIGHT, "tokens_per_block": 8}),
    # conversations without a shared system prompt: a first turn has no cache hit, so its
    # blocks' registration is deferred until its answer's blocks are stored
    "reuse-conversations-own-prompts": experiment(
        rate=8, duration=5, prompt=300, profile={**CONV, "system_prompt_tokens": 0},
        trt={**TIGHT, "tokens_per_block": 8}),
    "chunked": experiment(rate=40, duration=2, prompt=1500, output=100,
                          trt={**TIGHT, "enable_chunked_prefill": True, "max_num_tokens": 512}),
    "chunked-max-utilization": experiment(
        rate=60, duration=1.5, prompt=1200, output=300,
        trt={**TIGHT, "enable_chunked_prefill": True, "max_num_tokens": 700,
             "capacity_scheduler_policy": "MAX_UTILIZATION"}),
    # the generation group with chunked context (max_batch_size <= max_num_tokens)
    "chunked-grouped": experiment(rate=40, duration=2, prompt=1500, output=100,
                                  trt={**TIGHT, "enable_chunked_prefill": True, "max_num_tokens": 512,
                                       "max_batch_size": 256}),
    # requests that stop before their limit (EOS), so reservations exceed what they hold
    "eos-stops": experiment(rate=30, duration=3, profile={"output_tokens_dist_config": {
        "type": "LogNormal", "mean": 60, "sigma": 50, "is_int": True, "min": 1, "max": 600}}),
    "eos-stops-no-overlap-tight": experiment(
        rate=50, duration=2, prompt=900, output=300, trt={**TIGHT, "disable_overlap_scheduler": True},
        profile={"output_tokens_dist_config": {"type": "LogNormal", "mean": 80, "sigma": 60,
                                               "is_int": True, "min": 1, "max": 600}}),
    "small-batch": experiment(rate=40, duration=2, prompt=300, output=100, trt={"max_batch_size": 8}),
    "pp2": experiment(rate=40, duration=2, trt={"pipeline_parallel_size": 2}),
    "pp2-guaranteed-tight-chunked": experiment(
        rate=40, duration=2, prompt=900, output=200,
        trt={**TIGHT, "pipeline_parallel_size": 2, "enable_chunked_prefill": True,
             "max_num_tokens": 512, "max_batch_size": 128}),
    "pp4-reuse-conversations": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                          trt={"pipeline_parallel_size": 4, "tokens_per_block": 8}),
    "pp2-tight-reuse": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                  trt={**TIGHT, "pipeline_parallel_size": 2, "tokens_per_block": 8,
                                       "capacity_scheduler_policy": "MAX_UTILIZATION"}),
    # a closed loop: a finishing request sends the next one at its time (spans must not
    # apply such a finish ahead of it)
    "closed-loop": {**experiment(rate=200, duration=3, output=60),
                    "workload": {**experiment(rate=200, output=60)["workload"], "concurrency": 6}},
    # two engines, one 5x slower: its events bound the other's spans after the last arrival too
    # (that one's last finish may be applied ahead of its time; its GPUs are billed up to it)
    "two-engines": {**experiment(rate=20, duration=2), "frameworks_to_test": [
        {"name": "a", "type": "trtllm", "config": {"model": "Llama-3.1-8B"}},
        {"name": "b", "type": "trtllm", "config": {"model": "Llama-3.1-8B", "kernel_time_scale": 5.0}}]},
    "replicas": experiment(rate=40, duration=2, trt={"num_replicas": 2, "router": "least_outstanding"}),
    "cut-off": {**experiment(rate=30, duration=6, prompt=800, output=300, trt=TIGHT),
                "simulation": {"max_simulation_time": 2.0, "random_seed": 5}},
}


def _outputs(cfg):
    result = labsim.run(copy.deepcopy(cfg))
    return result.table("requests"), result.table("steps"), result.summary["frameworks"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_equals_the_plain_reference(case, monkeypatch):
    fast = _outputs(CASES[case])
    monkeypatch.setattr(plugin, "Replica", trtllm_reference_executor.Replica)
    slow = _outputs(CASES[case])
    # repr: exact floats, and NaN (unfinished requests) equal to NaN
    assert repr(fast[0]) == repr(slow[0])      # requests, row for row
    assert repr(fast[1]) == repr(slow[1])      # steps
    assert repr(fast[2]) == repr(slow[2])      # summary, exactly (ITL mean included)
    assert len(fast[0]) > 10


def _mixed_case(seed: int) -> dict:
    """A configuration drawn from *seed*: every combination of the options the generation
    group depends on (overlap, chunked context, block reuse with conversations, early stops,
    tight memory, batch limits) is reachable."""
    import random

    rnd = random.Random(seed)
    trt = {"disable_overlap_scheduler": rnd.random() < 0.3,
           "enable_block_reuse": rnd.random() < 0.7,
           "tokens_per_block": rnd.choice([8, 16, 32, 64])}
    if rnd.random() < 0.5:
        trt.update(TIGHT)
    if rnd.random() < 0.4:
        trt.update(enable_chunked_prefill=True, max_num_tokens=rnd.choice([256, 512, 1024]),
                   max_batch_size=rnd.choice([16, 64, 256]))
    elif rnd.random() < 0.3:
        trt["max_batch_size"] = rnd.choice([4, 16])
    if rnd.random() < 0.3:
        trt["pipeline_parallel_size"] = rnd.choice([2, 3])
    profile = {}
    if rnd.random() < 0.5:
        profile.update(CONV)
    if rnd.random() < 0.5:
        profile["output_tokens_dist_config"] = {"type": "LogNormal", "mean": 50, "sigma": 60,
                                                "is_int": True, "min": 1, "max": 600}
    return experiment(rate=rnd.choice([10, 30, 60]), duration=2, prompt=rnd.choice([200, 700]),
                      output=rnd.choice([40, 200]), trt=trt, profile=profile, seed=seed)


@pytest.mark.parametrize("seed", range(10))
def test_executor_equals_the_plain_reference_on_mixed_configurations(seed, monkeypatch):
    cfg = _mixed_case(seed)
    fast = _outputs(cfg)
    monkeypatch.setattr(plugin, "Replica", trtllm_reference_executor.Replica)
    slow = _outputs(cfg)
    assert repr(fast[0]) == repr(slow[0])
    assert repr(fast[1]) == repr(slow[1])
    assert repr(fast[2]) == repr(slow[2])


@pytest.mark.parametrize("case", ["plain", "chunked-grouped", "reuse-conversations", "eos-stops",
                                  "guaranteed-tight"])
def test_requests_join_the_group_as_the_iteration_completing_their_context_is_formed(case, monkeypatch, pure_replica):
    """With the overlap scheduler a request whose context an iteration completes becomes a
    member as that iteration is formed (the next one, formed while it runs, is then the
    cohort's alone): the outputs are those of joining as the next one is formed (and so the
    reference's: :func:`test_executor_equals_the_plain_reference`)."""
    joined = []
    join_ahead = executor.Replica._join_ahead

    def spy(self, step, co, g):
        before = self._gN
        join_ahead(self, step, co, g)
        joined.append(self._gN - before)

    monkeypatch.setattr(executor.Replica, "_join_ahead", spy)
    fast = _outputs(CASES[case])
    assert sum(joined) > 10
    monkeypatch.setattr(executor.Replica, "_join_ahead", lambda self, step, co, g: None)
    slow = _outputs(CASES[case])
    assert repr(fast[0]) == repr(slow[0])
    assert repr(fast[1]) == repr(slow[1])
    assert repr(fast[2]) == repr(slow[2])


@pytest.mark.parametrize("case", [*sorted(CASES), *(f"mixed-{seed}" for seed in range(10))])
def test_spans_equal_one_event_per_iteration(case, monkeypatch, pure_replica):
    """Group-only iterations applied without events of their own (spans) give what one SimPy
    event per iteration gives, byte for byte, and the spans do skip events."""
    cfg = CASES[case] if case in CASES else _mixed_case(int(case.split("-")[1]))
    events = []
    gpu_work = executor.Replica.gpu_work
    monkeypatch.setattr(executor.Replica, "gpu_work",
                        lambda self, seconds, step=None: events.append(1) or gpu_work(self, seconds, step))
    fast = _outputs(cfg)
    with_spans = len(events)
    monkeypatch.setattr(executor.Replica, "spans", False)
    events.clear()
    slow = _outputs(cfg)
    assert repr(fast[0]) == repr(slow[0])
    assert repr(fast[1]) == repr(slow[1])
    assert repr(fast[2]) == repr(slow[2])
    assert with_spans <= len(events)
    if case in ("plain", "no-overlap", "eos-stops", "replicas", "cut-off", "reuse-conversations",
                "closed-loop", "pp2", "pp4-reuse-conversations"):
        assert with_spans < len(events)


@pytest.mark.parametrize("case", ["plain", "no-overlap", "eos-stops", "cut-off", "mixed-3"])
def test_spans_without_a_steps_table_sum_as_one_event_per_iteration(case, monkeypatch, pure_replica):
    """Without a steps table (as runs default) spans give the summary one SimPy event per
    iteration gives, exactly: its step sums (busy time, FLOPs, bytes, KV block-seconds) over a
    0.5 s warm-up included (the tests above compare them with steps recorded)."""
    cfg = copy.deepcopy(CASES[case] if case in CASES else _mixed_case(int(case.split("-")[1])))
    for fw in cfg["frameworks_to_test"]:
        fw["config"]["record_steps"] = False
    fast = labsim.run(copy.deepcopy(cfg))
    monkeypatch.setattr(executor.Replica, "spans", False)
    slow = labsim.run(copy.deepcopy(cfg))
    assert repr(fast.table("requests")) == repr(slow.table("requests"))
    assert repr(fast.summary["frameworks"]) == repr(slow.summary["frameworks"])
    assert fast.summary["frameworks"]["t"]["gpu"]


@pytest.mark.parametrize("case", ["plain", "max-utilization-pauses", "reuse-conversations", "pp2",
                                  "pp2-tight-reuse"])
def test_iterations_with_contexts_are_applied_without_events(case, monkeypatch, pure_replica):
    """Not only the group's iterations: one with a context (a request starting, its first token)
    that ends before the next event is applied ahead of its event too (a micro-batch's results,
    with pipeline parallelism), with a request starting in the next iteration at the loop's
    time; the outputs stay as one event per iteration gives them
    (:func:`test_spans_equal_one_event_per_iteration`)."""
    ahead = []
    commit = executor.Replica._commit

    def spy(self, step):
        if step.contexts:
            ahead.append(self.env.now < step.end)
        return commit(self, step)

    monkeypatch.setattr(executor.Replica, "_commit", spy)
    fast = _outputs(CASES[case])
    assert any(ahead) and not all(ahead)
    monkeypatch.setattr(executor.Replica, "spans", False)
    ahead.clear()
    slow = _outputs(CASES[case])
    assert not any(ahead)
    assert repr(fast) == repr(slow)


@pytest.mark.parametrize("case", ["pp2", "pp4-reuse-conversations"])
def test_pipeline_forms_no_empty_micro_batch(case, monkeypatch, pure_replica):
    """With every request in flight and no cohort free to run, the pipeline loop waits for a
    micro-batch instead of forming an empty one (and its outputs stay the reference's:
    :func:`test_executor_equals_the_plain_reference`)."""
    formed = []
    schedule = executor.Replica.schedule
    monkeypatch.setattr(executor.Replica, "schedule",
                        lambda self: formed.append(schedule(self)) or formed[-1])
    # (the loop forms a cohort's micro-batch itself when that cohort alone is ready)
    group_only = executor.Replica._group_only_step
    monkeypatch.setattr(executor.Replica, "_group_only_step",
                        lambda self, co: formed.append(group_only(self, co)) or formed[-1])
    _outputs(CASES[case])
    assert len(formed) > 100
    assert not any(step.empty for step in formed)


def _landed(start: float, last: float, target: float) -> list:
    """Where a process at *start* that catches up with *last* and then waits for *target*
    (as the executor's loop does) lands."""
    import simpy

    env = simpy.Environment()
    landed = []

    def proc():
        yield env.timeout(start)
        yield from executor.catch_up(env, last, target)
        yield env.timeout(target - env.now)
        landed.append(env.now)

    env.process(proc())
    env.run()
    return landed


def test_catch_up_lands_where_one_event_per_iteration_does():
    """A delay from the last event cannot always land on an iteration's end (the sum rounds to
    even); the process then wakes near the last iteration applied first."""
    start, last, target = 0.23443437273772252, 0.4923538779539137, 0.4988036286279988
    assert start + (target - start) != target          # the case: one delay cannot land there
    assert _landed(start, last, target) == [target]


def test_catch_up_before_an_idle_wait_never_passes_the_last_iteration():
    """Before idling the loop catches up with its last iteration's end (*last* = *target*);
    a delay whose sum rounds above it would leave the process past it, and the wait for the
    rest negative (a mixed configuration, seed 162, stopped with "Negative delay")."""
    start, target = 0.06588936028676833, 0.20623152633144867
    assert start + (target - start) > target           # the case: one delay passes it
    assert _landed(start, target, target) == [target]
    assert eq_reference(_mixed_case(162))


def eq_reference(cfg) -> bool:
    """Whether the executor's outputs of *cfg* equal the plain reference's."""
    from unittest import mock

    fast = _outputs(cfg)
    with mock.patch.object(plugin, "Replica", trtllm_reference_executor.Replica):
        slow = _outputs(cfg)
    return all(repr(a) == repr(b) for a, b in zip(fast, slow))
