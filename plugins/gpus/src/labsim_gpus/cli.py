"""``labsim measure`` and ``labsim calibrate``: measure a GPU's kernels, fit a profile to them.

Example::

    labsim measure --out my_gpu                         # on the machine with the GPU (PyTorch)
    labsim calibrate --device H100-SXM --data my_gpu --output my_gpu.json
    labsim calibrate --device A100-SXM4-80GB --data calibration/a100_sxm \\
        --framework SGLang --output a100.json
    labsim predict --device a100 ...                     # the preset, shipped profile
    # in an experiment: compute_devices: [{device_id: g0, preset: A100-SXM4-80GB,
    #                                      profile: a100.json}]
"""

from __future__ import annotations

import math
from pathlib import Path

import click
from labsim.errors import UsageError

from labsim_gpus import calibrate as fitting
from labsim_gpus.profiles import FORMAT, write_profile


def build_profile(device, data_dir: Path, framework: str | None, name: str | None,
                  attribution: str, iters: int = 300, joint_attention: bool = False) -> dict:
    """Fit *device* to the tables in *data_dir* and return the profile dict."""
    from labsim import progress

    points = fitting.load_points(data_dir, framework)
    base = device.datasheet_only()
    bar = progress.bar(fitting.fit_iterations(points, iters, joint_attention), "calibrating",
                       unit="iteration")
    try:
        params = fitting.fit(points, base, start=base.params, iters=iters,
                             joint_attention=joint_attention,
                             tick=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    tables = sorted({p.source for p in points})
    families = {p.family for p in points}
    stages = (["gemm", "prefill", "decode"] + (["prefill+decode"] if joint_attention else [])
              + [f for f in ("copy", "host") if f in families])
    return {
        "format": FORMAT,
        "name": name or device.name.lower().replace("-", "_"),
        "device": device.name,
        "arch": device.arch,
        "hardware": {
            "peak_tflops": {k: v / 1e12 for k, v in device.peak_flops.items()},
            "memory_capacity_bytes": device.memory_bytes,
            "memory_gbps": device.mem_bw / 1e9,
            "processing_units": device.sm_count,
        },
        "params": params.as_dict(),
        "fitted": list(fitting.fitted_names(points)),
        "data": {"folder": data_dir.name, "tables": tables, "framework": framework or "all",
                 "points": {f: sum(p.family == f for p in points)
                            for f in fitting.FAMILIES if f in ("gemm", "prefill", "decode") or f in families},
                 "fit_stages": stages, "iters": iters,
                 **({"sm_bw_share_max": round(device.sm_bw_share_max, 3)}
                    if math.isfinite(device.sm_bw_share_max) else {})},
        "errors": fitting.summarize(points, base.copy(params=params), params),
        "datasheet_only_errors": fitting.summarize(points, base, base.params),
        "attribution": attribution,
        "created_by": "labsim calibrate",
    }


@click.command("calibrate")
@click.option("--device", "device_name", required=True,
              help="The registered device the tables were measured on (e.g. A100-SXM4-80GB).")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of measured tables: gemm_*.csv, attn_*.csv.")
@click.option("--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Profile file to write (JSON).")
@click.option("--framework", default=None,
              help="Use only rows of this framework build (the tables' 'framework' column).")
@click.option("--name", default=None, help="Profile name (default: from the device).")
@click.option("--attribution", default="", help="Where the measurements come from (licence).")
@click.option("--iters", default=300, show_default=True, type=click.IntRange(10, 5000),
              help="Optimiser iterations per stage.")
@click.option("--joint-attention", is_flag=True,
              help="After the staged fit, refit the prefill and decode attention parameters "
                   "together (they share attn_overhead_s).")
def calibrate_command(device_name, data_dir, output, framework, name, attribution, iters,
                      joint_attention):
    """Fit the cost model of one device to measured kernel tables and write a profile."""
    import labsim

    device = labsim.device(device_name)
    if not hasattr(device, "datasheet_only"):
        raise UsageError(f"device {device_name!r} is not a labsim-gpus GPU; cannot calibrate it")
    if not attribution:
        attribution = f"measured tables in {data_dir.name} (see their provenance)"
    profile = build_profile(device, data_dir, framework, name, attribution, iters,
                            joint_attention)
    bad = sorted(k for k, v in profile["params"].items()
                 if isinstance(v, float) and not math.isfinite(v))
    if bad:
        raise UsageError(f"the fit gave non-finite parameters ({', '.join(bad)}); "
                         "no profile written — check the measured tables")
    try:
        write_profile(output, profile)
    except OSError as ex:
        raise UsageError(f"cannot write --output {output}: {ex.strerror or ex}") from None
    click.echo(f"wrote {output}")
    for family, stats in profile["errors"].items():
        before = profile["datasheet_only_errors"].get(family, {})
        click.echo(f"  {family:8s} {stats['points']:5d} points  median {stats['median_ape']:5.1f} %"
                   f"  P90 {stats['p90_ape']:5.1f} %   (datasheet only: median "
                   f"{before.get('median_ape', float('nan')):.1f} %)")


@click.command("measure")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write the tables to (created if missing).")
@click.option("--label", default=None,
              help="File-name label of the tables (default: from the GPU's name).")
@click.option("--parts", default=",".join(("gemm", "attn", "graph", "copy", "host")), show_default=True,
              help="Tables to measure, comma-separated: gemm, attn, graph, copy, host.")
@click.option("--quick", is_flag=True, help="A few shapes of each table only (a smoke test).")
def measure_command(out_dir, label, parts, quick):
    """Measure this machine's GPU with PyTorch into the tables `labsim calibrate` fits.

    GEMMs, prefill and decode attention, GEMMs back to back in a CUDA graph, device copies and
    host copies, bf16 on random operands (labsim_gpus.measure). Needs PyTorch and a CUDA GPU
    (pip install 'labsim-gpus[measure]'); takes a few minutes. Progress goes to stderr.
    """
    from labsim_gpus import measure as measuring

    try:
        written = measuring.measure(out_dir, label, [p.strip() for p in parts.split(",") if p.strip()],
                                    quick, log=lambda line: click.echo(line, err=True))
    except measuring.MeasureError as ex:
        raise UsageError(f"labsim measure: {ex}") from None
    except OSError as ex:
        raise UsageError(f"cannot write --out {out_dir}: {ex.strerror or ex}") from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: labsim calibrate --device NAME --data {out_dir} --output profile.json "
               f"--joint-attention (NAME: the catalog GPU this is, see labsim list devices)")
