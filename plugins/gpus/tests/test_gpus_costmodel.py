"""Physics and invariants of the roofline cost model."""

import math

import labsim_gpus.plugin as plugin
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from labsim_gpus import kernels

A100 = plugin.preset("A100-SXM4-80GB")
H100 = plugin.preset("H100-SXM")


def test_large_gemm_is_compute_bound_near_calibrated_efficiency():
    m = n = k = 8192
    t = A100.gemm_time(m, n, k)
    achieved = 2 * m * n * k / t
    assert 0.6 * 312e12 < achieved < 312e12


def test_small_m_gemm_is_memory_bound():
    t = A100.gemm_time(1, 8192, 8192)
    weight_time = 8192 * 8192 * 2 / A100.mem_bw
    assert weight_time < t < 3 * weight_time
    # doubling m at tiny m barely changes the time (weights dominate)
    assert A100.gemm_time(2, 8192, 8192) < 1.1 * t


def test_wave_quantisation_makes_time_step():
    # 108 SMs: one more wave of 128x256 tiles costs a step, not a proportional increase
    times = [A100.gemm_time(m, 8192, 8192) for m in range(3200, 4200, 8)]
    assert max(np.diff(times)) > 5 * np.median(np.abs(np.diff(times))) or len(set(times)) < 60


def test_faster_gpu_is_faster_and_fp8_faster_than_bf16():
    assert H100.gemm_time(4096, 4096, 4096) < A100.gemm_time(4096, 4096, 4096)
    assert H100.gemm_time(4096, 4096, 4096, "fp8") < H100.gemm_time(4096, 4096, 4096, "bf16")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8192), st.integers(64, 16384), st.integers(64, 16384))
@example(16, 3351, 512)  # split-K forced on a memory-bound GEMM: 32 rows were 5 % faster than 16
@example(11, 2105, 512)
def test_gemm_monotone_in_m_and_above_roofline(m, n, k):
    t = A100.gemm_time(m, n, k)
    assert t >= 2 * m * n * k / 312e12
    assert t >= A100.launch_overhead
    assert A100.gemm_time(2 * m, n, k) >= t * 0.999


def test_prefill_flops_exact_and_compute_bound():
    t = A100.attention_time("prefill", batch_size=8, seq_len=8192, num_heads=32, num_kv_heads=8,
                            head_dim=128)
    flops = 4 * 32 * 128 * 8 * kernels.prefill_pairs(8192, 0)
    assert 0.4 * 312e12 < flops / t < 312e12


def test_cached_prefix_costs_more():
    kw = dict(batch_size=2, seq_len=512, num_heads=32, num_kv_heads=8, head_dim=128)
    assert (A100.attention_time("prefill", prefix_len=4096, **kw)
            > A100.attention_time("prefill", **kw))


def test_decode_long_context_is_bandwidth_bound():
    b, s, kvh = 64, 32768, 8
    t = A100.attention_time("decode", batch_size=b, seq_len=s, num_heads=32, num_kv_heads=kvh,
                            head_dim=128)
    kv_bytes = b * s * 2 * kvh * 128 * 2
    assert kv_bytes / A100.mem_bw < t < 3 * kv_bytes / A100.mem_bw
    fp8 = A100.attention_time("decode", batch_size=b, seq_len=s, num_heads=32, num_kv_heads=kvh,
                              head_dim=128, kv_dtype="fp8")
    assert fp8 < 0.7 * t


def test_decode_totals_match_equal_lengths_and_seq_lens():
    kw = dict(num_heads=32, num_kv_heads=8, head_dim=128)
    full = A100.attention_time("decode", batch_size=16, seq_len=1000, **kw)
    assert A100.decode_attention_time_from_totals(16, 16000, **kw) == pytest.approx(full)
    assert A100.attention_time("decode", seq_lens=np.full(16, 1000), **kw) == pytest.approx(full)
    mixed = A100.attention_time("decode", seq_lens=[100, 4000, 500], **kw)
    assert mixed > A100.attention_time("decode", seq_lens=[100, 500], **kw)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2048), st.integers(0, 4096)), min_size=1, max_size=6))
def test_prefill_totals_aggregate_is_exact_in_flops(chunks):
    pairs = sum(kernels.prefill_pairs(new, pre) for new, pre in chunks)
    weight = sum(new * (pre + new / 2) for new, pre in chunks)
    total_new = sum(new for new, _ in chunks)
    assert weight + total_new / 2 == pytest.approx(pairs)
    t = A100.prefill_attention_time_from_totals(len(chunks), total_new, weight, 32, 8, 128)
    assert t > 0 and math.isfinite(t)


def test_prefill_totals_close_to_per_sequence_price():
    kw = dict(num_heads=32, num_kv_heads=8, head_dim=128)
    exact = A100.attention_time("prefill", batch_size=4, seq_len=2048, **kw)
    agg = A100.prefill_attention_time_from_totals(4, 4 * 2048, 4 * 2048 * 1024, **kw)
    assert agg == pytest.approx(exact, rel=0.1)


def test_memcpy_uses_the_right_link():
    n = 1 << 30
    d2d = A100.memcpy_time(n, "d2d")
    h2d = A100.memcpy_time(n, "h2d")
    assert h2d == pytest.approx(A100.memcpy_time(n, "D2H"))
    assert n / A100.host_link_bw < h2d < 2 * n / A100.host_link_bw
    assert 2 * n / A100.mem_bw < d2d < h2d
    assert A100.elementwise_time(n) < d2d and A100.norm_time(0) == A100.launch_overhead


def test_scalar_calls_are_fast():
    import time

    start = time.perf_counter()
    for i in range(20000):
        A100.attention_time("decode", batch_size=8, seq_len=1000 + i, num_heads=32,
                            num_kv_heads=8, head_dim=128)
        A100.gemm_time(8 + i % 64, 4096, 4096)
    assert time.perf_counter() - start < 10  # generous: ~tens of µs per call


def test_each_prefill_cta_adds_its_fixed_cost_over_the_sms():
    """A batch of short sequences pays prefill_cta_s per CTA (query block x head) over the SMs:
    256 sequences of 64 tokens x 32 heads = 8192 CTAs, on 108 SMs."""
    from labsim_gpus.params import DATASHEET_DEFAULTS

    a100 = plugin.preset("A100-SXM4-80GB")
    kw = dict(batch_size=256, seq_len=64, num_heads=32, num_kv_heads=8, head_dim=128)
    base = a100.copy(params=a100.params.replace(prefill_cta_s=0.0))
    with_cta = a100.copy(params=a100.params.replace(prefill_cta_s=3e-6))
    extra = with_cta.attention_time("prefill", **kw) - base.attention_time("prefill", **kw)
    assert extra == pytest.approx(256 * 32 * 3e-6 / 108, rel=1e-9)
    assert DATASHEET_DEFAULTS.prefill_cta_s == 0.0      # the datasheet model assumes none


def test_prefill_ctas_run_in_whole_waves_where_the_profile_says_so():
    """With prefill_waves, a prompt's CTAs (query blocks x heads) take ceil(CTAs / SMs) waves
    of the mean CTA: one 1,024-token prompt of 32 heads is 256 CTAs, 2.37 waves of 108 SMs,
    priced as 3; on 128 SMs it is 2 whole waves and nothing changes. The cross-generation
    profile prices so, the datasheet model and the calibrated profiles do not."""
    from labsim_gpus.params import DATASHEET_DEFAULTS

    fluid = DATASHEET_DEFAULTS.replace(smooth_p=64.0)      # (a hard max: compute-bound here)
    waves = fluid.replace(prefill_waves=1.0)
    fixed = fluid.kernel_overhead_s + fluid.attn_overhead_s
    pairs = kernels.prefill_pairs(1024, 0)

    def seconds(params, sm_count):
        return kernels.prefill_seconds(1, 1024.0, pairs, 1024.0, 1024, 32, 8, 128, 2.0,
                                       312e12, 2.0e12, sm_count, params) - fixed

    assert seconds(waves, 108) / seconds(fluid, 108) == pytest.approx(3 / (256 / 108), rel=1e-6)
    assert seconds(waves, 128) == seconds(fluid, 128)
    assert DATASHEET_DEFAULTS.prefill_waves == 0.0
    assert plugin.preset("A100-SXM4-80GB").params.prefill_waves == 0.0
    assert plugin.preset("B200").params.prefill_waves == 1.0     # the cross-generation profile


def test_decode_side_kernels_fa2_copies_and_combine_flashinfer_combine_only():
    """FlashAttention-2's decode runs two layout copies for a grouped-query batch of >= 2
    sequences with >= 2 KV heads, and a combine kernel when the context is split; FlashInfer
    only the merge of a split context. Each is a memory-bound kernel of its own; nothing else
    changes, and without the flags nothing does."""
    a100 = plugin.preset("A100-SXM4-80GB")
    fa2 = a100.copy(params=a100.params.replace(**kernels.DECODE_KERNELS["flash-attention-2"]))
    fi = a100.copy(params=a100.params.replace(**kernels.DECODE_KERNELS["flashinfer"]))
    p = fa2.params
    stream = kernels.stream_seconds

    def extra(dev, b, ctx, h, kvh):
        kw = dict(batch_size=b, seq_len=ctx, num_heads=h, num_kv_heads=kvh, head_dim=128)
        return dev.attention_time("decode", **kw) - a100.attention_time("decode", **kw)

    # one sequence, or one KV head, or no grouping: the swapped query stays a view; no split
    assert extra(fa2, 1, 64, 32, 8) == 0.0
    assert extra(fa2, 8, 64, 32, 1) == 0.0
    assert extra(fa2, 8, 64, 8, 8) == 0.0
    # >= 2 sequences and >= 2 KV heads: q copied in, the output copied back (FA2 only)
    copies = 2 * stream(2.0 * 8 * 32 * 128 * 2.0, a100.mem_bw, p)
    assert extra(fa2, 8, 64, 32, 8) == pytest.approx(copies, rel=1e-12)
    assert extra(fi, 8, 64, 32, 8) == 0.0
    # a split context (8 x 8 CTAs < 0.8 x 108 SMs, 64 blocks of 128 keys): the combine too
    split = kernels.num_splits(8 * 8, a100.sm_count, 8192)
    assert split > 1
    combine = stream(split * 8 * 32 * 129 * 4.0 + 8 * 32 * 128 * 2.0, a100.mem_bw, p)
    assert extra(fa2, 8, 8192, 32, 8) == pytest.approx(copies + combine, rel=1e-9)
    assert extra(fi, 8, 8192, 32, 8) == pytest.approx(combine, rel=1e-9)
    # enough CTAs to fill the GPU: no split, copies only
    assert extra(fa2, 96, 8192, 32, 8) == pytest.approx(
        2 * stream(2.0 * 96 * 32 * 128 * 2.0, a100.mem_bw, p), rel=1e-9)


def test_decode_run_equals_price_step_by_step_whichever_term_wins():
    """``decode_seconds_fn(...).run`` prices a run of decode steps in one loop, leaving out the
    busiest-SM and FLOP terms where the DRAM stream term surely exceeds both over the run:
    every price equals ``f(num_seqs, context)`` bit for bit — runs the stream term wins, runs
    the busiest SM or the FLOPs win (a slow DRAM, a weak core), and runs the winner changes
    within (the terms cross)."""
    import random

    rng = random.Random(5)
    base = H100.params
    for params in (base, base.replace(sm_bw_share=0.3), base.replace(attn_compute_eff=0.002),
                   base.replace(sm_bw_share=1.2, attn_compute_eff=0.02),
                   base.replace(decode_gqa_copies=0.0, decode_split_combine=0.0)):
        for sm_count, mem_bw, peak in ((132, H100.mem_bw, H100.peak_flops["bf16"]), (24, 0.3e12, 120e12)):
            f = kernels.decode_seconds_fn(32, 8, 128, 2.0, peak, mem_bw, sm_count, params)
            for ns in (1, 3, 7, 13, 20, 64, 300):
                for step in (ns, 1, 2 * ns + 1):
                    for _ in range(4):
                        first = ns * rng.randint(1, 4000) + rng.randint(0, ns - 1)
                        count = rng.randint(1, 900)
                        assert (f.run(ns, first, step, count)
                                == [f(ns, first + step * i) for i in range(count)])
