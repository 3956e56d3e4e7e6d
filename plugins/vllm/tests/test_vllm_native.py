"""The compiled replica (``labsim_vllm.native``) gives exactly what the pure-Python one gives.

Every case of the fast-path equivalence tests (the decode group, fast-forward, preemption,
prefix caching, V0, async scheduling, pipeline parallelism and its span, replicas, a time
limit) runs with the compiled replica and pipeline span and again with the pure classes:
identical request and step tables and summary. Shipped examples (a shared GPU among them) give the same files with
``LABSIM_NATIVE=0``. The pipeline span's loop of quiet landings
(:func:`~labsim_vllm.quiet_batches.land_quiet_batches`), compiled and pure, gives the same bits
from the same random state. CI builds the twins and sets ``LABSIM_REQUIRE_NATIVE=1``, so these tests
run there; elsewhere they skip when the twins were not built.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import os
from pathlib import Path

import labsim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.testing import exact_bits, group_status_when_changed, outputs_compiled_and_pure
from labsim_llm.engine import pipeline
from labsim_vllm import native, pipeline_span, plugin, quiet_batches, scheduler

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"
HERE = Path(__file__).resolve().parent


def _compiled():
    """The compiled ``(Replica, PipelineSpan, StagePipeline, PipelinedReplica)``, or skip (fail
    under LABSIM_REQUIRE_NATIVE=1)."""
    classes = native.classes()
    if classes is None:
        assert not REQUIRED, native.status()
        pytest.skip(f"labsim_vllm's compiled twins do not run here: {native.status()}")
    return classes


def _cases() -> dict:
    """The fast-path equivalence tests' cases, and their pipeline-parallel ones (with and
    without a steps table: without, the span keeps the step sums in locals)."""
    spec = importlib.util.spec_from_file_location("vllm_speed_cases", HERE / "test_vllm_speed_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = dict(module.CASES)
    for name, cfg in module.PP_CASES.items():
        for record in (True, False):
            cfg = copy.deepcopy(cfg)
            cfg["frameworks_to_test"][0]["config"]["record_steps"] = record
            cases[f"{name}-{'rows' if record else 'sums'}"] = cfg
    return cases


CASES = _cases()


def _outputs(cfg) -> tuple[str, str, str]:
    result = labsim.run(copy.deepcopy(cfg))
    steps = result.table("steps") if cfg["frameworks_to_test"][0]["config"].get("record_steps", True) else None
    return (repr(result.table("requests")), repr(steps),
            repr({**result.summary["frameworks"], "t": result.summary["simulated_time_s"]}))


def test_the_plugin_runs_the_compiled_classes_when_they_are_current():
    classes = _compiled()
    assert (plugin.Replica, plugin.PipelineSpan, plugin.StagePipeline, plugin.PipelinedReplica) == classes
    assert not set(classes) & {scheduler.Replica, pipeline_span.PipelineSpan, pipeline.StagePipeline,
                               pipeline.PipelinedReplica}
    assert set(native.status().values()) == {"compiled"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_compiled_replica_gives_the_outputs_of_the_pure_one(case, request):
    _compiled()
    compiled = _outputs(CASES[case])
    request.getfixturevalue("pure_replica")
    pure = _outputs(CASES[case])
    assert compiled == pure
    assert "finished" in compiled[2]


@pytest.mark.parametrize("example", ["quickstart.yaml", "seed001.yaml", "sharing_two_chat_servers.yaml"])
def test_a_shipped_example_is_byte_identical_in_pure_python(example, tmp_path):
    """``labsim run`` with the compiled replica and again with ``LABSIM_NATIVE=0``: the same
    files (seed 001's file caches the answers of conversations' turns, whose keys may be a
    range; the last example shares a GPU: spans timed at the GPU's shared rate)."""
    _compiled()
    path = HERE.parent.parent.parent / "examples" / example
    outputs = outputs_compiled_and_pure(path, tmp_path)
    assert outputs["1"].keys() == outputs["0"].keys() and "requests.csv" in outputs["1"]
    assert outputs["1"] == outputs["0"]


def test_a_stale_twin_holds_back_the_whole_group(monkeypatch):
    """One module edited since the twins were built: every twin of the group is left out (they
    build on one another), and the plugin's classes are the pure ones."""
    _compiled()
    status = group_status_when_changed(native, monkeypatch, edited="v0.py")
    assert status["v0"] == "pure Python (stale: source changed)"
    assert status["scheduler"] == "pure Python (its group's v0 not current)"


# -- the pipeline span's loop of quiet landings, compiled and pure, on the same random state ----

finite = st.floats(-1e6, 1e6, allow_nan=False)
seconds = st.floats(0.0, 10.0, allow_nan=False)


def _quiet_lanes(data, classes):
    """The same random pipeline state built with each of *classes*' ``(QuietLane, QuietRun)``:
    1 to 4 batches in flight by due time, groups that finish or run short of blocks, price
    tables with holes, integer and float work terms, warm-ups and context limits that stop
    the landings early."""
    n = data.draw(st.integers(1, 4))
    dues = sorted(data.draw(st.lists(seconds, min_size=n, max_size=n)))
    spec = []
    for i in range(n):
        G = data.draw(st.integers(0, 300))
        block = data.draw(st.integers(1, 16))
        decodes = data.draw(st.integers(1, 64))
        context = data.draw(st.integers(0, 5000))
        table = data.draw(st.lists(st.one_of(st.none(), st.floats(1e-4, 0.05)), max_size=80))
        prices = [None] * (context + decodes * (G + 1)) + table
        start = data.draw(seconds)
        work = data.draw(st.tuples(st.one_of(finite, st.integers(0, 10**9)), finite, st.integers(1, 96),
                                   st.integers(1, 8), finite, st.integers(0, 10**10),
                                   st.integers(0, 10**5), st.integers(0, 10**6)))
        spec.append((None, dues[i], i, start, start + data.draw(seconds), G,
                     dict.fromkeys(data.draw(st.lists(st.integers(G, G + 40), max_size=3))),
                     data.draw(st.lists(st.integers(0, 3), min_size=block, max_size=block)),
                     i == 0 or data.draw(st.booleans()), decodes, context, data.draw(st.integers(0, decodes)),
                     data.draw(seconds), context + decodes * G, data.draw(st.floats(0.0, 1e-3)), work,
                     prices, data.draw(st.sampled_from([10**12, context + decodes * (G + 2)]))))
    run = (data.draw(st.floats(0.0, 30.0)), data.draw(st.integers(0, 400)), data.draw(st.integers(0, 10**4)),
           n, data.draw(seconds), data.draw(st.lists(seconds, min_size=1, max_size=4)), data.draw(seconds),
           data.draw(st.sampled_from([-math.inf, 0.5, 5.0])), 7, 1.5, 2.5, 3.5, 4.5, 9, dues[0])
    made = []
    for lane_cls, run_cls in classes:
        made.append((run_cls(*run[:5], list(run[5]), *run[6:]),
                     [lane_cls(*fields[:6], dict(fields[6]), list(fields[7]), *fields[8:16], list(fields[16]),
                               fields[17]) for fields in spec]))
    return made


LANE_FIELDS = ("due", "order", "start", "end", "G", "last_end", "step_context", "next_price")
RUN_FIELDS = ("free", "used", "taken", "order", "cpu_free", "stage_free", "busy_until", "num_steps",
              "busy_s", "flops", "nbytes", "kv_s", "kv_peak", "gaps", "widths", "last", "quiet")


@settings(max_examples=300, deadline=None)
@given(data=st.data(), price=st.floats(1e-4, 0.05))
def test_quiet_pipeline_landings_compiled_and_pure(data, price):
    """Landing a pipeline-parallel replica's quiet batches (``quiet_batches.land_quiet_batches``),
    compiled and pure, from the same state: the same answers one after another (a missing
    price supplied each time, as the caller supplies it), the batches in the same order,
    and every clock, count, sum and gap the same, bit for bit."""
    _compiled()
    twin = importlib.import_module("labsim_vllm.native.quiet_batches")
    pure = quiet_batches
    states = _quiet_lanes(data, [(pure.QuietLane, pure.QuietRun), (twin.QuietLane, twin.QuietRun)])
    seen = []
    for (run, lanes), land in zip(states, (pure.land_quiet_batches, twin.land_quiet_batches)):
        answers = []
        for _ in range(6):
            answers.append(land(run, lanes))
            if answers[-1] != quiet_batches.PRICE_MISSING:
                break
            lanes[0].next_price = price
        seen.append((answers, [lane.order for lane in lanes],
                     [exact_bits([getattr(lane, f) for f in LANE_FIELDS]) for lane in lanes],
                     exact_bits([getattr(run, f) for f in RUN_FIELDS])))
    assert seen[0] == seen[1]
