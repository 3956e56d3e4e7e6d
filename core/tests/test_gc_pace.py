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


@pytest.fixture
def collector():
    """The collector as it was, and nothing left frozen, after the test."""
    running = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if running else gc.disable)()


def test_start_up_pauses_collection_then_freezes_what_it_loaded(collector):
    from labsim.gc_pace import start_up_frozen

    gc.enable()
    gc.unfreeze()
    with start_up_frozen():
        assert not gc.isenabled()
        loaded = [{"a module's": "objects"} for _ in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(loaded)     # in the permanent generation
    gc.unfreeze()
    with pytest.raises(ImportError):               # a failed load restarts it all the same
        with start_up_frozen():
            raise ImportError("a plugin")
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_collector_turned_off_stays_off_and_nothing_is_frozen(collector):
    from labsim.gc_pace import start_up_frozen

    gc.disable()
    gc.unfreeze()
    with start_up_frozen():
        pass
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_the_labsim_command_loads_frozen_then_runs_with_the_collector_on(collector, monkeypatch):
    import labsim.cli
    from labsim.__main__ import main

    seen = []
    monkeypatch.setattr(labsim.cli, "cli",
                        lambda **kw: seen.append((kw, gc.isenabled(), gc.get_freeze_count())))
    gc.enable()
    gc.unfreeze()
    main()
    [(kwargs, running, frozen)] = seen
    assert kwargs == {"prog_name": "labsim"} and running and frozen > 0


def test_the_console_script_is_main():
    from importlib import metadata

    [script] = metadata.entry_points(group="console_scripts", name="labsim")
    assert script.value == "labsim.__main__:main"
