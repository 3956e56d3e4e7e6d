"""The collective cost model: registration, algorithms, auto choice, bandwidth definitions."""

from dataclasses import dataclass

import labsim_collectives.plugin as plugin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.errors import UsageError
from labsim.testing import make_registry
from labsim_collectives.algorithms import Algorithm, RingAllReduce
from labsim_collectives.plugin import BY_NAME
from labsim_gpus import topology as T


@dataclass(eq=False)
class StandIn:
    name: str = "A100-SXM4-80GB"
    nvlink_bw: float = 300e9
    host_link_bw: float = 32e9
    mem_bw: float = 2039e9


A100 = StandIn()
H100 = StandIn("H100-SXM", 450e9, 64e9, 3.35e12)
AR = BY_NAME["all_reduce"]


def topo(name, device=A100, **spec):
    t = next(p for p in T.PRESETS if p.name == name).with_device(device)
    return t.customize(spec) if spec else t


def test_registered_with_aliases():
    registry = make_registry(plugin, T)
    for name in (
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "all_to_all",
        "broadcast",
        "reduce",
        "gather",
        "send_recv",
    ):
        assert registry.get("collectives", name).name == name
    assert registry.get("collectives", "allreduce") is registry.get("collectives", "all_reduce")
    assert registry.get("collectives", "p2p").name == "send_recv"
    assert {"ring", "tree", "nvls", "two_level", "custom_ar"} <= set(AR.algorithms())


def test_nccl_tests_bandwidth_definitions():
    assert AR.algo_bandwidth(1e9, 0.01) == pytest.approx(1e11)
    assert AR.bus_bandwidth(1e9, 0.01, 8) == pytest.approx(1e11 * 2 * 7 / 8)
    assert BY_NAME["all_gather"].bus_bandwidth(1e9, 0.01, 4) == pytest.approx(1e11 * 3 / 4)
    assert BY_NAME["broadcast"].bus_bandwidth(1e9, 0.01, 4) == pytest.approx(1e11)


def test_a100_large_ring_near_published_busbw():
    t = AR.time(1 << 30, ranks=8, device=A100)
    busbw = AR.bus_bandwidth(1 << 30, t, 8) / 1e9
    assert 200 < busbw < 240  # published 232 GB/s (GTC24), fitted link efficiency 0.82


def test_small_message_latency_floor_grows_with_ranks():
    times = [AR.time(512, ranks=n, device=A100) for n in (2, 4, 8)]
    assert 5e-6 < times[0] < times[1] < times[2] < 40e-6


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 1 << 31),
    st.integers(1, 1 << 20),
    st.sampled_from([2, 4, 8]),
    st.sampled_from(sorted(BY_NAME)),
)
def test_time_monotone_in_size(nbytes, extra, ranks, name):
    op = BY_NAME[name]
    assert (
        0
        < op.time(nbytes, ranks=ranks, device=H100)
        <= op.time(nbytes + extra, ranks=ranks, device=H100)
    )


def test_auto_is_the_fastest_nccl_algorithm():
    cluster = topo("dgx-h100", H100, nodes=2)
    for size in (4096, 1 << 20, 1 << 28):
        auto = AR.time(size, ranks=16, topology=cluster)
        for name in ("ring", "tree", "two_level", "nvls_tree", "rs_ag"):
            assert auto <= AR.time(size, ranks=16, topology=cluster, algorithm=name) + 1e-15


def test_nvls_only_where_the_switch_reduces():
    assert AR.cost(1 << 30, ranks=8, topology=topo("dgx-h100", H100))[0] == "nvls"
    assert AR.cost(1 << 30, ranks=8, topology=topo("dgx-a100"))[0] == "ring"
    with pytest.raises(UsageError, match="NVLink SHARP"):
        AR.time(1 << 20, ranks=8, topology=topo("dgx-a100"), algorithm="nvls")


def test_oversubscribed_spine_slows_cross_leaf_collectives():
    fast = topo("dgx-h100", H100, nodes=4, fabric="fat-tree", nodes_per_leaf=2)
    slow = fast.customize({"oversubscription": 4})
    size = 1 << 30
    assert AR.time(size, ranks=32, topology=slow) > 1.2 * AR.time(size, ranks=32, topology=fast)
    # a group inside one leaf does not cross the spine
    assert AR.time(size, ranks=16, topology=slow) == pytest.approx(
        AR.time(size, ranks=16, topology=fast)
    )


def test_multi_node_default_box_and_send_recv():
    t16 = AR.time(1 << 28, ranks=16, device=H100)
    assert t16 > AR.time(1 << 28, ranks=8, device=H100)
    p2p = BY_NAME["send_recv"]
    assert p2p.time(1 << 26, ranks=16, device=H100) > 3 * p2p.time(1 << 26, ranks=2, device=H100)


def test_gather_loads_the_roots_incoming_links_only():
    """A gather of S (the total array) moves (n-1)/n·S into the first rank: on an NVSwitch
    node its incoming NVLink is the bottleneck, so it takes about as long as an all-gather,
    whose ring moves (n-1)/n·S through every rank, and clearly longer than a broadcast of one
    shard; more ranks sending their shards at once does not speed the root's link up."""
    gather, ag = BY_NAME["gather"], BY_NAME["all_gather"]
    big = 256 << 20
    t4 = gather.time(big, ranks=4, device=H100)
    assert t4 == pytest.approx(ag.time(big, ranks=4, device=H100), rel=0.25)
    assert t4 > 2 * BY_NAME["broadcast"].time(big // 4, ranks=4, device=H100)
    assert gather.time(big, ranks=8, device=H100) > t4
    name, priced = gather.cost(big, ranks=4, device=H100)
    assert name == "direct" and len(priced.phases) == 1
    assert gather.bus_bandwidth(1e9, 0.01, 4) == pytest.approx(1e11 * 3 / 4)
    assert gather.time(big, ranks=1, device=H100) == 0.0


def test_pcie_box_is_much_slower_than_nvlink():
    l40s = StandIn("L40S", 0.0, 32e9, 864e9)
    ratio = AR.time(1 << 28, ranks=8, device=l40s) / AR.time(1 << 28, ranks=8, device=A100)
    assert ratio > 5


def test_custom_ar_small_messages_fall_back_to_nccl_large():
    small = AR.time(64 << 10, ranks=8, device=A100, algorithm="custom_ar")
    assert small < 0.6 * AR.time(64 << 10, ranks=8, device=A100)
    big = 64 << 20
    assert AR.time(big, ranks=8, device=A100, algorithm="custom_ar") == AR.time(
        big, ranks=8, device=A100
    )


def test_memoised():
    args = dict(ranks=8, device=H100)
    first = AR.time(12345678, **args)
    assert AR.time(12345678, **args) == first
    assert any(k[0] == 12345678 for k in AR._cache)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nbytes=-1), "nbytes"),
        (dict(algorithm="warp"), "no algorithm"),
        (dict(ranks=9, topology="x"), "ranks"),
    ],
)
def test_bad_input_is_a_usage_error(kwargs, match):
    args = dict(nbytes=1024, ranks=8, device=A100)
    args.update(kwargs)
    if args.get("topology") == "x":
        args["topology"] = topo("dgx-a100")
    nbytes = args.pop("nbytes")
    with pytest.raises(UsageError, match=match):
        AR.time(nbytes, **args)


class HalfRing(RingAllReduce):
    """A made-up algorithm: the ring plan, but only half the launches (for the test)."""

    name = "all_reduce.half_ring"

    def plan(self, group, nbytes):
        plan = super().plan(group, nbytes)
        plan.launches = 0
        return plan


def test_third_party_algorithm_through_the_hook():
    """An algorithm registered through the hook is priced by the registry that holds it —
    a registry built by make_registry (tests, sweep and Ray workers) included — and by no
    other: there is no process-wide algorithm table."""
    from labsim import hookimpl

    class ThirdParty:
        @hookimpl
        def register_collectives(self, register):
            register(HalfRing())

    registry = make_registry(plugin, ThirdParty())
    assert registry.get("collectives", "all_reduce.half_ring").collective == "all_reduce"
    ar = registry.get("collectives", "all_reduce")
    assert "half_ring" in ar.algorithms()
    assert ar.time(4096, ranks=8, device=A100, algorithm="half_ring") < ar.time(
        4096, ranks=8, device=A100, algorithm="ring"
    )
    assert ar.cost(4096, ranks=8, device=A100)[0] == "half_ring"  # a candidate of auto
    direct = registry.get("collectives", "all_reduce.half_ring")
    assert direct.time(4096, ranks=8, device=A100) == ar.time(4096, ranks=8, device=A100,
                                                              algorithm="half_ring")
    other = make_registry(plugin).get("collectives", "all_reduce")
    assert "half_ring" not in other.algorithms() and "half_ring" not in AR.algorithms()


def test_algorithm_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Algorithm().plan(None, 0)
