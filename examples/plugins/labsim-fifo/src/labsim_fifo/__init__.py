"""labsim-fifo: an LLM server that answers one request at a time, with no batching.

It is the smallest useful serving framework, written against labsim's public
API and labsim-llm's serving-engine shell, to show how a third party adds an
engine (docs/writing_plugins.md walks through this file):

* :class:`Fifo`, a :class:`~labsim_llm.engine.serving_engine.ServingEngine`:
  its settings, and one replica per ``num_replicas`` behind a router. The
  shell finds the model and GPU, prices steps with the cost model, writes the
  same requests.csv / steps.csv columns and summary section as vLLM and
  TensorRT-LLM, reports requests still inside at the end as ``unfinished``,
  and tells closed-loop clients and conversations when a request finishes;
* :class:`FifoReplica`, a :class:`~labsim_llm.engine.replica.ReplicaShell`:
  only the scheduling policy — the oldest request's prompt in one step, then
  its tokens one decode step each, then the next request;
* one ``@hookimpl`` registers it under the entry point ``fifo``.

Because it never batches, it is the baseline that shows what continuous
batching (vLLM, TensorRT-LLM) buys on the same cost model.
"""

from __future__ import annotations

import labsim
from labsim import hookimpl
from labsim_llm.engine.replica import ReplicaShell, Seq
from labsim_llm.engine.serving_engine import DEPLOYMENT_PROPERTIES, ServingEngine, base_settings

__version__ = "0.1.0"

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "description": "A model id or alias (see `labsim list models`)."},
        "gpu_id": {"type": "string", "description": "Which hardware_profile device to run on."},
        "dtype": {"enum": ["bf16", "fp16", "fp8"], "default": "bf16"},
        "num_replicas": DEPLOYMENT_PROPERTIES["num_replicas"],
        "router": DEPLOYMENT_PROPERTIES["router"],
        "frontend_latency": {**DEPLOYMENT_PROPERTIES["frontend_latency"], "default": False},
        "record_steps": DEPLOYMENT_PROPERTIES["record_steps"],
    },
}


class FifoSeq(Seq):
    """A request in a FIFO replica: the shell's state plus the tokens generated so far."""

    __slots__ = ("out",)

    def __init__(self, req, warm: bool):
        super().__init__(req, warm)
        self.out = 0


class FifoStep:
    """One step: the request's prompt (``prefill``), or ``len(times)`` decode steps in a row."""

    __slots__ = ("seq", "prefill", "times")

    def __init__(self, seq: FifoSeq, prefill: int, times: list):
        self.seq = seq
        self.prefill = prefill
        self.times = times


class FifoReplica(ReplicaShell):
    """One GPU serving its queue first come, first served, one request at a time."""

    def __init__(self, owner, index: int, pricer):
        super().__init__(owner, index)
        self.pricer = pricer
        self.current: FifoSeq | None = None

    def new_seq(self, req) -> FifoSeq:
        return FifoSeq(req, req.arrival_s >= self.warm_up)

    def running_seqs(self) -> list:
        return [] if self.current is None else [self.current]

    def schedule(self) -> FifoStep:
        seq = self.current
        if seq is None:                                    # the next request: its whole prompt
            seq = self.current = self.waiting.popleft()
            seq.req.first_scheduled_s = self.clock
            prompt = seq.req.prompt_tokens
            return FifoStep(seq, prompt, [self.pricer.step_time([(prompt, 0)])])
        # decode steps: all that are left in one event while the GPU is ours, else one
        first = seq.req.prompt_tokens + seq.out            # context of the next decode step
        left = seq.req.output_tokens - seq.out
        n = left if self.gpu_is_alone() else 1
        return FifoStep(seq, 0, self.pricer.decode_times(1, range(first, first + n)))

    def step_seconds(self, step: FifoStep) -> float:
        return sum(step.times)

    def commit(self, step: FifoStep, start: float, end: float) -> None:
        seq = step.seq
        if step.prefill:
            flops, nbytes = self.pricer.work([(step.prefill, 0)])
            self.emit_token(seq, end, first=True)
        else:
            first = seq.req.prompt_tokens + seq.out
            flops, nbytes = self.pricer.decode_work_sum(1, first, 1, len(step.times))
            if seq.warm:
                self.metrics.itl.add(step.times)           # each decode step is one token's gap
            seq.last_token = end
        seq.out += len(step.times)
        self.metrics.step(self.index, start, end - start, len(step.times),
                          step.prefill or 1, 1 if step.prefill else 0, 0 if step.prefill else 1,
                          1, len(self.waiting), 0, flops, nbytes, 0.0)
        if seq.out >= seq.req.output_tokens:
            self.current = None
            self.report(seq.req, end)


class Fifo(ServingEngine):
    """One request at a time, no batching: prefill the prompt, then one decode step per token."""

    name = "fifo"
    aliases = ("FIFO",)
    description = "One request at a time, no batching (the labsim-fifo example plugin)"
    config_schema = CONFIG_SCHEMA

    @staticmethod
    def resolve(config: dict, model, device) -> dict:
        cfg = base_settings({**config, "kv_cache_dtype": "auto"}, CONFIG_SCHEMA, "fifo", model)
        cfg.update(tensor_parallel_size=1, pipeline_parallel_size=1)
        return cfg

    def setup(self) -> None:
        need = self.model.weight_bytes(self.cfg["dtype"])
        if need > self.device.memory_bytes:
            raise labsim.UsageError(
                f"{self.model.name} needs {need / 1e9:.1f} GB of weights in {self.cfg['dtype']}; "
                f"{self.device.name} has {self.device.memory_bytes / 1e9:.0f} GB")
        super().setup()                                    # no KV-cache plan, the step pricer

    def make_replica(self, index: int) -> FifoReplica:
        return FifoReplica(self, index, self.pricer)


@hookimpl
def register_frameworks(register):
    register(Fifo)
