"""Contention: collectives sharing links inside the SimPy engine."""

from dataclasses import dataclass

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim_collectives.plugin import BY_NAME
from labsim_collectives.sim import Fabric, Flow, max_min_rates
from labsim_gpus import topology as T


@dataclass(eq=False)
class StandIn:
    name: str = "H100-SXM"
    nvlink_bw: float = 450e9
    host_link_bw: float = 64e9
    mem_bw: float = 3.35e12


def cluster(**spec):
    t = next(p for p in T.PRESETS if p.name == "dgx-h100").with_device(StandIn())
    return t.customize(spec) if spec else t


def run_together(topology, jobs):
    env = simpy.Environment()
    fabric = Fabric(env, topology)
    procs = [fabric.run(*job) for job in jobs]
    env.run()
    return [p.value for p in procs], fabric


def test_alone_matches_scalar_price():
    topo = cluster()
    (seconds,), _ = run_together(topo, [("all_reduce", 1 << 28, range(8))])
    assert seconds == pytest.approx(BY_NAME["all_reduce"].time(1 << 28, ranks=8, topology=topo))


def test_overlapping_all_reduces_on_shared_links_slow_down():
    topo = cluster()
    alone = BY_NAME["all_reduce"].time(1 << 28, ranks=8, topology=topo)
    (a, b), fabric = run_together(
        topo,
        [
            ("all_reduce", 1 << 28, range(8), "ring", "tp"),
            ("all_reduce", 1 << 28, range(8), "ring", "dp"),
        ],
    )
    ring_alone = BY_NAME["all_reduce"].time(1 << 28, ranks=8, topology=topo, algorithm="ring")
    assert a > 1.5 * ring_alone and b > 1.5 * ring_alone
    assert {r.tag for r in fabric.records} == {"tp", "dp"}
    assert all(r.slowdown > 1.5 for r in fabric.records)
    assert alone < a


def test_disjoint_links_do_not_interfere():
    topo = cluster(nodes=2)
    solo = BY_NAME["all_reduce"].time(1 << 28, ranks=list(range(8)), topology=topo)
    (a, b), _ = run_together(
        topo, [("all_reduce", 1 << 28, range(0, 8)), ("all_reduce", 1 << 28, range(8, 16))]
    )
    assert a == pytest.approx(solo) and b == pytest.approx(solo)


def test_two_jobs_on_an_oversubscribed_spine():
    topo = cluster(nodes=4, fabric="fat-tree", nodes_per_leaf=2, oversubscription=4)
    job1 = [0, 16]  # node 0 ↔ node 2: crosses the spine
    job2 = [8, 24]  # node 1 ↔ node 3: crosses the same leaf uplinks
    solo = BY_NAME["send_recv"].time(1 << 30, ranks=job1, topology=topo)
    (a, b), _ = run_together(topo, [("send_recv", 1 << 30, job1), ("send_recv", 1 << 30, job2)])
    # one NDR port (50 GB/s) each; 16 ports / 4 = 200 GB/s uplink: no slowdown yet
    assert a == pytest.approx(solo)
    heavy = cluster(nodes=4, fabric="fat-tree", nodes_per_leaf=2, oversubscription=16)
    solo = BY_NAME["all_reduce"].time(1 << 30, ranks=[0, 16], topology=heavy)
    (a, b), _ = run_together(
        heavy, [("all_reduce", 1 << 30, [0, 16]), ("all_reduce", 1 << 30, [8, 24])]
    )
    assert a > 1.5 * solo and b > 1.5 * solo


def test_late_arrival_recomputes_rates():
    topo = cluster()
    env = simpy.Environment()
    fabric = Fabric(env, topo)
    first = fabric.run("all_reduce", 1 << 30, range(8), "ring")

    def later():
        yield env.timeout(
            BY_NAME["all_reduce"].time(1 << 30, ranks=8, topology=topo, algorithm="ring") / 2
        )
        return (yield from fabric.collective("all_reduce", 1 << 30, range(8), "ring"))

    second = env.process(later())
    env.run()
    alone = BY_NAME["all_reduce"].time(1 << 30, ranks=8, topology=topo, algorithm="ring")
    assert alone < first.value < 2 * alone and alone < second.value < 2 * alone
    assert fabric.active_flows == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcdef"), st.floats(0.05, 1.0), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    )
)
def test_max_min_rates_feasible_and_bottlenecked(usages):
    flows = [Flow(1.0, u, None) for u in usages]
    max_min_rates(flows)
    load = {}
    for f in flows:
        assert 0 < f.rate <= 1 + 1e-9
        for r, u in f.usage.items():
            load[r] = load.get(r, 0.0) + f.rate * u
    assert all(v <= 1 + 1e-9 for v in load.values())
    for f in flows:  # every flow is at full speed or crosses a saturated link
        assert f.rate >= 1 - 1e-9 or any(load[r] >= 1 - 1e-6 for r in f.usage)


def test_work_is_conserved():
    topo = cluster()
    env = simpy.Environment()
    fabric = Fabric(env, topo)
    seen = []
    original = fabric._transfer

    def spy(work, usage):
        event = original(work, usage)
        seen.append(fabric._flows[-1])
        return event

    fabric._transfer = spy
    for size in (1 << 26, 1 << 28, 1 << 29):
        fabric.run("all_gather", size, range(8))
    env.run()
    assert seen and all(f.done == pytest.approx(f.work) for f in seen)
    assert sum(r.nbytes for r in fabric.records) == (1 << 26) + (1 << 28) + (1 << 29)
