"""What a vLLM replica keeps per request (:class:`Seq`) and per step (:class:`Step`)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from labsim_llm.engine.replica import Seq as ShellSeq

#: longest run of identical decode steps taken as one event (bounds the work per event)
MAX_SPAN = 2048
#: share of the KV blocks vLLM V0's block manager keeps free when it admits a prompt
#: (``CacheConfig``/``BlockSpaceManager`` ``watermark=0.01``, vLLM 0.6.0)
V0_WATERMARK = 0.01
#: content ids for the generated tokens of requests no later prompt carries (``output_id`` −1):
#: ``OWN_OUTPUT_IDS + request_id``, above every id a workload draws, so only the request itself
#: (back from a preemption) can meet them
OWN_OUTPUT_IDS = 1 << 63

#: a fast-forward span (:meth:`labsim_vllm.fast_forward.FastForward._span`): its steps, the KV
#: blocks the steps after the first need (``(prefix, per)``, see
#: :func:`labsim_llm.engine.step_runs.span_blocks`) and the first step's decode context
Span = tuple[int, tuple[list[int], int], int]

_by_no = attrgetter("no")


class Seq(ShellSeq):
    """The engine's state of one request: the shell's fields
    (:class:`labsim_llm.engine.replica.Seq`: cache keys, blocks held...), which the shell's
    helpers read, and the scheduler's own. (Compiled, it subclasses the group's own compiled
    copy of the shell's ``Seq``: :mod:`labsim_vllm.native`.)

    While the request is in the decode group (``g >= 0``) its ``computed``,
    ``out``, ``num_tokens`` and ``held`` are those it had when it joined at
    group step ``g``; each group step since adds one token to each.
    """

    __slots__ = ("num_tokens", "computed", "out", "target", "no", "g")

    num_tokens: int
    computed: int
    out: int
    target: int
    no: int
    g: int

    def __init__(self, req: Any, warm: bool):
        super().__init__(req, warm)
        self.num_tokens = req.prompt_tokens      # tokens that exist (prompt + generated)
        self.computed = 0                         # tokens whose KV is (being) computed
        self.out = 0                              # tokens generated
        self.target = req.output_tokens
        self.no = -1                              # place in the running order (admission count)
        self.g = -1                               # group step it joined the decode group at


class Step:
    """What one scheduler step runs.

    ``entries``: ``(seq, new_tokens, computed_before)`` of the requests scheduled one by
    one; ``group``: decode-group members decoding one token each besides them (their
    context, ``group_ctx``, counted in ``decode_ctx``).
    """

    __slots__ = ("entries", "preempted", "chunks", "decodes", "decode_ctx", "pure_decode",
                 "group", "tokens")

    def __init__(self, entries: list[tuple[Seq, int, int]], preempted: bool, group: int = 0,
                 group_ctx: int = 0):
        self.entries = entries
        self.preempted = preempted
        self.group = group
        chunks = []
        decodes = group
        ctx = group_ctx
        tokens = group
        for seq, n, before in entries:
            tokens += n
            if n == 1 and seq.out > 0 and before == seq.num_tokens - 1:
                decodes += 1
                ctx += before + 1
            else:
                chunks.append((n, before))
        self.chunks = chunks
        self.decodes = decodes
        self.decode_ctx = ctx
        self.tokens = tokens
        self.pure_decode = not chunks and not preempted


_by_no = attrgetter("no")

__all__ = ["MAX_SPAN", "OWN_OUTPUT_IDS", "Seq", "Span", "Step", "V0_WATERMARK"]
