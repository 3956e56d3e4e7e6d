"""The trace workload (CSV replay) and the seed-001 model lookup through a real run."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest
from labsim.errors import ConfigError
from labsim.orchestrator import Orchestrator, load_experiment
from llm_fake_server import simulate


def builtin_rows(name, n):
    path = resources.files("labsim_llm").joinpath("data", "traces", f"{name}.csv")
    with open(str(path), newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    return [
        (float(r["arrived_at"]), int(r["num_prefill_tokens"]), int(r["num_decode_tokens"]))
        for r in rows
    ]


def test_builtin_trace_replays_with_time_scaling(llm_registry):
    summary, servers = simulate(
        llm_registry,
        {"type": "trace", "path": "builtin:splitwise_conv", "time_scale": 0.5, "max_requests": 200},
    )
    seen = servers["a"].seen
    rows = builtin_rows("splitwise_conv", 200)
    assert len(seen) == 200 == summary["workload"]["trace_rows"]
    for request, (t, prompt, out) in zip(seen, rows, strict=False):
        assert request.arrival_s == pytest.approx(t * 0.5)
        assert (request.prompt_tokens, request.output_tokens, request.max_output_tokens) == (
            prompt,
            out,
            out,
        )
        assert len(request.segments) == 1
    assert [r.request_id for r in seen] == list(range(200))


def test_start_and_end_window(llm_registry):
    _, servers = simulate(
        llm_registry,
        {"type": "trace", "path": "builtin:splitwise_code", "start_s": 200, "end_s": 260},
    )
    rows = [r for r in builtin_rows("splitwise_code", 100_000) if 200 <= r[0] < 260]
    seen = servers["a"].seen
    assert len(seen) == len(rows) > 10
    assert seen[0].arrival_s == pytest.approx(rows[0][0] - 200)


def test_own_file_with_columns_sessions_and_units(llm_registry, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("ms,conv,in,out\n0,a,100,10\n500,b,50,5\n2000,a,130,7\n2500,a,90,3\n")
    workload = {
        "type": "trace",
        "path": str(path),
        "time_unit": "ms",
        "columns": {
            "timestamp": "ms",
            "session_id": "conv",
            "prompt_tokens": "in",
            "output_tokens": "out",
        },
    }
    _, servers = simulate(llm_registry, workload)
    first, other, follow, short = servers["a"].seen
    assert [r.arrival_s for r in (first, other, follow, short)] == [0, 0.5, 2.0, 2.5]
    assert follow.session_id == first.session_id != other.session_id and follow.turn == 1
    assert follow.segments[:2] == (*first.segments, (follow.segments[1][0], 10))
    assert follow.segments[2][1] == 130 - 110 and follow.prompt_tokens == 130
    assert (
        len(short.segments) == 1 and short.turn == 2
    )  # shorter than the conversation: fresh content


def test_repeat_replays_the_rows_back_to_back_as_new_conversations(llm_registry, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("time,session_id,prompt_tokens,output_tokens\n0,a,100,10\n1,b,50,5\n3,a,130,7\n")
    summary, servers = simulate(llm_registry, {"type": "trace", "path": str(path), "repeat": 3})
    seen = servers["a"].seen
    # span 3 s plus one mean gap (1.5 s): copies start at 0, 4.5 and 9 s
    assert [r.arrival_s for r in seen] == [0, 1, 3, 4.5, 5.5, 7.5, 9, 10, 12]
    assert [r.prompt_tokens for r in seen] == [100, 50, 130] * 3
    sessions = [r.session_id for r in seen]
    assert len(set(sessions)) == 6                      # two conversations per copy, all new
    assert [r.turn for r in seen] == [0, 0, 1] * 3      # each copy's conversation starts afresh
    assert summary["workload"]["repeat"] == 3 and summary["workload"]["trace_rows"] == 9


def test_relative_path_is_read_from_the_experiment_folder(llm_registry, tmp_path):
    (tmp_path / "t.csv").write_text("timestamp,prompt_tokens,output_tokens\n0,5,5\n1,6,6\n")
    exp = {
        "workload": {"type": "trace", "path": "t.csv"},
        "frameworks_to_test": [
            {"name": "a", "type": "fake_server", "is_target_for_workload": True}
        ],
    }
    (tmp_path / "exp.json").write_text(json.dumps(exp))
    summary = (
        Orchestrator(load_experiment(tmp_path / "exp.json"), llm_registry)
        .run(None, write_files=False)
        .summary
    )
    assert summary["workload"]["requests_sent"] == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("when,prompt_tokens,output_tokens\n0,5,5\n", "no timestamp column"),
        (
            "timestamp,prompt_tokens,output_tokens\n0,5,5\n1,five,5\n",
            "line 3: column 'prompt_tokens': 'five' is not a number",
        ),
        (
            "timestamp,prompt_tokens,output_tokens\n0,5,5\n1,5,-2\n",
            "line 3: column 'output_tokens': '-2' is not a whole number ≥ 0",
        ),
        ("timestamp,prompt_tokens,output_tokens\nyesterday,5,5\n", "line 2: column 'timestamp'"),
        ("timestamp,prompt_tokens,output_tokens\n0,5\n", "line 2: column 'output_tokens' is empty"),
        ("timestamp,prompt_tokens,output_tokens\n", "no requests"),
    ],
)
def test_bad_trace_names_file_line_and_column(llm_registry, tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        simulate(llm_registry, {"type": "trace", "path": str(path)})
    assert message in str(info.value) and "bad.csv" in str(info.value)


def test_missing_trace_and_unknown_builtin(llm_registry):
    with pytest.raises(ConfigError, match="trace file not found: nope.csv"):
        simulate(llm_registry, {"type": "trace", "path": "nope.csv"})
    with pytest.raises(ConfigError, match="builtin:splitwise_code, builtin:splitwise_conv"):
        simulate(llm_registry, {"type": "trace", "path": "builtin:sharegpt"})


# -- seed 001: model_profile_id through model_characteristics_db_path or the registry ------------

SEED_WORKLOAD = {
    "total_duration": 5,
    "random_seed": 123,
    "bytes_per_token_estimate_for_network": 2,
    "client_profiles": [
        {
            "profile_name": "interactive_chat",
            "weight": 1.0,
            "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 10.0},
            "prompt_tokens_dist_config": {
                "type": "LogNormal",
                "mean": 50,
                "sigma": 20,
                "is_int": True,
            },
            "max_output_tokens_dist_config": {
                "type": "Uniform",
                "low": 50,
                "high": 200,
                "is_int": True,
            },
            "conversational_probability": 0.3,
            "streaming_response_probability": 0.9,
        }
    ],
}


def seed_experiment(db_path=None):
    exp = {
        "simulation": {"max_simulation_time": 100, "random_seed": 42},
        "workload": SEED_WORKLOAD,
        "frameworks_to_test": [
            {
                "name": "vllm_Llama3_8B_fp16",
                "type": "fake_server",
                "is_target_for_workload": True,
                "config": {"model_profile_id": "Llama3-8B"},
            }
        ],
    }
    if db_path:
        exp["model_characteristics_db_path"] = db_path
    return exp


def test_seed_model_from_file_or_registry(llm_registry, tmp_path):
    (tmp_path / "model_params.json").write_text(
        json.dumps(
            {
                "Llama3-8B": {
                    "num_layers": 32,
                    "hidden_size": 4096,
                    "num_attention_heads": 32,
                    "num_key_value_heads": 8,
                    "vocab_size": 128256,
                    "intermediate_size": 14336,
                    "torch_dtype": "float16",
                }
            }
        )
    )
    (tmp_path / "exp.json").write_text(json.dumps(seed_experiment("model_params.json")))
    from_file = Orchestrator(load_experiment(tmp_path / "exp.json"), llm_registry).run(
        None, write_files=False
    )
    fw = from_file.summary["frameworks"]["vllm_Llama3_8B_fp16"]
    assert fw["model"] == "Llama3-8B" and fw["weight_bytes"] == 2 * 8_030_261_248
    registered = Orchestrator(load_experiment(seed_experiment()), llm_registry).run(
        None, write_files=False
    )
    assert registered.summary["frameworks"]["vllm_Llama3_8B_fp16"]["model"] == "Llama-3-8B"
    assert registered.summary["workload"]["requests_sent"] > 30


def test_bad_model_file_entry_is_a_config_error(llm_registry, tmp_path):
    (tmp_path / "m.json").write_text(
        json.dumps({"models": [{"id": "Llama3-8B", "num_layers": -3}]})
    )
    (tmp_path / "exp.json").write_text(json.dumps(seed_experiment("m.json")))
    with pytest.raises(ConfigError) as info:
        Orchestrator(load_experiment(tmp_path / "exp.json"), llm_registry).run(
            None, write_files=False
        )
    assert "field 'num_layers' must be a positive integer; got -3" in str(info.value)
    assert "frameworks_to_test[0].config" in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,\x00\x00", "binary"),
        (b"arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n1,\xe9,5\n", "line 3 is not UTF-8"),
        (b"arrived_at,num_prefill_tokens,num_decode_tokens\n0,1e30,5\n", "line 2: column 'num_prefill_tokens'"),
        (b"arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,\"" + b"5" * 200000 + b"\"\n",
         "line 2: field larger than field limit"),
    ],
)
def test_unreadable_traces_exit_2_naming_the_file(tmp_path, content, message):
    from labsim.errors import UsageError
    from labsim_llm.workloads.trace import load_trace

    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_trace(str(path), (0, len(content)), (), 1.0)
