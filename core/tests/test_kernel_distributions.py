"""The built-in distributions: parameters, rounding, clipping, files of samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.default_plugins import distributions as d
from labsim.errors import UsageError


def _make(cls, **config):
    return cls(config, np.random.default_rng(1))


@pytest.mark.parametrize(
    "cls, config, mean",
    [
        (d.Exponential, {"rate": 10.0}, 0.1),
        (d.Exponential, {"mean": 2.0}, 2.0),
        (d.Gamma, {"shape": 2.0, "scale": 3.0}, 6.0),
        (d.Gamma, {"mean": 0.5, "cv": 2.0}, 0.5),
        (d.LogNormal, {"mean": 50, "sigma": 20}, 50.0),
        (d.Normal, {"mean": 5, "sigma": 1}, 5.0),
        (d.Uniform, {"low": 50, "high": 200}, 125.0),
        (d.Constant, {"value": 3}, 3.0),
        (d.Poisson, {"lam": 4}, 4.0),
        (d.Empirical, {"values": [1, 2, 3, 10]}, 4.0),
    ],
)
def test_sample_mean_matches_the_configured_mean(cls, config, mean):
    dist = _make(cls, **config)
    assert dist.mean() == pytest.approx(mean)
    assert dist.sample_n(200_000).mean() == pytest.approx(mean, rel=0.03)


def test_lognormal_sigma_is_the_standard_deviation_of_the_samples():
    samples = _make(d.LogNormal, mean=50, sigma=20).sample_n(400_000)
    assert samples.std() == pytest.approx(20, rel=0.05)


def test_uniform_integers_cover_both_ends():
    values = _make(d.Uniform, low=1, high=3, is_int=True).sample_n(10_000)
    assert set(values.tolist()) == {1, 2, 3}


@settings(max_examples=50, deadline=None)
@given(low=st.integers(0, 100), width=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_is_int_and_clipping_hold_for_any_parameters(low, width, seed):
    dist = d.Normal(
        {
            "mean": low + width / 2,
            "sigma": width + 1,
            "is_int": True,
            "min": low,
            "max": low + width,
        },
        np.random.default_rng(seed),
    )
    values = dist.sample_n(100)
    assert values.dtype.kind == "i"
    assert values.min() >= low and values.max() <= low + width
    assert isinstance(dist.sample(), int)


def test_empirical_reads_a_column_of_a_csv(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n1,10\n2,20\n")
    dist = _make(d.Empirical, path="s.csv", column="b")
    dist.prepare(tmp_path)
    assert set(dist.sample_n(100).tolist()) == {10.0, 20.0}


@pytest.mark.parametrize(
    "text, column, message",
    [
        ("a,b\n1,x\n", "b", "line 2: expected a number, got '1,x'"),
        ("a\n1\n", "b", "has no column 'b'; columns: a"),
        ("", None, "holds no samples"),
    ],
)
def test_empirical_file_errors(tmp_path, text, column, message):
    (tmp_path / "s.csv").write_text(text)
    dist = _make(d.Empirical, path="s.csv", **({"column": column} if column else {}))
    with pytest.raises(UsageError, match=message):
        dist.prepare(tmp_path)
