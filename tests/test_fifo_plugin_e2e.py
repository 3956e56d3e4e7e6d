"""The installed third-party example plugin runs side by side with vLLM from the command line."""

from __future__ import annotations

import json
import subprocess
import sys


def test_fifo_against_vllm(root, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labsim",
            "run",
            str(root / "examples" / "fifo_vs_vllm.yaml"),
            "--out",
            str(out),
            "--set",
            "workload.total_duration=20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fifo" in proc.stdout and "vllm/fifo" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    fifo, vllm = summary["frameworks"]["fifo"], summary["frameworks"]["vllm"]
    # continuous batching serves the same traffic with far less queueing
    assert vllm["ttft_ms"]["p90"] < fifo["ttft_ms"]["p90"]
    assert summary["comparison"]["baseline"] == "fifo"
