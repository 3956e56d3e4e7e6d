"""The compiled twin of the decode pricer (``labsim_gpus.native``) gives the pure one's bits.

Random heads, hardware and cost parameters; single prices (with int and float contexts, as
engines pass both) and runs of decode steps, pure and compiled, compared bit for bit, and
against :func:`labsim_gpus.kernels.decode_seconds` itself. CI builds the twin and sets
``LABSIM_REQUIRE_NATIVE=1``; elsewhere these tests skip when it was not built.
"""

from __future__ import annotations

import os

import labsim_gpus.plugin as plugin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim_gpus import decode_pricer, kernels, native

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"
H100 = plugin.preset("H100-SXM")


def _twin():
    try:
        return __import__("labsim_gpus.native.decode_pricer", fromlist=["DecodePricer"])
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("labsim_gpus' compiled twin is not built here")


def test_the_cost_model_runs_the_compiled_pricer_where_it_was_built():
    status = native.status()
    if REQUIRED:
        assert status == {"decode_pricer": "compiled"}
    f = kernels.decode_seconds_fn(32, 8, 128, 2.0, 989e12, 3.35e12, 132, H100.params)
    compiled = status["decode_pricer"] == "compiled"
    assert (type(f) is _twin().DecodePricer) if compiled else (type(f) is decode_pricer.PURE["DecodePricer"])


def _bits(values):
    return [v.hex() for v in values]


@settings(max_examples=120, deadline=None)
@given(heads=st.sampled_from([(32, 8, 128), (64, 8, 128), (32, 32, 128), (16, 2, 64), (8, 1, 256)]),
       kv_bytes=st.sampled_from([1, 2, 2.0, 1.0]),
       hardware=st.sampled_from([(132, 3.35e12, 989e12), (108, 2.039e12, 312e12), (24, 0.3e12, 120e12),
                                 (56, 933000000000, 165000000000000)]),
       side=st.booleans(), share=st.sampled_from([None, 0.3, 1.2]), data=st.data())
def test_compiled_pricer_gives_the_pure_bits(heads, kv_bytes, hardware, side, share, data):
    twin = _twin()
    params = H100.params
    if not side:
        params = params.replace(decode_gqa_copies=0.0, decode_split_combine=0.0)
    if share is not None:
        params = params.replace(sm_bw_share=share)
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
        assert _bits(pure.run(ns, total, step, count)) == _bits(compiled.run(ns, total, step, count))
