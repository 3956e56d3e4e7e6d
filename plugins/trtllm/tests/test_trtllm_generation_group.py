"""A cohort's next finish (``labsim_trtllm.generation_group.next_finish``): read from a heap of
the iterations its members finish after, it is ``min(cohort.fin)`` whatever joins, finishes and
disbandings came before, in the pure module and in its compiled twin."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from labsim import native as labsim_native
from labsim_llm.request import Request
from labsim_trtllm import generation_group, native, seq

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"


def _modules() -> list:
    """``(generation_group, seq)``: the pure modules, and their compiled twins when they run
    here."""
    twins = labsim_native.package_group("labsim_trtllm", native.MODULES)
    assert twins is not None or not REQUIRED, native.status()
    compiled = [(twins["generation_group"], twins["seq"])] if twins is not None else []
    return [(generation_group, seq)] + compiled


def _member(seq_module):
    """A request in the group (fin holds members; the heap reads only the iterations)."""
    return seq_module.Seq(Request(0, 0.0, 16, 4, 4, ((0, 16),)), True, 2)


#: what happens to a cohort: a member joins finishing after iteration k, the iteration at the
#: top is applied (its members finish), iteration k is applied, or the cohort disbands
EVENTS = st.lists(st.one_of(st.tuples(st.just("join"), st.integers(0, 40)),
                            st.tuples(st.just("apply_next"), st.just(0)),
                            st.tuples(st.just("apply"), st.integers(0, 40)),
                            st.tuples(st.just("disband"), st.just(0))), max_size=80)


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_the_next_finish_is_the_least_iteration_anyone_finishes_after(events):
    for module, seq_module in _modules():
        co = module.Cohort(16)
        member = _member(seq_module)
        for event, k in events:
            if event == "join":
                module.add_finish(co, k, member)
            elif event == "apply_next" and co.fin:
                co.fin.pop(min(co.fin))
            elif event == "apply":
                co.fin.pop(k, None)
            elif event == "disband":
                module.clear_finishes(co)
            expected = min(co.fin) if co.fin else module.NO_FINISH
            assert module.next_finish(co) == expected, (module.__name__, events)


def test_members_finishing_after_one_iteration_share_its_entry():
    co = generation_group.Cohort(16)
    a, b = _member(seq), _member(seq)
    generation_group.add_finish(co, 7, a)
    generation_group.add_finish(co, 7, b)
    generation_group.add_finish(co, 3, a)
    assert co.fin == {7: [a, b], 3: [a]}
    assert generation_group.next_finish(co) == 3
    co.fin.pop(3)
    assert generation_group.next_finish(co) == 7
    co.fin.pop(7)
    assert generation_group.next_finish(co) == generation_group.NO_FINISH
    assert co.fin_at == []
