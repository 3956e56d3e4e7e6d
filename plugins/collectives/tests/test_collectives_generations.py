"""Per-generation collective constants: Hopper/Blackwell NVLink protocols, NVLS for all-reduce,
all-gather and reduce-scatter, the NVLS GPU-count threshold, pipelined NVLS + network and IB
SHARP (fitted and checked in benchmarks/fidelity_collectives_hopper.py)."""

from dataclasses import dataclass

import pytest
from labsim.errors import UsageError
from labsim_collectives import params as P
from labsim_collectives.plugin import BY_NAME
from labsim_gpus import topology as T


@dataclass(eq=False)
class StandIn:
    name: str
    nvlink_bw: float
    host_link_bw: float
    mem_bw: float


A100 = StandIn("A100-SXM4-80GB", 300e9, 32e9, 2039e9)
H100 = StandIn("H100-SXM", 450e9, 64e9, 3.35e12)
B200 = StandIn("B200", 900e9, 64e9, 8e12)
AR, AG, RS = BY_NAME["all_reduce"], BY_NAME["all_gather"], BY_NAME["reduce_scatter"]
GiB, MiB = 1 << 30, 1 << 20


def topo(name, device, **spec):
    t = next(p for p in T.PRESETS if p.name == name).with_device(device)
    return t.customize(spec) if spec else t


def test_generation_follows_the_nvlink_rate():
    assert P.generation(topo("dgx-a100", A100)) is P.AMPERE
    assert P.generation(topo("dgx-h100", H100)) is P.HOPPER
    assert P.generation(topo("hgx-b200", B200)) is P.BLACKWELL
    assert P.generation(topo("pcie-l40s", StandIn("L40S", 0.0, 32e9, 864e9))) is P.AMPERE


def test_a100_constants_are_the_a100_fit():
    assert P.AMPERE.nvlink is P.NVLINK and P.AMPERE.nvls is None


def test_small_message_latency_on_hopper_below_a100():
    """Same 2-GPU 512 B all-reduce: Hopper (NCCL 2.2x+ launch path, LL) is faster than A100's
    fitted ~10-11 us; before the per-generation constants both were priced alike."""
    a100 = AR.time(512, ranks=2, topology=topo("dgx-a100", A100))
    h100 = AR.time(512, ranks=2, topology=topo("dgx-h100", H100))
    assert h100 < 0.7 * a100
    assert AR.cost(512, ranks=2, topology=topo("dgx-h100", H100))[1].protocol == "LL"


def test_hopper_ring_busbw_near_published():
    """Ring all-reduce with NVLS off: 8x H200 measures 367 GB/s busbw at 16 GiB."""
    t = topo("hgx-h200", StandIn("H200-SXM", 450e9, 64e9, 4.8e12))
    seconds = AR.time(16 * GiB, ranks=8, topology=t, algorithm="ring")
    assert AR.bus_bandwidth(16 * GiB, seconds, 8) / 1e9 == pytest.approx(367, rel=0.06)


def test_hopper_mid_size_ring_carries_nccls_simple_latency():
    """4x H100 all_reduce of 16 MiB runs the ring on Simple; nccl-tests measures 101.9 us
    (NCCL 2.29.2, benchmarks/data/hopper_nccl/h100_4gpu_nccltests_2.29.2.csv). Hopper carried
    the A100 fit's Simple launch (30 us + 6 x 2.9 us) and priced it 120 us; NCCL's tuner
    latency (8.4 us + 6 x 3.4 us) gives 101 us."""
    t = topo("dgx-h100", H100)
    name, priced = AR.cost(16 * MiB, ranks=4, topology=t)
    assert (name, priced.protocol) == ("ring", "Simple")
    assert priced.seconds * 1e6 == pytest.approx(101.9, rel=0.05)


def test_nvls_chosen_where_nccl_chooses_it():
    """NCCL on Hopper: ring/LL up to ~1 MiB, NVLS from 2 MiB on 8 GPUs; never NVLS on 4 GPUs."""
    t = topo("dgx-h100", H100)
    assert AR.cost(64 << 10, ranks=8, topology=t)[0] == "ring"
    assert AR.cost(64 * MiB, ranks=8, topology=t)[0] == "nvls"
    assert AR.cost(8 * GiB, ranks=4, topology=t)[0] != "nvls"
    assert AR.time(8 * GiB, ranks=4, topology=t, algorithm="nvls") > 0  # forcing still works


def test_nvls_threshold_is_per_generation():
    """8x B200: NCCL stays on the ring at 5 GPUs and uses NVLS from 6."""
    t = topo("hgx-b200", B200)
    assert AR.cost(8 * GiB, ranks=5, topology=t)[0] != "nvls"
    assert AR.cost(8 * GiB, ranks=6, topology=t)[0] == "nvls"


def test_nvls_gather_scatter_exist_but_the_ring_wins_on_hopper():
    """NVLS all-gather / reduce-scatter move the ring's bytes at NVLS efficiency, so the ring
    stays NCCL's choice (8x H200 at 16 GiB: all-gather and reduce-scatter ran Ring)."""
    t = topo("dgx-h100", H100)
    for op in (AG, RS):
        assert "nvls" in op.algorithms()
        assert op.cost(16 * GiB, ranks=8, topology=t)[0] == "ring"
        assert op.time(16 * GiB, ranks=8, topology=t, algorithm="nvls") > op.time(
            16 * GiB, ranks=8, topology=t, algorithm="ring"
        )
    with pytest.raises(UsageError):
        AG.time(MiB, ranks=8, topology=topo("dgx-a100", A100), algorithm="nvls")


def test_nvls_tree_phases_overlap():
    """NCCL pipelines NVLS + network in one kernel: the overlapped plan is faster than its three
    phases one after the other would be, and 2x DGX H100 lands near the published 480 GB/s."""
    t = topo("dgx-h100", H100, nodes=2)
    chosen, priced = AR.cost(8 * GiB, ranks=16, topology=t, algorithm="nvls_tree")
    busbw = AR.bus_bandwidth(8 * GiB, priced.seconds, 16) / 1e9
    assert busbw == pytest.approx(480, rel=0.1)
    assert len(priced.phases) == 1


def test_ib_sharp_needs_the_topology_field_and_raises_busbw_at_scale():
    plain = topo("dgx-h100", H100, nodes=8)
    with pytest.raises(UsageError, match="ib_sharp"):
        AR.time(GiB, ranks=64, topology=plain, algorithm="nvls_sharp")
    sharp = topo("dgx-h100", H100, nodes=8, ib_sharp=True)
    with_sharp = AR.time(GiB, ranks=64, topology=sharp, algorithm="nvls_sharp")
    without = AR.time(GiB, ranks=64, topology=plain, algorithm="nvls_tree")
    assert with_sharp < without
    assert AR.cost(GiB, ranks=64, topology=sharp)[0] == "nvls_sharp"


def test_ib_sharp_field_is_checked():
    with pytest.raises(UsageError, match="ib_sharp"):
        topo("dgx-h100", H100, ib_sharp="yes")


def test_nvls_mid_size_below_its_asymptotic_rate():
    """The NVLS pipeline fill: 8x H100 NVLS at 16 MiB measures ~234 GB/s busbw against ~479 at
    8 GiB (Azure ND H100 v5); a latency alone would put 16 MiB near 400."""
    t = topo("dgx-h100", H100)

    def busbw(size):
        return AR.bus_bandwidth(size, AR.time(size, ranks=8, topology=t, algorithm="nvls"), 8) / 1e9

    assert busbw(8 * GiB) == pytest.approx(479, rel=0.05)
    assert busbw(16 * MiB) == pytest.approx(234, rel=0.15)


def test_overlapped_plan_prices_the_busiest_link_not_the_sum():
    from labsim_collectives.model import Phase, Plan, price

    t = topo("dgx-h100", H100, nodes=2)
    a = Phase().add_steps("nvlink", 1)
    a.loads[("n0.g0.nvl", +1)] += 1e9
    b = Phase().add_steps("net", 1)
    b.loads[("n0.nic0", +1)] += 1e8
    one = {"p": {"nvlink": P.HOPPER.nvlink["Simple"], "net": P.CLASS_PARAMS["net"]["Simple"]}}
    sequential = price(Plan([a, b], 1e9, one), t, H100)
    overlapped = price(Plan([a, b], 1e9, one, overlap=True), t, H100)
    transfers = [p.transfer for p in sequential.phases]
    assert overlapped.seconds == pytest.approx(sequential.seconds - min(transfers), rel=1e-9)


# vLLM custom all-reduce in CUDA-graph mode on 4x H100 (vLLM PR #24111, H100 TP=4 table,
# benchmarks/data/hopper_custom_allreduce/): one-shot and two-shot, µs per call
H100_TP4_GRAPH = {("one_shot", MiB // 2): 10.0, ("two_shot", MiB // 2): 17.0,
                  ("one_shot", 4 * MiB): 38.0, ("two_shot", 4 * MiB): 43.0}


def test_custom_all_reduce_constants_are_per_generation():
    assert P.AMPERE.custom_ar == {"one_shot": P.ONE_SHOT, "two_shot": P.TWO_SHOT}
    assert P.BLACKWELL.custom_ar is P.HOPPER.custom_ar
    # on Hopper the two-shot kernel's fixed cost is about twice Ampere's; one-shot's is not
    assert P.HOPPER.custom_ar["two_shot"].base > 1.5 * P.TWO_SHOT.base
    assert P.HOPPER.custom_ar["one_shot"].base < 1.2 * P.ONE_SHOT.base


def test_hopper_custom_all_reduce_near_the_graph_mode_measurements():
    t = topo("dgx-h100", H100)
    for (kernel, size), measured in H100_TP4_GRAPH.items():
        predicted = AR.time(size, ranks=4, topology=t, algorithm=kernel) * 1e6
        assert predicted == pytest.approx(measured, rel=0.15), (kernel, size)
    # with the A100-fitted constants the 0.5 MiB two-shot was ~40 % too fast; small messages
    # (decode) cost the one-shot's fixed cost: about 6 µs, the cheaper kernel there
    small = AR.time(64 << 10, ranks=4, topology=t, algorithm="custom_ar") * 1e6
    assert 5.0 < small < 7.5
    assert small == pytest.approx(AR.time(64 << 10, ranks=4, topology=t, algorithm="one_shot") * 1e6)


def test_ampere_custom_all_reduce_unchanged():
    t = topo("dgx-a100", A100)
    one = AR.time(MiB // 2, ranks=4, topology=t, algorithm="one_shot")
    expected = P.ONE_SHOT.base + 3 * (MiB // 2) / (300e9 * P.ONE_SHOT.eff) + 2 / 2039e9 * (MiB // 2)
    assert one == pytest.approx(expected, rel=1e-9)


def test_vllm_custom_ar_follows_vllms_kernel_choice_by_size():
    """vLLM runs one-shot on 2 GPUs, below 512 KiB on up to 4 and below 256 KiB on up to 8,
    two-shot otherwise, even where one-shot would be faster (4x H100 at 1 MiB: 15 vs 18 µs
    measured); ``custom_ar`` takes the faster kernel, NCCL above 8 MiB for both."""
    from labsim_collectives.algorithms import vllm_kernel

    assert [vllm_kernel(n, s) for n, s in ((2, 8 * MiB), (4, MiB // 2 - 1), (4, MiB // 2),
                                           (8, MiB // 4 - 1), (8, MiB // 4))] == [
        "one_shot", "one_shot", "two_shot", "one_shot", "two_shot"]
    t = topo("dgx-h100", H100)

    def price(algorithm, size, n=4):
        return AR.time(size, ranks=n, topology=t, algorithm=algorithm)

    assert price("vllm_custom_ar", MiB) == price("two_shot", MiB) > price("custom_ar", MiB)
    assert price("vllm_custom_ar", MiB // 4) == price("one_shot", MiB // 4)
    assert price("vllm_custom_ar", MiB, n=2) == price("one_shot", MiB, n=2)
    assert price("vllm_custom_ar", 16 * MiB) == price("auto", 16 * MiB) == price("custom_ar", 16 * MiB)
    assert "vllm_custom_ar" in AR.algorithms()
