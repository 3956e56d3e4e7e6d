"""The client_profiles workload: determinism, weights, sessions, closed loop, bursts, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim.errors import ConfigError
from labsim.orchestrator import Orchestrator, load_experiment
from llm_fake_server import experiment, simulate

CHAT = {
    "profile_name": "interactive_chat",
    "weight": 1.0,
    "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 10.0},
    "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 50, "sigma": 20, "is_int": True},
    "max_output_tokens_dist_config": {"type": "Uniform", "low": 50, "high": 200, "is_int": True},
    "conversational_probability": 0.3,
    "streaming_response_probability": 0.9,
}


def client_fields(r):
    return (
        r.request_id,
        r.arrival_s,
        r.prompt_tokens,
        r.max_output_tokens,
        r.output_tokens,
        r.segments,
        r.session_id,
        r.turn,
        r.streaming,
        r.profile,
    )


def fresh_only(requests):
    return [client_fields(r) for r in requests if r.turn == 0]


def test_seed_file_workload_runs_and_is_numbered_in_arrival_order(llm_registry):
    summary, servers = simulate(
        llm_registry,
        {
            "total_duration": 60,
            "random_seed": 123,
            "bytes_per_token_estimate_for_network": 2,
            "client_profiles": [CHAT],
        },
    )
    seen = servers["a"].seen
    assert [r.request_id for r in seen] == list(range(len(seen)))
    assert all(b.arrival_s >= a.arrival_s for a, b in zip(seen, seen[1:], strict=False))
    assert all(r.arrival_s < 60 for r in seen)
    fresh = [r for r in seen if r.turn == 0]
    assert 500 < len(fresh) < 700  # 10 per second for 60 s
    assert summary["workload"]["requests_sent"] == len(seen)
    assert 0.8 < np.mean([r.streaming for r in seen]) < 0.97
    assert all(
        r.output_tokens == r.max_output_tokens and 50 <= r.max_output_tokens <= 200 for r in seen
    )


def test_two_copies_and_two_runs_see_the_identical_stream(llm_registry):
    workload = {
        "num_requests": 300,
        "client_profiles": [{**CHAT, "conversational_probability": 0.0}],
    }
    _, one = simulate(llm_registry, workload, servers=(("a", 1.0), ("b", 7.0)))
    _, two = simulate(llm_registry, workload, servers=(("a", 1.0), ("b", 7.0)))
    a, b = [client_fields(r) for r in one["a"].seen], [client_fields(r) for r in one["b"].seen]
    assert a == b == [client_fields(r) for r in two["a"].seen]
    _, other = simulate(llm_registry, workload, seed=2)
    assert [client_fields(r) for r in other["a"].seen] != a


def test_sessions_draw_the_same_content_in_every_copy(llm_registry):
    chat = {k: v for k, v in CHAT.items() if k != "inter_arrival_time_dist_config"}
    workload = {"burst_size": 100, "client_profiles": [{**chat, "conversational_probability": 0.6}]}
    _, servers = simulate(llm_registry, workload, servers=(("fast", 0.5), ("slow", 9.0)))

    def turns(seen):
        return sorted(
            (r.session_id, r.turn, r.prompt_tokens, r.output_tokens, r.segments, r.streaming)
            for r in seen
        )

    fast, slow = servers["fast"].seen, servers["slow"].seen
    assert len(fast) > 150  # plenty of follow-up turns
    assert turns(fast) == turns(slow)  # timing differs, the content of every turn does not
    assert [r.arrival_s for r in fast] != [r.arrival_s for r in slow]


def test_workload_random_seed_overrides_the_experiment_seed(llm_registry):
    workload = {
        "num_requests": 100,
        "random_seed": 7,
        "client_profiles": [{**CHAT, "conversational_probability": 0.0}],
    }
    _, one = simulate(llm_registry, workload, seed=1)
    _, two = simulate(llm_registry, workload, seed=99)
    assert [client_fields(r) for r in one["a"].seen] == [client_fields(r) for r in two["a"].seen]


def test_adding_a_profile_leaves_the_others_unchanged(llm_registry):
    chat = {**CHAT, "conversational_probability": 0.0}
    batch = {
        **chat,
        "profile_name": "batch",
        "inter_arrival_time_dist_config": {"type": "Constant", "value": 0.7},
    }
    _, alone = simulate(llm_registry, {"total_duration": 30, "client_profiles": [chat]})
    _, mixed = simulate(llm_registry, {"total_duration": 30, "client_profiles": [chat, batch]})

    def chat_only(seen):
        return [
            (r.arrival_s, r.prompt_tokens, r.max_output_tokens)
            for r in seen
            if r.profile == "interactive_chat"
        ]

    assert chat_only(alone["a"].seen) == chat_only(mixed["a"].seen)
    assert sum(r.profile == "batch" for r in mixed["a"].seen) == 42  # one every 0.7 s below 30 s


def test_weights_share_one_stream(llm_registry):
    small = {
        "profile_name": "small",
        "weight": 3,
        "prompt_tokens_dist_config": {"type": "Constant", "value": 10},
        "max_output_tokens_dist_config": {"type": "Constant", "value": 5},
    }
    big = {
        **small,
        "profile_name": "big",
        "weight": 1,
        "prompt_tokens_dist_config": {"type": "Constant", "value": 999},
    }
    summary, servers = simulate(
        llm_registry, {"num_requests": 4000, "request_rate": 50, "client_profiles": [small, big]}
    )
    counts = summary["workload"]["requests_per_profile"]
    assert counts["small"] + counts["big"] == 4000
    assert counts["small"] / 4000 == pytest.approx(0.75, abs=0.03)
    gaps = np.diff([r.arrival_s for r in servers["a"].seen])
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.05)  # Poisson at 50 per second


@pytest.mark.parametrize("process, cv", [("constant", 0.0), ("poisson", 1.0), ("gamma", 2.0)])
def test_arrival_processes(llm_registry, process, cv):
    profile = {
        "profile_name": "p",
        "prompt_tokens_dist_config": {"type": "Constant", "value": 8},
        "max_output_tokens_dist_config": {"type": "Constant", "value": 8},
    }
    workload = {
        "num_requests": 3000,
        "request_rate": 20,
        "arrival_process": process,
        "client_profiles": [profile],
    }
    if process == "gamma":
        workload["burstiness"] = 0.25  # shape 0.25: coefficient of variation 2
    _, servers = simulate(llm_registry, workload)
    gaps = np.diff([r.arrival_s for r in servers["a"].seen])
    assert gaps.mean() == pytest.approx(0.05, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, abs=0.15)


def test_conversation_carries_the_previous_turn(llm_registry):
    chat = {
        **CHAT,
        "conversational_probability": 0.8,
        "max_turns": 4,
        "think_time_dist_config": {"type": "Constant", "value": 2.0},
    }
    _, servers = simulate(
        llm_registry, {"total_duration": 20, "client_profiles": [chat]}, servers=(("a", 1.5),)
    )
    seen = servers["a"].seen
    by_key = {(r.session_id, r.turn): r for r in seen if r.session_id >= 0}
    follow_ups = [r for r in seen if r.turn > 0]
    assert follow_ups and max(r.turn for r in seen) <= 3
    for r in follow_ups:
        prev = by_key[(r.session_id, r.turn - 1)]
        assert r.segments[: len(prev.segments)] == prev.segments
        assert r.segments[len(prev.segments)][1] == prev.output_tokens
        assert r.prompt_tokens == sum(n for _, n in r.segments)
        assert r.arrival_s == pytest.approx(prev.arrival_s + 1.5 + 2.0)
    ids = [cid for r in seen for cid, _ in r.segments[-1:]]
    assert len(ids) == len(set(ids))  # every new piece is new content


def test_rejected_turn_ends_its_conversation(llm_registry):
    chat = {
        **CHAT,
        "conversational_probability": 1.0,
        "max_turns": 10,
        "prompt_tokens_dist_config": {"type": "Constant", "value": 100},
        "max_output_tokens_dist_config": {"type": "Constant", "value": 100},
        "think_time_dist_config": {"type": "Constant", "value": 0.1},
    }
    exp = experiment({"num_requests": 50, "client_profiles": [chat]})
    exp["frameworks_to_test"][0]["config"]["reject_above"] = 350
    summary = Orchestrator(load_experiment(exp), llm_registry).run(None, write_files=False).summary
    assert summary["workload"]["requests_sent"] == 50
    assert summary["stopped_by"] == "drained"


def test_stop_distribution_and_system_prompt(llm_registry):
    profile = {
        "profile_name": "rag",
        "system_prompt_tokens": 300,
        "num_system_prompts": 2,
        "prompt_tokens_dist_config": {"type": "Uniform", "low": 10, "high": 20, "is_int": True},
        "max_output_tokens_dist_config": {"type": "Constant", "value": 128},
        "output_tokens_dist_config": {"type": "Exponential", "mean": 60},
    }
    _, servers = simulate(
        llm_registry, {"num_requests": 500, "request_rate": 5, "client_profiles": [profile]}
    )
    seen = servers["a"].seen
    assert all(1 <= r.output_tokens <= r.max_output_tokens == 128 for r in seen)
    assert any(r.output_tokens < 128 for r in seen) and any(r.output_tokens == 128 for r in seen)
    firsts = {r.segments[0] for r in seen}
    assert len(firsts) == 2 and all(n == 300 for _, n in firsts)
    assert all(r.prompt_tokens == 300 + r.segments[1][1] for r in seen)


@pytest.mark.parametrize("p_conv", [0.0, 0.7])
def test_closed_loop_never_exceeds_n_in_flight(llm_registry, p_conv):
    chat = {**CHAT, "conversational_probability": p_conv}
    chat.pop("inter_arrival_time_dist_config")
    summary, servers = simulate(
        llm_registry,
        {"concurrency": 4, "num_requests": 200, "client_profiles": [chat]},
        servers=(("a", 0.25),),
    )
    server = servers["a"]
    assert len(server.seen) == 200 == summary["workload"]["requests_sent"]
    assert server.max_in_flight == 4 if p_conv == 0 else server.max_in_flight <= 4
    if p_conv == 0:  # back to back: 50 rounds of 4 requests, each 0.25 s
        assert server.seen[-1].arrival_s == pytest.approx(49 * 0.25)


def test_concurrency_caps_an_open_loop(llm_registry):
    chat = {k: v for k, v in CHAT.items() if k != "inter_arrival_time_dist_config"}
    workload = {
        "concurrency": 3,
        "request_rate": 100,
        "num_requests": 60,
        "client_profiles": [chat],
    }
    _, servers = simulate(llm_registry, workload, servers=(("a", 1.0),))
    assert servers["a"].max_in_flight == 3 and len(servers["a"].seen) == 60


def test_burst_arrives_at_once(llm_registry):
    chat = {k: v for k, v in CHAT.items() if k != "inter_arrival_time_dist_config"}
    summary, servers = simulate(llm_registry, {"burst_size": 250, "client_profiles": [chat]})
    seen = servers["a"].seen
    fresh = [r for r in seen if r.turn == 0]
    assert len(fresh) == 250 and all(r.arrival_s == 0 for r in fresh)
    assert summary["stopped_by"] == "drained"
    _, repeated = simulate(
        llm_registry,
        {
            "burst_size": 10,
            "burst_interval_s": 5,
            "total_duration": 20,
            "client_profiles": [{**chat, "conversational_probability": 0}],
        },
    )
    assert sorted({r.arrival_s for r in repeated["a"].seen}) == [0, 5, 10, 15]


@pytest.mark.parametrize(
    "workload, message",
    [
        ({"request_rate": 5, "client_profiles": [CHAT]}, "cannot have its own arrivals"),
        (
            {"client_profiles": [{**CHAT, "profile_name": "x"}, {**CHAT, "profile_name": "x"}]},
            "duplicate profile_name",
        ),
        (
            {
                "client_profiles": [
                    {k: v for k, v in CHAT.items() if k != "inter_arrival_time_dist_config"}
                ]
            },
            "no arrivals",
        ),
        (
            {"client_profiles": [{**CHAT, "conversation_probability": 0.3}]},
            "Did you mean 'conversational_probability'",
        ),
        ({"client_profiles": [{**CHAT, "weight": -1}]}, "weight: must be ≥ 0"),
        ({"request_rate": 1, "burst_size": 3, "client_profiles": [CHAT]}, "only one of"),
    ],
)
def test_bad_workloads_are_config_errors(llm_registry, workload, message):
    with pytest.raises(ConfigError) as info:
        Orchestrator(load_experiment(experiment(workload)), llm_registry).run(
            None, write_files=False
        )
    assert message in str(info.value)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 6),
    delay=st.floats(0.05, 3.0),
    p_conv=st.sampled_from([0.0, 0.5, 0.9]),
    rate=st.sampled_from([None, 2.0, 50.0]),
)
def test_users_busy_never_exceed_concurrency(llm_registry, n, delay, p_conv, rate):
    chat = {k: v for k, v in CHAT.items() if k != "inter_arrival_time_dist_config"}
    chat["conversational_probability"] = p_conv
    workload = {"concurrency": n, "num_requests": 60, "client_profiles": [chat]}
    if rate:
        workload["request_rate"] = rate
    summary, servers = simulate(llm_registry, workload, servers=(("a", delay),))
    assert servers["a"].max_in_flight <= n
    assert len(servers["a"].seen) == 60 == summary["workload"]["requests_sent"]
    assert summary["stopped_by"] == "drained"


def test_expected_requests_counts_rates_turns_and_bounds():
    from labsim_llm.workloads.profiles import ClientProfilesWorkload as W

    lengths = {"prompt_tokens_dist_config": {"type": "Constant", "value": 5},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 5}}
    one = {"profile_name": "a", "request_rate": 10, **lengths}
    mean_of = lambda block: 1 / block["rate"] if "rate" in block else None  # noqa: E731
    assert W.expected_requests({"client_profiles": [one], "total_duration": 60}, 3600, mean_of) == 600
    talk = {**one, "conversational_probability": 1.0, "max_turns": 1000}
    assert W.expected_requests({"client_profiles": [talk], "total_duration": 60}, 3600, mean_of) == 600_000
    capped = {"client_profiles": [one], "total_duration": 60, "num_requests": 50}
    assert W.expected_requests(capped, 3600, mean_of) == 50
    gaps = {"client_profiles": [lengths | {"profile_name": "b"}],
            "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 1e300}}
    assert W.expected_requests(gaps, 100, mean_of) == pytest.approx(1e302)


def test_conversations_and_system_prompts_are_bounded(llm_registry):
    import labsim
    from labsim.errors import ConfigError

    profile = {"profile_name": "a", "request_rate": 1, "max_turns": 10**9,
               "prompt_tokens_dist_config": {"type": "Constant", "value": 5},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 5}}
    exp = {"workload": {"type": "client_profiles", "client_profiles": [profile]},
           "frameworks_to_test": [{"name": "f", "type": "fake_server", "config": {}}]}
    with pytest.raises(ConfigError, match="max_turns: must be ≤ 1000"):
        labsim.run(exp, registry=llm_registry)
