"""What every LLM serving framework shares, whatever its scheduler.

A serving engine (vLLM, TensorRT-LLM, a third party's) resolves its settings,
finds its model and GPU, plans its memory and prices its steps; then it runs
one or more replicas behind a router, behind an API server
(:class:`~labsim_llm.engine.frontend.Frontend`). Requests it cannot serve are
rejected at the door and counted; requests still inside when the run ends are
reported as ``unfinished``. :class:`ServingEngine` is that shell; a subclass
supplies the engine-specific parts:

``resolve(config, model, device)``
    the settings with defaults filled in (a static function; called once
    without model and device to find the model, then with them);
``setup()``
    sets ``self.plan`` (with ``num_blocks`` and ``as_dict()``; None: no KV-cache plan) and
    ``self.pricer`` (default: no plan, a :class:`~labsim_llm.engine.step_cost.StepPricer`);
``make_replica(index)``
    one replica, usually a :class:`~labsim_llm.engine.replica.ReplicaShell` subclass
    (``start()``, ``submit(request)``, ``outstanding``, ``pending()``);
``reject_reason(request)``
    why a request can never be served here, or None (default);
``admit_limits()``
    ``(total, prompt)`` bounds within which ``reject_reason`` answers None, so that
    ``submit`` admits those requests without calling it, or None (default: ask it always);
``summary_config()``
    the ``config`` section of the summary (default: model, device, dtype).

Replicas call :meth:`request_left` when a request finishes (the shell's ``report`` does),
which tells the listeners (closed-loop clients, conversations' next turns). The summary
schema and headline rows are those of every serving engine, so ``labsim schema summary``
and the result table work for a new engine without writing either.

Its per-request methods (``submit``, the API server's hand-over, ``request_left``, the
listeners) run for every request, so the module is one of labsim-llm's compiled twins
(:mod:`labsim_llm.native`); :class:`ServingEngine` allows subclasses in plain Python (every
engine plugin's), whose overrides it calls. It looks a subclass's static methods
(``resolve``, ``bytes_per_token``) up on the subclass.
"""

from __future__ import annotations

from typing import Any

import labsim
from labsim import native
from labsim.errors import UsageError
from mypy_extensions import mypyc_attr

from labsim_llm import native as llm_native
from labsim_llm.engine.frontend import Frontend
from labsim_llm.engine.router import POLICIES, Router
from labsim_llm.engine.serving_metrics import HEADLINE, SUMMARY_SCHEMA, ServingMetrics
from labsim_llm.engine.timers import now

#: config keys every serving engine accepts: which model, on which device
MODEL_PROPERTIES: dict[str, Any] = {
    "model_profile_id": {"type": "string", "description": "Model id (model database or the "
                         "experiment's model_characteristics_db_path)."},
    "model": {"type": "string", "description": "Alias of model_profile_id."},
    "gpu_id": {"type": "string", "description": "device_id in hardware_profile.compute_devices "
               "(default: the experiment's device)."},
}

#: config keys every serving engine accepts: how it is deployed and what it records
DEPLOYMENT_PROPERTIES: dict[str, Any] = {
    "tensor_parallel_size": {"type": "integer", "minimum": 1, "default": 1},
    "pipeline_parallel_size": {"type": "integer", "minimum": 1, "default": 1},
    "num_replicas": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 1,
                     "description": "Data-parallel copies of the engine behind a router."},
    "router": {"enum": list(POLICIES), "default": "round_robin",
               "description": "How requests are spread over replicas."},
    "frontend_latency": {"type": "boolean", "default": True,
                         "description": "Add the API server's per-request cost (HTTP, tokenisation, IPC, "
                         "streaming the first token) to TTFT and E2E (labsim_llm.engine.frontend)."},
    "bytes_per_token_estimate_for_network": {
        "type": "number", "minimum": 0,
        "description": "Bytes one prompt or streamed token takes on the client network link "
        "(hardware_profile.network_links); default: the workload's, else 2."},
    "record_steps": {"type": "boolean", "default": True,
                     "description": "Write the per-step table (steps.csv)."},
    "max_step_rows": {"type": "integer", "minimum": 0, "default": 1_000_000,
                      "description": "Write at most this many rows to steps.csv (about 80 "
                      "bytes each); later steps are left out with a warning. 0: no limit."},
}

#: ``metrics_config.slo``: the serving objectives goodput counts against (a key this plugin owns)
SLO_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "Service-level objectives for goodput: a request counts when it meets every one given.",
    "properties": {
        "ttft_ms": {"type": "number", "exclusiveMinimum": 0},
        "tpot_ms": {"type": "number", "exclusiveMinimum": 0},
        "e2e_ms": {"type": "number", "exclusiveMinimum": 0},
    },
}

#: dtype spellings users copy from Hugging Face configs
DTYPE_SPELLINGS = {"bfloat16": "bf16", "float16": "fp16"}


def base_settings(config: dict, schema: dict, engine: str, model=None) -> dict:
    """*config* with the schema's defaults, ``model_id``, and ``auto`` dtypes resolved.

    :raises UsageError: when neither ``model`` nor ``model_profile_id`` is given.
    """
    cfg = dict(config)
    spec: Any
    for key, spec in schema["properties"].items():
        if "default" in spec:
            cfg.setdefault(key, spec["default"])
    model_id = cfg.get("model_profile_id") or cfg.get("model")
    if not model_id:
        raise UsageError(f"{engine} config needs `model` (or `model_profile_id`): a model id such as "
                         "Llama-3.1-8B (see `labsim list models`)")
    cfg["model_id"] = model_id
    if model is None:
        return cfg
    for key in ("dtype", "kv_cache_dtype"):
        cfg[key] = DTYPE_SPELLINGS.get(cfg[key], cfg[key])
    if cfg["dtype"] == "auto":
        default = getattr(model, "dtype_default", None) or "bf16"
        cfg["dtype"] = DTYPE_SPELLINGS.get(default, default)
    if cfg["kv_cache_dtype"] == "auto":
        cfg["kv_cache_dtype"] = cfg["dtype"]
    return cfg


@mypyc_attr(allow_interpreted_subclasses=True)     # every engine is a subclass of it
class ServingEngine(labsim.Framework):
    """The shell of an LLM serving framework: settings, replicas, router, API server, metrics."""

    summary_schema = SUMMARY_SCHEMA
    headline = HEADLINE  # type: ignore[assignment]  # a list of rows, as the table reads it
    experiment_fields = {"metrics_config.slo": SLO_SCHEMA}
    accepts = ("LLM requests",)

    def __init__(self, instance_name: str, config: dict, context: Any):
        super().__init__(instance_name, config, context)
        from labsim_llm.models import resolve_model

        self.env: Any = context.env

        # (the subclass's static methods, looked up on it: compiled, self.resolve would be ours)
        resolve = getattr(type(self), "resolve")
        cfg = resolve(config, None, None)
        self.model: Any = resolve_model(context, cfg["model_id"])
        if getattr(self.model, "architecture", "decoder") == "encoder":
            raise UsageError(f"model {cfg['model_id']!r} is an encoder: it embeds or classifies a prompt and "
                             f"generates no tokens, and the {self.name} model here serves generation; "
                             "pick a decoder (`labsim list models`)")
        self.device: Any = context.hardware.device(cfg.get("gpu_id"), owner=instance_name)
        cfg = self.cfg = resolve(config, self.model, self.device)
        self._check_fits_topology(instance_name)
        self.setup()
        self.num_gpus = cfg["tensor_parallel_size"] * cfg["pipeline_parallel_size"] * cfg["num_replicas"]
        self.gpus: Any = context.hardware.allocate(
            instance_name, self.num_gpus, device=self.device,
            why=f"num_replicas {cfg['num_replicas']} × tensor_parallel_size {cfg['tensor_parallel_size']} × "
                f"pipeline_parallel_size {cfg['pipeline_parallel_size']}")
        if self.plan is not None:  # what the engine reserves on each GPU (shared GPUs check it)
            context.hardware.claim_memory(instance_name, self.plan.budget_bytes)
        self.last_left_s: Any = 0.0     # a time as SimPy keeps it (an int at t = 0)
        self.metrics = ServingMetrics(context, instance_name, self.name, num_gpus=self.num_gpus,
                                      device=self.device, dtype=cfg["dtype"],
                                      kv_capacity_blocks=self.plan.num_blocks if self.plan else 0,
                                      record_steps=cfg["record_steps"],
                                      max_step_rows=cfg.get("max_step_rows",
                                                            DEPLOYMENT_PROPERTIES["max_step_rows"]["default"]))
        self.frontend = Frontend(context.env, enabled=cfg["frontend_latency"],
                                 link=context.hardware.link_to(instance_name),
                                 bytes_per_token=getattr(type(self), "bytes_per_token")(cfg, context))
        self.replicas: list[Any] = [self.make_replica(i) for i in range(cfg["num_replicas"])]
        self.router = Router(cfg["router"], self.replicas)
        self._closed = False
        #: the bound method each admitted request is handed over to (made once: compiled, a
        #: bound method is built at every read of ``self._deliver``)
        self._deliver_call = self._deliver
        #: :meth:`admit_limits`' answer, once the first request arrives ((-1, -1): none)
        self._admit: tuple[Any, Any] | None = None
        #: :meth:`finish_unseen`'s question of each listener, for the list ``_checks_of``
        self._finish_checks: list[Any] = []
        self._checks_of: Any = None

    # -- what a subclass supplies ---------------------------------------------------------

    @staticmethod
    def resolve(config: dict, model, device) -> dict:
        """The settings the engine runs with (see :func:`base_settings`)."""
        raise NotImplementedError


    def setup(self) -> None:
        """Set ``self.plan`` and ``self.pricer`` from ``self.cfg``, model and device (here: no
        KV-cache plan, and the cost model's step pricer on ``tp × pp`` GPUs)."""
        from labsim_llm.engine.step_cost import StepPricer

        cfg = self.cfg
        self.plan: Any = None     # an engine with a KV cache sets its MemoryPlan
        # (an engine's own pricer may wrap this one: TensorRT-LLM's TrtStepPricer)
        self.pricer: Any = StepPricer(self.model, self.device, dtype=cfg["dtype"],
                                      kv_dtype=cfg.get("kv_cache_dtype", cfg["dtype"]),
                                      tp=cfg["tensor_parallel_size"],
                                      pp=cfg["pipeline_parallel_size"],
                                      collective=self.collective_time)

    def make_replica(self, index: int) -> Any:
        """Replica number *index*."""
        raise NotImplementedError(self)

    def reject_reason(self, request: Any) -> str | None:
        """Why *request* can never be served here (a reason code), or None."""
        return None

    def admit_limits(self) -> tuple[Any, Any] | None:
        """``(total, prompt)``: bounds within which :meth:`reject_reason` answers None, so
        that :meth:`submit` need not ask it (an engine's ``reject_reason`` is interpreted
        code, asked at every arrival), or None to ask it for every request (the default, so
        a subclass that only overrides ``reject_reason`` is asked every time).

        A request whose prompt + ``max_output_tokens`` is at most *total* and whose prompt
        is at most *prompt* is admitted without the call; any other is asked. Asked once,
        when the first request arrives (the replicas exist then).

        >>> class Engine(ServingEngine):                               # doctest: +SKIP
        ...     def reject_reason(self, request):
        ...         too_long = request.prompt_tokens + request.max_output_tokens > 4096
        ...         return "exceeds_max_model_len" if too_long else None
        ...     def admit_limits(self):
        ...         return 4096, float("inf")
        """
        return None

    def summary_config(self) -> dict:
        """The ``config`` section of this engine's summary."""
        return {"model": self.cfg["model_id"], "device": getattr(self.device, "name", ""),
                "dtype": self.cfg["dtype"]}

    # -- shared -------------------------------------------------------------------------

    def _check_fits_topology(self, instance_name: str) -> None:
        """One replica's ``tp × pp`` GPUs must exist on the experiment's topology (its
        collectives are priced between those ranks)."""
        topo = self.context.hardware.topology
        world = getattr(topo, "world_size", None)
        need = self.cfg["tensor_parallel_size"] * self.cfg["pipeline_parallel_size"]
        if world and need > world:
            nodes = -(-need // topo.gpus_per_node)
            raise UsageError(
                f"frameworks_to_test {instance_name!r}: tensor_parallel_size × pipeline_parallel_size = "
                f"{need} GPUs, but topology {topo.name!r} has {world} ({topo.nodes} node(s) × "
                f"{topo.gpus_per_node}); set hardware_profile.topology to "
                f"{{type: {topo.name}, nodes: {nodes}}}")

    @staticmethod
    def bytes_per_token(cfg: dict, context) -> float | int:
        """Bytes one token takes on the client link: the framework's
        ``bytes_per_token_estimate_for_network``, else the workload's, else 2 (seed 001's)."""
        value = cfg.get("bytes_per_token_estimate_for_network")
        if value is None:
            value = (context.config.get("workload") or {}).get("bytes_per_token_estimate_for_network")
        return 2 if value is None else value

    def collective_time(self, kind: str, nbytes: int, ranks: Any, algorithm: str = "auto") -> float:
        """Seconds of one collective among this engine's GPUs, on the experiment's topology
        (*ranks*: a count, ranks 0…n−1, or a list of global ranks; *algorithm*: labsim-collectives'
        name, ``auto`` for NCCL's choice)."""
        op, ranks = self._collective(kind, ranks)
        return op.time(int(nbytes), ranks=ranks, device=self.device,
                       topology=self.context.hardware.topology, algorithm=algorithm)

    def collective_cost(self, kind: str, nbytes: int, ranks: Any, algorithm: str = "auto") -> tuple[str, float]:
        """:meth:`collective_time` with the algorithm labsim-collectives picked for it:
        ``(name, seconds)`` (e.g. ``one_shot`` for ``custom_ar`` up to its limit, an NCCL one
        above)."""
        op, ranks = self._collective(kind, ranks)
        name, priced = op.cost(int(nbytes), ranks=ranks, device=self.device,
                               topology=self.context.hardware.topology, algorithm=algorithm)
        return name, priced.seconds

    def _collective(self, kind: str, ranks: Any) -> tuple[Any, Any]:
        """The registry's collective *kind* and *ranks* as it takes them (a count or a list)."""
        op = self.context.registry.get("collectives", kind)
        return op, [int(r) for r in ranks] if isinstance(ranks, (list, tuple)) else int(ranks)

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()

    def submit(self, request: Any) -> None:
        limits = self._admit
        if limits is None:
            limits = self._admit = self.admit_limits() or (-1, -1)
        prompt = request.prompt_tokens
        if prompt + request.max_output_tokens <= limits[0] and prompt <= limits[1]:
            reason = None                               # (admit_limits: reject_reason says None)
        else:
            reason = self.reject_reason(request)
        if reason:
            request.finish_s = self.last_left_s = self.env.now
            self.metrics.request_rejected(request, reason)
            self.notify_finished(request)
            return
        self.frontend.submit(request, self._deliver_call)

    def _deliver(self, request: Any) -> None:
        self.router.pick(request).submit(request)

    def request_left(self, request: Any) -> None:
        """Called by a replica when *request* finishes."""
        self.last_left_s = now(self.env)
        self.notify_finished(request)

    def notify_finished(self, request: Any) -> None:
        """Tell every listener that *request* has left this engine (as
        :meth:`labsim.Framework.notify_finished`, compiled with the rest of the shell)."""
        for callback in self._listeners:
            callback(request)

    def finish_unseen(self, request: Any) -> bool:
        """Whether *request* finishing can be applied before its simulated time without anyone
        seeing it earlier: every listener is a workload that does not act at that time
        (:meth:`~labsim_llm.workloads.base.RequestWorkload.acts_on_finish`). The caller then
        sets :attr:`last_left_s` to that time itself."""
        listeners = self._listeners
        checks = self._finish_checks
        if self._checks_of is not listeners or len(checks) != len(listeners):
            # each listener's acts_on_finish, looked up once (listeners are only ever added)
            checks = self._finish_checks = [
                getattr(getattr(callback, "__self__", None), "acts_on_finish", None)
                for callback in listeners]
            self._checks_of = listeners
        for acts in checks:
            if acts is None or acts(request):
                return False
        return True

    def is_idle(self) -> bool:
        return all(r.outstanding == 0 for r in self.replicas)

    def summary(self) -> dict:
        now = self.env.now
        accounting: Any = self.context.accounting      # (set for every run by the orchestrator)
        if not self._closed:
            self._closed = True
            unfinished = 0
            for replica in self.replicas:
                for req in replica.pending():
                    unfinished += 1
                    self.metrics.request_unfinished(req)
            for req in self.frontend.pending():     # arrived, not yet past the API server
                unfinished += 1
                self.metrics.request_unfinished(req)
            # the GPUs are billed until the last request left, or to the end while any is inside
            accounting.release(self.instance_name, at=now if unfinished else self.last_left_s)
        bill = accounting.bill(self.instance_name, end=now)
        return self.metrics.summary(now, len(self.replicas), {"config": self.summary_config()}, bill=bill)


__all__ = ["DEPLOYMENT_PROPERTIES", "DTYPE_SPELLINGS", "MODEL_PROPERTIES", "ServingEngine", "base_settings"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in ("ServingEngine", "base_settings")}

native.use_group_twin("labsim_llm", llm_native.MODULES, "serving_engine", globals(), PURE)
