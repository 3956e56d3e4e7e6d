"""The training job: which model, how long its sequences, how big its batch, how many steps.

``workload: {type: training, model: GPT-3-175B, seq_len: 2048, global_batch_size: 1536,
iterations: 3}`` makes one :class:`TrainingJob` (a "training job" work item) and submits it
to every target framework at time zero. ``model`` is a model id of the model database or an
inline mapping in Hugging Face ``config.json`` terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import labsim
from labsim.errors import UsageError

TRAINING_JOBS = "training jobs"

WORKLOAD_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["model", "global_batch_size"],
    "properties": {
        "type": {"type": "string"},
        "model": {
            "description": "A model id (`labsim list models`) or an inline mapping in Hugging Face "
                           "config.json terms (num_hidden_layers, hidden_size, num_attention_heads, "
                           "intermediate_size, vocab_size ...).",
            "oneOf": [{"type": "string", "minLength": 1}, {"type": "object"}],
        },
        "seq_len": {"type": "integer", "minimum": 1,
                    "description": "Tokens per sequence (transformers; a CNN's samples are images)."},
        "global_batch_size": {"type": "integer", "minimum": 1,
                              "description": "Sequences per iteration (over all data-parallel ranks)."},
        "iterations": {"type": "integer", "minimum": 1, "default": 3,
                       "description": "Optimizer steps to simulate."},
    },
}


@dataclass(frozen=True)
class TrainingJob:
    """One training job as frameworks receive it (the model already resolved)."""

    model: object  # labsim_llm.models.ModelSpec
    seq_len: int
    global_batch_size: int
    iterations: int = 3

    @property
    def tokens_per_iteration(self) -> int:
        return self.seq_len * self.global_batch_size


def resolve_model(context, model):
    """The :class:`~labsim_llm.models.ModelSpec` of *model* (an id or an inline mapping)."""
    from labsim_llm.models import ModelSpec
    from labsim_llm.models import resolve_model as llm_resolve

    if isinstance(model, dict):
        try:
            return ModelSpec.from_dict(dict(model), str(model.get("id") or model.get("name") or "inline"))
        except UsageError as ex:
            raise UsageError(f"workload.model: {ex}") from None
    if context is None:
        return _builtin(model)
    return llm_resolve(context, str(model))


def _builtin(name: str):
    from labsim_llm.models import builtin_models

    models = builtin_models()
    for key, spec in models.items():
        if key.lower() == str(name).lower() or str(name).lower() in (a.lower() for a in spec.aliases):
            return spec
    raise UsageError(f"workload.model: no model {name!r}; known: {', '.join(sorted(models))}")


def job_from_config(config: dict, context=None) -> TrainingJob:
    """The :class:`TrainingJob` a ``workload: {type: training ...}`` block describes."""
    model = resolve_model(context, config["model"])
    if getattr(model, "architecture", "") == "cnn":
        from labsim_training.cnn import network

        network(model)  # a CNN without a layer table is refused here
        seq_len = 1  # one image per sample; "tokens" are images
    elif "seq_len" not in config:
        raise UsageError(f"workload.seq_len: missing; {model.name} is a transformer: give the tokens per sequence")
    else:
        seq_len = int(config["seq_len"])
    return TrainingJob(model, seq_len, int(config["global_batch_size"]), int(config.get("iterations", 3)))


class TrainingWorkload(labsim.Workload):
    """One training job (model, sequence length, global batch, iterations) for each framework."""

    name = "training"
    makes = TRAINING_JOBS
    config_schema = WORKLOAD_SCHEMA

    def __init__(self, config, context):
        super().__init__(config, context)
        self.job = job_from_config(config, context)

    def start(self, target):
        target.submit(self.job)

    def summary(self):
        job = self.job
        return {"model": job.model.name, "parameters": job.model.num_parameters,
                "seq_len": job.seq_len, "global_batch_size": job.global_batch_size,
                "iterations": job.iterations, "tokens_per_iteration": job.tokens_per_iteration}
