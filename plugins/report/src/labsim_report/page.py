"""The report page: a run folder read once, its sections, one HTML file with inline SVG plots.

Nothing on the page is fetched: plots are inline SVG (matplotlib's SVG backend), styles are
inline, and no script is loaded. Large tables are reduced before drawing (percentile curves of
at most :data:`CDF_POINTS` points, time series binned into :data:`TIME_BINS` bins), so a report
of a million-request run draws as fast as one of a thousand.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from labsim.errors import UsageError

CDF_POINTS = 400
TIME_BINS = 200

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#555}.plot svg{max-width:100%;height:auto}
code{background:#f4f4f4;padding:0 .2em}details pre{background:#f8f8f8;padding:.6em;overflow:auto;
max-height:30em;font-size:12px}summary{cursor:pointer;color:#555}
"""


class Run:
    """A finished run folder: its summary and its tables (read on first use)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / "summary.json"
        if not path.is_file():
            raise UsageError(f"PATH: {folder} has no summary.json (give the --out folder of a finished run)")
        try:
            self.summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as ex:
            raise UsageError(f"PATH: {path} is not valid JSON ({ex})") from None
        self._tables: dict[str, list[dict] | None] = {}

    def table(self, name: str) -> list[dict] | None:
        """The run's ``NAME.csv`` as a list of dicts (strings), or None when it has none."""
        if name not in self._tables:
            path = self.folder / f"{name}.csv"
            if not path.is_file():
                self._tables[name] = None
            else:
                with open(path, newline="", encoding="utf-8") as fh:
                    self._tables[name] = list(csv.DictReader(fh))
        return self._tables[name]

    def column(self, name: str, column: str, where=None) -> np.ndarray:
        """A numeric column of table *name* (rows passing *where*), blanks left out."""
        out = []
        for row in self.table(name) or []:
            if where is not None and not where(row):
                continue
            value = row.get(column)
            if value not in (None, ""):
                try:
                    out.append(float(value))
                except ValueError:
                    continue
        return np.asarray(out, dtype=float)

    @staticmethod
    def figure(fig) -> str:
        """*fig* as inline SVG (and closed)."""
        import matplotlib.pyplot as plt

        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
        plt.close(fig)
        text = buf.getvalue()
        return '<div class="plot">' + text[text.find("<svg"):] + "</div>"


def esc(value) -> str:
    return html.escape(str(value))


def html_table(header: list, rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build(folder: Path, sections) -> str:
    """The whole page of run *folder* with *sections* (functions of a :class:`Run`)."""
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "labsim"  # the same run, the same page
    run = Run(folder)
    s = run.summary
    title = s.get("experiment") or folder.name
    parts = [f"<h1>{esc(title)}</h1>"]
    for fn in sections:
        for heading, body in fn(run) or ():
            parts.append(f"<h2>{esc(heading)}</h2>{body}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>labsim report: {esc(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_atomic(path: Path, text: str) -> Path:
    """Write the page *text* to *path*, whole or not at all."""
    from labsim.outputs import atomic_path

    path = Path(path)
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return path
