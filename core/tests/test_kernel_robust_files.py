"""Ordinary file problems exit 2 with the path and what is wrong: predict inputs and outputs,
Empirical sample files, model databases, summaries given to compare, schema --output."""

from __future__ import annotations

import json
import types

import labsim
import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim import hookimpl
from labsim.compare import load_summary
from labsim.default_plugins.distributions import load_samples
from labsim.errors import ConfigError, UsageError
from labsim.orchestrator import Orchestrator, load_experiment
from labsim.predict import predict_file
from labsim.testing import make_registry

import kernel_test_plugin
from conftest import BASIC


class _Dev(labsim.Device):
    name = "toy"

    def gemm_time(self, m, n, k, dtype="bf16"):
        return 2.0 * m * n * k / 1e15


def _register_devices(register):
    register(_Dev())


@pytest.fixture
def device_registry():
    module = types.SimpleNamespace(__name__="toy_devices", register_devices=hookimpl(_register_devices))
    return make_registry(kernel_test_plugin, module)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"op,m,n,k,dtype\ngemm,1,2,3,bf16\ngemm,nan,2,3,bf16\n", "line 3: column 'm' must be a whole number"),
        (b"op,m,n,k,dtype\ngemm,1,2,3,bf16\ngemm,1,inf,3,bf16\n", "line 3: column 'n'"),
        (b"op,m,n,k,dtype\ngemm,1,2,3,bf16\nfoo,1,2,3,bf16\n", "line 3: column 'op' must be one of"),
        (b"op,collective,nbytes,ranks\ncollective,all_reduce,10,10000000\n", "line 2: column 'ranks' is 10000000; at most"),
        (b"op,m\n\x00\x01", "binary"),
        (b"op,m,n,k,dtype\ngemm,\xe9,2,3,bf16\n", "line 2 is not UTF-8"),
        (b"op,m,n,k,dtype\ngemm,\"" + b"1" * 200000 + b"\",2,3,bf16\n", "line 2: field larger than field limit"),
    ],
)
def test_predict_names_the_file_line_and_column(device_registry, tmp_path, content, message):
    path = tmp_path / "ops.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        predict_file("toy", path, tmp_path / "out.csv", device_registry)
    assert not (tmp_path / "out.csv").exists()


def test_predict_output_unwritable(device_registry, tmp_path):
    path = tmp_path / "ops.csv"
    path.write_text("op,m,n,k,dtype\ngemm,1,2,3,bf16\n")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="cannot write --output .*afile"):
        predict_file("toy", path, tmp_path / "afile" / "out.csv", device_registry)
    assert predict_file("toy", path, tmp_path / "out.csv", device_registry) == 1


def test_schema_output_unwritable_exits_2(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(cli_mod.cli, ["schema", "--output", str(tmp_path / "afile" / "s.json")])
    assert result.exit_code == 2 and "cannot write --output" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        (b"1\n2\nnan\n", "line 3: 'nan' is not a finite number"),
        (b"1\n-inf\n", "line 2: '-inf' is not a finite number"),
        (b"\x00\x01\x02", "binary"),
        (b"1\n\xff\n", "line 2 is not UTF-8"),
        (b"\"" + b"1" * 200000 + b"\"\n", "field larger than field limit"),
    ],
)
def test_empirical_sample_files(tmp_path, content, message):
    path = tmp_path / "s.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_samples(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not a readable summary.json"),
        (b"\x00\x01", "binary"),
        (json.dumps({"frameworks": {"a": 5}}).encode(), "frameworks.a is a int"),
        (json.dumps([1]).encode(), "no `frameworks` section"),
    ],
)
def test_compare_refuses_malformed_summaries(tmp_path, content, message):
    (tmp_path / "summary.json").write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_summary(tmp_path)
