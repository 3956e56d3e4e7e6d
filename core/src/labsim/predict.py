"""The cost oracle behind ``labsim predict``: price a table of single operations.

Each input row is one operation; the output repeats the row and adds
``predicted_ms``. The columns are a public contract:

=============  ===============================================================
``op``         required columns
=============  ===============================================================
gemm           ``m, n, k, dtype`` (C[m,n] = A[m,k]·W[n,k]ᵀ)
attention      ``phase`` (prefill | decode), ``batch_size``, ``seq_len``,
               ``num_heads``, ``num_kv_heads``, ``head_dim``, ``kv_dtype``
collective     ``collective``, ``nbytes``, ``ranks``; optional ``topology``, ``nodes``
               (servers of that topology, default its own), ``algorithm``
memcpy         ``nbytes``, ``kind`` (d2d | h2d | d2h)
=============  ===============================================================
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from labsim.errors import LabsimError, UsageError
from labsim.registry import Registry

REQUIRED = {
    "gemm": ("m", "n", "k", "dtype"),
    "attention": ("phase", "batch_size", "seq_len", "num_heads", "num_kv_heads", "head_dim"),
    "collective": ("collective", "nbytes", "ranks"),
    "memcpy": ("nbytes", "kind"),
}
INTEGER_COLUMNS = {
    "m",
    "n",
    "k",
    "batch_size",
    "seq_len",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "nbytes",
    "ranks",
    "prefix_len",
    "nodes",
}


#: the most ranks a collective is priced over (the model's work grows faster than linearly)
MAX_RANKS = 16384
#: the largest size in any integer column (beyond it floats lose whole numbers)
MAX_INTEGER = 2**53


def _value(row: dict, column: str, where: str):
    text = (row.get(column) or "").strip()
    if not text:
        raise UsageError(f"{where}: column {column!r} is empty")
    if column in INTEGER_COLUMNS:
        try:
            number = float(text)
        except ValueError:
            raise UsageError(
                f"{where}: column {column!r} must be a whole number, got {text!r}"
            ) from None
        if not math.isfinite(number) or number != int(number) or number < 0:
            raise UsageError(f"{where}: column {column!r} must be a whole number ≥ 0, got {text!r}")
        limit = MAX_RANKS if column == "ranks" else MAX_INTEGER
        if number > limit:
            raise UsageError(
                f"{where}: column {column!r} is {text}; at most {limit:,} "
                + ("ranks can be priced" if column == "ranks" else "is accepted")
            )
        return int(number)
    return text


def price(row: dict, device, registry: Registry, where: str) -> float:
    """Seconds for the operation described by *row*."""
    op = (row.get("op") or "").strip().lower()
    if op not in REQUIRED:
        raise UsageError(f"{where}: column 'op' must be one of {', '.join(REQUIRED)}; got {op!r}")
    args = {c: _value(row, c, where) for c in REQUIRED[op]}
    if op == "gemm":
        return device.gemm_time(args["m"], args["n"], args["k"], dtype=args["dtype"])
    if op == "attention":
        kv_dtype = (row.get("kv_dtype") or "").strip() or "bf16"
        extra = {}
        if (row.get("prefix_len") or "").strip():
            extra["prefix_len"] = _value(row, "prefix_len", where)
        return device.attention_time(
            args["phase"].lower(),
            batch_size=args["batch_size"],
            seq_len=args["seq_len"],
            num_heads=args["num_heads"],
            num_kv_heads=args["num_kv_heads"],
            head_dim=args["head_dim"],
            kv_dtype=kv_dtype,
            **extra,
        )
    if op == "memcpy":
        return device.memcpy_time(args["nbytes"], kind=args["kind"].lower())
    from labsim.hardware import resolve_topology

    topology = (row.get("topology") or "").strip() or None
    nodes = _value(row, "nodes", where) if (row.get("nodes") or "").strip() else None
    if nodes is not None and topology is None:
        raise UsageError(f"{where}: column 'nodes' needs a 'topology' (e.g. dgx-h100)")
    topo = resolve_topology(registry, topology, nodes, device) if topology else None
    algorithm = (row.get("algorithm") or "").strip() or "auto"
    collective = registry.get("collectives", args["collective"])
    return collective.time(
        args["nbytes"], ranks=args["ranks"], device=device, topology=topo, algorithm=algorithm
    )


def predict_file(device_name: str, input_path: Path, output_path: Path, registry: Registry) -> int:
    """Price every row of *input_path* and write *output_path* atomically; returns the row count."""
    from labsim.default_plugins.sinks import format_cell
    from labsim.outputs import temp_for

    from labsim.default_plugins.distributions import read_csv_rows

    device = registry.get("devices", device_name)
    rows = read_csv_rows(Path(input_path), "predict input")
    header = [h.lstrip("\ufeff") for h in rows[0]] if rows else []
    if not header or "op" not in [h.strip() for h in header]:
        raise UsageError(
            f"{input_path}: the header must have an 'op' column "
            f"(got {', '.join(header) or 'nothing'})"
        )
    columns = [h.strip() for h in header]
    out_rows = []
    for line, cells in enumerate(rows[1:], start=2):
        if not cells or not any(c.strip() for c in cells):
            continue
        row = dict(zip(columns, cells))
        where = f"{input_path} line {line}"
        try:
            seconds = price(row, device, registry, where)
        except LabsimError as ex:
            message = str(ex)
            raise UsageError(message if message.startswith(where) else f"{where}: {message}") from None
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as ex:
            raise UsageError(f"{where}: {type(ex).__name__}: {ex}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise UsageError(f"{where}: the device priced this operation at {seconds} s")
        out_rows.append([row.get(c, "") for c in columns] + [format_cell(seconds * 1e3)])
    output_path = Path(output_path)
    temp = temp_for(output_path)
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        if output_path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        with open(temp, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns + ["predicted_ms"])
            writer.writerows(out_rows)
        temp.replace(output_path)
    except OSError as ex:
        if temp.parent.is_dir():
            temp.unlink(missing_ok=True)
        raise UsageError(f"cannot write --output {output_path}: {ex.strerror or ex}") from None
    return len(out_rows)
