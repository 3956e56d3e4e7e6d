"""The fastest or cheapest parallel layout of a training job, per cluster size (``labsim scale --search``).

    labsim scale examples/training_medium_32gpu.yaml --gpus 16 32 64 --search \\
        --train-tokens 3e10 --budget-hours 24

For every framework of the experiment and every cluster size, the search enumerates the
layouts that framework can take on that many GPUs and runs one iteration of each:

* ``megatron``: tensor parallel 1, 2, 4, 8 (within a node, dividing the attention heads; with
  sequence parallelism above 1), every pipeline depth that divides the layers and the GPUs,
  data parallelism from the rest, micro-batch 1, 2, 4, 8 (dividing the batch per replica) and
  recompute none / selective / full; context and expert parallelism stay as the file has them;
* ``deepspeed``: ZeRO stage 1, 2, 3 × micro-batch; ``fsdp``: each sharding strategy ×
  micro-batch; ``ddp``: micro-batch;
* other settings stay as the file gives them.

It prunes by memory, which only grows with the micro-batch and shrinks with recompute: once
a layout is out of memory at micro-batch *b*, larger ones of the same layout are not run. A
layout the framework refuses (a batch that does not split, too little memory) is counted, not
shown. The best layout minimises the iteration time (``--objective time``) or the cost per
billion tokens (``cost``; the same order at one size, it compares sizes). With
``--train-tokens`` each size gets the wall time to train that many tokens, and with
``--budget-hours`` the smallest cluster whose best layout meets the budget is named.
"""

from __future__ import annotations

import copy

import click
from labsim.errors import LabsimError

from labsim_training.layout import RECOMPUTE

#: micro-batch sizes tried (each must divide the per-replica batch)
MICRO_BATCHES = (1, 2, 4, 8)
#: tensor-parallel sizes tried (within one node)
TENSOR_PARALLEL = (1, 2, 4, 8)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def megatron_layouts(model, gpus: int, per_node: int, global_batch: int, base: dict):
    """Megatron configs ``(tp, pp, recompute) → [configs by micro-batch]`` for *gpus* GPUs."""
    cp = int(base.get("context_parallel", 1))
    ep = int(base.get("expert_parallel", 1))
    heads = int(getattr(model, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(model, "num_key_value_heads", 0) or heads)
    layers = int(getattr(model, "num_layers", 0) or 0)
    groups = {}
    for tp in TENSOR_PARALLEL:   # Megatron: heads and query groups must split over TP
        if tp > per_node or (heads and heads % tp) or (kv_heads and kv_heads % tp):
            continue
        for pp in _divisors(layers or 1):
            if gpus % (tp * pp * cp):
                continue
            dp = gpus // (tp * pp * cp)
            if dp % ep or global_batch % dp:
                continue
            for recompute in RECOMPUTE:
                configs = []
                for mb in MICRO_BATCHES:
                    if (global_batch // dp) % mb:
                        continue
                    cfg = {k: v for k, v in base.items() if k not in (
                        "tensor_parallel", "pipeline_parallel", "data_parallel", "micro_batch_size",
                        "recompute", "sequence_parallel", "virtual_pipeline_stages")}
                    cfg.update(tensor_parallel=tp, pipeline_parallel=pp, micro_batch_size=mb,
                               recompute=recompute, sequence_parallel=tp > 1)
                    configs.append(cfg)
                if configs:
                    groups[(tp, pp, recompute)] = configs
    return groups


def other_layouts(kind: str, gpus: int, global_batch: int, base: dict):
    """DeepSpeed / FSDP / DDP configs, grouped as :func:`megatron_layouts` groups them."""
    if global_batch % gpus:
        return {}
    per_gpu = global_batch // gpus
    variants = {"deepspeed": [("zero_stage", s) for s in (1, 2, 3)],
                "fsdp": [("sharding", s) for s in ("full_shard", "shard_grad_op", "no_shard")]}.get(
        kind, [(None, None)])
    groups = {}
    for key, value in variants:
        configs = []
        for mb in MICRO_BATCHES:
            if per_gpu % mb:
                continue
            cfg = {k: v for k, v in base.items() if k not in ("micro_batch_size", "data_parallel")}
            if key:
                cfg[key] = value
            cfg["micro_batch_size"] = mb
            configs.append(cfg)
        if configs:
            groups[(key, value)] = configs
    return groups


def describe(layout: dict, config: dict) -> str:
    """``TP2×PP4×DP8 mb2 sel`` (Megatron) or ``ZeRO-2 DP32 mb4`` — one line."""
    text = "TP{tensor_parallel}×PP{pipeline_parallel}×DP{data_parallel}".format(**layout)
    if layout.get("context_parallel", 1) > 1:
        text += f"×CP{layout['context_parallel']}"
    if layout.get("expert_parallel", 1) > 1:
        text += f" EP{layout['expert_parallel']}"
    if "zero_stage" in config:
        text = f"ZeRO-{config['zero_stage']} DP{layout['data_parallel']}"
    elif "sharding" in config:
        text = f"{config['sharding']} DP{layout['data_parallel']}"
    text += f" mb{layout['micro_batch_size']}"
    if layout.get("recompute", "none") != "none":
        text += f" {layout['recompute']}"
    return text


def _run_group(task: dict) -> list[dict]:
    """Run one layout group's micro-batches in order, stopping at the first out-of-memory."""
    from labsim.orchestrator import summarize

    out = []
    for cfg in task["configs"]:
        data = copy.deepcopy(task["data"])
        entry = copy.deepcopy(task["entry"])
        entry["config"] = cfg
        data["frameworks_to_test"] = [entry]
        try:
            summary = summarize(data, task["source"], task["base_dir"])
        except LabsimError as ex:
            text = str(ex)
            out.append({"config": cfg, "error": text.splitlines()[-1].strip()})
            if "memory" in text.lower():
                break           # memory only grows with the micro-batch
            continue
        fw = summary["frameworks"][entry["name"]]
        out.append({"config": cfg, "layout": describe(fw["layout"], cfg),
                    "iteration_time_s": fw["iteration_time_s"], "tokens_per_s": fw["tokens_per_s"],
                    "mfu": fw["mfu"], "memory_per_gpu_gib": fw["memory_per_gpu_gib"]["total"],
                    "usd_per_billion_tokens": fw["cost"]["usd_per_billion_tokens"],
                    "bottleneck": (fw.get("bottleneck") or {}).get("kind")})
    return out


def search_layouts(exp, sizes: list[int], objective: str = "time", train_tokens: float | None = None,
                   budget_hours: float | None = None, workers: int = 0, progress=None) -> dict:
    """Per size and framework: every layout tried and the best (see the module docstring)."""
    import labsim

    from labsim_training.scale import sized

    model = labsim.get_registry().get("models", exp.data["workload"]["model"])
    key = "iteration_time_s" if objective == "time" else "usd_per_billion_tokens"
    tasks, where = [], []
    for gpus in sizes:
        data = sized(exp.data, gpus, sizes[0], "strong")
        topo = data["hardware_profile"]["topology"]
        per_node = int(topo.get("gpus_per_node") or labsim.topology(topo["type"]).gpus_per_node)
        batch = int(data["workload"]["global_batch_size"])
        for entry in data["frameworks_to_test"]:
            base = dict(entry.get("config") or {})
            groups = (megatron_layouts(model, gpus, per_node, batch, base) if entry["type"] == "megatron"
                      else other_layouts(entry["type"], gpus, batch, base))
            for configs in groups.values():
                tasks.append({"data": data, "entry": entry, "configs": configs, "source": exp.source,
                              "base_dir": exp.base_dir})
                where.append((gpus, entry["name"]))
    from labsim.parallel import map_processes

    done = map_processes(_run_group, tasks, workers, progress)
    rows: dict = {}
    for (gpus, name), tried in zip(where, done, strict=True):
        rows.setdefault((gpus, name), []).extend(tried)
    result = {"objective": objective, "train_tokens": train_tokens, "budget_hours": budget_hours,
              "sizes": []}
    for gpus in sizes:
        for entry in exp.data["frameworks_to_test"]:
            tried = rows.get((gpus, entry["name"]), [])
            ran = [t for t in tried if "error" not in t]
            row = {"gpus": gpus, "framework": entry["name"], "tried": len(tried), "ran": len(ran)}
            if ran:
                ranked = sorted(ran, key=lambda t: (t[key], t["iteration_time_s"], t["layout"]))
                row["best"] = ranked[0]
                row["top"] = ranked[:5]
                if train_tokens:
                    row["hours_to_train"] = train_tokens / ranked[0]["tokens_per_s"] / 3600
                    if budget_hours is not None:
                        row["meets_budget"] = row["hours_to_train"] <= budget_hours
            else:
                reasons = sorted({t["error"] for t in tried})
                row["why_none"] = reasons[0] if reasons else "no layout divides this many GPUs"
            result["sizes"].append(row)
    if budget_hours is not None and train_tokens:
        meeting = [r for r in result["sizes"] if r.get("meets_budget")]
        result["smallest_meeting_budget"] = min(
            meeting, key=lambda r: (r["gpus"], r["best"][key])) if meeting else None
    return result


def print_layouts(result: dict, top: int = 1) -> None:
    """The search as a table: per size and framework, the best layout (or the *top* few)."""
    objective = "iteration time" if result["objective"] == "time" else "USD per billion tokens"
    click.echo(f"best layout per size by {objective}")
    header = ["GPUs", "framework", "layout", "iteration s", "tokens/s", "MFU", "GiB/GPU", "$/1B tok",
              "tried"]
    if result.get("train_tokens"):
        header.append(f"hours for {result['train_tokens']:.3g} tok")
    rows = []
    for r in result["sizes"]:
        if "best" not in r:
            rows.append([str(r["gpus"]), r["framework"], r["why_none"][:70], "", "", "", "", "",
                         str(r["tried"])] + ([""] if result.get("train_tokens") else []))
            continue
        for i, t in enumerate(r["top"][:max(1, top)]):
            line = [str(r["gpus"]) if i == 0 else "", r["framework"] if i == 0 else "", t["layout"],
                    f"{t['iteration_time_s']:.3f}", f"{t['tokens_per_s']:,.0f}", f"{t['mfu']:.3f}",
                    f"{t['memory_per_gpu_gib']:.1f}", f"{t['usd_per_billion_tokens']:,.1f}",
                    f"{r['ran']}/{r['tried']}" if i == 0 else ""]
            if result.get("train_tokens"):
                hours = result["train_tokens"] / t["tokens_per_s"] / 3600
                mark = ""
                if result.get("budget_hours") is not None and i == 0:
                    mark = " ok" if hours <= result["budget_hours"] else " over"
                line.append(f"{hours:,.1f}{mark}")
            rows.append(line)
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if result.get("budget_hours") is not None and result.get("train_tokens"):
        best = result.get("smallest_meeting_budget")
        if best:
            click.echo(f"smallest cluster meeting {result['budget_hours']:g} h: {best['gpus']} GPUs, "
                       f"{best['framework']} {best['best']['layout']} "
                       f"({best['hours_to_train']:,.1f} h)")
        else:
            click.echo(f"no size tried meets {result['budget_hours']:g} h; try more GPUs")


__all__ = ["describe", "megatron_layouts", "other_layouts", "print_layouts", "search_layouts"]
