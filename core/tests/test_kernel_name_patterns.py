"""The composed schema's case-insensitive name patterns, matched without a regex.

Validation answers ``pattern`` for the patterns :func:`labsim.schema.ci_pattern` made by a set
lookup (:func:`labsim.schema.ci_match`); these tests hold it to what ``re.search`` answers for
the same pattern, and the published pattern to what it was.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.errors import ConfigError
from labsim.schema import ci_match, ci_pattern

SPELLINGS = ["vllm", "vLLM-V1", "H100-SXM", "Llama-3.1-8B", "llama-3.1-8b", "rtx a6000",
             "a.b*c", "Ölmodell", "[x]"]


#: a client profile's token distributions, for the experiments below
DISTS = ("prompt_tokens_dist_config: {type: constant, value: 64, is_int: true}, "
         "max_output_tokens_dist_config: {type: CONSTANT, value: 8, is_int: true}")


def _variants(word: str):
    """*word* with its letters' cases changed (any letters: ASCII and not)."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.swapcase() if f else c for c, f in zip(word, flips)))


def _texts():
    near = st.sampled_from(SPELLINGS).flatmap(_variants)
    return st.one_of(
        near,
        st.tuples(near, st.sampled_from(["", "\n", "\n\n", " ", "x", "\r"])).map("".join),
        st.tuples(st.sampled_from(["", "\n", " "]), near).map("".join),
        st.text(max_size=12),
    )


@settings(max_examples=400, deadline=None)
@given(words=st.lists(st.sampled_from(SPELLINGS), min_size=1, max_size=5), text=_texts())
def test_a_name_pattern_matches_what_re_search_matches(words, text):
    pattern = ci_pattern(words)
    assert ci_match(pattern, text) == bool(re.search(pattern, text))


def test_the_pattern_is_spelled_as_before_and_does_not_depend_on_set_order():
    assert ci_pattern(["vllm", "vLLM-V1"]) == "^(?:[vV][lL][lL][mM]|[vV][lL][lL][mM]\\-[vV]1)$"
    assert ci_pattern(["b", "B", "a"]) == ci_pattern(["a", "B", "b"]) == "^(?:[aA]|[bB]|[bB])$"
    assert ci_pattern(["Ölmodell"]) == "^(?:Ö[lL][mM][oO][dD][eE][lL][lL])$"


def test_other_patterns_are_left_to_the_regex():
    assert ci_match("^gpu[0-9]+$", "gpu3") is None


def test_an_unknown_name_is_still_refused_with_the_names_allowed(tmp_path):
    from labsim.orchestrator import load_experiment

    path = tmp_path / "e.yaml"
    path.write_text("name: e\nhardware_profile: {device: H100-SXM}\n"
                    "workload: {type: client_profiles, num_requests: 4, client_profiles: "
                    "[{profile_name: a, request_rate: 4, " + DISTS + "}]}\n"
                    "frameworks_to_test: [{name: v, type: vllmm, config: {model: Llama-3.1-8B}}]\n")
    try:
        from labsim.orchestrator import Orchestrator

        Orchestrator(load_experiment(path))
    except ConfigError as ex:
        text = str(ex)
    else:
        raise AssertionError("an unknown framework type was accepted")
    assert "e.yaml:4:" in text and "named 'vllmm'" in text and "Did you mean 'vllm'?" in text


def test_a_known_name_in_any_case_is_accepted(tmp_path):
    from labsim.orchestrator import Orchestrator, load_experiment

    path = tmp_path / "e.yaml"
    path.write_text("name: e\nhardware_profile: {device: h100-sxm}\n"
                    "workload: {type: CLIENT_PROFILES, num_requests: 4, client_profiles: "
                    "[{profile_name: a, request_rate: 4, " + DISTS + "}]}\n"
                    "frameworks_to_test: [{name: v, type: VLLM, config: {model: llama-3.1-8b}}]\n")
    Orchestrator(load_experiment(path))
