"""The fast paths of the vLLM engine give exactly what walking every request each step gives.

* the decode group (aggregate bookkeeping of decoding requests) against ``Replica.BULK = False``
  (vLLM's loop over every running request, every step): identical tables and summary;
* the KV block pool against a plain per-block LRU model;
* integer prefix keys against the tuple keys; the ITL histogram's shortcuts against ``add``;
* under pipeline parallelism, the span that lands quiet decode-only batches without an event
  each (:mod:`labsim_vllm.pipeline_span`) against one event per batch: identical tables and
  summary.
"""

import copy
import random
from collections import OrderedDict

import labsim
import numpy as np
import pytest
from labsim_llm.engine.kv_cache import BlockPool, block_ids, block_keys
from labsim_llm.engine.serving_metrics import GapHistogram
from labsim_vllm import pipeline_span, quiet_batches
from labsim_vllm.pipeline_span import PipelineSpan, delay_to
from labsim_vllm.scheduler import Replica

#: these tests patch and spy on the replica's classes, and compare its paths with one another:
#: on the pure classes (test_vllm_native.py holds the compiled ones to them)
pytestmark = pytest.mark.usefixtures("pure_replica")


def experiment(rate=25.0, duration=3.0, prompt=600, output=150, vllm=None, profile=None, seed=5):
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
        "frameworks_to_test": [{"name": "v", "type": "vllm",
                                "config": {"model": "Llama-3.1-8B", **(vllm or {})}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.9, 0.99], "warm_up_duration_s": 0.5},
    }


TIGHT = {"gpu_memory_utilization": 0.24, "max_model_len": 4096}
CONV = {"conversational_probability": 0.9, "system_prompt_tokens": 1024, "num_system_prompts": 2,
        "think_time_dist_config": {"type": "Exponential", "mean": 0.5}}

CASES = {
    "plain": experiment(),
    "plain-no-ff": experiment(vllm={"fast_forward": False}),
    "preemption": experiment(rate=200, duration=0.4, prompt=1500, output=600, vllm=TIGHT),
    "prefix-cache": experiment(rate=8, duration=5, prompt=300, profile=CONV, vllm={**TIGHT, "block_size": 8}),
    "no-chunking": experiment(rate=50, duration=2, prompt=900, output=200,
                              vllm={**TIGHT, "enable_chunked_prefill": False}),
    "budget-below-batch": experiment(rate=40, duration=3, prompt=300, output=100,
                                     vllm={"max_num_batched_tokens": 64, "max_num_seqs": 200,
                                           "max_model_len": 2048}),
    "few-seqs": experiment(rate=40, duration=3, prompt=300, output=100,
                           vllm={"max_num_seqs": 8, "block_size": 32}),
    "replicas": experiment(rate=40, duration=2, vllm={"num_replicas": 2, "router": "least_outstanding"}),
    # a closed loop: each finish sends the next request at its time (never landed ahead)
    "closed-loop": {**experiment(rate=200, output=60),
                    "workload": {**experiment(rate=200, output=60)["workload"], "concurrency": 6}},
    "cut-off": {**experiment(rate=30, duration=6, prompt=800, output=300, vllm=TIGHT),
                "simulation": {"max_simulation_time": 2.0, "random_seed": 5}},
    # vLLM V0: prompts in steps of their own, outputs one step late
    "v0": experiment(rate=60, duration=1.5, prompt=900, output=200,
                     vllm={**TIGHT, "engine_version": "v0"}),
    "v0-multi-step": experiment(rate=25, duration=3, vllm={"engine_version": "v0", "num_scheduler_steps": 8,
                                                           "max_model_len": 4096}),
    # async scheduling: steps formed one step ahead, arrivals on a busy engine a step later
    "async-preemption": experiment(rate=200, duration=0.4, prompt=1500, output=600,
                                   vllm={**TIGHT, "async_scheduling": True}),
    "async-prefix-cache": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                     vllm={**TIGHT, "block_size": 8, "async_scheduling": True}),
    # pipeline parallelism: batches of several engines in flight over one KV cache (v1) or split ones (v0)
    # (so little KV cache that an engine waits while the other holds every block)
    "pp2-shared-kv": experiment(rate=300, duration=0.6, prompt=1500, output=400,
                                vllm={"gpu_memory_utilization": 0.13, "max_model_len": 4096,
                                      "pipeline_parallel_size": 2}),
    "pp3-v0-caching": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                 vllm={**TIGHT, "engine_version": "v0", "pipeline_parallel_size": 3,
                                       "enable_prefix_caching": True}),
    "v0-caching-no-lag": experiment(rate=8, duration=5, prompt=300, profile=CONV,
                                    vllm={**TIGHT, "engine_version": "v0", "enable_prefix_caching": True,
                                          "async_output_processing": False}),
}


def _outputs(cfg):
    result = labsim.run(copy.deepcopy(cfg))
    frameworks = {**result.summary["frameworks"], "simulated_time_s": result.summary["simulated_time_s"]}
    steps = result.table("steps") if cfg["frameworks_to_test"][0]["config"].get("record_steps", True) else None
    return result.table("requests"), steps, frameworks


@pytest.mark.parametrize("case", sorted(CASES))
def test_group_path_equals_walking_every_request(case, monkeypatch):
    fast = _outputs(CASES[case])
    monkeypatch.setattr(Replica, "BULK", False)
    slow = _outputs(CASES[case])
    # repr: exact floats, and NaN (unfinished requests) equal to NaN
    assert repr(fast[0]) == repr(slow[0])      # requests, row for row
    assert repr(fast[1]) == repr(slow[1])      # steps
    assert repr(fast[2]) == repr(slow[2])      # summary, exactly (ITL mean included)
    assert len(fast[0]) > 10


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "plain-no-ff"))
def test_fast_forward_gives_the_requests_of_one_event_per_step(case):
    """Spans of decode steps (cut by an arrival at the step in progress, met when that step
    ends if it is the last one priced) leave every request row as stepping one by one does."""
    on, off = copy.deepcopy(CASES[case]), copy.deepcopy(CASES[case])
    on["frameworks_to_test"][0]["config"]["fast_forward"] = True
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    assert repr(labsim.run(on).table("requests")) == repr(labsim.run(off).table("requests"))


@pytest.mark.parametrize("weight", [0.0, 1.0])
@pytest.mark.parametrize("case", ["plain", "replicas", "cut-off"])
def test_how_far_a_span_prices_ahead_changes_nothing(case, weight, monkeypatch):
    """A span prices its steps at least as far as the next request is due at the mean gap
    between requests (GAP_WEIGHT: how that mean follows the latest gap); 0 prices only up to
    the next event, 1 as far as the latest gap: the request rows are those of one event per step."""
    from labsim_vllm import scheduler

    on, off = copy.deepcopy(CASES[case]), copy.deepcopy(CASES[case])
    on["frameworks_to_test"][0]["config"]["fast_forward"] = True
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    monkeypatch.setattr(scheduler, "GAP_WEIGHT", weight)
    assert repr(labsim.run(on).table("requests")) == repr(labsim.run(off).table("requests"))


def _replicas_after(cfg):
    captured = []
    original = Replica.start

    def start(self):
        captured.append(self)
        original(self)

    Replica.start = start
    try:
        labsim.run(copy.deepcopy(cfg))
    finally:
        Replica.start = original
    return captured


@pytest.mark.parametrize("case", ["preemption", "pp2-shared-kv"])
def test_replica_state_is_empty_when_drained(case):
    for replica in _replicas_after(CASES[case]):
        assert replica.outstanding == 0
        assert not replica._group and not replica._special and not replica._fresh
        assert not replica._fin and replica._nD == 0 and replica._S == 0
        assert sum(replica._cnt) == 0
        replica.pool.check()
        assert replica.pool.num_free == replica.pool.capacity


# -- pipeline parallelism: the span against one event per batch -------------------------------

def _pp(case, pp, **more):
    """*case* (an experiment of CASES, or one) over *pp* pipeline stages on a DGX H100, with *more*."""
    cfg = copy.deepcopy(CASES[case] if isinstance(case, str) else case)
    cfg["hardware_profile"]["topology"] = "dgx-h100"
    cfg["frameworks_to_test"][0]["config"].update(pipeline_parallel_size=pp, **more)
    return cfg


PP_CASES = {
    "pp2-plain": _pp("plain", 2),
    "pp3-plain": _pp("plain", 3),
    "pp4-preemption": _pp("preemption", 4),
    "pp2-preemption-caching": _pp("preemption", 2, enable_prefix_caching=True),
    "pp3-prefix-cache": _pp("prefix-cache", 3),
    "pp2-no-chunking": _pp("no-chunking", 2),
    "pp2-few-seqs": _pp("few-seqs", 2),
    "pp2-replicas": _pp("replicas", 2),
    "pp4-cut-off": _pp("cut-off", 4),
    # every request in by 1 s, decoding past the 2 s limit: nothing but the batches is due
    "pp2-cut-off-decoding": {**_pp("plain", 2), "simulation": {"max_simulation_time": 2.0, "random_seed": 5},
                             "workload": {"type": "client_profiles", "total_duration": 1.0, "client_profiles": [
                                 {**CASES["plain"]["workload"]["client_profiles"][0],
                                  "max_output_tokens_dist_config": {"type": "Constant", "value": 2000,
                                                                    "is_int": True}}]}},
    "pp2-shared-kv": CASES["pp2-shared-kv"],
    # answers of a token or few: requests finish in the batch that runs their prompt, and
    # their conversations go on
    "pp2-short-answers": _pp(experiment(rate=30, duration=3, prompt=300, output=3, profile=CONV), 2),
    "pp2-v0": _pp("v0", 2),
    "pp3-v0-caching": CASES["pp3-v0-caching"],
    "pp2-v0-no-lag": _pp("v0-caching-no-lag", 2),
}


@pytest.mark.parametrize("record_steps", [True, False])
@pytest.mark.parametrize("case", sorted(PP_CASES))
def test_pipeline_span_gives_the_outputs_of_one_event_per_batch(case, record_steps, monkeypatch):
    """Quiet decode-only batches landed ahead of the clock (or at their end by the span) and
    the others handed back to their engines leave requests, steps and summary as one SimPy
    event per batch does; and the span does land batches ahead. Without the steps table the
    span keeps the step sums of a run of landings in locals (the summary is the same)."""
    ahead = []
    original = PipelineSpan._run_ahead

    def run_ahead(self, peek):
        ahead.append(peek)
        return original(self, peek)

    monkeypatch.setattr(PipelineSpan, "_run_ahead", run_ahead)
    on, off = copy.deepcopy(PP_CASES[case]), copy.deepcopy(PP_CASES[case])
    for cfg, ff in ((on, True), (off, False)):
        cfg["frameworks_to_test"][0]["config"].update(fast_forward=ff, record_steps=record_steps)
    fast, slow = _outputs(on), _outputs(off)
    assert ahead                                # the span ran
    assert repr(fast[0]) == repr(slow[0])      # requests, row for row
    assert repr(fast[1]) == repr(slow[1])      # steps
    assert fast[2]["v"]["config"].pop("fast_forward") != slow[2]["v"]["config"].pop("fast_forward")
    assert repr(fast[2]) == repr(slow[2])      # summary, exactly (but the setting itself)
    assert len(fast[0]) > 10


@pytest.mark.parametrize("ahead", [1, 3, 64])
def test_how_far_the_pipeline_span_prices_ahead_changes_nothing(ahead, monkeypatch):
    """A batch whose context is not priced yet prices the steps after it too, up to the group's
    next finish and PRICED_AHEAD at most: the outputs are those of one event per batch
    however far that is."""
    monkeypatch.setattr(pipeline_span, "PRICED_AHEAD", ahead)
    on, off = copy.deepcopy(PP_CASES["pp2-plain"]), copy.deepcopy(PP_CASES["pp2-plain"])
    on["frameworks_to_test"][0]["config"]["fast_forward"] = True
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    fast, slow = _outputs(on), _outputs(off)
    assert repr(fast[0]) == repr(slow[0]) and repr(fast[1]) == repr(slow[1])
    fast[2]["v"]["config"].pop("fast_forward")
    slow[2]["v"]["config"].pop("fast_forward")
    assert repr(fast[2]) == repr(slow[2])


@pytest.mark.parametrize("case", ["pp2-plain", "pp4-preemption", "pp3-prefix-cache", "pp2-v0",
                                  "pp2-shared-kv", "pp2-replicas", "pp4-cut-off"])
def test_pipeline_span_lands_batches_that_are_not_quiet_at_their_end(case, monkeypatch):
    """Batches that are not quiet — prompts run, requests finish or wait, blocks run short —
    are landed by the span at their end, or ahead of the clock when nothing comes first and
    nobody finishes in them; the span then takes the engine loop's next turn: it dispatches
    the next batch, or wakes the loop to carry on (it idles; in "pp2-shared-kv" it waits
    while the other engine holds the blocks). The outputs are those of one event per batch."""
    landed = []
    ahead = []
    original = pipeline_span.SpanSteps.commit_and_dispatch

    def commit_and_dispatch(self, batch):
        kind = "group" if batch.group_only else "other"
        ahead.append(self.env.now < self.clock)
        if ahead[-1]:
            assert self.lands_unseen(batch.step)
        back = original(self, batch)
        landed.append((kind, "dispatched" if back is None else "loop" if back is False else "wait"))
        return back

    monkeypatch.setattr(pipeline_span.SpanSteps, "commit_and_dispatch", commit_and_dispatch)
    on, off = copy.deepcopy(PP_CASES[case]), copy.deepcopy(PP_CASES[case])
    on["frameworks_to_test"][0]["config"]["fast_forward"] = True
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    fast = _outputs(on)
    assert {"group", "other"} == {kind for kind, _ in landed}
    outcomes = {outcome for _, outcome in landed}
    assert "dispatched" in outcomes and ("loop" in outcomes or case == "pp4-cut-off")
    if case == "pp2-shared-kv":
        assert "wait" in outcomes
    assert True in ahead and False in ahead
    slow = _outputs(off)
    assert repr(fast[0]) == repr(slow[0]) and repr(fast[1]) == repr(slow[1])
    fast[2]["v"]["config"].pop("fast_forward")
    slow[2]["v"]["config"].pop("fast_forward")
    assert repr(fast[2]) == repr(slow[2])


@pytest.mark.parametrize("case", ["pp2-plain", "pp4-preemption", "pp2-shared-kv", "pp2-replicas"])
def test_a_group_batch_that_is_not_quiet_is_landed_without_the_walk(case, monkeypatch):
    """A batch of the decode group alone that is not quiet because a request waits (it
    arrived while the batch ran), the next step's blocks run short or members finish in it is
    landed by ``_land_group`` (its gaps and row, without :meth:`_commit`'s walk; the members
    that finish then leave as ``_after_step`` takes them): the outputs are those of one event
    per batch, and the reasons occur."""
    why = []
    original = pipeline_span.SpanSteps._land_group

    def land_group(self, batch, end):
        short = self._cnt[self.G % self.block_size] > self.pool.num_free
        why.append("finish" if self.G in self._fin else "waits" if self.waiting
                   else "blocks" if short else "other")
        return original(self, batch, end)

    monkeypatch.setattr(pipeline_span.SpanSteps, "_land_group", land_group)
    on, off = copy.deepcopy(PP_CASES[case]), copy.deepcopy(PP_CASES[case])
    on["frameworks_to_test"][0]["config"]["fast_forward"] = True
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    fast = _outputs(on)
    assert "waits" in why and "finish" in why
    if case == "pp2-shared-kv":
        assert "blocks" in why
    slow = _outputs(off)
    assert repr(fast[0]) == repr(slow[0]) and repr(fast[1]) == repr(slow[1])
    fast[2]["v"]["config"].pop("fast_forward")
    slow[2]["v"]["config"].pop("fast_forward")
    assert repr(fast[2]) == repr(slow[2])


@pytest.mark.parametrize("case", ["pp2-plain", "pp3-prefix-cache", "pp4-preemption", "pp2-replicas"])
def test_quiet_batches_landed_by_the_step_loop_kernel_as_one_by_one(case, monkeypatch):
    """Without a steps table, runs of quiet batches are landed by ``land_quiet_batches`` (as
    where the twins are compiled) on a copy of the engines' state: its prices filled in as the
    span prices them, the steps that start in the warm-up handed to the span's own loop. The
    outputs are those of that loop landing every batch, and of one event per batch."""
    answers = []
    original = pipeline_span.land_quiet_batches

    def land(run, lanes):
        answers.append(original(run, lanes))
        return answers[-1]

    monkeypatch.setattr(pipeline_span, "land_quiet_batches", land)
    monkeypatch.setattr(pipeline_span.PipelineSpan, "LANES", True)     # (pure Python too)
    cfg = copy.deepcopy(PP_CASES[case])
    cfg["frameworks_to_test"][0]["config"].update(fast_forward=True, record_steps=False)
    lanes = _outputs(cfg)
    assert {quiet_batches.LANES_STOP, quiet_batches.PRICE_MISSING, quiet_batches.LAND_ELSEWHERE} <= set(answers)
    monkeypatch.setattr(pipeline_span.PipelineSpan, "_run_ahead_lanes",
                        lambda self, horizon: self._run_ahead_each(horizon, self._batches[0].due))
    answers.clear()
    each = _outputs(cfg)
    assert not answers
    cfg["frameworks_to_test"][0]["config"]["fast_forward"] = False
    slow = _outputs(cfg)
    for fast in (lanes, each):
        assert repr(fast[0]) == repr(slow[0]) and repr(fast[1]) == repr(slow[1])
        fast[2]["v"]["config"].pop("fast_forward")
    slow[2]["v"]["config"].pop("fast_forward")
    assert repr(lanes[2]) == repr(slow[2]) and repr(each[2]) == repr(slow[2])


def test_pipeline_span_lands_most_batches_without_an_event_of_their_own(monkeypatch):
    """The point of the span: far fewer SimPy events than batches."""
    import simpy

    events = []
    original = simpy.Environment.step

    def step(self):
        events.append(1)
        return original(self)

    monkeypatch.setattr(simpy.Environment, "step", step)
    cfg = _pp("plain", 2)
    cfg["workload"]["client_profiles"][0]["request_rate"] = 4.0
    cfg["workload"]["total_duration"] = 10.0
    cfg["frameworks_to_test"][0]["config"]["fast_forward"] = True
    result = labsim.run(cfg)
    batches = result.summary["frameworks"]["v"]["gpu"]["steps"]
    fast = len(events)
    events.clear()
    cfg["frameworks_to_test"][0]["config"]["fast_forward"] = False
    labsim.run(cfg)
    assert fast < 0.5 * len(events) and len(events) > batches


def test_a_span_wakes_exactly_at_a_batch_end_even_when_no_delay_from_now_reaches_it():
    """``now + (t − now)`` can miss *t* by a rounding: the delay found lands on it exactly,
    or there is none (then the span sleeps half way first, from where one does)."""
    rng = random.Random(11)
    for _ in range(20000):
        now = rng.uniform(0, 10) * 10 ** rng.randint(-3, 3)
        t = now + rng.uniform(0, 3) * 10 ** rng.randint(-6, 3)
        d = delay_to(now, t)
        if d is None:
            half = now + (t - now) / 2
            assert half < t and half + delay_to(half, t) == t
        else:
            assert now + d == t
    assert delay_to(0.23053122418845481, 0.49465328787574486) is None
    assert pipeline_span.delay_to(1.0, 1.0) == 0.0


# -- the block pool against a per-block model ------------------------------------------------


class ReferencePool:
    """The LRU block pool written plainly: every free block in one ordered queue."""

    def __init__(self, capacity):
        self.refs = {}
        self.queue = OrderedDict()      # ("anon", n) or ("key", key) → None, in free order
        self.anon = 0
        for i in range(capacity):
            self.queue[("anon", i)] = None
        self.anon_next = capacity
        self.evictions = 0

    @property
    def num_free(self):
        return len(self.queue)

    def match(self, keys, max_blocks):
        n = 0
        for key in keys:
            if n >= max_blocks or key not in self.refs:
                break
            n += 1
        return n

    def evictable(self, keys):
        return sum(1 for k in keys if ("key", k) in self.queue)

    def touch(self, keys):
        for key in keys:
            if self.refs[key] == 0:
                del self.queue[("key", key)]
            self.refs[key] += 1

    def register(self, key):
        if key in self.refs:
            return False
        self.refs[key] = 1
        return True

    def allocate(self, n):
        for _ in range(n):
            (kind, what), _ = self.queue.popitem(last=False)
            if kind == "key":
                del self.refs[what]
                self.evictions += 1

    def free(self, keys, n_anon):
        for _ in range(n_anon):
            self.queue[("anon", self.anon_next)] = None
            self.anon_next += 1
        for key in reversed(keys):
            self.refs[key] -= 1
            if self.refs[key] == 0:
                self.queue[("key", key)] = None

    def free_order(self):
        return [what for kind, what in self.queue if kind == "key"]


@pytest.mark.parametrize("seed", range(40))
def test_block_pool_matches_per_block_lru(seed):
    rng = random.Random(seed)
    cap = rng.randint(4, 80)
    bs = rng.choice([4, 8])
    pool, ref = BlockPool(cap, bs), ReferencePool(cap)
    held = []
    for _ in range(250):
        if rng.random() < 0.55 or not held:
            segs = tuple((rng.randint(0, 5), rng.randint(1, 6 * bs)) for _ in range(rng.randint(1, 3)))
            keys = block_ids(segs, bs)
            hit = pool.match(keys, len(keys))
            assert hit == ref.match(keys, len(keys))
            ev = pool.evictable(keys[:hit])
            assert ev == ref.evictable(keys[:hit])
            need = len(keys) - hit + rng.randint(0, 3)
            if need + ev > pool.num_free:
                continue
            pool.touch(keys[:hit])
            ref.touch(keys[:hit])
            pool.allocate(need)
            ref.allocate(need)
            mine = list(keys[:hit])
            # registered in one or two goes, as chunked prefill does
            cut = rng.randint(hit, len(keys))
            got = pool.register_many(keys[hit:cut]) + pool.register_many(keys[cut:])
            assert got == [k for k in keys[hit:] if ref.register(k)]
            mine += got
            held.append((mine, need - len(got)))
        else:
            keys, anon = held.pop(rng.randrange(len(held)))
            pool.free(keys, anon)
            ref.free(keys, anon)
        pool.check()
        assert pool.num_free == ref.num_free
        assert pool.evictions == ref.evictions
        assert pool._refs == ref.refs
        assert pool.free_order() == ref.free_order()


def test_block_ids_equal_exactly_when_block_keys_do():
    rng = random.Random(7)
    for _ in range(100):
        prompts = [tuple((rng.choice([0, 1, 2, 3, 2**64 + 1, -2]), rng.randint(1, 60))
                         for _ in range(rng.randint(1, 3))) for _ in range(5)]
        tuples = [k for p in prompts for k in block_keys(p, 8)]
        ints = [k for p in prompts for k in block_ids(p, 8)]
        assert len(tuples) == len(ints)
        for i in range(len(tuples)):
            for j in range(i):
                assert (tuples[i] == tuples[j]) == (ints[i] == ints[j])
        for limit in range(4):
            assert [len(block_keys(p, 8, limit)) for p in prompts] == \
                   [len(block_ids(p, 8, limit)) for p in prompts]


# -- the ITL histogram -----------------------------------------------------------------------


def test_histogram_shortcuts_equal_add():
    rng = np.random.default_rng(3)
    h = GapHistogram()
    edges = h.LOW * h.RATIO ** np.arange(0, h.nbins, 13, dtype=float)
    values = np.concatenate([10 ** rng.uniform(-7, 4.5, 20000), edges, np.nextafter(edges, 0),
                             np.nextafter(edges, 1), [0.0, h.LOW, 1e9]])
    assert [h._bin1(float(v)) for v in values] == h._bin(values).tolist()
    a, b = GapHistogram(), GapHistogram()
    for _ in range(200):
        value = float(10 ** rng.uniform(-4, 0))
        times = int(rng.integers(0, 400))
        tail = list(10 ** rng.uniform(-4, 0, int(rng.integers(0, 3))))
        a.add([value] * times + tail)
        b.add_uniform(value, times, tail)
    assert (a.counts == b.counts).all() and a.total == b.total and a.n == b.n


def test_interleaved_uniform_gaps_added_at_once_equal_one_call_each():
    """``add_uniform_each`` (the PP span's gaps of several groups, binned when a run of
    landings ends) gives the bins, total and count of ``add_uniform`` once per pair, in order:
    streams of every size (none, few, one pairwise block, several), values near bin edges and
    values repeating the latest bin."""
    rng = np.random.default_rng(11)
    h = GapHistogram()
    edges = [float(h.LOW * h.RATIO ** b) for b in range(5000, 5010)]
    for _ in range(50):
        n = int(rng.integers(0, 40))
        values = [float(v) for v in 10 ** rng.uniform(-3, -1.5, n)]
        values += [v for e in edges[:int(rng.integers(0, 3))] for v in (e, np.nextafter(e, 0))]
        values += [values[-1]] * int(rng.integers(0, 4)) if values else []
        pair = [float(v) for v in 10 ** rng.uniform(-3, -1.5, 2)]       # two groups alternating
        values += [pair[i % 2] * (1 + 1e-9 * i) for i in range(int(rng.integers(0, 12)))]
        times = [int(t) for t in rng.choice([0, 1, 3, 7, 8, 13, 31, 32, 57, 128, 129, 400],
                                            len(values))]
        a, b = GapHistogram(), GapHistogram()
        a.total = b.total = float(rng.uniform(0, 10))
        for v, t in zip(values, times):
            a.add_uniform(v, t)
        b.add_uniform_each(values, times)
        assert (a.counts == b.counts).all() and a.total == b.total and a.n == b.n


def test_a_decode_steps_gaps_total_as_numpy_sums_them():
    """``add_uniform(v, n)`` (one gap seen by n streams: the usual decode step, its one-block
    sum inlined) adds to the total what numpy's pairwise sum of n copies gives, bit for bit."""
    rng = np.random.default_rng(7)
    for times in [*range(0, 300), 1000, 4097]:
        value = float(10 ** rng.uniform(-5, 1))
        h = GapHistogram()
        h.total = float(rng.uniform(0, 100))
        want = h.total + float(np.full(times, value).sum())
        h.add_uniform(value, times)
        assert h.total == want and h.n == times


def test_a_gpu_not_alone_runs_step_by_step_with_the_same_results(monkeypatch):
    """Fast-forward asks ``gpu_is_alone`` before skipping steps; every step's GPU time then
    passes through ``gpu_work`` (one call per steps.csv row, their seconds the rows' sum): the
    replica shell's GPU seam (``labsim_llm.engine.replica``)."""
    fast = labsim.run(copy.deepcopy(CASES["plain"]))
    assert max(r["num_steps"] for r in fast.table("steps")) > 1          # spans were taken
    slow = labsim.run(copy.deepcopy(CASES["plain-no-ff"]))
    seconds = []
    original = Replica.gpu_work

    def gpu_work(self, s, step=None):
        seconds.append(s)
        return original(self, s, step)

    monkeypatch.setattr(Replica, "gpu_is_alone", lambda self: False)
    monkeypatch.setattr(Replica, "gpu_work", gpu_work)
    shared = labsim.run(copy.deepcopy(CASES["plain"]))
    steps = shared.table("steps")
    assert all(r["num_steps"] == 1 for r in steps)
    assert repr(shared.table("requests")) == repr(slow.table("requests")) == repr(fast.table("requests"))
    assert repr(steps) == repr(slow.table("steps"))
    assert len(seconds) == len(steps)
    assert abs(sum(seconds) - sum(r["duration_s"] for r in steps)) < 1e-6


def test_steps_that_end_before_anything_else_land_without_an_event(monkeypatch):
    """With fast-forward, a step that ends before the next scheduled event (and within the
    run's limit) and reports nothing is landed at once, ahead of the clock, without its GPU
    timeout: fewer ``gpu_work`` calls than steps, the same tables as one event per step (the
    equivalence tests above hold every case, cut-off and conversations among them)."""
    calls = []
    original = Replica.gpu_work

    def gpu_work(self, s, step=None):
        calls.append(step)
        return original(self, s, step)

    monkeypatch.setattr(Replica, "gpu_work", gpu_work)
    fast = labsim.run(copy.deepcopy(CASES["plain"]))
    general = [r for r in fast.table("steps") if r["num_steps"] == 1]
    waited = [s for s in calls if s is not None]           # a general step's own timeout
    assert 0 < len(waited) < 0.6 * len(general)
    calls.clear()
    slow = labsim.run(copy.deepcopy(CASES["plain-no-ff"]))
    assert len([s for s in calls if s is not None]) == len(slow.table("steps"))
    assert repr(fast.table("requests")) == repr(slow.table("requests"))


@pytest.mark.parametrize("case", ["plain", "replicas", "cut-off", "prefix-cache"])
def test_spans_that_end_before_anything_else_land_without_an_event(case, monkeypatch):
    """A fast-forward span whose last step ends before the next scheduled event (and within
    the run's limit), finishing nobody or only requests nobody acts on at their time, is
    landed at once, ahead of the clock: the request rows, the bill (from the time the last
    request left) and the run's end are those of one event per step."""
    from labsim_vllm.fast_forward import FastForward

    ahead = []
    original = FastForward._commit_span

    def commit_span(self, step, span, j, start, bounds):
        ahead.append(self.env.now < bounds[j - 1])
        return original(self, step, span, j, start, bounds)

    monkeypatch.setattr(FastForward, "_commit_span", commit_span)
    rows, _, fast = _outputs(CASES[case])
    if case != "prefix-cache":          # (conversations act on every finish: never landed ahead)
        assert True in ahead and False in ahead
    off = copy.deepcopy(CASES[case])
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    slow_rows, _, slow = _outputs(off)
    assert repr(rows) == repr(slow_rows)
    assert fast["simulated_time_s"] == slow["simulated_time_s"]
    assert fast["v"]["cost"] == slow["v"]["cost"]


@pytest.mark.parametrize("run_pricer", [True, False])
def test_a_span_prices_its_first_step_with_the_rest(run_pricer, monkeypatch):
    """A span's first step is priced with its others (the pricer's ``decode_run_fn``, or step
    by step where it has none), not by ``step_time`` between forming the step and taking the
    span: the request rows are those of one event per step, and every span starts where a
    step of the one-event-per-step run starts."""
    from labsim_llm.engine.step_cost import StepPricer
    from labsim_vllm.fast_forward import FastForward

    priced = [0]            # step_time calls for group-only steps
    formed = [0]            # ... when the latest step was formed
    between = []            # ... after the span's step was formed, at each span's start
    step_time, schedule, run_span = StepPricer.step_time, Replica.schedule, FastForward._run_span

    def counted_step_time(self, chunks, num_decodes=0, decode_context=0):
        if not chunks:
            priced[0] += 1
        return step_time(self, chunks, num_decodes, decode_context)

    def counted_schedule(self):
        step = schedule(self)
        formed[0] = priced[0]
        return step

    def counted_run_span(self, *args):
        between.append(priced[0] - formed[0])
        return run_span(self, *args)

    monkeypatch.setattr(StepPricer, "step_time", counted_step_time)
    monkeypatch.setattr(Replica, "schedule", counted_schedule)
    monkeypatch.setattr(FastForward, "_run_span", counted_run_span)
    if not run_pricer:
        monkeypatch.setattr(StepPricer, "decode_run_fn", lambda self, *args: None)
    rows, steps, _ = _outputs(CASES["plain"])
    spans = [r for r in steps if r["num_steps"] > 1]
    assert spans and len(between) >= len(spans)
    assert set(between) == {0}
    slow_rows, slow_steps, _ = _outputs(CASES["plain-no-ff"])
    assert repr(rows) == repr(slow_rows)
    starts = {r["start_s"] for r in slow_steps}
    assert all(r["start_s"] in starts for r in spans)


@pytest.mark.parametrize("case", ["plain", "prefix-cache"])
def test_a_span_committed_as_arrays_equals_the_loop(case, monkeypatch):
    """A span of LONG_SPAN steps or more is committed with numpy (its gaps and kv-seconds):
    every span so gives the tables and summary the plain loop gives."""
    from labsim_vllm import fast_forward

    looped = _outputs(CASES[case])
    monkeypatch.setattr(fast_forward, "LONG_SPAN", 2)
    arrays = _outputs(CASES[case])
    assert repr(arrays) == repr(looped)


def test_a_lone_engine_prices_no_further_ahead_while_its_api_server_holds_a_request(monkeypatch):
    """A span that woke before anything cut it prices only up to the next event while the
    engine's API server holds a request (its hand-over comes at an event of its own and would
    otherwise interrupt the wait): the request rows are still those of one event per step."""
    from labsim_vllm.fast_forward import FastForward

    seen = []
    original = FastForward._due_in

    def due_in(self):
        due = original(self)
        seen.append((bool(self.owner.frontend.pending()), due))
        return due

    monkeypatch.setattr(FastForward, "_due_in", due_in)
    rows = labsim.run(copy.deepcopy(CASES["plain"])).table("requests")
    assert any(held for held, _ in seen) and any(due > 0 for _, due in seen)
    assert all(due == 0.0 for held, due in seen if held)
    off = copy.deepcopy(CASES["plain"])
    off["frameworks_to_test"][0]["config"]["fast_forward"] = False
    assert repr(rows) == repr(labsim.run(off).table("requests"))


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_run_that_drains_ends_when_its_last_step_ends(replicas):
    """A run of a fixed number of requests ends when the last one leaves: the engine's last
    steps landed ahead of the clock still end where one event per step ends them (the engine
    waits for its clock before it idles), so the simulated time is the same."""
    exps = []
    for fast_forward in (True, False):
        exp = experiment(rate=30, vllm={"num_replicas": replicas, "router": "least_outstanding",
                                        "fast_forward": fast_forward})
        exp["workload"] = {k: v for k, v in exp["workload"].items() if k != "total_duration"}
        exp["workload"]["num_requests"] = 60
        exps.append(_outputs(exp))
    (fast_rows, _, fast), (slow_rows, _, slow) = exps
    assert fast["simulated_time_s"] == slow["simulated_time_s"]
    assert fast["simulated_time_s"] == pytest.approx(max(r["finish_s"] for r in fast_rows) - 3e-4)  # (API server)
