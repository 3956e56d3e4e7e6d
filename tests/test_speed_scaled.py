"""``benchmarks/speed_serving.py --table --scaled``: the table's rows taken in turns with issue 13's
own rows at its commit, and its targets judged in seconds on the machine it measured on."""

from __future__ import annotations

import json

import pytest


def _fake_run(order, seconds_of):
    """A stand-in for the script's ``_run``: records ``(case, framework, n, import_path)`` and
    answers *seconds_of* of it."""

    def fake_run(cmd, import_path=None, one_blas_thread=True):
        if "--child" not in cmd:                    # labsim run of the start-up row
            return 0.5, 0.5, ""
        n = int(cmd[cmd.index("--child") + 1])
        key = (cmd[cmd.index("--case") + 1], cmd[cmd.index("--framework") + 1], n, import_path)
        order.append(key)
        seconds = seconds_of(key)
        return seconds, seconds, json.dumps({"n": n, "finished": n, "peak_rss_mb": 80.0,
                                             "steps": 7}) + "\n"

    return fake_run


def test_each_round_runs_the_reference_rows_first_from_their_sources(speed_serving, monkeypatch):
    order = []
    monkeypatch.setattr(speed_serving, "_run", _fake_run(order, lambda key: 1.0))
    runs = [("single", "vllm", 1000), ("pp2", "trtllm", 1000)]
    results, references = speed_serving.measure_scaled(runs, True, 2, "/old")
    one_round = [("single", "vllm", 100_000, "/old"), ("single", "trtllm", 100_000, "/old"),
                 ("single", "vllm", 1000, None), ("pp2", "trtllm", 1000, None)]
    assert order == one_round * 2
    assert [(r["case"], r["framework"], r["requests"]) for r in results] == runs
    assert sorted(references) == ["trtllm", "vllm"]
    assert references["vllm"]["requests"] == 100_000


def test_each_engine_goes_by_its_own_factor_and_every_target_says_its_margin(speed_serving):
    references = {"vllm": {"cpu_s": 15.0}, "trtllm": {"cpu_s": 40.0}}
    factors = speed_serving.scale_factors(references)
    assert factors == pytest.approx({"vllm": 11.7 / 15.0, "trtllm": 34.9 / 40.0})

    def fig(case, framework, requests, cpu_s, peak_mb=70.0):
        return {"case": case, "framework": framework, "requests": requests, "cpu_s": cpu_s,
                "peak_mb": peak_mb}

    results = [fig("single", "vllm", 100_000, 5.0), fig("pp2", "vllm", 100_000, 6.0),
               fig("single", "trtllm", 1_000_000, 60.0, peak_mb=250.0),
               fig("replicas", "vllm", 800_000, 50.0), fig("startup", "vllm", 10, 0.5)]
    assert speed_serving.target_lines(results, factors) == [
        "single vllm 100,000: 5.00 CPU s here, about 3.90 s there (target 5 s): met, 22% under",
        "single trtllm 1,000,000: 60.00 CPU s here, about 52.35 s there (target 50 s): "
        "NOT met, 5% over; peak 250 MB (target 200 MB): NOT met",
        "replicas vllm 800,000: 50.00 CPU s here, about 39.00 s there (target 60 s): met, 35% under",
        "startup vllm 10: 0.50 CPU s here, about 0.39 s there (target 0.6 s): met, 35% under",
    ]
    # an engine without its reference figure is not judged
    assert speed_serving.target_lines(results, {"trtllm": 1.0})[0].startswith("single trtllm")


def test_the_scaled_table_prints_rows_references_ratios_and_targets(speed_serving, monkeypatch,
                                                                     capsys):
    order = []
    # the old code twice this tree's seconds... and 3x for TensorRT-LLM
    def seconds_of(key):
        case, framework, n, path = key
        per = 1e-5 * (1 if path is None else (2 if framework == "vllm" else 3))
        return n * per

    monkeypatch.setattr(speed_serving, "_run", _fake_run(order, seconds_of))
    monkeypatch.setattr(speed_serving, "sources_of", lambda rev, into: "/old")
    monkeypatch.setattr(speed_serving, "reference_commit", lambda: "30df584" + "0" * 33)
    assert speed_serving.main(["--table", "--scaled", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    # every row but start-up in one round, the reference rows first
    assert len(order) == 2 + len(speed_serving.TABLE) - 1
    assert order[0][3] == order[1][3] == "/old"
    assert "  30df584    single    vllm    100,000" in out
    assert "all rows but start-up taken in turns (1 rounds) with 30df584's:" in out
    assert "  vllm PP=2: 1.00x one H100 (target 1.5x)" in out
    # vLLM: 11.7 s there for 2.0 s here; TensorRT-LLM: 34.9 s for 3.0 s
    assert ("issue 13's machine: it measured 30df584 at 11.7 s (vllm), 34.9 s (trtllm); this one, "
            "in these turns, at 2.00 s (vllm), 3.00 s (trtllm): seconds there per CPU second here "
            "5.850 (vllm), 11.633 (trtllm)") in out
    assert ("  single vllm 100,000: 1.00 CPU s here, about 5.85 s there (target 5 s): NOT met, "
            "17% over") in out
    assert "  startup vllm 10: 0.50 CPU s here, about 2.92 s there (target 0.6 s)" in out


def test_without_issue_13s_commit_it_is_one_line_and_exit_2(speed_serving, monkeypatch, capsys):
    monkeypatch.setattr(speed_serving, "reference_commit", lambda: None)
    assert speed_serving.main(["--table", "--scaled", "--repeat", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scaled needs issue 13's commit 30df584" in err[0]


@pytest.mark.parametrize("argv", [["--scaled"], ["--table", "--scaled", "--against", "HEAD"],
                                  ["--table", "--scaled", "--instructions"]])
def test_scaled_goes_with_the_table_alone(speed_serving, argv, capsys):
    with pytest.raises(SystemExit) as ex:
        speed_serving.main(argv)
    assert ex.value.code == 2
    assert "--scaled goes with --table" in capsys.readouterr().err
