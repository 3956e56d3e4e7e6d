"""What a serving client measures outside the engine: the API server's cost per request.

TTFT as a benchmark client reports it (``vllm bench serve``, ``sglang.bench_serving``) runs
from sending the HTTP request to receiving the first streamed token. Besides the engine's
queueing and prefill it holds the API server's work, modelled here per request:

* **before the engine** — HTTP/ASGI handling and request validation (``http_s``), rendering
  the chat template for chat requests (``chat_template_s``), tokenising the prompt at
  ``tokenize_tokens_per_s`` on one CPU core, and handing the request to the engine process
  (``ipc_s``; vLLM v1 runs the EngineCore in its own process and talks ZMQ + msgpack,
  docs/engine_behaviour.md §4);
* **after the first token** — the output message back over IPC (``ipc_s``), incremental
  detokenisation and the server-sent-event write (``stream_s``). Every later token pays the
  same per-token path, so TPOT is unchanged; E2E and TTFT grow by it once.

Figures (all **assumptions**, of the order public measurements give; override them):

* ``tokenize_tokens_per_s`` = 400 k tokens/s: tiktoken's README benchmark shows HF
  ``tokenizers`` at ~1-2 MB/s of text on one thread, 3-6x below tiktoken; at ~4 bytes per
  English BPE token that is ~0.25-0.5 M tokens/s.
* ``http_s`` = 0.3 ms: uvicorn/FastAPI serve ~10-20 k small JSON requests/s per core
  (TechEmpower-style figures: 50-100 µs each), plus pydantic validation of an OpenAI request.
* ``chat_template_s`` = 0.5 ms: one jinja2 render of a compiled template (HF
  ``apply_chat_template``), chat endpoint only.
* ``ipc_s`` = 0.1 ms per message: ZMQ IPC round trips are tens of µs; msgpack of a request.
* ``stream_s`` = 0.2 ms: one incremental detokenise step and one SSE chunk through the ASGI
  stack.

**The client network.** When ``hardware_profile.network_links`` gives the link clients reach
the engine through (:meth:`labsim.hardware.Hardware.link_to`), the prompt crosses it before
the API server sees it (latency + prompt tokens × ``bytes_per_token_estimate_for_network`` × 8
/ bandwidth) and every streamed token crosses it on the way out (latency + bytes per token × 8
/ bandwidth): TTFT and E2E grow by the link, TPOT does not (each token is delayed alike).

**Responses that are not streamed.** A request whose client asked for no streaming
(``stream: false``; the workloads' ``streaming_response_probability``) gets its whole answer in
one response when generation ends: the API server sends one message (``ipc_s`` + ``stream_s``)
and the whole answer (output tokens × bytes per token) crosses the client link once. The client
sees its first token with the last, so its TTFT is its E2E and its TPOT 0, as a benchmark client
without streaming reports them (:meth:`Frontend.whole_response_s`).

What this does **not** hold: GPUStack's vLLM 0.11 rows show ~45 ms of TTFT beyond engine
work at concurrency 4 (S5-01, and an ITL P99 of 41 ms against a 7.4 ms TPOT, i.e. a stall
of the other streams whenever a request arrives); no mechanism of that size is documented,
so it is not encoded here (see benchmarks/fidelity_serving.py).

>>> fe = FrontendCost()
>>> round(fe.before_engine(232, chat=True) * 1e3, 2)   # ms
1.48
>>> round(fe.after_first_token() * 1e3, 2)
0.3
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim import native

from labsim_llm import native as llm_native
from labsim_llm.engine.timers import Timers


@dataclass(frozen=True)
class FrontendCost:
    """Per-request API-server costs (seconds, tokens/s); see the module docstring for sources."""

    http_s: float = 3e-4
    chat_template_s: float = 5e-4
    tokenize_tokens_per_s: float = 4e5
    ipc_s: float = 1e-4
    stream_s: float = 2e-4

    def before_engine(self, prompt_tokens: int, chat: bool = False) -> float:
        """Seconds from the client sending a request to the engine seeing it."""
        t = self.http_s + self.ipc_s + max(0, int(prompt_tokens)) / self.tokenize_tokens_per_s
        return t + (self.chat_template_s if chat else 0.0)

    def after_first_token(self) -> float:
        """Seconds from the engine producing the first token to the client receiving it."""
        return self.ipc_s + self.stream_s


#: the default API server (vLLM's OpenAI-compatible server, text completions)
DEFAULT_FRONTEND = FrontendCost()


def frontend_delays(prompt_tokens: int, chat: bool = False,
                    cost: FrontendCost = DEFAULT_FRONTEND) -> tuple[float, float]:
    """``(before_engine_s, after_first_token_s)`` of one request: the hook an engine applies
    (delay the submission by the first, add the second to the first-token and finish times)."""
    return cost.before_engine(prompt_tokens, chat), cost.after_first_token()


class Frontend:
    """An engine's API server inside the simulation: delays each request on its way in and
    each first token on its way out by :class:`FrontendCost`.

    A request is handed to the engine by a timer's callback
    (:func:`~labsim_llm.engine.timers.call_later`) rather than a SimPy process, so the cost per
    request stays one event. ``enabled=False`` makes both delays zero.
    """

    def __init__(self, env, enabled: bool = True, cost: FrontendCost = DEFAULT_FRONTEND,
                 chat: bool = False, link=None, bytes_per_token: float = 2.0):
        self.env = env
        self.timers = Timers(env)
        self.enabled = enabled
        self.cost = cost
        self.chat = chat
        self.link = link
        self.bytes_per_token = float(bytes_per_token)
        self.after_first_token_s = cost.after_first_token() if enabled else 0.0
        if link is not None:
            self.after_first_token_s += link.transfer_s(self.bytes_per_token)
        self._in_flight: dict[int, object] = {}   # requests the API server still holds

    def whole_response_s(self, output_tokens: int) -> float:
        """Seconds from the engine's last token to a non-streaming client holding the whole
        answer: one API-server message and the answer's bytes over the client link."""
        delay = self.cost.after_first_token() if self.enabled else 0.0
        if self.link is not None:
            delay += self.link.transfer_s(max(0, int(output_tokens)) * self.bytes_per_token)
        return delay

    def submit(self, request, deliver) -> None:
        """Call ``deliver(request)`` once the prompt has crossed the client link (when the
        experiment has one) and the API server has handled it."""
        delay = self.cost.before_engine(request.prompt_tokens, self.chat) if self.enabled else 0.0
        if self.link is not None:
            delay += self.link.transfer_s(request.prompt_tokens * self.bytes_per_token)
        elif not self.enabled:
            deliver(request)
            return
        key = id(request)
        self._in_flight[key] = request

        def handed_over(_event: object) -> None:
            del self._in_flight[key]
            deliver(request)

        self.timers.call_later(delay, handed_over)

    def pending(self) -> list:
        """Requests still in the API server (for the end-of-run ``unfinished`` rows)."""
        return list(self._in_flight.values())


__all__ = ["DEFAULT_FRONTEND", "Frontend", "FrontendCost", "frontend_delays"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "frontend", globals(), PURE)
