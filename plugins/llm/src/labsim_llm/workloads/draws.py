"""The per-request draws of the LLM workloads, in a module that compiles (:mod:`labsim_llm.native`):
random values drawn in batches (:class:`Sampler`, :class:`Uniforms`), a client profile's
requests (:class:`Profile`) and a conversation's next turns (:class:`Session`).

Everything here runs once or more per request; the workloads that use it
(:mod:`labsim_llm.workloads.base`, :mod:`labsim_llm.workloads.profiles`) re-export it.

>>> u = Uniforms(__import__("numpy").random.default_rng(1))
>>> 0.0 <= u() < 1.0
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from labsim import native

from labsim_llm import native as llm_native
from labsim_llm.request import Request

#: Longest conversation when the file gives no max_turns. Assumption: caps the geometric tail.
DEFAULT_MAX_TURNS = 10

BATCH = 4096  # samples drawn per numpy call: one call per 4096 requests, not per request


class Sampler:
    """Values of one distribution, drawn :data:`BATCH` at a time.

    ``kind`` ``"tokens"`` rounds to integers ≥ 1; ``"time"`` clips at 0.
    """

    __slots__ = ("dist", "kind", "_buf", "_i")

    def __init__(self, dist, kind: str):
        self.dist = dist
        self.kind = kind
        self._buf: list = []
        self._i = 0

    def __call__(self) -> Any:
        if self._i >= len(self._buf):
            values = np.asarray(self.dist.sample_n(BATCH), dtype=float)
            if self.kind == "tokens":
                self._buf = np.maximum(np.rint(values), 1).astype(np.int64).tolist()
            else:
                self._buf = np.maximum(values, 0.0).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


class Uniforms:
    """Uniform [0, 1) numbers drawn :data:`BATCH` at a time (coin flips, choices)."""

    __slots__ = ("rng", "_buf", "_i")

    def __init__(self, rng: Any) -> None:
        self.rng = rng
        self._buf: list = []
        self._i = 0

    def __call__(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self.rng.random(BATCH).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


class Session:
    """One conversation: the prompt so far and the plan of the turns still to come.

    Each planned turn is ``(think_s, user_tokens, max_output_tokens, output_tokens,
    answer_id, user_id)``: the next prompt is the previous prompt's pieces, the
    previous answer (``answer_id``, which is that request's ``output_id``) and the new
    user message (``user_id``).
    """

    __slots__ = ("session_id", "profile", "streaming", "plan", "turn")

    def __init__(self, session_id: int, profile: str, streaming: bool, plan: list):
        self.session_id = session_id
        self.profile = profile
        self.streaming = streaming
        self.plan = plan
        self.turn = 0

    def follow_up(self, previous: Request) -> tuple[float, Request]:
        """``(think_s, request)`` of the next turn after *previous* finished."""
        think, user, max_out, out, answer_id, user_id = self.plan[self.turn]
        self.turn += 1
        segments = (*previous.segments, (answer_id, previous.output_tokens), (user_id, user))
        prompt = previous.prompt_tokens + previous.output_tokens + user
        return think, Request(
            -1,
            math.nan,
            prompt,
            max_out,
            out,
            segments,
            self.session_id,
            self.turn,
            self.streaming,
            self.profile,
            self.answer_id(self.turn),
        )

    def answer_id(self, turn: int) -> int:
        """Content id of the answer to the request of *turn* when a later turn carries it, else -1."""
        return self.plan[turn][4] if turn < len(self.plan) else -1

    @property
    def done(self) -> bool:
        return self.turn >= len(self.plan)


class Profile:
    """One client profile's samplers and settings, ready to make requests."""

    def __init__(self, wl: Any, cfg: dict, default_think: dict):
        name = self.name = cfg["profile_name"]
        self.weight = float(cfg.get("weight", 1.0))
        self.prompt = wl.sampler(
            cfg["prompt_tokens_dist_config"], "tokens", "workload", name, "prompt"
        )
        self.max_out = wl.sampler(
            cfg["max_output_tokens_dist_config"], "tokens", "workload", name, "max_output"
        )
        stop = cfg.get("output_tokens_dist_config")
        self.stop = wl.sampler(stop, "tokens", "workload", name, "output") if stop else None
        self.streaming_p = float(cfg.get("streaming_response_probability", 1.0))
        self.conv_p = float(cfg.get("conversational_probability", 0.0))
        self.max_turns = int(cfg.get("max_turns", DEFAULT_MAX_TURNS))
        self.coins = Uniforms(wl.rng("workload", name, "coins"))
        self.system_tokens = int(cfg.get("system_prompt_tokens", 0))
        count = int(cfg.get("num_system_prompts", 1))
        self.system_ids = [wl.content_ids(1) for _ in range(count)] if self.system_tokens else []
        if self.conv_p > 0:
            self.think = wl.sampler(
                cfg.get("think_time_dist_config") or default_think,
                "time",
                "workload",
                name,
                "think",
            )
            follow = (
                cfg.get("follow_up_prompt_tokens_dist_config") or cfg["prompt_tokens_dist_config"]
            )
            self.follow_prompt = wl.sampler(follow, "tokens", "workload", name, "follow_up_prompt")
        self.gaps = None
        if cfg.get("inter_arrival_time_dist_config"):
            self.gaps = wl.sampler(
                cfg["inter_arrival_time_dist_config"], "time", "workload", name, "arrivals"
            )
        elif cfg.get("request_rate"):
            self.gaps = wl.sampler(
                {"type": "Exponential", "rate": cfg["request_rate"]},
                "time",
                "workload",
                name,
                "arrivals",
            )

    def _lengths(self) -> tuple[int, int]:
        max_out = self.max_out()
        return max_out, (min(max_out, self.stop()) if self.stop is not None else max_out)

    def fresh(self, wl: Any) -> tuple[Request, Session | None]:
        """A new first-turn request, and its conversation when it will have follow-ups."""
        user = self.prompt()
        max_out, out = self._lengths()
        streaming = self.streaming_p >= 1.0 or (
            self.streaming_p > 0 and self.coins() < self.streaming_p
        )
        segments: tuple[tuple[int, int], ...]
        if self.system_tokens:
            pick = int(self.coins() * len(self.system_ids)) if len(self.system_ids) > 1 else 0
            segments = ((self.system_ids[pick], self.system_tokens), (wl.content_ids(1), user))
        else:
            segments = ((wl.content_ids(1), user),)
        request = Request(-1, math.nan, self.system_tokens + user, max_out, out, segments, -1, 0,
                          streaming, self.name)
        turns = 0
        while self.conv_p > 0 and turns < self.max_turns - 1 and self.coins() < self.conv_p:
            turns += 1
        if not turns:
            return request, None
        first_id = wl.content_ids(2 * turns)
        plan = []
        for j in range(turns):
            think, user_tokens = self.think(), self.follow_prompt()
            f_max, f_out = self._lengths()
            plan.append((think, user_tokens, f_max, f_out, first_id + 2 * j, first_id + 2 * j + 1))
        session = wl.new_session(self.name, streaming, plan)
        request.output_id = session.answer_id(0)
        return request, session


__all__ = ["BATCH", "DEFAULT_MAX_TURNS", "Profile", "Sampler", "Session", "Uniforms"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in ("Profile", "Sampler", "Session", "Uniforms")}

native.use_group_twin("labsim_llm", llm_native.MODULES, "draws", globals(), PURE)
