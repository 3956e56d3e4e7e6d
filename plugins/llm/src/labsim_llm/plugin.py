"""The labsim entry point of labsim-llm: registers models and workloads.

Installed as ``[project.entry-points.labsim] llm = "labsim_llm.plugin"``.
"""

from __future__ import annotations

from labsim import hookimpl

from labsim_llm.models import builtin_models


@hookimpl
def register_models(register):
    """Every model of ``data/models.json`` (Llama, Mistral, Mixtral, Qwen, GPT, BERT, ResNet)."""
    for spec in builtin_models().values():
        register(spec)


@hookimpl
def register_workloads(register):
    """The LLM request workloads: ``client_profiles`` (synthetic) and ``trace`` (CSV replay)."""
    from labsim_llm.workloads import WORKLOADS

    for cls in WORKLOADS:
        register(cls)


@hookimpl
def register_commands(cli):
    """``labsim search``: the cheapest serving configuration meeting SLOs at a load."""
    from labsim_llm.search import search_command

    cli.add_command(search_command)
