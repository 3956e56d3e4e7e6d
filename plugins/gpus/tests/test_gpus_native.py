"""The compiled twins of the kernel formulas and the decode pricer (``labsim_gpus.native``)
give the pure ones' bits.

Random shapes, hardware and cost parameters: GEMM, prefill and decode attention prices and the
decode split heuristic, pure and compiled; the decode pricer's single prices (with int and
float contexts, as engines pass both) and runs of decode steps, compared bit for bit, and
against :func:`labsim_gpus.kernels.decode_seconds` itself. CI builds the twin and sets
``LABSIM_REQUIRE_NATIVE=1``; elsewhere these tests skip when it was not built.
"""

from __future__ import annotations

import os

import labsim_gpus.plugin as plugin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.testing import exact_bits
from labsim_gpus import decode_pricer, kernels, native

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"
H100 = plugin.preset("H100-SXM")


def _twin(name: str = "decode_pricer"):
    try:
        return __import__(f"labsim_gpus.native.{name}", fromlist=["PURE"])
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("labsim_gpus' compiled twins are not built here")


def test_the_cost_model_runs_the_compiled_twins_where_they_were_built():
    status = native.status()
    if REQUIRED:
        assert status == {"decode_pricer": "compiled", "kernels": "compiled"}
    f = kernels.decode_seconds_fn(32, 8, 128, 2.0, 989e12, 3.35e12, 132, H100.params)
    compiled = status["decode_pricer"] == "compiled"
    assert (type(f) is _twin().DecodePricer) if compiled else (type(f) is decode_pricer.PURE["DecodePricer"])
    assert (kernels.gemm_seconds is _twin("kernels").gemm_seconds) == (status["kernels"] == "compiled")


HARDWARE = st.sampled_from([(132, 3.35e12, 989e12), (108, 2.039e12, 312e12), (24, 0.3e12, 120e12),
                            (56, 933000000000, 165000000000000)])


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 20000), n=st.sampled_from([128, 1024, 4096, 6144, 14336, 28672, 128256]),
       k=st.sampled_from([64, 512, 4096, 14336]), in_bytes=st.sampled_from([1, 2, 4, 0.5, 2.0]),
       out_bytes=st.sampled_from([2, 2.0, 4.0]), hardware=HARDWARE)
def test_compiled_gemm_price_gives_the_pure_bits(m, n, k, in_bytes, out_bytes, hardware):
    twin = _twin("kernels")
    sm_count, mem_bw, peak = hardware
    args = (m, n, k, in_bytes, out_bytes, peak, mem_bw, sm_count, H100.params)
    assert kernels.PURE["gemm_seconds"](*args).hex() == twin.gemm_seconds(*args).hex()


@settings(max_examples=150, deadline=None)
@given(heads=st.sampled_from([(32, 8, 128), (64, 8, 128), (16, 2, 64), (8, 1, 256)]),
       kv_bytes=st.sampled_from([1, 2, 2.0, 0.5]), hardware=HARDWARE, waves=st.booleans(),
       seqs=st.integers(1, 64), new=st.integers(1, 8192), prefix=st.integers(0, 30000),
       context=st.integers(1, 200000))
def test_compiled_attention_prices_give_the_pure_bits(heads, kv_bytes, hardware, waves, seqs, new,
                                                      prefix, context):
    twin = _twin("kernels")
    pure = kernels.PURE
    h, kvh, hd = heads
    sm_count, mem_bw, peak = hardware
    params = H100.params.replace(prefill_waves=1.0) if waves else H100.params
    pairs = seqs * pure["prefill_pairs"](new, prefix)
    assert pairs == twin.prefill_pairs(new, prefix) * seqs
    padded = seqs * -(-new // kernels.BLOCK_M) * kernels.BLOCK_M
    args = (seqs, float(seqs * new), pairs, padded, prefix + new, h, kvh, hd, kv_bytes, peak, mem_bw,
            sm_count, params)
    assert pure["prefill_seconds"](*args).hex() == twin.prefill_seconds(*args).hex()
    args = (seqs, float(seqs * context), float(context), h, kvh, hd, kv_bytes, peak, mem_bw, sm_count,
            params)
    assert pure["decode_seconds"](*args).hex() == twin.decode_seconds(*args).hex()
    assert pure["num_splits"](seqs * kvh, sm_count, context) == twin.num_splits(seqs * kvh, sm_count, context)


@settings(max_examples=120, deadline=None)
@given(heads=st.sampled_from([(32, 8, 128), (64, 8, 128), (32, 32, 128), (16, 2, 64), (8, 1, 256)]),
       kv_bytes=st.sampled_from([1, 2, 2.0, 1.0]),
       hardware=st.sampled_from([(132, 3.35e12, 989e12), (108, 2.039e12, 312e12), (24, 0.3e12, 120e12),
                                 (56, 933000000000, 165000000000000)]),
       side=st.booleans(), share=st.sampled_from([None, 0.3, 1.2, 1]),
       eff=st.sampled_from([None, 1, 0.55]), data=st.data())
def test_compiled_pricer_gives_the_pure_bits(heads, kv_bytes, hardware, side, share, eff, data):
    """Bit for bit, also where a calibration sets an efficiency or share as an int (the twin
    keeps its bandwidths and FLOP rate as floats, of the same values)."""
    twin = _twin()
    params = H100.params
    if not side:
        params = params.replace(decode_gqa_copies=0.0, decode_split_combine=0.0)
    if share is not None:
        params = params.replace(sm_bw_share=share)
    if eff is not None:
        params = params.replace(decode_mem_eff=eff, attn_compute_eff=eff)
    sm_count, mem_bw, peak = hardware
    args = (*heads, kv_bytes, peak, mem_bw, sm_count, params)
    pure, compiled = decode_pricer.PURE["DecodePricer"](*args), twin.DecodePricer(*args)
    h, kvh, hd = heads
    for _ in range(4):
        ns = data.draw(st.integers(1, 400))
        total = ns * data.draw(st.integers(1, 20000)) + data.draw(st.integers(0, ns - 1))
        for context in (total, float(total)):
            assert pure(ns, context).hex() == compiled(ns, context).hex()
        assert pure(ns, total) == kernels.decode_seconds(ns, total, total / ns, h, kvh, hd, kv_bytes,
                                                         peak, mem_bw, sm_count, params)
        step = data.draw(st.sampled_from([ns, 1, 2 * ns + 1]))
        count = data.draw(st.integers(1, 600))
        assert exact_bits(pure.run(ns, total, step, count)) == exact_bits(compiled.run(ns, total, step, count))


def test_an_edited_kernels_module_holds_back_the_decode_pricer_too(monkeypatch):
    """The decode pricer's twin calls the kernel formulas' compiled code: once ``kernels.py``
    changes, neither twin runs (``native.use_group_twin``) until the package is built again."""
    _twin("kernels")
    from labsim import native as labsim_native
    from labsim.testing import group_status_when_changed

    status = group_status_when_changed(native, monkeypatch, edited="kernels.py")
    namespace = {"__name__": "labsim_gpus.decode_pricer", "DecodePricer": "pure"}
    labsim_native.use_group_twin("labsim_gpus", native.MODULES, "decode_pricer", namespace, ["DecodePricer"])
    assert namespace["DecodePricer"] == "pure"
    assert status["kernels"] == "pure Python (stale: source changed)"
    assert status["decode_pricer"] == "pure Python (its group's kernels not current)"
