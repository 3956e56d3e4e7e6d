"""The public Python API across the installed plugins."""

from __future__ import annotations

import pytest


def test_collective_time_needs_a_device_or_topology(installed_registry):
    import labsim

    with pytest.raises(labsim.UsageError, match="name a device"):
        labsim.collective_time("all_reduce", 1 << 20)
    same = labsim.collective_time("all_reduce", 256 << 20, ranks=8, topology="dgx-a100")
    assert same == labsim.collective_time("all_reduce", 256 << 20, ranks=8, device="A100-SXM4-80GB")
    # a device named with a topology populates that topology with it
    assert (
        labsim.collective_time(
            "all_reduce", 256 << 20, ranks=8, device="H100-SXM", topology="dgx-a100"
        )
        < same
    )


def test_device_cost_oracle(installed_registry):
    import labsim

    h100 = labsim.device("h100")
    assert h100.name == "H100-SXM" and labsim.device("H100-SXM5-80GB") is h100
    big = h100.gemm_time(4096, 4096, 4096, dtype="bf16")
    assert 2 * 4096**3 / big < 989.4e12  # never faster than the datasheet peak
    assert h100.gemm_time(4096, 4096, 4096, dtype="fp8") < big
    decode = h100.attention_time(
        "decode", batch_size=64, seq_len=2048, num_heads=32, num_kv_heads=8, head_dim=128
    )
    kv_bytes = 64 * 2048 * 2 * 8 * 128 * 2
    assert kv_bytes / decode < h100.mem_bw  # never faster than HBM
    with pytest.raises(labsim.UsageError):
        labsim.device("V100-SXM2-32GB").gemm_time(128, 128, 128, dtype="fp8")


def test_predict_command(root, tmp_path):
    import csv
    import subprocess
    import sys

    ops = tmp_path / "ops.csv"
    ops.write_text(
        "op,m,n,k,dtype,phase,batch_size,seq_len,num_heads,num_kv_heads,head_dim,kv_dtype,"
        "collective,nbytes,ranks,kind\n"
        "gemm,4096,4096,4096,bf16,,,,,,,,,,,\n"
        "attention,,,,,decode,8,1024,32,8,128,bf16,,,,\n"
        "attention,,,,,prefill,1,2048,32,8,128,bf16,,,,\n"
        "collective,,,,,,,,,,,,all_reduce,67108864,8,\n"
        "memcpy,,,,,,,,,,,,,1073741824,,h2d\n"
    )
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labsim",
            "predict",
            "--device",
            "H100-SXM",
            "--input",
            str(ops),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5 and all(float(r["predicted_ms"]) > 0 for r in rows)
    assert rows[0]["m"] == "4096"  # the input columns are repeated
    bad = tmp_path / "bad.csv"
    bad.write_text("op,m,n,k,dtype\ngemm,12,x,4,bf16\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labsim",
            "predict",
            "--device",
            "H100-SXM",
            "--input",
            str(bad),
            "--output",
            str(tmp_path / "o2.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "line 2: column 'n' must be a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o2.csv").exists()
