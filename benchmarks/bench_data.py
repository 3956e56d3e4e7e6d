"""Where the fidelity scripts find their measured tables.

They ship in ``benchmarks/data`` (sources and licences in its README). ``$LABSIM_SHARED_DATA``
points the scripts at another folder of the same layout instead (the full shared data folder).
A missing table ends the script with exit status 2 and one line naming it, no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "data"
DATA = Path(os.environ["LABSIM_SHARED_DATA"]) if os.environ.get("LABSIM_SHARED_DATA") else SHIPPED


def need(*parts: str) -> Path:
    """The path of *parts* under :data:`DATA`; exit 2 with one line when it is missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        where = ("$LABSIM_SHARED_DATA" if DATA != SHIPPED
                 else "benchmarks/data (restore it with git checkout)")
        print(f"{Path(sys.argv[0]).name}: missing {path} — expected in {where}", file=sys.stderr)
        sys.exit(2)
    return path
