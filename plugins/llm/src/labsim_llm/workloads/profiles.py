"""The ``client_profiles`` workload: synthetic LLM requests from a weighted mix of client profiles.

This is the seed-file ``workload:`` block::

    workload:
      total_duration: 300
      random_seed: 123
      client_profiles:
        - profile_name: interactive_chat
          weight: 1.0
          inter_arrival_time_dist_config: {type: Exponential, rate: 10.0}
          prompt_tokens_dist_config: {type: LogNormal, mean: 50, sigma: 20, is_int: true}
          max_output_tokens_dist_config: {type: Uniform, low: 50, high: 200, is_int: true}
          conversational_probability: 0.3
          streaming_response_probability: 0.9

How arrivals happen — exactly one of these:

* **one stream per profile** (no workload-level arrival keys): each profile
  sends requests with gaps from its own ``inter_arrival_time_dist_config``
  (or ``request_rate``, a Poisson shorthand). The first request comes one gap
  after t = 0. ``weight`` plays no part here except that a profile of weight 0
  sends nothing;
* **one shared stream** (``request_rate`` with ``arrival_process`` poisson |
  gamma | constant, or a workload-level ``inter_arrival_time_dist_config``):
  each arrival picks its profile with probability weight / Σ weights;
* **bursts** (``burst_size: N``): N requests at t = 0 (and again every
  ``burst_interval_s`` if given), profiles picked by weight;
* **closed loop** (``concurrency: N`` alone): N users, each sends a request as
  soon as its previous one finished (``vllm bench serve --max-concurrency N``
  at an infinite request rate). ``concurrency`` combined with any of the
  above caps the users busy at once instead.

Every stream is named after the profile and the quantity
(``("workload", profile_name, "prompt")`` ...), so every target framework's copy
draws identical numbers and adding a profile does not change the others.
"""

from __future__ import annotations

import bisect
import math

from labsim.errors import UsageError
from labsim.schema import DISTRIBUTION_REF

from labsim_llm.request import Request
from labsim_llm.workloads.base import ArrivalStream, RequestWorkload
from labsim_llm.workloads.draws import DEFAULT_MAX_TURNS, Profile, Uniforms

#: Think time between the turns of a conversation when the file gives none. Assumption (no
#: measured source): a reader's pause of 5 s on average; set think_time_dist_config to change it.
DEFAULT_THINK_TIME = {"type": "Exponential", "mean": 5.0}

PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}

PROFILE_SCHEMA = {
    "type": "object",
    "required": ["profile_name", "prompt_tokens_dist_config", "max_output_tokens_dist_config"],
    "additionalProperties": False,
    "properties": {
        "profile_name": {"type": "string", "minLength": 1},
        "weight": {
            "type": "number",
            "minimum": 0,
            "default": 1.0,
            "description": "Share of a shared arrival stream (weight / sum of weights); "
            "with one stream per profile, 0 disables the profile.",
        },
        "inter_arrival_time_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Gaps between this profile's requests (s).",
        },
        "request_rate": {
            **POSITIVE,
            "description": "Poisson arrivals per second (instead of "
            "inter_arrival_time_dist_config).",
        },
        "prompt_tokens_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Prompt tokens of a new request (system prompt excluded). Token counts "
            "are rounded to whole tokens, at least 1, whether or not the block says is_int.",
        },
        "max_output_tokens_dist_config": {
            **DISTRIBUTION_REF,
            "description": "max_tokens the client asks for.",
        },
        "output_tokens_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Where generation actually "
            "stops (EOS); capped by max_output_tokens. Absent: every request "
            "generates exactly max_output_tokens (ignore_eos).",
        },
        "conversational_probability": {
            **PROBABILITY,
            "default": 0.0,
            "description": "After each finished turn, the chance that the "
            "user sends a follow-up turn.",
        },
        "max_turns": {"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_MAX_TURNS},
        "think_time_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Seconds between a turn finishing and the follow-up being sent.",
        },
        "follow_up_prompt_tokens_dist_config": {
            **DISTRIBUTION_REF,
            "description": "New user tokens of a follow-up (default: prompt_tokens_dist_config).",
        },
        "streaming_response_probability": {
            **PROBABILITY,
            "default": 1.0,
            "description": "Share of requests whose client streams the answer; the others get it "
            "in one response when generation ends (their TTFT is their E2E, TPOT 0, and the whole "
            "answer crosses the client link at once; labsim_llm.engine.frontend).",
        },
        "system_prompt_tokens": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "A shared system prompt put before every prompt.",
        },
        "num_system_prompts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100_000,
            "default": 1,
            "description": "Distinct system prompts, picked uniformly.",
        },
    },
}

COMMON_PROPERTIES = {
    "type": {"type": "string"},
    "total_duration": {**POSITIVE, "description": "No request is sent at or after this time (s)."},
    "num_requests": {
        "type": "integer",
        "minimum": 1,
        "description": "Stop after sending this many requests (follow-up turns included).",
    },
    "random_seed": {
        "type": "integer",
        "minimum": 0,
        "description": "Seeds the workload's streams "
        "instead of simulation.random_seed (the workload then ignores --seed).",
    },
    "bytes_per_token_estimate_for_network": {
        "type": "number",
        "minimum": 0,
        "description": "Bytes one prompt or answer token takes on the client network link "
        "(hardware_profile.network_links); a framework's own setting wins; default 2.",
    },
    "concurrency": {
        "type": "integer",
        "minimum": 1,
        "description": "At most this many users busy "
        "at once; alone, a closed loop of this many users.",
    },
}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["client_profiles"],
    "additionalProperties": False,
    "properties": {
        **COMMON_PROPERTIES,
        "client_profiles": {"type": "array", "minItems": 1, "items": PROFILE_SCHEMA},
        "request_rate": {**POSITIVE, "description": "Requests per second of one shared stream."},
        "arrival_process": {"enum": ["poisson", "gamma", "constant"], "default": "poisson"},
        "burstiness": {
            **POSITIVE,
            "default": 1.0,
            "description": "Gamma shape of the gaps "
            "(as vllm bench serve --burstiness): < 1 burstier, 1 Poisson.",
        },
        "inter_arrival_time_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Gaps of one shared stream.",
        },
        "burst_size": {
            "type": "integer",
            "minimum": 1,
            "description": "Requests sent at once at t = 0.",
        },
        "burst_interval_s": {**POSITIVE, "description": "Repeat the burst this often (s)."},
        "think_time_dist_config": {
            **DISTRIBUTION_REF,
            "description": "Default think time of every profile.",
        },
    },
}


def _expected_turns(profile: dict) -> float:
    """Mean turns of a conversation: 1 + p + p² + … up to max_turns."""
    p = float(profile.get("conversational_probability", 0.0) or 0.0)
    turns = int(profile.get("max_turns", DEFAULT_MAX_TURNS))
    return float(turns) if p >= 1 else (1 - p**turns) / (1 - p)


class ClientProfilesWorkload(RequestWorkload):
    """Synthetic requests from weighted client profiles: open/closed loop, bursts, sessions."""

    name = "client_profiles"
    is_default = True  # seed 001's workload block names no type
    aliases = ("profiles", "synthetic")
    description = (
        "Synthetic LLM requests from weighted client profiles (open/closed loop, bursts, sessions)"
    )
    config_schema = CONFIG_SCHEMA

    def __init__(self, config: dict, context):
        super().__init__(config, context)
        self._check(config)
        default_think = config.get("think_time_dist_config") or DEFAULT_THINK_TIME
        self.profiles = [Profile(self, p, default_think) for p in config["client_profiles"]]
        shared = [p for p in self.profiles if p.weight > 0]
        total = sum(p.weight for p in shared)
        self._choices = shared
        self._cumulative = (
            [sum(p.weight for p in shared[: i + 1]) / total for i in range(len(shared))]
            if total > 0
            else []
        )
        self._pick_coins = Uniforms(self.rng("workload", "profile_choice"))
        self.mode = self._mode(config)
        self._shared_gaps = None
        if self.mode == "shared":
            self._shared_gaps = self.sampler(
                self._shared_gap_config(config), "time", "workload", "arrivals"
            )

    @classmethod
    def expected_requests(cls, config: dict, horizon_s: float, mean_of) -> float | None:
        """About how many first-turn requests arrive before *horizon_s* (None: cannot tell).

        The kernel calls it before a run to refuse or warn of enormous ones; *mean_of*
        gives the mean of a distribution block (None when unknown).
        """
        estimate = cls._expected_first_turns(config, horizon_s, mean_of)
        if estimate is not None:
            profiles = config.get("client_profiles") or [{}]
            turns = max(_expected_turns(p) for p in profiles)
            estimate *= turns
        if config.get("num_requests"):
            return min(float(config["num_requests"]), estimate or math.inf)
        return estimate

    @classmethod
    def _expected_first_turns(cls, config: dict, horizon_s: float, mean_of) -> float | None:
        horizon = min(horizon_s, config.get("total_duration") or horizon_s)
        if config.get("burst_size"):
            interval = config.get("burst_interval_s")
            return config["burst_size"] * (1 + (horizon // interval if interval else 0))

        def rate(block, per_second):
            if per_second:
                return float(per_second)
            if not block:
                return 0.0
            gap = mean_of(block)
            return None if gap is None else (math.inf if gap <= 0 else 1.0 / gap)

        shared = rate(config.get("inter_arrival_time_dist_config"), config.get("request_rate"))
        if shared is None or shared > 0:
            return None if shared is None else shared * horizon
        total = 0.0
        for profile in config.get("client_profiles") or []:
            if profile.get("weight", 1.0) > 0:
                own = rate(profile.get("inter_arrival_time_dist_config"), profile.get("request_rate"))
                if own is None:
                    return None
                total += own
        return total * horizon if total > 0 else None

    # -- configuration ------------------------------------------------------------------------

    @staticmethod
    def _check(config: dict) -> None:
        names = [p["profile_name"] for p in config["client_profiles"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UsageError(
                f"client_profiles: duplicate profile_name {dupes[0]!r}; names must be unique"
            )
        shared_keys = [
            k
            for k in ("request_rate", "inter_arrival_time_dist_config", "burst_size")
            if k in config
        ]
        if len(shared_keys) > 1:
            raise UsageError(
                f"workload: give only one of request_rate, inter_arrival_time_dist_config and "
                f"burst_size; got {', '.join(shared_keys)}"
            )
        own = [
            p["profile_name"]
            for p in config["client_profiles"]
            if "inter_arrival_time_dist_config" in p or "request_rate" in p
        ]
        for p in config["client_profiles"]:
            if "inter_arrival_time_dist_config" in p and "request_rate" in p:
                raise UsageError(
                    f"client_profiles[{p['profile_name']!r}]: give inter_arrival_time_dist_config "
                    "or request_rate, not both"
                )
        if shared_keys and own:
            raise UsageError(
                f"client_profiles[{own[0]!r}]: a profile cannot have its own arrivals when the "
                f"workload sets {shared_keys[0]} (one shared stream, profiles picked by weight)"
            )
        if "burst_interval_s" in config and "burst_size" not in config:
            raise UsageError("workload.burst_interval_s needs burst_size")
        if not shared_keys and "concurrency" not in config:
            missing = [
                p["profile_name"]
                for p in config["client_profiles"]
                if p["profile_name"] not in own and p.get("weight", 1.0) > 0
            ]
            if missing:
                raise UsageError(
                    f"client_profiles[{missing[0]!r}]: no arrivals: give the profile an "
                    "inter_arrival_time_dist_config (or request_rate), or give the workload "
                    "request_rate, inter_arrival_time_dist_config, burst_size or concurrency"
                )
        if not any(p.get("weight", 1.0) > 0 for p in config["client_profiles"]):
            raise UsageError(
                "client_profiles: every weight is 0; at least one profile needs weight > 0"
            )

    @staticmethod
    def _mode(config: dict) -> str:
        if "burst_size" in config:
            return "burst"
        if "request_rate" in config or "inter_arrival_time_dist_config" in config:
            return "shared"
        if any(
            "inter_arrival_time_dist_config" in p or "request_rate" in p
            for p in config["client_profiles"]
        ):
            return "per_profile"
        return "closed_loop"

    @staticmethod
    def _shared_gap_config(config: dict) -> dict:
        if "inter_arrival_time_dist_config" in config:
            return config["inter_arrival_time_dist_config"]
        rate = float(config["request_rate"])
        process = config.get("arrival_process", "poisson")
        if process == "poisson":
            return {"type": "Exponential", "rate": rate}
        if process == "gamma":
            shape = float(config.get("burstiness", 1.0))
            return {"type": "Gamma", "shape": shape, "scale": 1.0 / (rate * shape)}
        return {"type": "Constant", "value": 1.0 / rate}

    # -- running ------------------------------------------------------------------------------

    def _pick(self) -> Profile:
        if len(self._choices) == 1:
            return self._choices[0]
        return self._choices[
            min(bisect.bisect_right(self._cumulative, self._pick_coins()), len(self._choices) - 1)
        ]

    def _begin(self) -> None:
        if self.mode == "per_profile":
            for profile in self.profiles:
                if profile.gaps is not None and profile.weight > 0:
                    ArrivalStream(self, profile.gaps, profile=profile).start()
        elif self.mode == "shared":
            ArrivalStream(self, self._shared_gaps, pick=self._pick).start()
        elif self.mode == "burst":
            self.env.process(self._bursts())
        else:
            self._open_sources += 1
            for _ in range(self.concurrency):
                if not self._allowed() or not self._room():
                    break
                self.offer(*self._pick().fresh(self))

    def _bursts(self):
        self._open_sources += 1
        size, interval = self.config["burst_size"], self.config.get("burst_interval_s")
        try:
            while True:
                for _ in range(size):
                    if not self._allowed() or not self._room():
                        return
                    self.offer(*self._pick().fresh(self))
                if interval is None:
                    return
                yield self.env.timeout(interval)
        finally:
            self._open_sources -= 1

    def _next_fresh(self) -> Request | None:
        if self.mode != "closed_loop" or not self._allowed() or not self._room():
            return None
        request, session = self._pick().fresh(self)
        if session is not None and not session.done:
            self._sessions[session.session_id] = session
            request.session_id = session.session_id
        return request

    def summary(self) -> dict:
        out = super().summary()
        out["arrivals"] = self.mode
        return out
