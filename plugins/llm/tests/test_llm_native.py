"""The compiled twins (``labsim_llm.native``) behave exactly as the pure-Python modules.

The KV block pool is driven through the same random prefix-sharing programs as the pure
one, step by step, and every answer and every piece of observable state must agree; whole
simulations give byte-identical outputs either way. CI builds the twins and sets
``LABSIM_REQUIRE_NATIVE=1``, so these tests run there; elsewhere they skip when no twin was
built (no C compiler, or ``LABSIM_PURE_PYTHON=1`` at install time).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import subprocess
import sys
from itertools import accumulate

import labsim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim import native as labsim_native
from labsim.testing import exact_bits, outputs_compiled_and_pure
from labsim_llm import native
from labsim_llm import request as request_module
from labsim_llm.engine import kv_cache, step_runs

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"


def _twin():
    try:
        module = __import__("labsim_llm.native.kv_cache", fromlist=["BlockPool"])
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("labsim_llm's compiled twins are not built here")
    return module


def test_the_engine_runs_the_compiled_pool_where_it_was_built():
    status = native.status()
    if REQUIRED:
        assert status == {name: "compiled" for name in native.MODULES}
    if status["kv_cache"] == "compiled":
        assert kv_cache.BlockPool is _twin().BlockPool
        assert kv_cache.block_ids is _twin().block_ids
        assert kv_cache.PURE["BlockPool"].__module__ == "labsim_llm.engine.kv_cache"
    else:
        assert kv_cache.BlockPool is kv_cache.PURE["BlockPool"]


def test_a_twin_built_from_other_source_is_not_used(tmp_path, monkeypatch):
    _twin()
    monkeypatch.delenv("LABSIM_NATIVE", raising=False)
    edited = tmp_path / "kv_cache.py"
    edited.write_bytes(open(kv_cache.__file__, "rb").read() + b"\n# edited\n")
    assert labsim_native.twin("labsim_llm.native.kv_cache", str(edited)) is None
    assert native.status()["kv_cache"] == "pure Python (stale: source changed)"
    assert labsim_native.twin("labsim_llm.native.kv_cache", kv_cache.__file__) is not None
    assert native.status()["kv_cache"] == "compiled"


def test_labsim_native_0_runs_pure_python():
    _twin()
    code = ("import json; from labsim_llm import native; from labsim_llm.engine import kv_cache;"
            "print(json.dumps([native.status(), kv_cache.BlockPool.__module__]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "LABSIM_NATIVE": "0"})
    status, module = json.loads(out.stdout)
    assert status == {name: "pure Python (LABSIM_NATIVE=0)" for name in native.MODULES}
    assert module == "labsim_llm.engine.kv_cache"


class _Held:
    """One request's blocks in both pools."""

    def __init__(self, keys, hits, held, deferred):
        self.keys, self.held, self.n_reg = keys, held, hits
        self.deferred = deferred                   # (pure record, twin record) or None
        self.hashed = [list(keys[:hits]), list(keys[:hits])]


def _run_program(seed: int, steps: int) -> dict:
    """Drive a pure pool and a compiled one through one random program in lockstep; every
    answer and the observable state after every step must agree. Returns what it did."""
    twin = _twin()
    rng = random.Random(seed)
    cap, bs = rng.randint(4, 96), rng.choice([2, 4, 8, 16])
    caching = rng.random() < 0.9
    pools = (kv_cache.PURE["BlockPool"](cap, bs, caching), twin.BlockPool(cap, bs, caching))
    held: list[_Held] = []
    did = {"deferred": 0, "freed": 0, "evictions": 0}
    for _ in range(steps):
        r = rng.random()
        if r < 0.4 or not held:
            # few contents, so identical prompts and shared prefixes are common
            segs = tuple((rng.randint(0, 3), rng.choice([bs, 2 * bs, rng.randint(1, 5 * bs)]))
                         for _ in range(rng.randint(1, 3)))
            keys = kv_cache.PURE["block_ids"](segs, bs)
            assert list(keys) == list(twin.block_ids(segs, bs))
            assert list(kv_cache.PURE["block_keys"](segs, bs)) == list(twin.block_keys(segs, bs))
            limit = rng.choice([len(keys), max(len(keys) - 1, 0)])
            hit = {p.match(keys, limit) for p in pools}
            assert len(hit) == 1
            hit = hit.pop()
            evictable = {p.evictable(keys[:hit]) for p in pools}
            assert len(evictable) == 1
            need = len(keys) - hit + rng.randint(0, 3)
            if need + evictable.pop() > pools[0].num_free:
                continue
            h = _Held(keys, hit, hit + need, None)
            records = []
            for pool, hashed in zip(pools, h.hashed):
                pool.touch(keys[:hit])
                pool.allocate(need)
                records.append(pool.defer(keys, hashed) if not hit else None)
            assert (records[0] is None) == (records[1] is None)
            h.deferred = tuple(records) if records[0] is not None else None
            did["deferred"] += h.deferred is not None
            held.append(h)
            if rng.random() < 0.5:
                _register(pools, h, len(keys))
        elif r < 0.7:                                            # a chunk of prefill
            h = rng.choice(held)
            if h.n_reg < len(h.keys):
                _register(pools, h, rng.randint(h.n_reg + 1, len(h.keys)))
        elif r < 0.8:                                            # a lookup by someone else
            h = rng.choice(held)
            assert len({p.match(h.keys, len(h.keys)) for p in pools}) == 1
        else:
            h = held.pop(rng.randrange(len(held)))
            preempt = rng.random() < 0.3
            did["freed"] += 1
            for i, pool in enumerate(pools):
                d = h.deferred[i] if h.deferred else None
                if preempt and d is not None:
                    pool.materialize(d)
                if d is not None and d.state == 0:
                    pool.free_deferred(d, h.held - d.n)
                else:
                    pool.free(h.hashed[i], h.held - len(h.hashed[i]))
        for pool in pools:
            pool.check()
        a, b = pools
        assert (a.num_free, a.num_used, a.num_cached, a.evictions) == \
            (b.num_free, b.num_used, b.num_cached, b.evictions)
        assert a.free_order() == b.free_order()
        assert h.hashed[0] == h.hashed[1]
    did["evictions"] = pools[0].evictions
    return did


def _register(pools, h, full):
    for i, pool in enumerate(pools):
        d = h.deferred[i] if h.deferred else None
        if d is not None and d.state == 0:
            d.n = full
        else:
            h.hashed[i].extend(pool.register_many(h.keys[h.n_reg:full]))
    h.n_reg = full


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 300))
def test_compiled_pool_answers_as_the_pure_one(seed, steps):
    _run_program(seed, steps)


def test_the_programs_reach_deferral_freeing_and_eviction():
    did = [_run_program(seed, 400) for seed in range(12)]
    assert all(sum(d[k] for d in did) > 0 for k in ("deferred", "freed", "evictions"))


@pytest.mark.parametrize("example", ["vllm_prefix_cache_conversations.yaml",
                                     "trtllm_chat_llama8b_h100.yaml"])
def test_a_simulation_is_byte_identical_in_pure_python(example, tmp_path):
    """A shipped example (vLLM with prefix caching and conversations; TensorRT-LLM) run by
    ``labsim run`` with the compiled pool and again with ``LABSIM_NATIVE=0``: the same files."""
    _twin()
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", example)
    outputs = outputs_compiled_and_pure(path, tmp_path)
    assert outputs["1"].keys() == outputs["0"].keys() and "requests.csv" in outputs["1"]
    assert outputs["1"] == outputs["0"]


def test_the_compiled_pool_takes_any_integer_the_pure_one_takes():
    """numpy integers (a plugin's block counts often are) work in both, with the same state."""
    import numpy as np

    twin = _twin()
    states = []
    for cls in (kv_cache.PURE["BlockPool"], twin.BlockPool):
        pool = cls(np.int64(12), np.int64(4), 1)
        pool.allocate(np.int64(5))
        pool.free([], np.int64(2))
        rec = pool.defer(list(kv_cache.PURE["block_ids"](((7, 8),), 4)), [])
        pool.allocate(np.int32(2))
        pool.free_deferred(rec, np.int64(2))
        pool.check()
        states.append((pool.capacity, pool.block_size, pool.enable_caching, pool.num_free,
                       type(pool.num_free), pool.free_order()))
    assert states[0] == states[1]


finite = st.floats(-1e6, 1e6, allow_nan=False)
seconds = st.floats(0.0, 10.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(start=st.one_of(st.just(0), seconds), gaps=st.lists(seconds, max_size=90),
       held=st.integers(0, 10**6), per=st.integers(0, 64), prefix=st.lists(st.integers(0, 64),
                                                                            min_size=1, max_size=16),
       data=st.data())
def test_compiled_step_loops_give_the_same_bits(start, gaps, held, per, prefix, data):
    """The span loops of ``step_runs``, compiled and pure, on the same floats: equal bit for
    bit (a start at the int 0, as a SimPy clock begins, included)."""
    twin = _twin_of("step_runs")
    pure = step_runs.PURE
    bounds, t = [], start
    for g in gaps:
        t += g
        bounds.append(t)
    count = data.draw(st.integers(0, len(bounds)))
    prefix = [0, *prefix]
    args = (bounds, count, start, held, prefix, per)
    assert exact_bits(pure["gaps_and_block_seconds"](*args)) == exact_bits(twin.gaps_and_block_seconds(*args))
    attention = data.draw(st.lists(seconds, max_size=50))
    terms = data.draw(st.tuples(st.integers(1, 128), finite, finite, finite,
                                st.one_of(st.just(0), finite), st.one_of(st.just(0), finite)))
    for name in ("graph_step_prices", "eager_step_prices"):
        assert exact_bits(pure[name](attention, *terms)) == exact_bits(getattr(twin, name)(attention, *terms))


def _span_steps_by_definition(counts, phase, free, per, most):
    """A span's block limit from its definition: the blocks by phase (``prefix[r]``: what
    the steps 2 … r + 1 need), and the first step count *s* whose need, ``(s // bs) · per +
    prefix[s % bs]``, exceeds *free* (at most *most*), found by trying each in turn."""
    bs = len(counts)
    prefix = [0]
    for i in range(bs):
        prefix.append(prefix[-1] + counts[(phase + i) % bs])
    first = next((s for s in range(1, most) if (s // bs) * per + prefix[s % bs] > free), most)
    return first, prefix


@settings(max_examples=300, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=32).filter(any),
       free=st.integers(0, 5000), most=st.integers(2, 4096), data=st.data())
def test_span_block_limits_compiled_and_pure(counts, free, most, data):
    """How many steps a span's free KV blocks allow (``step_runs.span_blocks``), compiled and
    pure: the step count and blocks by phase its definition gives (each of the group's *per*
    members starts a block once a period, so *per* is the sum of *counts*), and the same
    answer from both for any *per*."""
    twin = _twin_of("step_runs")
    phase = data.draw(st.integers(0, len(counts) - 1))
    per = sum(counts)
    want = _span_steps_by_definition(counts, phase, free, per, most)
    assert step_runs.PURE["span_blocks"](counts, phase, free, per, most) == want
    assert twin.span_blocks(counts, phase, free, per, most) == want
    per += data.draw(st.integers(0, 8))
    assert twin.span_blocks(counts, phase, free, per, most) == step_runs.PURE["span_blocks"](
        counts, phase, free, per, most)


def _extend_ends_as_written(bounds, prices, t, j, k, least, horizon, chunk):
    """A span's step ends as ``FastForward._bounds`` extended them inline (running sums,
    the stop found by bisection)."""
    while True:
        n = min(k, max(least, j + chunk))
        chunk *= 2
        ends = list(accumulate(prices(j, n), initial=t))
        del ends[0]
        m = bisect.bisect_left(ends, horizon, max(0, least - j - 1)) + 1
        if m < len(ends):
            del ends[m:]
        bounds += ends
        j += len(ends)
        t = ends[-1]
        if j >= k or (j >= least and t >= horizon):
            return


@settings(max_examples=300, deadline=None)
@given(step_prices=st.lists(st.floats(1e-4, 0.1, allow_nan=False), min_size=1, max_size=400),
       start=st.one_of(st.just(0), seconds), data=st.data())
def test_span_step_ends_compiled_and_pure(step_prices, start, data):
    """A span's step ends extended a chunk of prices at a time (``step_runs.extend_ends``),
    compiled and pure, are what the span's bisection loop gave, bit for bit: as many, the
    same floats (from a SimPy clock's int 0 too)."""
    twin = _twin_of("step_runs")
    k = len(step_prices)
    done = data.draw(st.integers(0, k - 1))             # steps priced already
    prior = list(accumulate(step_prices[:done], initial=start))[1:]
    least = data.draw(st.integers(done + 1, k))
    horizon = start + data.draw(st.floats(0.0, 2.0 * sum(step_prices), allow_nan=False))
    chunk = data.draw(st.integers(2, 64))
    t = prior[-1] if prior else start
    calls = []

    def prices(j0, j1):
        calls.append((j0, j1))
        return step_prices[j0:j1]

    want = list(prior)
    _extend_ends_as_written(want, prices, t, done, k, least, horizon, chunk)
    want_calls, calls[:] = list(calls), []
    for extend in (step_runs.PURE["extend_ends"], twin.extend_ends):
        got = list(prior)
        extend(got, prices, t, done, k, least, horizon, chunk)
        assert exact_bits(got) == exact_bits(want) and calls == want_calls
        calls.clear()


def _twin_of(name):
    try:
        return __import__(f"labsim_llm.native.{name}", fromlist=["PURE"])
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("labsim_llm's compiled twins are not built here")


def _pricers(model, gpu, **kw):
    """The pure step pricer and its compiled twin's, built alike."""
    from labsim_llm.engine import step_cost

    return step_cost.PURE["StepPricer"](model, gpu, **kw), _twin_of("step_cost").StepPricer(model, gpu, **kw)


def test_the_engines_price_steps_with_the_compiled_pricer_where_it_was_built():
    from labsim_llm.engine import StepPricer, step_cost

    if native.status()["step_cost"] == "compiled":
        assert step_cost.StepPricer is _twin_of("step_cost").StepPricer is StepPricer
        assert step_cost.PURE["StepPricer"].__module__ == "labsim_llm.engine.step_cost"
    else:
        assert step_cost.StepPricer is step_cost.PURE["StepPricer"]


@pytest.mark.parametrize("model_name, tp, pp, graphs", [
    ("Llama-3.1-8B", 1, 1, True), ("Llama-3.1-8B", 2, 2, False), ("Llama-3.1-70B", 4, 1, True),
    ("Mixtral-8x7B", 2, 1, True), ("Qwen2.5-7B", 1, 2, True)])
def test_compiled_pricer_gives_the_pure_prices_bit_for_bit(model_name, tp, pp, graphs):
    """Every entry point of the step pricer, compiled and pure, on random steps: the same
    values of the same types (an ``int`` byte count stays an ``int``)."""
    from labsim_llm.engine import capture_sizes
    from labsim_llm.models import builtin_models

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return (0.5e-6 if algorithm == "custom_ar" else 1e-6) + nbytes / 1e11

    model = builtin_models()[model_name]
    gpu = labsim.device("H100-SXM")
    sizes = capture_sizes(256, 8192) if graphs else []
    pure, twin = _pricers(model, gpu, tp=tp, pp=pp, graph_sizes=sizes, collective=collective)
    rng = random.Random(f"{model_name}{tp}{pp}{graphs}")
    for _ in range(200):
        b = rng.choice([1, 2, 3, 9, 64, 255, 256, 257, 600])
        ctx = b * rng.randint(1, 4000) + rng.randint(0, b)
        chunks = tuple((rng.randint(1, 2048), rng.choice([0, 0, rng.randint(1, 8192)]))
                       for _ in range(rng.choice([1, 1, 2, 3])))
        nd = rng.choice([0, 0, b])
        count = rng.randint(1, 40)
        for name, args in (("step_time", (chunks, nd, ctx if nd else 0)), ("step_time", ((), b, ctx)),
                           ("work", (chunks, nd, ctx if nd else 0)), ("work", ((), b, ctx)),
                           ("decode_work", (b, ctx)), ("decode_work_terms", (b,)),
                           ("decode_work_sum", (b, ctx, b, count)), ("weights_read", (b,)),
                           ("dense_time", (b,)), ("head_time", (b,))):
            assert exact_bits(getattr(twin, name)(*args)) == exact_bits(getattr(pure, name)(*args)), (name, args)
        assert exact_bits(twin.decode_step_fn(b)(ctx)) == exact_bits(pure.decode_step_fn(b)(ctx))
        assert exact_bits(twin.decode_steps_fn(b, 1e-4, 2e-5)(ctx, count)) == exact_bits(pure.decode_steps_fn(b, 1e-4, 2e-5)(ctx, count))
        assert exact_bits(twin.decode_run_fn(b)(ctx, count)) == exact_bits(pure.decode_run_fn(b)(ctx, count))


def test_an_edited_step_loop_module_holds_back_the_compiled_pricer(monkeypatch):
    """The pricer's twin calls the step loops' compiled code: once ``step_runs.py`` changes,
    the pricer runs as pure Python too (``native.use_group_twin``) until the package is built
    again."""
    from labsim.testing import group_status_when_changed

    _twin_of("step_cost")
    status = group_status_when_changed(native, monkeypatch, edited="step_runs.py")
    namespace = {"__name__": "labsim_llm.engine.step_cost", "StepPricer": "pure"}
    labsim_native.use_group_twin("labsim_llm", native.MODULES, "step_cost", namespace, ["StepPricer"])
    assert namespace["StepPricer"] == "pure"
    assert status["step_runs"] == "pure Python (stale: source changed)"
    assert status["step_cost"] == "pure Python (its group's step_runs not current)"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_compiled_latency_bins_count_as_the_pure_ones(seed):
    """The gap histogram and the latency sample, compiled and pure, fed the same random
    values (gaps by every entry point, latencies past the exact limit, NaN among them): the
    same counts, totals and statistics, bit for bit."""
    from labsim_llm.engine import serving_metrics

    twin = _twin_of("serving_metrics")
    rng = random.Random(seed)
    hists = (serving_metrics.PURE["GapHistogram"](), twin.GapHistogram())
    samples = (serving_metrics.PURE["LatencySample"](), twin.LatencySample())
    for _ in range(rng.randint(1, 3000)):
        value = rng.choice([rng.uniform(1e-6, 0.2), 0.0123, rng.lognormvariate(-4, 2)])
        times = rng.choice([0, 1, 2, 7, 64, 129])
        kind = rng.randrange(7)
        tail = [rng.uniform(0, 0.1) for _ in range(rng.randint(0, 3))]
        for h in hists:
            if kind == 0:
                h.add_uniform(value, times, tail)
            elif kind == 1:
                h.add_repeated(value, times)
            elif kind == 2:
                h.add_repeated_each([value, value * 1.5], times)
            elif kind == 3:
                h.add_uniform_each([value, value / 3], [times, 1])
            else:
                h.add([value, *tail])
        ms = float("nan") if kind == 6 else value * 1e3
        for s in samples:
            if kind == 5:
                s.extend((ms, ms * 2, ms / 7))
            else:
                s.add(ms)
    assert exact_bits(list(hists[0].counts)) == exact_bits(list(hists[1].counts))
    assert exact_bits(hists[0].total) == exact_bits(hists[1].total) and hists[0].n == hists[1].n
    assert exact_bits(list(hists[0].stats([0.5, 0.99]).values())) == exact_bits(list(hists[1].stats([0.5, 0.99]).values()))
    assert samples[0].stats([0.5, 0.9, 0.99]) == samples[1].stats([0.5, 0.9, 0.99])


def test_compiled_frontend_delays_requests_as_the_pure_one():
    """The API server's delays, compiled and pure, bit for bit: before the engine (any prompt
    length, chat or not, over a client link) and after the first token."""
    import simpy
    from labsim_llm.engine import frontend
    from labsim_llm.request import Request

    twin = _twin_of("frontend")

    class _Link:
        def transfer_s(self, nbytes):
            return 2e-4 + nbytes * 8 / 25e9

    rng = random.Random(7)
    for chat, link, enabled in ((False, None, True), (True, _Link(), True), (False, _Link(), False)):
        handed = []
        for module in (frontend.PURE, vars(twin)):
            env = simpy.Environment()
            fe = module["Frontend"](env, enabled=enabled, chat=chat, link=link)
            times = []
            for i in range(50):
                tokens = rng.choice([0, 1, 17, 1024, 100_000])
                fe.submit(Request(i, 0.0, tokens, 4, 4, ((i, tokens),)), lambda r: times.append((r.request_id, env.now)))
            pending = len(fe.pending())
            env.run()
            handed.append((exact_bits([t for _, t in times]), [i for i, _ in times], pending,
                           exact_bits(fe.after_first_token_s), exact_bits(fe.whole_response_s(300))))
            rng = random.Random(7)
        assert handed[0] == handed[1]


def test_compiled_draws_make_the_pure_requests(llm_registry, monkeypatch):
    """The workloads' per-request draws (samplers, coins, profiles, conversations), compiled
    and pure: a client-profiles workload with system prompts, stop lengths, streaming odds and
    conversations sends the same requests (every client field) either way."""
    from labsim_llm.workloads import base, draws, profiles, trace
    from llm_fake_server import simulate

    _twin_of("draws")
    if native.status()["draws"] != "compiled":     # built, but not in use (LABSIM_NATIVE=0)
        pytest.skip(f"labsim_llm's draws run as {native.status()['draws']}")
    profile = {
        "profile_name": "chat", "system_prompt_tokens": 300, "num_system_prompts": 3,
        "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 50, "sigma": 20, "is_int": True},
        "max_output_tokens_dist_config": {"type": "Uniform", "low": 50, "high": 200, "is_int": True},
        "output_tokens_dist_config": {"type": "Exponential", "mean": 60},
        "conversational_probability": 0.5, "streaming_response_probability": 0.7,
    }
    workload = {"num_requests": 400, "request_rate": 20, "client_profiles": [profile]}

    def sent():
        _, servers = simulate(llm_registry, workload)
        return [(r.request_id, r.arrival_s.hex(), r.prompt_tokens, r.max_output_tokens, r.output_tokens,
                 r.segments, r.session_id, r.turn, r.streaming, r.profile, r.output_id)
                for r in servers["a"].seen]

    compiled = sent()
    assert profiles.Profile is _twin_of("draws").Profile
    for module in (base, profiles, trace):
        for name, pure in draws.PURE.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, pure)
    assert profiles.Profile is draws.PURE["Profile"]
    assert compiled == sent() and len({r[7] for r in compiled}) > 1


def test_the_compiled_metrics_take_numpy_numbers_as_the_pure_ones_do():
    """An engine plugin may hand the metrics numpy integers, floats and booleans
    (``metrics.step``, docs/writing_plugins.md): the compiled metrics take them as the pure
    ones do (their entry points declare no int, float or bool, which a compiled function would
    enforce), with the same sums and statistics."""
    import numpy as np
    from labsim.metrics import MetricsCollector
    from labsim_llm.engine import serving_metrics

    twin = _twin_of("serving_metrics")
    gpu = labsim.device("H100-SXM")
    i, f = np.int64, np.float64

    class Ctx:
        metrics = MetricsCollector([], {})

    answers = []
    for classes in (serving_metrics.PURE, vars(twin)):
        m = classes["ServingMetrics"](Ctx(), "f", "vllm", num_gpus=i(1), device=gpu, kv_capacity_blocks=i(100),
                                      record_steps=np.bool_(False), max_step_rows=i(0))
        m.step(i(0), f(0.1), f(0.02), i(1), i(5), i(0), i(5), i(5), i(0), i(3), f(1e9), i(10**8), f(0.06))
        m.step(i(0), f(0.12), f(0.02), i(2), i(5), i(0), i(5), i(5), i(0), i(3), f(1e9), i(10**8), f(0.06), f(0.01))
        h = classes["GapHistogram"]()
        h.add_uniform(f(0.01), i(3))
        h.add_uniform(f(0.01), i(3), [f(0.02)])
        h.add_repeated(f(0.02), i(2))
        h.add_repeated_each([f(0.03)], i(2))
        s = classes["LatencySample"]()
        s.add(f(12.5))
        answers.append(repr([m.busy_s, m.flops, m.bytes, m.num_steps, m.kv_peak, h.total, h.n, s.stats([0.5])]))
    assert answers[0] == answers[1]


def test_compiled_router_picks_as_the_pure_one():
    """The router, compiled and pure, sends a random stream of requests (fresh prompts, shared
    prefixes, conversations) to the same replicas under every policy, as their loads move."""
    import types

    from labsim_llm.engine import router

    twin = _twin_of("router")
    for policy in router.POLICIES:
        picks = []
        for module in (router.PURE, vars(twin)):
            rng = random.Random(3)
            reps = [types.SimpleNamespace(index=i, outstanding=0) for i in (2, 0, 3, 1)]
            r = module["Router"](policy, reps, max_affinity_entries=8)
            seen = []
            for i in range(300):
                req = types.SimpleNamespace(segments=((rng.randrange(12), 64), (i, 10)),
                                            session_id=rng.choice([-1, -1, rng.randrange(5)]))
                chosen = r.pick(req)
                chosen.outstanding += 1
                if rng.random() < 0.4:
                    rng.choice(reps).outstanding = max(0, rng.choice(reps).outstanding - 1)
                seen.append(chosen.index)
            picks.append(seen)
        assert picks[0] == picks[1], policy


def test_compiled_request_behaves_as_the_pure_one():
    """A request, compiled and pure: the same constructor (by position and by name, the
    defaults), values kept as given (an int time stays an int, a numpy integer stays one),
    the same repr, no other attributes, copied (and the one in use pickled) whole, equal only
    to itself."""
    import copy
    import inspect
    import pickle

    import numpy as np
    from labsim_llm import request

    twin = _twin_of("request")
    assert tuple(inspect.signature(request.PURE["Request"]).parameters) == request.FIELDS
    seen = []
    for cls in (request.PURE["Request"], twin.Request):
        r = cls(np.int64(3), 0, 12, 4, 4, ((7, 12),), profile="chat")
        assert type(r.request_id) is np.int64 and type(r.arrival_s) is int
        assert (r.status, r.reject_reason, r.first_token_s, r.finish_s, r.turn) == ("pending", "", None, None, 0)
        assert r.total_tokens == 16 and np.isnan(r.ttft_s) and np.isnan(r.e2e_s)
        r.first_token_s, r.finish_s, r.status = 0.5, 2, "finished"
        assert (r.ttft_s, r.e2e_s) == (0.5, 2)
        with pytest.raises(AttributeError):
            r.colour = "red"
        # (pickle finds a class by its module's name for it: the one in use there)
        kept = [copy.copy(r), copy.deepcopy(r)] + ([pickle.loads(pickle.dumps(r))] if cls is request.Request else [])
        for back in kept:
            assert type(back) is cls and repr(back) == repr(r) and back != r
        assert r == r
        named = cls(request_id=1, arrival_s=0.5, prompt_tokens=2, max_output_tokens=1,
                    output_tokens=1, segments=((1, 2),), replica=3)
        seen.append((repr(r), repr(named)))
    assert seen[0] == seen[1]
    assert seen[0][1].startswith("Request(request_id=1, arrival_s=0.5, prompt_tokens=2, ")
    assert seen[0][1].endswith("preemptions=0, replica=3)")


class _AdapterRequest(request_module.Request):
    """A plugin's request of its own (the request class in use: compiled where built), at
    module level so that pickle finds it: another constructor, a slot and a dict of its own."""

    __slots__ = ("adapter", "__dict__")

    def __init__(self, adapter, request_id, prompt_tokens):
        super().__init__(request_id, 0.0, prompt_tokens, 4, 4, ((7, prompt_tokens),))
        self.adapter = adapter


def test_a_subclassed_request_copies_and_pickles_with_its_own_state():
    """Copies and pickles of a subclass whose constructor takes other arguments: every field,
    the subclass's slot and its dict's attributes come back (the copy had called the
    constructor with the nineteen fields, a TypeError for such a subclass). Compiled base and
    pure alike."""
    import copy
    import pickle

    from labsim_llm import request

    bases = [request.PURE["Request"]]
    try:
        bases.append(_twin_of("request").Request)
    except pytest.skip.Exception:
        pass
    for base in bases:
        class Adapter(base):
            __slots__ = ("adapter", "__dict__")

            def __init__(self, adapter, request_id):
                super().__init__(request_id, 1.5, 12, 4, 4, ((7, 12),), replica=2)
                self.adapter = adapter

        r = Adapter("lora-a", 4)
        r.note, r.finish_s = "seen", 3.5
        for made in (copy.copy(r), copy.deepcopy(r)):
            assert type(made) is Adapter and made is not r
            assert [getattr(made, f) for f in request.FIELDS] == [getattr(r, f) for f in request.FIELDS]
            assert (made.adapter, made.note) == ("lora-a", "seen")
        plain = base(1, 0.5, 8, 2, 2, ((3, 8),))
        assert copy.copy(plain)._values() == plain._values() and not hasattr(copy.copy(plain), "note")
    back = pickle.loads(pickle.dumps(_AdapterRequest("lora-b", 9, 16)))
    assert (type(back), back.adapter, back.request_id, back.segments) == (_AdapterRequest, "lora-b", 9, ((7, 16),))


def test_block_ids_take_numpy_integers_as_ints():
    """A prompt whose length, content id or block size is a numpy integer gets the keys of the
    same prompt in ints (the packed keys' sums with numpy's integers had overflowed), pure
    and compiled, one segment and several."""
    import numpy as np

    cases = [(((5, 40),), 16), (((5, 40), (9, 70)), 16), (((5, 3),), 16)]
    spaces = [kv_cache.PURE]
    try:
        spaces.append(vars(_twin_of("kv_cache")))
    except pytest.skip.Exception:
        pass
    for space in spaces:
        for segments, size in cases:
            want = list(space["block_ids"](segments, size))
            for cast in range(1, 8):
                segs = tuple((np.int64(c) if cast & 1 else c, np.int32(n) if cast & 2 else n)
                             for c, n in segments)
                got = space["block_ids"](segs, np.int64(size) if cast & 4 else size)
                assert list(got) == want, (segments, cast)
            assert list(space["block_keys"](segments, np.int64(size), packed=True)) == want


def test_a_plugin_may_subclass_the_request():
    """A request class of a plugin's own, compiled base or pure: its fields, its constructor
    and the metrics' row of it are the base's, its extra attribute its own."""
    import types

    from labsim_llm import request
    from labsim_llm.engine import serving_metrics

    twin = _twin_of("request")
    for base in (request.PURE["Request"], twin.Request):
        class Tagged(base):
            __slots__ = ("adapter",)

            def __init__(self, *args, adapter="", **kwargs):
                super().__init__(*args, **kwargs)
                self.adapter = adapter

        r = Tagged(4, 1.5, 12, 4, 4, ((7, 12),), adapter="lora-a", replica=2)
        r.first_token_s, r.finish_s, r.status = 2.0, 3.5, "finished"
        assert (r.adapter, r.request_id, r.replica, r.e2e_s) == ("lora-a", 4, 2, 2.0)
        assert repr(r).startswith("Request(request_id=4, arrival_s=1.5, ")
        # (the metrics in use take the request class in use: compiled, only that one)
        in_use = [serving_metrics.ServingMetrics] if base is request.Request else []
        for metrics_class in [serving_metrics.PURE["ServingMetrics"], *in_use]:
            context = types.SimpleNamespace(metrics=types.SimpleNamespace(
                warm_up_s=0.0, config={}, table=lambda name, columns: None))
            row = metrics_class(context, "vllm", "serving", num_gpus=1, device=None)._row(r)
            assert row[:4] == [4, "vllm", 2, "finished"] and row[8] == 1.5 and row[9] != row[9]
            assert row[10:12] == [2.0, 3.5] and row[19] == 2000.0
