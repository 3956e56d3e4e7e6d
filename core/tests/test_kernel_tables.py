"""A table is one header: a second component asking for it with other columns is refused."""

from __future__ import annotations

import pytest
from labsim.errors import PluginError
from labsim.metrics import MetricsCollector


def test_same_table_same_columns_is_shared():
    metrics = MetricsCollector([], {})
    a = metrics.table("requests", ["id", "status"])
    assert metrics.table("requests", ["id", "status"]) is a


def test_same_table_other_columns_is_a_plugin_error():
    """Two frameworks wrote rows of 20 and 11 fields under one requests.csv header."""
    metrics = MetricsCollector([], {})
    metrics.table("requests", ["id", "framework", "replica", "status"])
    with pytest.raises(PluginError, match=r"table 'requests' is open with columns .*'replica'"):
        metrics.table("requests", ["id", "framework", "status"])
