"""The pricer's fast paths equal the validated slow paths bit for bit."""

import random

import labsim
from labsim_gpus.kernels import DECODE_KERNELS
from labsim_llm.engine import GapHistogram, StepPricer, TpStepTraffic, capture_sizes
from labsim_llm.engine.step_cost import KERNELS_PER_STEP
from labsim_llm.models import builtin_models


class _NoFastPath:
    """The device without ``decode_attention_fn``: the pricer asks it call by call."""

    def __init__(self, gpu):
        self._gpu = gpu

    def __getattr__(self, name):
        if name == "decode_attention_fn":
            raise AttributeError(name)
        return getattr(self._gpu, name)


def _device(name: str):
    """The catalog GPU *name*; ``NAME+fa2``: priced with FlashAttention-2's own decode kernels
    (``kernels.DECODE_KERNELS``, as vLLM on Ampere)."""
    base, _, kernel = name.partition("+")
    gpu = labsim.device(base)
    flags = DECODE_KERNELS["flash-attention-2"]
    return gpu.copy(params=gpu.params.replace(**flags)) if kernel == "fa2" else gpu


def test_decode_fast_paths_equal_slow_paths():
    model = builtin_models()["Llama-3.1-8B"]
    rng = random.Random(3)
    # an engine's own TP traffic (its all-reduce, the logits' way, input broadcasts) too
    engine_traffic = TpStepTraffic("custom_ar", "gather", lambda tokens, rows, decode: (8 * tokens, 4 * rows))

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return (0.5e-6 if algorithm == "custom_ar" else 1e-6) + nbytes / 1e11

    for device, traffic in (("H100-SXM", None), ("A100-SXM4-80GB", None), ("L4", None),
                            ("H100-SXM", engine_traffic), ("A100-SXM4-80GB+fa2", None)):
        gpu = _device(device)
        # pp 1 (and tp 1: no broadcasts) takes the sums' shorter forms
        for graphs, tp, pp in ((capture_sizes(256, 8192), 2, 2), ([], 2, 2),
                               (capture_sizes(256, 8192), 1, 1), ([], 2, 1)):
            fast = StepPricer(model, gpu, tp=tp, pp=pp, graph_sizes=graphs, collective=collective,
                              traffic=traffic)
            slow = StepPricer(model, _NoFastPath(gpu), tp=tp, pp=pp, graph_sizes=graphs,
                              collective=collective, traffic=traffic)
            assert fast._decode_attn is not None and slow._decode_attn is None
            for _ in range(300):
                b = rng.choice([1, 2, 3, 9, 64, 255, 256, 257, 600])
                ctx = b * rng.randint(1, 9000) + rng.randint(0, b)
                gpu_attn = gpu.decode_attention_time_from_totals(
                    b, ctx, fast.heads, fast.kv_heads, fast.head_dim, fast.kv_dtype)
                assert fast.decode_attention(b, ctx) == gpu_attn * fast.layers_per_stage
                assert fast.step_time((), b, ctx) == slow.step_time((), b, ctx)
                assert fast.decode_step_fn(b)(ctx) == slow.step_time((), b, ctx)
                chunks = [(rng.randint(1, 2048), rng.randint(0, 4096))]
                assert fast.step_time(chunks, b, ctx) == slow.step_time(chunks, b, ctx)
                k = rng.randint(1, 39) if rng.random() < 0.5 else rng.randint(40, 300)   # a loop, arrays
                flops = nbytes = 0.0
                for i in range(k):
                    f, by = slow.work((), b, ctx + b * i)
                    flops += f
                    nbytes += by
                assert fast.decode_work_sum(b, ctx, b, k) == (flops, nbytes)


def _decode_work_as_written(p, b, ctx):
    """``StepPricer.decode_work`` as the formula reads, every term computed at each call."""
    n, k = p.lm_head
    flops = ((p.layer_weight_flops * b + 4.0 * (p.heads * p.head_dim) * ctx) * p.layers / p.pp
             + 2.0 * b * n * k / p.pp)
    nbytes = p.weights_read(b) + p.kv_token_bytes * ctx + p.kv_token_bytes * b
    return flops, nbytes


def test_decode_work_equals_its_formula():
    """decode_work keeps the terms that depend on the batch size alone, per batch size."""
    rng = random.Random(11)
    models = builtin_models()
    for name, pp in (("Llama-3.1-8B", 1), ("Llama-3.1-8B", 2), ("Mixtral-8x7B", 1)):
        if name not in models:
            continue
        p = StepPricer(models[name], labsim.device("H100-SXM"), tp=1, pp=pp, graph_sizes=[])
        for _ in range(400):
            b = rng.choice([1, 2, 7, 64, 255, 600])
            ctx = b * rng.randint(1, 9000) + rng.randint(0, b)
            assert p.decode_work(b, ctx) == _decode_work_as_written(p, b, ctx)
            assert p.work((), b, ctx) == _decode_work_as_written(p, b, ctx)


def test_add_uniform_equals_add_at_bin_edges():
    """add_uniform bins a value in plain Python, and counts it apart until ``counts`` is read."""
    h = GapHistogram()
    edges = [h.LOW * h.RATIO ** i for i in (0, 1, 100, 5000, 12000)]
    values = edges + [v * (1 + 1e-12) for v in edges] + [v * (1 - 1e-12) for v in edges]
    values += [0.0, 5e-7, 1e6, 0.0123, 0.0123]
    one, many = GapHistogram(), GapHistogram()
    for i, v in enumerate(values):
        one.add([v] * (i % 5 + 1))
        many.add_uniform(v, i % 5 + 1)
        if i % 7 == 0:
            assert (one.counts == many.counts).all()
    assert (one.counts == many.counts).all() and one.n == many.n and one.total == many.total


def test_a_gap_seen_by_8_to_31_streams_totals_as_numpy_sums_it():
    """``add_uniform(v, n)`` for 8 ≤ n < 32 works its one-block sum as one product (each of
    numpy's eight partial sums holds at most three copies of v): the total gains what numpy's
    pairwise sum of n copies gives, bit for bit, for any mantissa and scale (tiny, subnormal,
    huge, zero)."""
    import numpy as np

    rng = random.Random(13)
    values = [rng.uniform(1, 2) * 2.0 ** rng.randint(-1070, 1000) for _ in range(3000)]
    values += [0.0, 5e-324, 2.2e-308, 1.5 * 2.0 ** -1022, 1.0 + 2.0 ** -52, 0.1, 1e300]
    for value in values:
        for times in range(8, 32):
            h = GapHistogram()
            h.add_uniform(value, times)
            assert h.total == float(np.full(times, value).sum()), (value, times)


def test_a_run_of_decode_steps_priced_at_once_equals_step_by_step():
    """``decode_steps_fn`` and ``decode_run_fn`` (attention priced in one loop, its context
    split looked up once per KV block count) give each step's ``decode_step_fn`` price, across
    block boundaries, with and without CUDA graphs, split or not (small and large batches),
    with the engine's own TP traffic or not."""
    model = builtin_models()["Llama-3.1-8B"]
    rng = random.Random(7)
    engine_traffic = TpStepTraffic("custom_ar", "gather", lambda tokens, rows, decode: (8 * tokens, 4 * rows))

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return (0.5e-6 if algorithm == "custom_ar" else 1e-6) + nbytes / 1e11

    for device, traffic in (("A100-SXM4-80GB", None), ("L4", None), ("A100-SXM4-80GB", engine_traffic),
                            ("L4+fa2", None)):
        # pp 1 without broadcasts (tp 1) prices without the terms that change nothing
        for graphs, tp, pp in ((capture_sizes(256, 8192), 2, 2), ([], 2, 2),
                               (capture_sizes(256, 8192), 1, 1), ([], 1, 1), ([], 2, 1)):
            pricer = StepPricer(model, _device(device), tp=tp, pp=pp, graph_sizes=graphs,
                                collective=collective, traffic=traffic)
            for b in (1, 2, 5, 9, 64, 257, 600):
                for _ in range(4):
                    ctx = b * rng.randint(1, 3000) + rng.randint(0, b)
                    count = rng.randint(1, 700)
                    step = pricer.decode_step_fn(b)
                    assert pricer.decode_steps_fn(b)(ctx, count) == [step(ctx + b * i) for i in range(count)]
                    over, per = rng.uniform(0, 1e-3), rng.uniform(0, 1e-4) * b
                    assert (pricer.decode_steps_fn(b, over, per)(ctx, count)
                            == [step(ctx + b * i) + over + per for i in range(count)])
                    assert (pricer.decode_run_fn(b, over, per)(ctx, count)
                            == [step(ctx + b * i) + over + per for i in range(count)])
    slow = StepPricer(model, _NoFastPath(labsim.device("L4")))
    assert slow.decode_steps_fn(3) is None and slow.decode_run_fn(3) is None


def test_decode_prices_looked_up_equal_the_prices_worked_out(monkeypatch):
    """A run's prices come from a table of the prices found so far (by decode context): runs
    that overlap, start between, or reach past the ones before, and a table emptied when it
    would outgrow its slots, all give each step's ``decode_step_fn`` price. (On the pure
    pricer, whose table size and method this patches; test_llm_native.py holds the compiled
    one to it.)"""
    from labsim_llm.engine import step_cost

    monkeypatch.setattr(step_cost, "PRICE_TABLE_SLOTS", 5000)
    model = builtin_models()["Llama-3.1-8B"]
    pricer = step_cost.PURE["StepPricer"](model, labsim.device("A100-SXM4-80GB"), graph_sizes=capture_sizes(256, 8192))
    rng = random.Random(11)
    forgot = []
    forget = pricer._forget_prices
    monkeypatch.setattr(pricer, "_forget_prices", lambda: forgot.append(1) or forget())
    for _ in range(300):
        b = rng.choice([1, 2, 3])
        ctx, count = b * rng.randint(1, 1200) + rng.randint(0, b - 1), rng.randint(1, 200)
        step = pricer.decode_step_fn(b)
        assert pricer.decode_steps_fn(b, 1e-4, 2e-5)(ctx, count) == [step(ctx + b * i) + 1e-4 + 2e-5
                                                                       for i in range(count)]
    assert forgot and pricer._table_slots <= 5000


def test_add_repeated_each_in_runs_equals_add_repeated():
    """Consecutive steps' gaps (slowly growing, a few bins) are counted in the latest bin
    without a logarithm while strictly inside it: values within rounding of a bin edge, on
    it, and the ones around them still land where add_repeated puts them."""
    h = GapHistogram()
    edges = [h.LOW * h.RATIO ** i for i in (4000, 4001, 4002, 9000)]
    values = []
    for e in edges:
        values += [e * (1 + d) for d in (-3e-4, -1e-9, -1e-12, -1e-15, 0.0, 1e-15, 1e-12, 1e-9, 5e-4)]
    values += [0.0123 * (1 + 1e-5 * i) for i in range(300)]    # a run over ~3 bins
    rng = random.Random(11)
    one, many = GapHistogram(), GapHistogram()
    start = 0
    while start < len(values):
        n = rng.choice([1, 2, 5, 17, 40, 300])
        for v in values[start:start + n]:
            one.add_repeated(v, 3)
        many.add_repeated_each(values[start:start + n], 3)
        start += n
    assert one.total == many.total and one.n == many.n
    assert (one.counts == many.counts).all()


def test_add_repeated_each_equals_add_repeated():
    rng = random.Random(5)
    values = [rng.uniform(1e-7, 0.2) for _ in range(500)] + [1e-6, 1e-6 * 1.001 ** 100, 0.0]
    one, many = GapHistogram(), GapHistogram()
    for v in values:
        one.add_repeated(v, 7)
    many.add_repeated_each(values, 7)                   # as arrays
    for start in range(0, len(values), 9):               # in a loop
        many.add_repeated_each(values[start:start + 9], 7)
        for v in values[start:start + 9]:
            one.add_repeated(v, 7)
    assert one.total == many.total and one.n == many.n
    assert (one.counts == many.counts).all()


def test_the_gap_ledger_bins_and_sums_as_one_value_at_a_time(monkeypatch):
    """What waits in the ledger (decode steps' gaps of every stream, runs of them, sums of
    mixed gaps), settled a few entries at a time or when read, gives the counts numpy's
    binning of every value gives and the running total one value at a time gives, bit for
    bit: numpy's pairwise sum of n copies (1 to 300), a product per repeated gap, a sum per
    mixed step, in order."""
    import numpy as np
    from labsim_llm.engine import serving_metrics

    pure = serving_metrics.PURE["GapHistogram"]      # (whose LEDGER this patches)
    rng = random.Random(17)
    for ledger in (1, 3, 7, 4096):
        monkeypatch.setattr(pure, "LEDGER", ledger)
        h = pure()
        counts = np.zeros(h.nbins, dtype=np.int64)
        total, n = rng.uniform(0, 5), 0
        h.total = total
        for _ in range(400):
            value = rng.choice([rng.uniform(1e-6, 0.2), rng.uniform(0, 2e-6), 0.0123,
                                h.LOW * h.RATIO ** rng.randint(0, 9000)])
            times = rng.choice([1, 2, 3, 5, 7, 8, 9, 15, 24, 31, 32, 33, 64, 100, 127, 128, 129, 300])
            kind = rng.randrange(5)
            if kind == 0:
                h.add_uniform(value, times)
                np.add.at(counts, h._bin([value]), times)
                total += 0.0 + float(np.full(times, value).sum())
            elif kind == 1:
                tail = [rng.uniform(1e-5, 0.1) for _ in range(rng.randint(1, 4))]
                h.add_uniform(value, times, tail)
                values = np.array([value] * times + tail)
                np.add.at(counts, h._bin(values), 1)
                total += float(values.sum())
                n += len(tail)
            elif kind == 2:
                h.add_repeated(value, times)
                np.add.at(counts, h._bin([value]), times)
                total += value * times
            elif kind == 3:
                run = [value * (1 + 1e-4 * i) for i in range(rng.randint(1, 40))]
                h.add_repeated_each(run, times)
                np.add.at(counts, h._bin(run), times)
                for v in run:
                    total += v * times
                n += times * (len(run) - 1)
            else:
                values = [rng.uniform(1e-6, 0.1) for _ in range(rng.randint(1, 9))]
                h.add(values)
                np.add.at(counts, h._bin(values), 1)
                total += float(np.asarray(values).sum())
                n += len(values) - times
            n += times
            if rng.random() < 0.05:
                assert h.total == total and (h.counts == counts).all()
        assert h.total == total and h.n == n and (h.counts == counts).all(), ledger


def test_csv_format_row_equals_format_cell():
    import numpy as np
    from labsim.default_plugins.sinks import format_cell, format_row

    row = [None, True, False, 0, -5, 10**20, 1.5, float("nan"), float("inf"), -0.0, 1e-300,
           "a,b", "", np.float64(2.5), np.int64(3), np.float32(1.1), (1, 2)]
    assert format_row(row) == [format_cell(v) for v in row]


def test_decode_work_sum_equals_summing_work_step_by_step():
    """decode_work_sum sums a run's work in closed form when every term is a whole number and
    no sum passes 2**53 (then the loop's every operation is exact), else in a loop or as
    arrays: the loop's sums in each case, bit for bit (MoE weights fractional, pp not dividing
    the layers, runs too large for whole doubles)."""
    rng = random.Random(5)
    models = builtin_models()
    for name, tp, pp in (("Llama-3.1-8B", 1, 1), ("Llama-3.1-8B", 2, 2), ("Llama-3.1-8B", 1, 3),
                         ("Llama-3.1-70B", 1, 1), ("Mixtral-8x7B", 1, 1), ("Mixtral-8x7B", 2, 2)):
        p = StepPricer(models[name], labsim.device("H100-SXM"), tp=tp, pp=pp, graph_sizes=[])
        for _ in range(150):
            b = rng.choice([1, 2, 7, 9, 64, 255, 600, 1024])
            ctx = b * rng.randint(1, 9000) + rng.randint(0, b)
            k = rng.choice([0, 1, rng.randint(2, 39), rng.randint(40, 300), 2048])
            flops = nbytes = 0.0
            for i in range(k):
                f, by = p.work((), b, ctx + b * i)
                flops += f
                nbytes += by
            got = p.decode_work_sum(b, ctx, b, k)
            assert got == (flops, nbytes) and type(got[0]) is float and type(got[1]) is float
    # a whole-number run (Llama-3.1-8B) in closed form; a fractional term: step by step
    p = StepPricer(models["Llama-3.1-8B"], labsim.device("H100-SXM"), tp=1, pp=1, graph_sizes=[])
    assert p._decode_whole_terms(9) is not None
    p.weight_bytes += 0.5
    p._decode_ints.clear()
    p._decode_terms.clear()         # (the whole terms are decode_work_terms', kept per batch size)
    assert p._decode_whole_terms(9) is None
    flops = nbytes = 0.0
    for i in range(30):
        f, by = p.work((), 9, 5000 + 9 * i)
        flops += f
        nbytes += by
    assert p.decode_work_sum(9, 5000, 9, 30) == (flops, nbytes)


def _step_time_as_written(pricer, chunks, b, ctx):
    """StepPricer.step_time of a step with prompt chunks, every piece asked for in turn (the
    method before its one-chunk and memo look-ups)."""
    tokens = sum(n for n, _ in chunks) + b
    rows = len(chunks) + b
    graph = tokens <= pricer.max_graph
    gemm_tokens = pricer.padded(tokens) if graph else tokens
    stage = pricer.dense_time(gemm_tokens)
    stage += pricer.prefill_attention(chunks) + pricer.decode_attention(b, ctx)
    stage += pricer.broadcast_time(gemm_tokens, rows, False)
    gpu = stage * pricer.pp + pricer.head_time(rows) + pricer.pp_time(tokens)
    if graph:
        return gpu + pricer.launch * (2 * pricer.layers + KERNELS_PER_STEP)
    return max(gpu, pricer.launch * (pricer.kernels_per_layer * pricer.layers + KERNELS_PER_STEP))


def _work_as_written(pricer, chunks, b, ctx):
    """StepPricer.work of a step with prompt chunks, its sums over the chunks as generators."""
    tokens = sum(n for n, _ in chunks) + b
    attn = 4.0 * (pricer.heads * pricer.head_dim) * (ctx + sum(n * (p + n / 2) for n, p in chunks))
    n, k = pricer.lm_head
    flops = (pricer.layer_weight_flops * tokens + attn) * pricer.layers / pricer.pp / 1.0 + 2.0 * (
        len(chunks) + b) * n * k / pricer.pp
    kv_read = pricer.kv_token_bytes * (ctx + sum(p + n for n, p in chunks))
    return flops, pricer.weights_read(tokens) + kv_read + pricer.kv_token_bytes * tokens


def test_prompt_steps_priced_as_written():
    """step_time and work of a step with prompts (one chunk: the step at an arrival, or
    several), bit for bit what every piece asked for in turn gives: dense and LM-head memo
    tables looked up first, broadcasts and PP hand-offs skipped without TP or PP, one chunk's
    sums taken as their one term; graphs or eager, TP and PP, a mixture of experts."""
    rng = random.Random(5)
    engine_traffic = TpStepTraffic("custom_ar", "gather", lambda tokens, rows, decode: (8 * tokens, 4 * rows))

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return (0.5e-6 if algorithm == "custom_ar" else 1e-6) + nbytes / 1e11

    for model in ("Llama-3.1-8B", "Mixtral-8x7B"):
        for traffic in (None, engine_traffic):
            for graphs, tp, pp in ((capture_sizes(256, 8192), 2, 2), ([], 2, 1),
                                   (capture_sizes(512, 8192), 1, 1), ([], 1, 2)):
                pricer = StepPricer(builtin_models()[model], labsim.device("H100-SXM"), tp=tp, pp=pp,
                                    graph_sizes=graphs, collective=collective, traffic=traffic)
                for _ in range(150):
                    b = rng.choice([0, 1, 7, 75, 300])
                    ctx = b * rng.randint(1, 4000) + rng.randint(0, b)
                    top = rng.choice([1, 16, 400, 4096])
                    chunks = [(rng.randint(1, top), rng.randint(0, 4096))
                              for _ in range(rng.choice([1, 1, 2, 3]))]
                    for _ in range(2):            # the memo tables empty, then holding the step
                        assert pricer.step_time(chunks, b, ctx) == _step_time_as_written(pricer, chunks, b, ctx)
                        assert pricer.work(chunks, b, ctx) == _work_as_written(pricer, chunks, b, ctx)


def test_uniform_shares_sum_copies_as_numpy_does():
    """Each lane's share is numpy's pairwise sum of its copies, bit for bit, whatever the count:
    up to 128 copies summed in blocks, more split in halves again and again (lanes of many
    counts at once, compiled and pure)."""
    import numpy as np
    from labsim_llm.engine import serving_metrics

    rng = np.random.default_rng(5)
    counts = np.concatenate((np.arange(1, 700), rng.integers(700, 20000, 300), [1 << 16, 99991]))
    values = np.concatenate((rng.uniform(1e-6, 0.3, len(counts) - 4), [0.1, 1e-6, 7.77, 0.0123]))
    expected = [float(np.full(int(n), v).sum()) for v, n in zip(values, counts)]
    ways = [serving_metrics._uniform_shares]               # the pure function
    try:
        from labsim_llm.native import serving_metrics as twin    # (when the twins are built)
        ways.append(twin._uniform_shares)
    except ImportError:
        pass
    for shares in ways:
        got = shares(values, counts.astype(np.int64))
        assert [float(x) for x in got] == expected


def test_ledger_counts_of_any_int_kind_settle_alike():
    """The ledger's stream counts reach numpy packed as int64 when they are ints (runs of one
    entry each, or longer), and through numpy's own conversion otherwise (counts that are
    floats or numpy ints): the same bins and the same total as one add_uniform at a time."""
    import numpy as np
    from labsim_llm.engine import serving_metrics

    kinds = {"int": int, "float": float, "numpy": np.int64}
    rng = np.random.default_rng(11)
    values = [float(x) for x in rng.uniform(1e-3, 0.05, 300)]
    counts = [int(x) for x in rng.integers(1, 200, 300)]
    reference = serving_metrics.GapHistogram()
    for v, n in zip(values, counts):
        reference.add_uniform(v, n)
    for name, kind in kinds.items():
        for equal in (False, True):
            h = serving_metrics.GapHistogram()
            for i in range(0, 300, 30):
                ns = [counts[i]] * 30 if equal else counts[i:i + 30]
                h.add_uniform_each(values[i:i + 30], [kind(n) for n in ns])
            if equal:
                expected = serving_metrics.GapHistogram()
                for i in range(0, 300, 30):
                    for v in values[i:i + 30]:
                        expected.add_uniform(v, counts[i])
            else:
                expected = reference
            assert h.total == expected.total and h.n == expected.n, (name, equal)
            assert np.array_equal(h.counts, expected.counts), (name, equal)
