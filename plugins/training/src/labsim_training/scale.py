"""``labsim scale``: a scaling study of a training experiment over cluster sizes.

    labsim scale examples/training_medium_32gpu.yaml --gpus 8 16 32 64 128 [--mode weak]

Each size runs the experiment as written (every framework side by side, one iteration) on a
topology of that many GPUs: the same box type with ``nodes = gpus / gpus_per_node`` (one
partial node below that). Tensor and pipeline parallelism are kept as each framework's config
gives them; data parallelism is re-derived (``data_parallel`` is dropped). ``strong`` keeps the
global batch; ``weak`` scales it with the GPU count (from the first size). A size a layout
cannot use (fewer GPUs than TP × PP, a batch that does not split, out of memory) shows the
reason instead of figures. Scaling efficiency is the throughput per GPU relative to the first
size where the framework ran.
"""

from __future__ import annotations

import copy

import click
from labsim.errors import LabsimError, UsageError


def _topology_block(data: dict) -> dict:
    hw = data.setdefault("hardware_profile", {})
    topo = hw.get("topology")
    if topo is None:
        raise UsageError("labsim scale needs hardware_profile.topology (a box type such as dgx-a100) "
                         "to size the cluster")
    return {"type": topo} if isinstance(topo, str) else dict(topo)


def sized(data: dict, gpus: int, base_gpus: int, mode: str) -> dict:
    """A copy of experiment *data* on *gpus* GPUs (see the module docs)."""
    import labsim

    out = copy.deepcopy(data)
    block = _topology_block(out)
    preset = labsim.topology(block["type"])
    per_node = int(block.get("gpus_per_node") or preset.gpus_per_node)
    if gpus >= per_node:
        if gpus % per_node:
            raise UsageError(f"{gpus} GPUs is not a whole number of {per_node}-GPU nodes")
        block["nodes"] = gpus // per_node
    else:
        block.update(nodes=1, gpus_per_node=gpus)
        nics = int(block.get("nics_per_node") or getattr(preset, "nics_per_node", 0) or 0)
        if nics > gpus:
            block["nics_per_node"] = gpus
    out["hardware_profile"]["topology"] = block
    workload = out.get("workload") or {}
    workload["iterations"] = 1
    if mode == "weak":
        workload["global_batch_size"] = int(round(workload["global_batch_size"] * gpus / base_gpus))
    for entry in out.get("frameworks_to_test", []):
        (entry.get("config") or {}).pop("data_parallel", None)
    return out


def study(exp, sizes: list[int], mode: str = "strong") -> list[dict]:
    """One row per (size, framework): iteration time, throughput, efficiency, or why not."""
    from labsim.orchestrator import summarize

    rows = []
    first: dict[str, float] = {}
    for gpus in sizes:
        data = sized(exp.data, gpus, sizes[0], mode)
        for entry in data.get("frameworks_to_test", []):
            one = dict(data, frameworks_to_test=[entry])  # each alone: one's refusal is its own
            name = entry["name"]
            try:
                summary = summarize(one, exp.source, exp.base_dir)
            except LabsimError as ex:
                rows.append({"gpus": gpus, "framework": name, "error": _short(str(ex))})
                continue
            fw = summary["frameworks"][name]
            per_gpu = fw["tokens_per_s"] / gpus
            first.setdefault(name, per_gpu)
            rows.append({"gpus": gpus, "framework": name, "iteration_time_s": fw["iteration_time_s"],
                         "tokens_per_s": fw["tokens_per_s"], "mfu": fw["mfu"],
                         "layout": "TP{tensor_parallel}×PP{pipeline_parallel}×DP{data_parallel}".format(
                             **fw["layout"]),
                         "scaling_efficiency": per_gpu / first[name]})
    return rows


def _short(message: str) -> str:
    text = message.splitlines()[-1].strip()
    return text.split("config: ", 1)[-1]


@click.command("scale")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False))
@click.argument("more_sizes", nargs=-1, type=int)
@click.option("--gpus", "sizes", type=int, multiple=True, required=True,
              help="Cluster sizes: --gpus 8 16 32 64 (the values after the first are read as well).")
@click.option("--mode", type=click.Choice(["strong", "weak"]), default="strong", show_default=True,
              help="strong: the same global batch at every size; weak: the batch grows with the GPUs.")
@click.option("--set", "overrides", multiple=True, help="key=value overrides, as for labsim run.")
@click.option("--search", is_flag=True, help="Search every parallel layout of each framework at each "
              "size and show the best (labsim_training.layout_search).")
@click.option("--objective", type=click.Choice(["time", "cost"]), default="time", show_default=True,
              help="--search: rank layouts by iteration time or by USD per billion tokens.")
@click.option("--train-tokens", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--search: tokens to train; each size shows the hours it takes.")
@click.option("--budget-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--search with --train-tokens: name the smallest size that trains them in time.")
@click.option("--top", type=click.IntRange(1, 50), default=1, show_default=True,
              help="--search: layouts shown per size and framework.")
@click.option("--workers", type=click.IntRange(0, 1024), default=0,
              help="--search: layouts run at once (default: one per CPU this process may use).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the study (with --search: every size's best layouts) to this JSON "
                   "file; `labsim report FILE.json` draws it.")
def scale_command(experiment, more_sizes, sizes, mode, overrides, search, objective, train_tokens,
                  budget_hours, top, workers, json_out):
    """Scaling study of a training experiment: iteration time, throughput and scaling
    efficiency per cluster size (TP and PP kept, data parallelism re-derived); with --search,
    the fastest or cheapest layout per size and the smallest cluster meeting a time budget."""
    from labsim.orchestrator import Orchestrator, load_experiment

    sizes = sorted(set(sizes) | set(more_sizes))
    if any(n < 1 for n in sizes):
        raise UsageError("--gpus: sizes must be ≥ 1")
    exp = load_experiment(experiment, overrides)
    if (exp.data.get("workload") or {}).get("type") != "training":
        raise UsageError("labsim scale takes a training experiment (workload: {type: training, ...})")
    if not search and (train_tokens or budget_hours or top != 1):
        raise UsageError("--train-tokens, --budget-hours and --top go with --search")
    if budget_hours is not None and not train_tokens:
        raise UsageError("--budget-hours needs --train-tokens (how many tokens to train in that time)")
    if search:
        from labsim import progress as bars

        from labsim_training.layout_search import print_layouts, search_layouts

        Orchestrator(exp)          # the composed schema: bad input exits 2 before any run
        bar = bars.bar(None, "layouts", unit="group")
        try:
            result = search_layouts(exp, sizes, objective, train_tokens, budget_hours, workers,
                                    progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        click.echo(f"{exp.data.get('name', experiment)}: layout search")
        print_layouts(result, top)
        if json_out:
            from pathlib import Path

            from labsim.default_plugins.sinks import write_json_atomic

            write_json_atomic(Path(json_out), result)
        return
    rows = study(exp, sizes, mode)
    click.echo(f"{exp.data.get('name', experiment)}: {mode} scaling")
    click.echo(f"{'GPUs':>6}  {'framework':<12} {'layout':<18} {'iter (s)':>10} {'tokens/s':>13} "
               f"{'MFU':>6} {'efficiency':>10}")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['gpus']:>6}  {r['framework']:<12} {r['error']}")
        else:
            click.echo(f"{r['gpus']:>6}  {r['framework']:<12} {r['layout']:<18} {r['iteration_time_s']:>10.4g} "
                       f"{r['tokens_per_s']:>13,.0f} {r['mfu']:>6.3f} {r['scaling_efficiency']:>10.1%}")
    if json_out:
        from pathlib import Path

        from labsim.default_plugins.sinks import write_json_atomic

        write_json_atomic(Path(json_out), {"study": "scaling", "name": exp.data.get("name", experiment),
                                           "mode": mode, "rows": rows})
