"""The garbage collector's pace during a run: spaced while events run, as it was after."""

from __future__ import annotations

import gc

import pytest
from labsim.gc_pace import EVENT_LOOP_GC_THRESHOLD, young_collections_spaced


@pytest.fixture
def thresholds():
    old = gc.get_threshold()
    yield
    gc.set_threshold(*old)


def test_first_threshold_raised_in_the_block_and_restored_after_an_error(thresholds):
    gc.set_threshold(700, 9, 8)
    with pytest.raises(KeyError):
        with young_collections_spaced():
            assert gc.get_threshold() == (EVENT_LOOP_GC_THRESHOLD, 9, 8)
            raise KeyError
    assert gc.get_threshold() == (700, 9, 8)


def test_a_higher_threshold_or_collection_off_is_left_alone(thresholds):
    for first in (0, 10 * EVENT_LOOP_GC_THRESHOLD):
        gc.set_threshold(first, 10, 10)
        with young_collections_spaced():
            assert gc.get_threshold() == (first, 10, 10)
        assert gc.get_threshold() == (first, 10, 10)


def test_a_run_steps_its_events_with_young_collections_spaced(thresholds, monkeypatch):
    import labsim
    from labsim import progress

    seen = []
    run_events = progress.run_events
    monkeypatch.setattr(progress, "run_events",
                        lambda *a, **k: seen.append(gc.get_threshold()[0]) or run_events(*a, **k))
    pytest.importorskip("labsim_vllm")
    gc.set_threshold(700, 10, 10)
    labsim.run({"name": "gc", "simulation": {"max_simulation_time": 100, "random_seed": 1},
                "hardware_profile": {"device": "H100-SXM"},
                "workload": {"total_duration": 2, "client_profiles": [{
                    "profile_name": "c", "request_rate": 5,
                    "prompt_tokens_dist_config": {"type": "Constant", "value": 100},
                    "max_output_tokens_dist_config": {"type": "Constant", "value": 50}}]},
                "frameworks_to_test": [{"name": "vllm", "type": "vllm", "config": {"model": "Llama-3.1-8B"}}]})
    assert seen == [EVENT_LOOP_GC_THRESHOLD] and gc.get_threshold() == (700, 10, 10)
