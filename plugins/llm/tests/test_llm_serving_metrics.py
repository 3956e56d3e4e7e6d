"""ServingMetrics keeps bounded memory: running sums and latency samples that switch to bins."""

import numpy as np
import pytest
from labsim_llm.engine import serving_metrics

#: the pure class, whose constants these tests patch (test_llm_native.py holds its twin to it)
LatencySample = serving_metrics.PURE["LatencySample"]


def test_latency_sample_is_exact_below_the_limit_and_skips_nan():
    rng = np.random.default_rng(3)
    values = rng.lognormal(3, 1, 5000)
    s = LatencySample()
    for v in values:
        s.add(float(v))
    s.add(float("nan"))
    stats = s.stats([0.5, 0.9, 0.99])
    assert stats["mean"] == values.mean()
    assert [stats["p50"], stats["p90"], stats["p99"]] == list(np.percentile(values, [50, 90, 99]))


def test_latency_sample_beyond_the_limit_holds_fixed_memory_within_0_05_percent(monkeypatch):
    monkeypatch.setattr(LatencySample, "EXACT_LIMIT", 1000)
    rng = np.random.default_rng(4)
    values = rng.lognormal(3, 1, 25_500)
    s = LatencySample()
    for v in values:
        s.add(float(v))
        assert len(s._values) < 1000          # never more than one batch of exact values
    stats = s.stats([0.5, 0.9, 0.99])
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    for p in (50, 90, 99):
        assert stats[f"p{p}"] == pytest.approx(np.percentile(values, p), rel=1.5e-3)
    assert s.stats([0.5]) == {"mean": stats["mean"], "p50": stats["p50"]}   # reading twice changes nothing


def test_empty_sample():
    assert LatencySample().stats([0.5]) == {"mean": None, "p50": None}


def test_latency_sample_extend_equals_add_one_by_one(monkeypatch):
    """``extend`` (a column of finished requests at once) keeps the same exact values and folds
    the same batches into bins as ``add`` one at a time: NaN left out, across several
    folds."""
    monkeypatch.setattr(LatencySample, "EXACT_LIMIT", 7)
    rng = np.random.default_rng(5)
    values = [float(v) for v in rng.lognormal(3, 1, 60)]
    values[3] = values[20] = float("nan")
    one, many = LatencySample(), LatencySample()
    for v in values:
        one.add(v)
    for start in range(0, len(values), 9):        # columns of 9 straddle the folds of 7
        many.extend(tuple(values[start:start + 9]))
    assert list(one._values) == list(many._values)
    assert (one._hist.counts == many._hist.counts).all() and one._hist.total == many._hist.total
    assert one.stats([0.5, 0.99]) == many.stats([0.5, 0.99])


def test_summary_of_kept_requests_counted_in_chunks_equals_one_at_a_time(monkeypatch, pure_metrics):
    """Finished requests' latencies, SLO goodput, token counts and span join the statistics a
    chunk of rows at a time; the summary is the same bit for bit whatever the chunk — one row
    (as each request finished) or chunks a run ends inside of — with a warm-up and an SLO
    that some requests miss, and one-token answers (NaN TPOT)."""
    import copy

    import labsim

    exp = {
        "name": "t", "simulation": {"max_simulation_time": 3600, "random_seed": 4},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "client_profiles", "total_duration": 8.0, "client_profiles": [{
            "profile_name": "p", "request_rate": 30.0,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 600, "sigma": 400,
                                          "is_int": True, "min": 4, "max": 4000},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 40, "sigma": 40,
                                              "is_int": True, "min": 1, "max": 300}}]},
        "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {"model": "Llama-3.1-8B"}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.99], "warm_up_duration_s": 1.5,
                           "slo": {"ttft_ms": 60.0, "tpot_ms": 12.0}},
    }
    summaries = []
    for chunk in (1, 7, 4096):
        monkeypatch.setattr(serving_metrics, "KEPT_CHUNK", chunk)
        summaries.append(labsim.run(copy.deepcopy(exp)).summary["frameworks"]["v"])
    s = summaries[0]
    assert 0 < s["goodput"]["fraction"] < 1 and s["requests"]["finished"] > 200
    assert summaries[1] == s and summaries[2] == s
