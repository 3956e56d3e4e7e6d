"""One LLM inference request as it travels from a workload to a serving engine.

A workload fills in the first block of fields (what the client asks for); the
serving engine fills in the rest as the request is scheduled, served and
finished. The prompt is described by ``segments``: consecutive
``(content_id, length)`` pieces that sum to ``prompt_tokens``. Two prompts
whose leading pieces have equal ids and lengths share those tokens, which is
what a prefix cache keys on:

* a fresh prompt is one unique piece ``((c, n),)``;
* a follow-up turn of a conversation is the previous turn's pieces, one piece
  for the previous answer (the previous request's ``output_id``), and one piece
  for the new user message;
* a shared system prompt is a common first piece.

Content ids are ints unique within one run and drawn deterministically, so
every copy of a workload (one per target framework) produces equal ids.

>>> r = Request(request_id=0, arrival_s=0.5, prompt_tokens=12, max_output_tokens=4,
...             output_tokens=4, segments=((7, 12),))
>>> r.status, r.cached_prompt_tokens, r.first_token_s
('pending', 0, None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Values of :attr:`Request.status`.
STATUSES = ("pending", "finished", "rejected", "unfinished")


@dataclass(slots=True, eq=False)
class Request:
    """One request: what the client sent, then what the engine did with it.

    Client fields (set by the workload):

    ``request_id``          0, 1, 2 ... in arrival order within one workload copy
    ``arrival_s``           simulated time it reaches the framework
    ``prompt_tokens``       prompt length (= sum of the segment lengths)
    ``max_output_tokens``   the generation limit the client asked for
    ``output_tokens``       tokens it will actually generate (equal to
                            ``max_output_tokens`` unless the profile gives a stop
                            distribution — benchmarks run with ``ignore_eos``)
    ``segments``            the prompt as ``(content_id, length)`` pieces
    ``session_id``          conversation it belongs to (-1: none)
    ``turn``                0 for a first message, 1, 2 ... for follow-ups
    ``streaming``           whether the client reads tokens as they come
    ``profile``             the client profile that produced it
    ``output_id``           content id of its generated tokens when a later prompt
                            carries them (a conversation's next turn), so an
                            engine can cache their blocks; -1: none will

    Engine fields (filled by the serving framework): ``status`` (``pending`` →
    ``finished`` | ``rejected`` | ``unfinished``), ``reject_reason``,
    ``first_scheduled_s``, ``first_token_s``, ``finish_s`` (None until they happen, so
    ``if r.first_token_s is None`` works; requests.csv writes them as ``nan``),
    ``cached_prompt_tokens`` (prompt tokens served from the prefix cache),
    ``preemptions`` and ``replica`` (which data-parallel copy served it).
    """

    request_id: int
    arrival_s: float
    prompt_tokens: int
    max_output_tokens: int
    output_tokens: int
    segments: tuple[tuple[int, int], ...]
    session_id: int = -1
    turn: int = 0
    streaming: bool = True
    profile: str = ""
    output_id: int = -1
    # -- filled by the engine --
    status: str = "pending"
    reject_reason: str = ""
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    cached_prompt_tokens: int = 0
    preemptions: int = 0
    replica: int = 0

    @property
    def ttft_s(self) -> float:
        """Seconds from arrival to the first output token (nan until it exists)."""
        return math.nan if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        """Seconds from arrival to the last output token (nan until finished)."""
        return math.nan if self.finish_s is None else self.finish_s - self.arrival_s

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens: the KV-cache length when it finishes."""
        return self.prompt_tokens + self.output_tokens


__all__ = ["Request", "STATUSES"]
