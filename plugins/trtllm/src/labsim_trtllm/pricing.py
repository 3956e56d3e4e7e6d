"""The price of one TensorRT-LLM iteration, from labsim-llm's :class:`StepPricer`.

The shared pricer knows the work of a step (GEMMs, attention, norms, TP
all-reduces, LM head and sampling, PP hand-offs) from the device's cost
model. What differs in TensorRT-LLM is which steps replay a CUDA graph and
how the CPU overlaps the GPU (docs/engine_behaviour.md TRT §3, §4):

* a **decode-only** batch whose size is a captured size (1…32, 64, 128 by
  default, no padding) replays one graph: one launch;
* every other step — any step with a context chunk, decode batches of 33–63,
  65–127 or above 128 — runs eager; kernel launches overlap GPU execution;
* under TP, the all-reduces and the logits move as TensorRT-LLM moves them
  (:mod:`labsim_trtllm.tp_traffic`);
* ``kernel_time_scale`` multiplies the GPU time (TRT-LLM's kernels against the
  calibrated ones: unverified, 1.0);
* with the overlap scheduler the CPU work of an iteration runs while the GPU
  executes the previous one, so a step lasts ``max(GPU, CPU)``; without it,
  ``GPU + CPU``.

Two unmodified :class:`StepPricer` objects do the pricing: one with the graph
sizes (used only for graph-eligible decode batches, where the shared pricer
charges one launch) and one with none (eager everywhere else).
"""

from __future__ import annotations

from labsim_llm.engine.step_cost import StepPricer

from labsim_trtllm.tp_traffic import traffic


class TrtStepPricer:
    """Seconds of one TensorRT-LLM iteration on one replica (``tp × pp`` GPUs)."""

    def __init__(self, model, device, cfg: dict, graph_sizes, collective=None, collective_cost=None):
        kw = dict(dtype=cfg["dtype"], kv_dtype=cfg["kv_cache_dtype"],
                  tp=cfg["tensor_parallel_size"], pp=cfg["pipeline_parallel_size"],
                  collective=collective, collective_cost=collective_cost,
                  traffic=traffic(cfg, getattr(device, "arch", "")))
        self.eager = StepPricer(model, device, graph_sizes=[], **kw)
        self.sizes = sorted(graph_sizes)
        self.graph = StepPricer(model, device, graph_sizes=self.sizes, **kw) if self.sizes else None
        self.padding = bool(cfg.get("cuda_graph_padding"))
        self.exact = frozenset(self.sizes)
        self.max_graph = self.sizes[-1] if self.sizes else 0
        self.scale = float(cfg["kernel_time_scale"])
        self.cpu = float(cfg["step_overhead_s"])
        self.cpu_per_req = float(cfg["step_overhead_per_request_s"])
        self.overlap = not cfg["disable_overlap_scheduler"]
        self._decode_steps: dict = {}          # batch size → f(decode context), see step_time
        self._decode_gpus: dict = {}           # batch size → f(decode context), see gpu_time
        self._decode_runs: dict = {}           # batch size → decode_run(b)
        #: (FLOPs, DRAM bytes) one GPU does in a step, ``f(chunks, num_decodes, decode_context)``
        #: (the shared pricer's, graph or not)
        self.work = self.eager.work
        #: :attr:`work` of a decode-only step, ``f(num_decodes, decode_context)``
        self.decode_work = self.eager.decode_work
        #: the terms of :attr:`decode_work` found once per batch size (see
        #: :meth:`~labsim_llm.engine.step_cost.StepPricer.decode_work_terms`)
        self.decode_work_terms = self.eager.decode_work_terms

    def uses_graph(self, chunks, num_decodes: int) -> bool:
        """Whether this step replays a CUDA graph (decode-only, a captured size)."""
        if chunks or self.graph is None or num_decodes <= 0:
            return False
        return num_decodes in self.exact or (self.padding and num_decodes <= self.max_graph)

    def _pricer(self, chunks, num_decodes: int) -> StepPricer:
        """The shared pricer of a step: the CUDA graphs' when it replays one, else the eager one."""
        graph = self.graph
        if graph is not None and self.uses_graph(chunks, num_decodes):
            return graph
        return self.eager

    def gpu_time(self, chunks, num_decodes: int, decode_context: int) -> float:
        pricer = self._pricer(chunks, num_decodes)
        return pricer.step_time(chunks, num_decodes, decode_context) * self.scale

    def decode_gpu(self, b: int):
        """``f(ctx)`` = :meth:`gpu_time` ``((), b, ctx)`` (a decode-only iteration of *b* ≥ 1
        requests), bit for bit, kept per batch size."""
        fn = self._decode_gpus.get(b)
        if fn is None:
            gpu = self._pricer((), b).decode_step_fn(b)
            scale = self.scale
            # (times 1.0 changes no float: then the shared pricer's function itself)
            fn = self._decode_gpus[b] = gpu if scale == 1.0 else lambda ctx: gpu(ctx) * scale
        return fn

    def cpu_time(self, chunks, num_decodes: int = 0) -> float:
        """Seconds of the executor's CPU work for one iteration (scheduling, bookkeeping)."""
        return self.cpu + self.cpu_per_req * (len(chunks) + num_decodes)

    def step_time(self, chunks, num_decodes: int = 0, decode_context: int = 0) -> float:
        """Seconds from the start of this iteration to the start of the next."""
        if chunks:
            # gpu_time and cpu_time, inlined: a step with a context chunk runs eager
            gpu = self.eager.step_time(chunks, num_decodes, decode_context) * self.scale
            cpu = self.cpu + self.cpu_per_req * (len(chunks) + num_decodes)
        elif num_decodes > 0:
            return self.decode_price(num_decodes)(decode_context)
        else:
            gpu = self.gpu_time(chunks, num_decodes, decode_context)
            cpu = self.cpu_time(chunks, num_decodes)
        if self.overlap:
            return gpu if gpu >= cpu else cpu      # max(gpu, cpu), without the call
        return gpu + cpu

    def decode_price(self, b: int):
        """``f(ctx)`` = :meth:`step_time` ``((), b, ctx)`` (a decode-only iteration of *b* ≥ 1
        requests), kept per batch size."""
        price = self._decode_steps.get(b)
        if price is None:
            price = self._decode_steps[b] = self._decode_step_fn(b)
        return price

    def decode_run(self, b: int) -> tuple | None:
        """``(prices, scale, cpu, overlap)`` to price a run of decode-only iterations of *b* requests
        whose contexts grow by *b* from one to the next (a span of the generation group) a
        chunk at a time: ``prices(first_context, count)`` gives the shared pricer's GPU seconds
        of each (its ``decode_run_fn``: attention priced in one loop, no table by context, as
        a cohort's contexts seldom recur), from which
        :meth:`decode_price` ``(b)(ctx)`` is ``max(g · scale, cpu)`` with the overlap scheduler
        (*overlap*) and ``g · scale + cpu`` without, bit for bit. None where the device prices
        decode attention one call at a time."""
        got = self._decode_runs.get(b, False)
        if got is False:
            prices = self._pricer((), b).decode_run_fn(b)
            got = self._decode_runs[b] = (None if prices is None
                                          else (prices, self.scale, self.cpu_time((), b), self.overlap))
        return got

    def _decode_step_fn(self, b: int):
        """``f(ctx)`` = :meth:`step_time` ``((), b, ctx)``, bit for bit, with the batch's
        pricer, graph or eager, and CPU time found once."""
        pricer = self._pricer((), b)
        gpu = pricer.decode_step_fn(b)
        scale = self.scale
        cpu = self.cpu_time((), b)
        # (g typed: the compiled twin multiplies, compares and adds it unboxed, the same floats)
        if self.overlap:
            def price(ctx: int) -> float:
                g: float = gpu(ctx)
                t = g * scale
                return t if t >= cpu else cpu          # max(t, cpu), without the call
            return price

        def price_serial(ctx: int) -> float:
            g: float = gpu(ctx)
            return g * scale + cpu
        return price_serial


__all__ = ["TrtStepPricer"]
