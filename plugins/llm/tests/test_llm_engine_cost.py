"""Step pricing, memory planning, the gap histogram and the router."""

import types

import labsim
import pytest
from labsim.errors import UsageError
from labsim_llm.engine import GapHistogram, Router, StepPricer, capture_sizes, plan_memory
from labsim_llm.models import builtin_models


@pytest.fixture(scope="module")
def llama8b():
    return builtin_models()["Llama-3.1-8B"]


def test_capture_sizes_follow_vllm():
    sizes = capture_sizes(1024, 8192)
    assert sizes[:4] == [1, 2, 4, 8] and sizes[-1] == 512 and len(sizes) == 67


def test_step_time_grows_with_work(llama8b):
    p = StepPricer(llama8b, labsim.device("H100-SXM"), graph_sizes=capture_sizes(1024, 8192))
    assert p.step_time((), 8, 8 * 1000) < p.step_time((), 64, 64 * 1000)
    assert p.step_time((), 64, 64 * 1000) < p.step_time((), 64, 64 * 4000)
    assert p.step_time([(512, 0)]) < p.step_time([(4096, 0)])
    assert p.padded(9) == 16 and p.padded(600) == 600
    flops, nbytes = p.work([(1000, 0)], 10, 10 * 500)
    assert flops > 2 * 6.5e9 * 1000 and nbytes > llama8b.weight_bytes("bf16", 1, 1)


def test_memory_plan_and_clear_error(llama8b):
    plan = plan_memory(llama8b, labsim.device("H100-SXM"), max_num_batched_tokens=8192)
    assert 20_000 < plan.num_blocks < 30_000          # ~54 GiB of 2 MiB blocks (vLLM logs ~56 GiB)
    big = builtin_models()["Llama-3.1-70B"]
    with pytest.raises(UsageError, match=r"Llama-3.1-70B needs 1\d\d GB .*tensor_parallel_size"):
        plan_memory(big, labsim.device("H100-SXM"), model_name="Llama-3.1-70B")


def test_gap_histogram_percentiles_are_close():
    h = GapHistogram()
    h.add([0.01] * 90 + [0.1] * 10)
    s = h.stats([0.5, 0.95])
    assert s["p50"] == pytest.approx(10, rel=2e-3) and s["p95"] == pytest.approx(100, rel=2e-3)
    assert s["mean"] == pytest.approx(19)


def test_router_policies():
    reps = [types.SimpleNamespace(index=i, outstanding=o) for i, o in enumerate([3, 1, 2])]
    req = types.SimpleNamespace(segments=((5, 10),), session_id=-1)
    assert [Router("round_robin", reps).pick(req).index for _ in range(1)] == [0]
    assert Router("least_outstanding", reps).pick(req).index == 1
    aff = Router("prefix_affinity", reps)
    first = aff.pick(req)
    reps[1].outstanding = 9
    assert aff.pick(req) is first
    with pytest.raises(UsageError, match="router"):
        Router("random", reps)


def test_least_outstanding_breaks_ties_by_lowest_index_in_any_order():
    for order in ([0, 1, 2, 3], [3, 1, 2, 0], [2, 0, 3, 1]):
        reps = [types.SimpleNamespace(index=i, outstanding=[5, 2, 4, 2][i]) for i in order]
        router = Router("least_outstanding", reps)
        assert router.pick(None).index == 1
        reps[[r.index for r in reps].index(1)].outstanding = 3
        assert router.pick(None).index == 3


def test_moe_decode_streams_the_weights_of_every_expert_its_tokens_reach():
    """Mixtral routes each token to 2 of 8 experts: one sequence reads 2 experts' weights, a
    batch of 32 nearly all 8, so the decode step takes ~3x longer (memory-bound), and the
    bytes counted for bandwidth use follow."""
    from labsim_llm.engine.step_cost import experts_reached

    assert experts_reached(1, 8, 2) == pytest.approx(2.0)
    assert experts_reached(32, 8, 2) == pytest.approx(8.0, rel=1e-3)
    model, gpu = builtin_models()["Mixtral-8x7B"], labsim.device("H100-SXM")
    pricer = StepPricer(model, gpu, tp=2, graph_sizes=capture_sizes(256, 8192))
    one, batch = pricer.step_time((), 1, 1024), pricer.step_time((), 32, 32 * 1024)
    assert 2.5 < batch / one < 4.0
    for b, t in ((1, one), (32, batch)):
        _, nbytes = pricer.work((), b, b * 1024)
        assert 0.6 < nbytes / t / gpu.mem_bw < 1.0         # a plausible share of HBM bandwidth
    dense = builtin_models()["Llama-3.1-8B"]
    d = StepPricer(dense, gpu, graph_sizes=capture_sizes(256, 8192))
    assert d.step_time((), 32, 32 * 1024) / d.step_time((), 1, 1024) < 1.5
