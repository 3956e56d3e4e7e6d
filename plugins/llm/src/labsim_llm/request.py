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
from typing import Any

from labsim import native
from mypy_extensions import mypyc_attr

from labsim_llm import native as llm_native

#: Values of :attr:`Request.status`.
STATUSES = ("pending", "finished", "rejected", "unfinished")

#: the fields of a :class:`Request`, in the order its constructor takes them
FIELDS = ("request_id", "arrival_s", "prompt_tokens", "max_output_tokens", "output_tokens",
          "segments", "session_id", "turn", "streaming", "profile", "output_id", "status",
          "reject_reason", "first_scheduled_s", "first_token_s", "finish_s",
          "cached_prompt_tokens", "preemptions", "replica")


# (open to subclasses in plain Python, compiled or not: a plugin's requests may carry more)
@mypyc_attr(allow_interpreted_subclasses=True)
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

    The constructor takes the fields in that order (:data:`FIELDS`), by position or by name,
    each after ``segments`` with its default. A plain class with slots, not a dataclass: its
    compiled twin then makes a request in compiled code (a workload's draws) without an
    interpreted ``__init__``, and the serving metrics read its fields directly. Every value is
    kept as given (an int arrival time stays an int, a numpy integer stays one); two requests
    are equal only when they are the same object. A plugin may subclass it (its own fields
    in its own ``__slots__``, or in an instance dict).
    """

    __slots__ = FIELDS

    def __init__(self, request_id: Any, arrival_s: Any, prompt_tokens: Any,
                 max_output_tokens: Any, output_tokens: Any, segments: Any,
                 session_id: Any = -1, turn: Any = 0, streaming: Any = True, profile: Any = "",
                 output_id: Any = -1, status: Any = "pending", reject_reason: Any = "",
                 first_scheduled_s: Any = None, first_token_s: Any = None, finish_s: Any = None,
                 cached_prompt_tokens: Any = 0, preemptions: Any = 0, replica: Any = 0) -> None:
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.max_output_tokens = max_output_tokens
        self.output_tokens = output_tokens
        self.segments = segments
        self.session_id = session_id
        self.turn = turn
        self.streaming = streaming
        self.profile = profile
        self.output_id = output_id
        # -- filled by the engine --
        self.status = status
        self.reject_reason = reject_reason
        self.first_scheduled_s = first_scheduled_s
        self.first_token_s = first_token_s
        self.finish_s = finish_s
        self.cached_prompt_tokens = cached_prompt_tokens
        self.preemptions = preemptions
        self.replica = replica

    def _values(self) -> tuple:
        """The fields' values, in :data:`FIELDS`' order (for the repr and copies only)."""
        return tuple([getattr(self, name) for name in FIELDS])

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(FIELDS, self._values()))
        return f"Request({fields})"

    def __reduce__(self) -> tuple:
        # (pickled and copied by its fields, without its constructor, which a subclass may
        # have changed, and with a subclass's own attributes: the compiled twin has no
        # default way to)
        return (_rebuilt, (type(self), self._values()), _own_state(self))

    def __setstate__(self, state: dict) -> None:
        # (a subclass's own attributes, after _rebuilt set the fields)
        for name, value in state.items():
            setattr(self, name, value)

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


def _rebuilt(cls: Any, values: tuple) -> Any:
    """A *cls* request with the fields *values* (in :data:`FIELDS`' order), its constructor
    not called: what a copy or an unpickling of one makes before its own state is set."""
    request = cls.__new__(cls)
    for name, value in zip(FIELDS, values):
        setattr(request, name, value)
    return request


def _own_state(request: Any) -> dict | None:
    """What a subclass adds to *request* beyond :data:`FIELDS` (its instance dict's and its own
    slots' values, by name), for :meth:`Request.__setstate__` to set back; None for nothing."""
    state = dict(getattr(request, "__dict__", None) or {})
    for klass in type(request).__mro__:
        names = klass.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name not in FIELDS and name not in ("__dict__", "__weakref__") and hasattr(request, name):
                state[name] = getattr(request, name)
    return state or None


__all__ = ["FIELDS", "Request", "STATUSES"]

#: the pure-Python definition, kept when the compiled twin's replaces it (tests compare the two)
PURE = {"Request": Request}

native.use_group_twin("labsim_llm", llm_native.MODULES, "request", globals(), PURE)
