"""ServingMetrics keeps bounded memory: running sums and latency samples that switch to bins."""

import numpy as np
import pytest
from labsim_llm.engine.serving_metrics import LatencySample


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
