"""Mechanisms behind benchmarks/fidelity_serving.py: multi-step gating, frontend cost, Hopper kernels."""

from __future__ import annotations

import labsim
import pytest
from labsim_llm.engine.frontend import FrontendCost, frontend_delays
from labsim_llm.engine.multistep import MultiStepGate


def test_gate_off_is_always_open():
    gate = MultiStepGate(1)
    for prefill in (False, True, False):
        gate.advance(prefill)
        assert gate.may_admit()
    assert gate.span_limit(True) > 10_000


def test_gate_round_of_n_decode_steps():
    gate = MultiStepGate(10)
    gate.advance(prefill=False)                 # first decode step opens a round of 10
    assert not gate.may_admit() and gate.steps_left == 9
    assert gate.span_limit(has_waiting=True) == 10
    assert gate.span_limit(has_waiting=False) > 10_000
    gate.advance(False, steps=8)
    assert not gate.may_admit()
    gate.advance(False)
    assert gate.may_admit()


def test_gate_counts_spans_like_single_steps():
    one, many = MultiStepGate(4), MultiStepGate(4)
    for _ in range(11):
        one.advance(False)
    many.advance(False)
    many.advance(False, steps=10)
    assert one.steps_left == many.steps_left == 1


def test_gate_prefill_is_a_single_step_round_and_empty_batch_ends_round():
    gate = MultiStepGate(8)
    gate.advance(False)
    assert gate.may_admit(num_running=0)
    gate.advance(True)
    assert gate.may_admit()


def test_frontend_cost_grows_with_prompt_and_chat():
    fe = FrontendCost()
    assert fe.before_engine(2000) > fe.before_engine(10)
    assert fe.before_engine(100, chat=True) - fe.before_engine(100) == pytest.approx(fe.chat_template_s)
    before, after = frontend_delays(232)
    assert 0 < before < 5e-3 and 0 < after < 1e-3


@pytest.mark.parametrize("m,n,k,measured_us", [
    # aisimulate 0.13.0.dev h100_sxm vLLM 0.25.0 bf16 torch-linear rows (in the h100_sxm profile fit;
    # timed on zero-like operands, so priced with the operand derate taken out)
    (4, 6144, 4096, 21.2), (64, 5120, 5120, 22.0), (2048, 7168, 5120, 180.9), (8192, 4096, 12288, 974.0),
])
def test_h100_gemm_as_fitted_matches_the_tables_it_was_fitted_on(m, n, k, measured_us):
    gpu = labsim.device("H100-SXM")
    as_fitted = gpu.copy(params=gpu.params.replace(gemm_operand_derate=1.0))
    assert as_fitted.gemm_time(m, n, k, dtype="bf16") * 1e6 == pytest.approx(measured_us, rel=0.2)


@pytest.mark.parametrize("m,n,k,measured_us", [
    # benchmarks/data/h100_torch: torch linear on random bf16 operands, H100 80GB HBM3, L2 flushed
    (2048, 28672, 4096, 700.8), (4096, 8192, 8192, 788.5), (2048, 4096, 14336, 333.8), (1024, 14336, 8192, 340.6),
])
def test_h100_compute_bound_gemm_matches_random_operand_measurements(m, n, k, measured_us):
    t = labsim.device("H100-SXM").gemm_time(m, n, k, dtype="bf16") * 1e6
    assert t == pytest.approx(measured_us, rel=0.1)
