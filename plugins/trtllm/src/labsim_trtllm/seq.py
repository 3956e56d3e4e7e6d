"""What a TensorRT-LLM executor keeps per request (:class:`Seq`) and per iteration (:class:`Step`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labsim_llm.engine.replica import Seq as ShellSeq

if TYPE_CHECKING:
    from labsim_trtllm.generation_group import Cohort


class Seq(ShellSeq):
    """The executor's state of one request: the shell's fields
    (:class:`labsim_llm.engine.replica.Seq`: cache keys, blocks held...), which the shell's
    helpers read, and the schedulers' own. (Compiled, it subclasses the group's own compiled
    copy of the shell's ``Seq``: :mod:`labsim_trtllm.native`.)"""

    __slots__ = ("ctx_len", "computed", "out", "planned", "target", "need_total", "finished",
                 "epoch", "inflight", "order", "gf", "gc0", "gp0")

    ctx_len: int
    computed: int
    out: int
    planned: int
    target: int
    need_total: int
    finished: bool
    epoch: int
    inflight: bool
    order: int
    gf: int
    gc0: int
    gp0: int

    def __init__(self, req: Any, warm: bool, need_total: int):
        super().__init__(req, warm)
        self.ctx_len = req.prompt_tokens       # tokens to prefill (grows when a pause folds outputs)
        self.computed = 0                      # tokens whose KV is computed or in flight
        self.out = 0                           # tokens delivered
        self.planned = 0                       # tokens generated once in-flight steps complete
        self.target = req.output_tokens
        self.need_total = need_total           # blocks to run to completion (capacity scheduler)
        self.finished = False
        self.epoch = 0                         # bumped by a pause: in-flight work is void for the cache
        self.inflight = False                  # in a micro-batch still in flight (pipeline parallelism)
        self.order = 0                         # how many requests became active before it
        self.gf = -1                           # the iteration it joined the generation group at, or -1
        self.gc0 = 0                           # its computed tokens then
        self.gp0 = 0                           # ... and planned tokens


class Step:
    """One iteration: its generation requests (``gens``, one token each, in order) and its
    context entries (``contexts``: ``(seq, tokens, computed_before, emits_token, epoch)``),
    which come after them."""

    __slots__ = ("gens", "contexts", "chunks", "decodes", "decode_ctx", "tokens", "start", "end",
                 "cohort", "gidx", "group", "group_warm", "left_warm")

    gens: list[Seq]
    contexts: list[tuple[Seq, int, int, bool, int]]
    chunks: list[tuple[int, int]]
    decodes: int
    decode_ctx: int
    tokens: int
    start: float
    end: float
    cohort: Cohort | None
    gidx: int
    group: int
    group_warm: int
    left_warm: int

    def __init__(self, gens: list[Seq], contexts: list[tuple[Seq, int, int, bool, int]],
                 chunks: list[tuple[int, int]], decode_ctx: int, context_tokens: int):
        self.gens = gens
        self.contexts = contexts
        self.chunks = chunks                   # (new tokens, computed before) of the context entries
        self.decodes = len(gens)
        self.decode_ctx = decode_ctx           # Σ context of the generation entries, new token included
        self.tokens = self.decodes + context_tokens   # context_tokens: Σ new tokens of the chunks
        self.start = self.end = 0.0
        self.cohort = None                     # the generation group's cohort it runs
        self.gidx = -1                         # its index in that cohort
        self.group = 0                         # group members it runs (their token counted apart)
        self.group_warm = 0                    # ... of which count in the statistics
        self.left_warm = 0                     # ... and of those, finished before it completes

    @property
    def empty(self) -> bool:
        return not self.gens and not self.contexts and not self.group

    def seqs(self) -> list[Seq]:
        """Every request the iteration runs."""
        return [*self.gens, *(e[0] for e in self.contexts)]


__all__ = ["Seq", "Step"]
