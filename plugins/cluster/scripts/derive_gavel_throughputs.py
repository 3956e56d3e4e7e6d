"""Write ``labsim_cluster/data/gavel_throughputs.csv`` from Gavel's measured throughputs.

    python plugins/cluster/scripts/derive_gavel_throughputs.py SIMULATION_THROUGHPUTS_JSON

The source is ``scheduler/simulation_throughputs.json`` of stanford-futuredata/gavel (MIT;
Narayanan et al., "Heterogeneity-Aware Cluster Scheduling Policies for Deep Learning
Workloads", OSDI'20): for each GPU type (``k80``, ``p100``, ``v100``) and each
``(job type, scale factor)`` the steps per second of the job running alone (key ``"null"``),
on one server (``consolidated``) and with its workers spread over servers (the
``<type>_unconsolidated`` tables). Values are copied unchanged, one row per
(GPU type, job type, GPUs); an empty cell is a combination the source does not have.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "labsim_cluster" / "data" / "gavel_throughputs.csv"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    data = json.loads(Path(argv[0]).read_text())
    rows = []
    for gpu in ("k80", "p100", "v100"):
        unconsolidated = data.get(f"{gpu}_unconsolidated", {})
        for key, entry in data[gpu].items():
            job_type, gpus = ast.literal_eval(key)
            spread = unconsolidated.get(key, {}).get("null")
            rows.append((gpu, job_type, int(gpus), entry["null"], "" if spread is None else spread))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with open(OUT, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["gpu_type", "job_type", "num_gpus", "steps_per_s", "steps_per_s_unconsolidated"])
        w.writerows(rows)
    print(f"{OUT.name}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
