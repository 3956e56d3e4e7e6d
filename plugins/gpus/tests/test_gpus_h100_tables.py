"""The measured H100-SXM tables shipped as package data, and a regression guard on them."""

import csv
from pathlib import Path

import labsim_gpus
import labsim_gpus.plugin as plugin
import numpy as np
from labsim_gpus import calibrate

TABLES = Path(labsim_gpus.__file__).resolve().parent / "data" / "calibration" / "h100_sxm"

#: the column layout of the project's A100 tables (shared data, calibration/a100_sxm/)
GEMM_COLUMNS = ["gpu", "framework", "version", "kernel_source", "dtype", "m", "n", "k",
                "latency_ms", "tflops", "src"]
ATTN_COLUMNS = ["gpu", "framework", "version", "kernel_source", "phase", "batch_size", "isl",
                "step", "seq_len", "num_heads", "num_key_value_heads", "head_dim", "attn_dtype",
                "kv_cache_dtype", "latency_ms", "src"]


def _read(name):
    with open(TABLES / name, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_tables_have_the_a100_layout():
    for name, columns in (("gemm_h100_sxm.csv", GEMM_COLUMNS), ("attn_h100_sxm.csv", ATTN_COLUMNS)):
        header, rows = _read(name)
        assert header == columns, name
        assert len(rows) > 1000, name
        assert {r["gpu"] for r in rows} == {"h100_sxm"}
        assert all(r["src"].startswith("aisimulate_core/systems/data/h100_sxm/") for r in rows)
        assert len({tuple(r.values()) for r in rows}) == len(rows), f"{name}: duplicate rows"
    assert (TABLES / "README.md").is_file()
    _, attn = _read("attn_h100_sxm.csv")
    assert {r["phase"] for r in attn} == {"context", "generation"}
    assert {r["kv_cache_dtype"] for r in attn} == {"bfloat16"}
    for r in attn:  # seq_len = isl (+ step for generation), as in the A100 table
        assert int(r["seq_len"]) == int(r["isl"]) + int(r["step"])


def test_h100_model_error_on_shipped_tables():
    """In sample: the shipped h100_sxm profile was fitted on these rows (6.9 / 14.5 / 4.6 %)."""
    points = calibrate.load_points(TABLES)
    families = {p.family for p in points}
    assert families == {"gemm", "prefill", "decode"}
    h100 = plugin.preset("H100-SXM")
    assert h100.profile_info["name"] == "h100_sxm"
    gemm = [p for p in points if p.family == "gemm"][::2]  # a subsample keeps this well under 1 s
    err = np.array([abs(h100.gemm_time(*p.shape[:3], dtype=p.shape[3]) / p.seconds - 1) for p in gemm])
    assert np.median(err) < 0.10, f"H100 median GEMM error {np.median(err):.1%}"
    for phase, limit in (("prefill", 0.20), ("decode", 0.08)):
        rows = [p for p in points if p.family == phase][::2]
        err = np.array([abs(h100.attention_time(phase, batch_size=b, seq_len=s, num_heads=h,
                                                num_kv_heads=kv, head_dim=hd, kv_dtype=dt)
                            / p.seconds - 1) for p in rows for b, s, h, kv, hd, dt in [p.shape]])
        assert np.median(err) < limit, f"H100 median {phase}-attention error {np.median(err):.1%}"


def test_shipped_h100_profile_records_its_fit():
    data = plugin.shipped_profile("h100_sxm.json")
    assert data["device"] == "H100-SXM" and data["arch"] == "hopper"
    assert data["data"]["folder"] == "h100_sxm" and data["data"]["framework"] == "vLLM"
    assert data["data"]["points"] == {"gemm": 4056, "prefill": 1957, "decode": 2440}
    assert "aisimulate 0.13.0.dev" in data["attribution"] and "Apache-2.0" in data["attribution"]
