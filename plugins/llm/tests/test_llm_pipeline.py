"""StagePipeline: batches of a pipeline-parallel replica through the CPU and the GPU stages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim_llm.engine.pipeline import PipelinedReplica, StagePipeline


def test_a_batch_alone_takes_its_cpu_and_device_time():
    p = StagePipeline(4)
    assert p.run(1.0, cpu=0.002, device=0.008) == pytest.approx(1.010)


def test_a_full_pipeline_ends_one_batch_per_stage_time():
    p = StagePipeline(4)
    ends = [p.run(0.0, cpu=0.0, device=0.004) for _ in range(8)]
    # the first after the whole pipeline, then one every stage (0.001 s): four times the rate
    assert ends == pytest.approx([0.004 + 0.001 * i for i in range(8)])


def test_the_engine_core_cpu_is_one_server_too():
    p = StagePipeline(2)
    ends = [p.run(0.0, cpu=0.003, device=0.002) for _ in range(3)]
    assert ends == pytest.approx([0.005, 0.008, 0.011])   # the CPU, not the GPUs, sets the pace


def test_busy_time_is_the_union_of_the_batches():
    p = StagePipeline(2)
    assert p.busy(0.0, 2.0) == 2.0
    assert p.busy(1.0, 3.0) == 1.0       # [1, 2] was counted
    assert p.busy(5.0, 6.0) == 1.0       # an idle gap is not busy
    assert p.busy(5.5, 6.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(stages=st.integers(1, 6),
       batches=st.lists(st.tuples(st.floats(0, 0.01), st.floats(0, 0.002), st.floats(1e-4, 0.05)),
                        min_size=1, max_size=40))
def test_batches_leave_in_order_one_stage_time_apart_and_never_early(stages, batches):
    """FIFO stages: no batch overtakes an earlier one; the last stage serves one batch at a
    time, so consecutive ends are at least the later batch's stage time apart; and no batch
    ends before its own CPU and device work is done."""
    p = StagePipeline(stages)
    now, prev_end = 0.0, None
    for gap, cpu, device in batches:
        now += gap
        end = p.run(now, cpu=cpu, device=device)
        assert end >= now + cpu + device - 1e-12
        if prev_end is not None:
            assert end >= prev_end + device / stages - 1e-12
        prev_end = end


def test_at_least_one_stage():
    with pytest.raises(ValueError):
        StagePipeline(0)


def test_clocks_handed_back_time_the_next_batches_as_before():
    """What ``clocks`` reads and ``set_clocks`` puts back (a caller timing a run of batches
    inline) leaves the pipeline timing and counting busy time as if it had timed them."""
    a, b = StagePipeline(2), StagePipeline(2)
    for p in (a, b):
        p.run(0.0, 0.001, 0.010)
        p.run(0.0, 0.001, 0.012)
    cpu_free, free, until = a.clocks()
    free[0] = -1.0                      # a copy: the pipeline's own is untouched
    assert a.clocks()[1][0] > 0.0
    busy, end = b.turn(0.0, 0.011, 0.001, 0.010)
    c = StagePipeline(2)
    c.set_clocks(*a.clocks())
    assert c.turn(0.0, 0.011, 0.001, 0.010) == (busy, end)
    assert c.clocks() == b.clocks()


def test_an_engine_waiting_for_a_change_is_woken_by_the_next_batch_end_only():
    """``waiting_on_change`` holds from ``changed()`` until the next ``batch_ended()`` fires
    its event; a batch end with nobody waiting fires nothing."""
    env = simpy.Environment()
    pool = object()
    replica = PipelinedReplica(env, [SimpleNamespace(pool=pool), SimpleNamespace(pool=pool)])
    assert replica.shares_pool and not replica.waiting_on_change
    replica.batch_ended()                       # nobody waits: nothing to fire
    event = replica.changed()
    assert replica.changed() is event and replica.waiting_on_change
    replica.batch_ended()
    assert event.triggered and not replica.waiting_on_change
    replica.batch_ended()
    again = replica.changed()
    assert again is not event and replica.waiting_on_change and not again.triggered
