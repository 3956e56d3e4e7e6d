"""``benchmarks/speed_serving.py --table``: the rows issue 13's ratios compare are taken in turns,
and the ratios are worked out from their medians."""

from __future__ import annotations

import json


def test_the_ratio_rows_take_turns_a_round_at_a_time(speed_serving, monkeypatch):
    order = []

    def fake_run(cmd, import_path=None, one_blas_thread=True):
        n, framework, case = int(cmd[3]), cmd[5], cmd[7]
        order.append((case, framework, n))
        # seconds that drift upwards run by run, as a machine's load can
        seconds = 1.0 + len(order) / 100
        result = {"n": n, "finished": n, "peak_rss_mb": 50.0, "steps": 7}
        return seconds, seconds, json.dumps(result) + "\n"

    monkeypatch.setattr(speed_serving, "_run", fake_run)
    rows = speed_serving.TURNS
    results = speed_serving.measure_in_turns(rows, True, 3)
    assert order == rows * 3                      # a round of every row, three times
    assert [(r["case"], r["framework"], r["requests"]) for r in results] == rows
    # each row's median is its second turn's: run k of the rounds, i + 1 + len(rows)
    assert [r["cpu_s"] for r in results] == [1.0 + (i + 1 + len(rows)) / 100 for i in range(len(rows))]


def test_issue_13s_ratios_come_from_the_medians(speed_serving):
    def fig(case, framework, requests, cpu_s):
        return {"case": case, "framework": framework, "requests": requests, "cpu_s": cpu_s}

    results = [fig("single", "vllm", 100_000, 4.0), fig("single", "trtllm", 100_000, 5.0),
               fig("pp2", "vllm", 100_000, 5.0), fig("pp2", "trtllm", 100_000, 5.5),
               fig("trace", "vllm", 200_000, 10.0), fig("trace", "trtllm", 200_000, 12.0)]
    assert speed_serving.ratio_lines(results) == [
        "vllm PP=2: 1.25x one H100 (target 1.5x)",
        "vllm trace: 50 us a request, 1.25x the synthetic's 40 us (target 1.5x)",
        "trtllm PP=2: 1.10x one H100 (target 1.5x)",
        "trtllm trace: 60 us a request, 1.20x the synthetic's 50 us (target 1.5x)",
    ]
    # a row measured without its one-H100 figure has no ratio
    assert speed_serving.ratio_lines(results[2:]) == []


def test_the_table_prints_every_row_once_then_the_ratios(speed_serving, monkeypatch, capsys):
    def fake_run(cmd, import_path=None, one_blas_thread=True):
        if "--child" not in cmd:                    # labsim run of the start-up row
            return 0.5, 0.5, ""
        n = int(cmd[cmd.index("--child") + 1])
        return 1.0, 1.0, json.dumps({"n": n, "finished": n, "peak_rss_mb": 50.0, "steps": 7}) + "\n"

    monkeypatch.setattr(speed_serving, "_run", fake_run)
    assert speed_serving.main(["--table", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split()[:3] for line in lines[2:2 + len(speed_serving.TABLE)]]
    assert rows == [[case, framework, f"{n:,}"] for case, framework, n in speed_serving.TABLE]
    assert lines[2 + len(speed_serving.TABLE)] == "ratios (the first 6 rows taken in turns):"
    assert lines[-4:] == [
        "  vllm PP=2: 1.00x one H100 (target 1.5x)",
        "  vllm trace: 5 us a request, 0.52x the synthetic's 10 us (target 1.5x)",
        "  trtllm PP=2: 1.00x one H100 (target 1.5x)",
        "  trtllm trace: 5 us a request, 0.52x the synthetic's 10 us (target 1.5x)",
    ]
