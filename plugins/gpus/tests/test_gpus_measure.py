"""`labsim measure` (labsim_gpus.measure): what it writes is what `labsim calibrate` fits, each
table whole or not at all, and a machine without PyTorch or a GPU gets one line and exit 2.
The timing itself needs a GPU; it was checked on an H200 (the module docstring's workflow)."""

from __future__ import annotations

import csv
import shutil
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from labsim.errors import UsageError
from labsim_gpus import calibrate, measure
from labsim_gpus.profiles import load_profile

H200_TABLES = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "h200_torch"


def _cli():
    """labsim's own command line (its UsageError handling: one line, exit 2)."""
    from labsim import cli as labsim_cli

    return labsim_cli.cli


def test_measure_without_pytorch_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)            # `import torch` raises ImportError
    out = tmp_path / "tables"
    result = CliRunner().invoke(_cli(), ["measure", "--out", str(out)])
    assert result.exit_code == 2
    assert "PyTorch" in result.output and "labsim-gpus[measure]" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_measure_without_a_cuda_gpu_says_so(tmp_path, monkeypatch):
    fake = types.ModuleType("torch")
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    fake.nn = types.ModuleType("torch.nn")
    fake.nn.functional = types.ModuleType("torch.nn.functional")
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setitem(sys.modules, "torch.nn", fake.nn)
    monkeypatch.setitem(sys.modules, "torch.nn.functional", fake.nn.functional)
    result = CliRunner().invoke(_cli(), ["measure", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


class FakeBench:
    """The bench's bookkeeping without a GPU (the tables are replaced in these tests)."""

    name, label = "NVIDIA H200", "h200"

    def env(self) -> str:
        return "gpu: NVIDIA H200\n"


def test_a_table_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    def gemm(b, w):
        w.writerow(measure.GEMM_COLUMNS)
        w.writerow(["h200"] * len(measure.GEMM_COLUMNS))

    def attn(b, w):
        w.writerow(measure.ATTN_COLUMNS)
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setitem(measure.TABLES, "gemm", gemm)
    monkeypatch.setitem(measure.TABLES, "attn", attn)
    with pytest.raises(RuntimeError):
        measure.measure(tmp_path, "h200", ["gemm", "attn"], bench=FakeBench())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env_h200.txt", "gemm_h200.csv"]


def test_unknown_parts_are_named():
    with pytest.raises(measure.MeasureError, match="unknown part.*known: gemm, attn, graph, copy"):
        measure.measure(Path("unused"), "x", ["gemm", "tensor"], bench=FakeBench())


def test_default_label_comes_from_the_gpu_name():
    assert measure.default_label("NVIDIA H100 80GB HBM3") == "h100_80gb_hbm3"
    assert measure.default_label("NVIDIA H200") == "h200"
    assert measure.default_label("NVIDIA A100-SXM4-80GB") == "a100_sxm4_80gb"


def test_calibrate_fits_the_tables_measure_writes(tmp_path):
    """Tables in the layout of `labsim measure` (these were made by its code on an H200):
    `labsim calibrate` fits them, keeping the faster attention backend of each shape, and the
    GEMMs timed back to back in a CUDA graph in place of the same shapes timed alone."""
    data = tmp_path / "h200"
    data.mkdir()
    for table in ("gemm", "attn", "gemm_graph"):
        shutil.copy(H200_TABLES / f"{table}_h200_torch.csv", data / f"{table}_h200.csv")
    with open(data / "attn_h200.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == measure.ATTN_COLUMNS
    points = calibrate.load_points(data)
    gemm = [p for p in points if p.family == "gemm"]
    attention = [p for p in points if p.family != "gemm"]
    with open(data / "gemm_graph_h200.csv", newline="") as handle:
        graph = {(int(r["m"]), int(r["n"]), int(r["k"]), "bf16"): float(r["latency_ms"]) * 1e-3
                 for r in csv.DictReader(handle)}
    with open(data / "gemm_h200.csv", newline="") as handle:
        alone = {(int(r["m"]), int(r["n"]), int(r["k"]), "bf16"): float(r["latency_ms"]) * 1e-3
                 for r in csv.DictReader(handle)}
    assert set(graph) < set(alone)
    assert {p.shape: p.seconds for p in gemm} == {**alone, **graph}
    assert len(attention) == len(rows) // 2                               # two backends per shape
    fastest = {}
    for r in rows:
        phase = {"context": "prefill", "generation": "decode"}[r["phase"]]
        key = (phase, *(int(r[c]) for c in ("batch_size", "seq_len", "num_heads", "num_key_value_heads",
                                            "head_dim")))
        fastest[key] = min(fastest.get(key, float("inf")), float(r["latency_ms"]) * 1e-3)
    assert sorted(p.seconds for p in attention) == sorted(fastest.values())

    out = tmp_path / "h200.json"
    result = CliRunner().invoke(_cli(), ["calibrate", "--device", "H200-SXM", "--data", str(data),
                                         "--output", str(out), "--iters", "40"])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    assert profile["data"]["points"] == {"gemm": 150, "prefill": 24, "decode": 36}
    assert profile["errors"]["gemm"]["median_ape"] < profile["datasheet_only_errors"]["gemm"]["median_ape"]


def test_calibrate_fits_streaming_and_the_host_link_to_copies(tmp_path):
    """Device copies fit stream_mem_eff, pinned host copies the host link's efficiency and
    latency (the H200's own tables: copies reach 0.86-0.89 of HBM, pinned PCIe copies 0.86 of
    the link)."""
    data = tmp_path / "h200"
    data.mkdir()
    for table in ("gemm", "attn", "copy", "host_copy"):
        shutil.copy(H200_TABLES / f"{table}_h200_torch.csv", data / f"{table}_h200.csv")
    points = calibrate.load_points(data)
    copies = [p for p in points if p.family == "copy"]
    host = [p for p in points if p.family == "host"]
    assert copies and all(p.shape[0] >= calibrate.COPY_MIN_BYTES for p in copies)
    with open(data / "host_copy_h200.csv", newline="") as handle:
        assert len(host) == sum(r["host_memory"] == "pinned" for r in csv.DictReader(handle))
    out = tmp_path / "h200.json"
    result = CliRunner().invoke(_cli(), ["calibrate", "--device", "H200-SXM", "--data", str(data),
                                         "--output", str(out), "--iters", "60"])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    params = profile["params"]
    assert 0.85 < params["stream_mem_eff"] < 0.92
    assert 0.82 < params["host_link_eff"] < 0.9
    assert {"stream_mem_eff", "host_link_eff", "host_copy_latency_s"} <= set(profile["fitted"])
    assert profile["errors"]["copy"]["median_ape"] < 3 and profile["errors"]["host"]["median_ape"] < 10
    assert "copy" in result.output and "host" in result.output


def test_a_host_copy_row_with_an_unknown_direction_is_named(tmp_path):
    shutil.copy(H200_TABLES / "gemm_h200_torch.csv", tmp_path / "gemm_x.csv")
    (tmp_path / "host_copy_x.csv").write_text("direction,host_memory,bytes,latency_ms\nsideways,pinned,4096,0.01\n")
    with pytest.raises(UsageError, match=r"host_copy_x.csv line 2: direction 'sideways'; allowed: h2d, d2h"):
        calibrate.load_points(tmp_path)
