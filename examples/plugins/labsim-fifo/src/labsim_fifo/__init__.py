"""labsim-fifo: an LLM server that answers one request at a time, with no batching.

It is the smallest useful serving framework, written only against labsim's
public API, to show how a third party extends labsim:

* a :class:`labsim.Framework` subclass with ``name``, ``config_schema`` and a
  ``summary_schema``;
* its latencies come from the device's cost model (``gemm_time``,
  ``attention_time``) — nothing is hard-coded;
* per-request rows go through ``context.metrics.table`` and statistics through
  ``context.metrics.stats``, so warm-up and percentiles follow the experiment;
* one ``@hookimpl`` registers it under the entry point ``fifo``.

Because it never batches, it is the baseline that shows what continuous
batching (vLLM, TensorRT-LLM) buys.
"""

from __future__ import annotations

from collections import deque

import labsim
from labsim import hookimpl
from labsim_llm.models import resolve_model

__version__ = "0.1.0"

COLUMNS = [
    "request_id",
    "framework",
    "status",
    "arrival_s",
    "first_token_s",
    "finish_s",
    "prompt_tokens",
    "output_tokens",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
]

STATS = {
    "type": "object",
    "properties": {"mean": {"type": ["number", "null"]}},
    "additionalProperties": {"type": ["number", "null"]},
}


class Fifo(labsim.Framework):
    """One request at a time, no batching: prefill the prompt, then one decode step per token."""

    name = "fifo"
    aliases = ("FIFO",)
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["model"],
        "properties": {
            "model": {
                "type": "string",
                "description": "A model id or alias (see `labsim list models`).",
            },
            "gpu_id": {"type": "string", "description": "Which hardware_profile device to run on."},
            "dtype": {"enum": ["bf16", "fp16", "fp8"], "default": "bf16"},
        },
    }
    summary_schema = {
        "type": "object",
        "required": ["type", "requests", "ttft_ms", "tpot_ms", "e2e_ms", "throughput"],
        "properties": {
            "type": {"type": "string"},
            "requests": {"type": "object", "properties": {"finished": {"type": "integer"}}},
            "ttft_ms": STATS,
            "tpot_ms": STATS,
            "e2e_ms": STATS,
            "throughput": {"type": "object"},
        },
    }
    headline = [
        ("finished requests", "requests.finished"),
        ("TTFT p50 (ms)", "ttft_ms.p50"),
        ("TTFT p99 (ms)", "ttft_ms.p99"),
        ("TPOT p50 (ms)", "tpot_ms.p50"),
        ("output tokens/s", "throughput.output_tokens_per_s"),
    ]

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.model = resolve_model(context, config["model"])
        self.gpu = context.hardware.device(config.get("gpu_id"))
        self.dtype = config.get("dtype", "bf16")
        need = self.model.weight_bytes(self.dtype)
        if need > self.gpu.memory_bytes:
            raise labsim.UsageError(
                f"{self.model.name} needs {need / 1e9:.1f} GB of weights in {self.dtype}; "
                f"{self.gpu.name} has {self.gpu.memory_bytes / 1e9:.0f} GB"
            )
        self.queue = deque()
        self.busy = False
        self.wakeup = None
        self.records = {"ttft": [], "tpot": [], "e2e": [], "arrival": [], "out": [], "in": []}
        self._forward_cache = {}

    # -- pricing through the cost model -------------------------------------------------

    def forward_time(self, new_tokens: int, context_tokens: int) -> float:
        """Seconds for one forward pass over *new_tokens* with *context_tokens* already cached."""
        key = (new_tokens, context_tokens)
        if key in self._forward_cache:
            return self._forward_cache[key]
        heads, kv_heads, head_dim = self.model.attention_heads()
        gemms = sum(
            self.gpu.gemm_time(new_tokens, n, k, self.dtype) * count
            for _, n, k, count in self.model.layer_gemms()
        )
        if new_tokens == 1 and context_tokens > 0:
            attn = self.gpu.attention_time(
                "decode",
                batch_size=1,
                seq_len=context_tokens + 1,
                num_heads=heads,
                num_kv_heads=kv_heads,
                head_dim=head_dim,
            )
        else:
            attn = self.gpu.attention_time(
                "prefill",
                batch_size=1,
                seq_len=new_tokens,
                num_heads=heads,
                num_kv_heads=kv_heads,
                head_dim=head_dim,
                prefix_len=context_tokens,
            )
        n, k = self.model.lm_head_gemm()
        seconds = self.model.num_layers * (gemms + attn) + self.gpu.gemm_time(1, n, k, self.dtype)
        if new_tokens == 1:
            self._forward_cache[key] = seconds
        return seconds

    # -- the framework protocol ------------------------------------------------------------

    def start(self):
        self.table = self.context.metrics.table("requests", COLUMNS)
        self.wakeup = self.context.env.event()
        self.context.env.process(self._serve())

    def submit(self, request):
        self.queue.append(request)
        if not self.wakeup.triggered:
            self.wakeup.succeed()

    def is_idle(self):
        return not self.queue and not self.busy

    def _serve(self):
        env = self.context.env
        while True:
            if not self.queue:
                self.wakeup = env.event()
                yield self.wakeup
                continue
            request = self.queue.popleft()
            self.busy = True
            request.first_scheduled_s = env.now
            yield env.timeout(self.forward_time(request.prompt_tokens, 0))
            request.first_token_s = env.now
            decode = sum(
                self.forward_time(1, request.prompt_tokens + i)
                for i in range(request.output_tokens - 1)
            )
            yield env.timeout(decode)
            request.finish_s = env.now
            request.status = "finished"
            self.busy = False
            self._record(request)
            self.notify_finished(request)

    def _record(self, r):
        ttft = (r.first_token_s - r.arrival_s) * 1e3
        e2e = (r.finish_s - r.arrival_s) * 1e3
        tpot = (
            (r.finish_s - r.first_token_s) * 1e3 / (r.output_tokens - 1)
            if r.output_tokens > 1
            else None
        )
        self.table.append(
            [
                r.request_id,
                self.instance_name,
                r.status,
                r.arrival_s,
                r.first_token_s,
                r.finish_s,
                r.prompt_tokens,
                r.output_tokens,
                ttft,
                tpot,
                e2e,
            ]
        )
        rec = self.records
        rec["ttft"].append(ttft)
        rec["tpot"].append(float("nan") if tpot is None else tpot)
        rec["e2e"].append(e2e)
        rec["arrival"].append(r.arrival_s)
        rec["in"].append(r.prompt_tokens)
        rec["out"].append(r.output_tokens)
        self.last_finish = r.finish_s

    def summary(self):
        rec, stats = self.records, self.context.metrics.stats
        finished = len(rec["e2e"])
        span = (self.last_finish - min(rec["arrival"])) if finished else 0.0
        rate = (lambda x: x / span) if span > 0 else (lambda x: 0.0)
        return {
            "requests": {"finished": finished},
            "ttft_ms": stats(rec["ttft"], rec["arrival"]),
            "tpot_ms": stats(rec["tpot"], rec["arrival"]),
            "e2e_ms": stats(rec["e2e"], rec["arrival"]),
            "throughput": {
                "requests_per_s": rate(finished),
                "input_tokens_per_s": rate(sum(rec["in"])),
                "output_tokens_per_s": rate(sum(rec["out"])),
            },
        }


@hookimpl
def register_frameworks(register):
    register(Fifo)
