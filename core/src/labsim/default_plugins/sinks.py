"""Built-in metric sinks: ``summary_json`` and ``csv``, plus ``memory`` for the Python API.

Files are written to a temporary name beside their destination
(``.requests.csv.tmp-PID``) and renamed into place only when the run succeeds.
The built-in sinks are *staged*: :meth:`prepare` finishes every temporary file
without renaming anything, so the orchestrator can check the whole set and then
rename it together (summary.json last) — a failed or interrupted run leaves no
output at all, and a run's outputs never mix with a half of another's.
"""

from __future__ import annotations

import csv
import json
import os
from itertools import chain
from operator import itemgetter
from pathlib import Path

from labsim.components import MetricSink
from labsim.default_plugins.csv_chunks import chunk_text
from labsim.errors import UsageError
from labsim.hookspecs import hookimpl
from labsim.metrics import clean
from labsim.outputs import atomic_path, temp_for


def format_cell(value) -> str:
    """Deterministic text for a CSV cell (9 significant digits for floats)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) or hasattr(value, "dtype") and value.dtype.kind == "f":
        value = float(value)
        if value != value:  # NaN
            return ""
        return f"{value:.9g}"
    return str(clean(value))


def _format_float(value: float) -> str:
    return "" if value != value else f"{value:.9g}"


def _empty(_value) -> str:
    return ""


#: format_cell for the exact built-in types it meets most (others go through format_cell)
_FORMAT_BY_TYPE = {
    float: _format_float,
    int: int.__repr__,
    str: str,
    type(None): _empty,
    bool: format_cell,
}


def format_row(row) -> list[str]:
    """``[format_cell(v) for v in row]``, dispatching on each value's exact type."""
    get = _FORMAT_BY_TYPE.get
    return [get(type(v), format_cell)(v) for v in row]


#: a cell of one of these exact types has a fixed text in a CSV line (a ``%`` conversion;
#: None: an empty cell), as :func:`format_cell` writes it: float ``{:.9g}`` (NaN aside), int
#: ``repr``, str as is (when the csv module would not quote it)
_CONVERSIONS = {float: "%.9g", int: "%d", str: "%s", type(None): None}


def _pick(indices):
    """``f(row)`` → the tuple of *row*'s cells at *indices*."""
    if not indices:
        return lambda row: ()
    if len(indices) == 1:
        i = indices[0]
        return lambda row: (row[i],)
    return itemgetter(*indices)


class LineFormat:
    """The CSV line of a row whose cells have one sequence of exact types, made by one ``%``
    formatting instead of a call per cell; equal, byte for byte, to ``csv.writer``'s line of
    :func:`format_row` (tested).

    :meth:`line` answers None for a row it cannot write so (a NaN or an infinity that makes one,
    or a text the csv module would quote): the caller writes that one the usual way.
    """

    __slots__ = ("template", "values", "floats", "texts", "picks", "width")

    def __init__(self, kinds: tuple):
        conversions = [_CONVERSIONS[k] for k in kinds]
        self.template = ",".join(c or "" for c in conversions) + "\n"
        self.values = _pick([i for i, c in enumerate(conversions) if c])
        #: whether :attr:`values` leaves cells out (None cells, written empty)
        self.picks = None in conversions
        self.width = len(kinds)
        self.floats = _pick([i for i, k in enumerate(kinds) if k is float])
        self.texts = _pick([i for i, k in enumerate(kinds) if k is str])

    @classmethod
    def of(cls, kinds: tuple):
        """The format of rows of cell types *kinds*, or None when some type has no fixed text
        (or a lone cell, which the csv module quotes when empty)."""
        if len(kinds) < 2 or not all(k in _CONVERSIONS for k in kinds):
            return None
        return cls(kinds)

    def line(self, row) -> str | None:
        """The CSV line of *row* (cells of this format's types), or None (see the class)."""
        total = sum(self.floats(row))
        if total != total:                 # a NaN cell (or infinities of both signs)
            return None
        text = "".join(self.texts(row))      # quoted by the csv module if it holds one of these
        if "," in text or '"' in text or "\n" in text or "\r" in text:
            return None
        return self.template % self.values(row)


def _open_temp(path: Path):
    """The temporary file of *path*, opened for writing; a :class:`UsageError` if impossible."""
    temp = temp_for(path)
    try:
        temp.parent.mkdir(parents=True, exist_ok=True)
        return temp, open(temp, "w", newline="", encoding="utf-8")
    except OSError as ex:
        raise UsageError(f"cannot write output {path}: {ex.strerror or ex}") from None


#: rows a CSV table holds before it formats and writes them together (about 2 MB of
#: requests rows): memory stays bounded whatever the run's length
CHUNK_ROWS = 4096


#: rows from which a buffer is formatted a column at a time (:func:`chunk_text`): its fixed
#: cost (the numpy calls, some 2M instructions) is that of 50 to 70 requests rows formatted one
#: at a time, and the two cost the same near 100 rows (measured); smaller buffers, a run's last
#: one for instance, are formatted a row at a time
VECTOR_ROWS = 128


class _CsvWriter:
    """One table's CSV file. Rows wait in a buffer of at most :attr:`chunk_rows` and are
    written together (:meth:`flush`): a buffer of :data:`VECTOR_ROWS` rows or more is
    formatted a column at a time by :func:`chunk_text`; a smaller one (or one it does not take)
    whose rows all have one sequence of cell types is formatted by its :class:`LineFormat` in
    one pass; both are byte for byte the lines of one row at a time (tested). A row is kept
    until it is written, so the producer does not change it afterwards (a tuple, or a list
    made for the row)."""

    def __init__(self, path: Path, columns, chunk_rows: int = CHUNK_ROWS):
        self.path = path
        self.temp, self.handle = _open_temp(path)
        self.writer = csv.writer(self.handle, lineterminator="\n")
        self.formats: dict[tuple, LineFormat | None] = {}
        self.writer.writerow(columns)
        self.chunk_rows = max(1, chunk_rows)
        self._rows: list = []

    def _line(self, row) -> str | None:
        """*row*'s CSV line by its :class:`LineFormat` (one per sequence of cell types), or None."""
        kinds = tuple(map(type, row))
        fmt = self.formats.get(kinds, False)
        if fmt is False:
            fmt = self.formats[kinds] = LineFormat.of(kinds)
        return None if fmt is None else fmt.line(row)

    def append(self, row):
        rows = self._rows
        rows.append(row)
        if len(rows) >= self.chunk_rows:
            self.flush()

    def extend(self, rows):
        self._rows.extend(rows)
        if len(self._rows) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows."""
        rows = self._rows
        if not rows:
            return
        self._rows = []
        text = chunk_text(rows, format_row) if len(rows) >= VECTOR_ROWS else None
        if text is not None:
            self.handle.write(text)
            return
        fmt = self._chunk_format(rows)
        if fmt is None:                  # rows of several shapes, or cells of other types
            for row in rows:
                self._write(row)
            return
        n, commas = len(rows), fmt.width - 1
        text = "".join(map(fmt.template.__mod__, map(fmt.values if fmt.picks else tuple, rows)))
        # a NaN cell shows as "nan", a text the csv module quotes as a comma, a quote or a line
        # break more than the separators: then only those rows are written one at a time
        if ("nan" not in text and '"' not in text and "\r" not in text
                and text.count(",") == n * commas and text.count("\n") == n):
            self.handle.write(text)
            return
        lines = text.split("\n")
        if len(lines) != n + 1:          # a text with a line break: row i is no longer line i
            for row in rows:
                self._write(row)
            return
        write = self.handle.write
        for row, line in zip(rows, lines):
            if "nan" in line or '"' in line or "\r" in line or line.count(",") != commas:
                self._write(row)
            else:
                write(line + "\n")

    def _write(self, row) -> None:
        """Write one row: by its :class:`LineFormat` if it has one, else by the csv module."""
        line = self._line(row)
        if line is None:
            self.writer.writerow(format_row(row))
        else:
            self.handle.write(line)

    def _chunk_format(self, rows) -> LineFormat | None:
        """The :class:`LineFormat` of every one of *rows*, or None when their cell types differ
        (or have none)."""
        kinds = tuple(map(type, rows[0]))
        fmt = self.formats.get(kinds, False)
        if fmt is False:
            fmt = self.formats[kinds] = LineFormat.of(kinds)
        if fmt is None:
            return None
        if (set(map(len, rows)) != {fmt.width}
                or list(map(type, chain.from_iterable(rows))) != list(kinds) * len(rows)):
            return None
        return fmt

    def finish(self, ok: bool):
        if ok:
            self.flush()
        self.handle.close()
        if ok:
            os.replace(self.temp, self.path)
            return self.path
        self.temp.unlink(missing_ok=True)
        return None

    def stage(self) -> tuple[Path, Path]:
        """Write the buffered rows and close the temporary file; (temporary, destination) for
        the orchestrator to rename."""
        self.flush()
        self.handle.close()
        return self.temp, self.path

    def discard(self) -> None:
        self._rows = []
        self.handle.close()
        self.temp.unlink(missing_ok=True)


class CsvSink(MetricSink):
    """One CSV file per record table (requests.csv, steps.csv ...), streamed as the run goes."""

    name = "csv"

    def __init__(self, out_dir, config=None):
        super().__init__(out_dir, config)
        self.paths = dict((config or {}).get("paths", {}))
        self.writers: list[_CsvWriter] = []
        # every table's temporary file, known before it is created: a signal that stops the
        # run while a table opens (its file made, its writer not yet kept) still finds it
        self._temps: list[Path] = []

    def open_table(self, table, columns):
        path = Path(self.paths.get(table) or Path(self.out_dir) / f"{table}.csv")
        self._temps.append(temp_for(path))
        writer = _CsvWriter(path, columns)
        self.writers.append(writer)
        return writer

    def close(self, ok):
        done = [p for p in (w.finish(ok) for w in self.writers) if p]
        if not ok:
            self._remove_temps()
        return done

    def prepare(self) -> list[tuple[Path, Path]]:
        """Finish every table's temporary file; nothing is renamed yet."""
        return [w.stage() for w in self.writers]

    def discard(self) -> None:
        for writer in self.writers:
            writer.discard()
        self._remove_temps()

    def _remove_temps(self) -> None:
        """Remove what is left of the tables' temporary files (a table stopped while opening)."""
        for temp in self._temps:
            temp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data) -> Path:
    """Write *data* as indented JSON to *path* atomically."""
    path = Path(path)
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", "utf-8")
    return path


class SummaryJsonSink(MetricSink):
    """summary.json: the run's summary, valid against schemas/summary.schema.json."""

    name = "summary_json"

    def __init__(self, out_dir, config=None):
        super().__init__(out_dir, config)
        self.path = Path((config or {}).get("path") or Path(out_dir) / "summary.json")
        self.summary = None

    def write_summary(self, summary):
        self.summary = summary

    def close(self, ok):
        if ok and self.summary is not None:
            return [write_json_atomic(self.path, self.summary)]
        return []

    def prepare(self) -> list[tuple[Path, Path]]:
        """Write summary.json's temporary file; nothing is renamed yet."""
        if self.summary is None:
            return []
        text = json.dumps(self.summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        temp, handle = _open_temp(self.path)
        with handle:
            handle.write(text)
        self._temp = temp
        return [(temp, self.path)]

    def discard(self) -> None:
        temp = getattr(self, "_temp", None)
        if temp is not None:
            temp.unlink(missing_ok=True)


class _ListWriter:
    def __init__(self, rows):
        self.rows = rows

    def append(self, row):
        self.rows.append(tuple(row))

    def extend(self, rows):
        self.rows.extend(tuple(r) for r in rows)


class MemorySink(MetricSink):
    """Keeps every table in memory (what :func:`labsim.run` returns as ``Result.tables``)."""

    name = "memory"

    def __init__(self, out_dir=None, config=None):
        super().__init__(out_dir, config)
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, list[tuple]] = {}
        self.summary = None

    def open_table(self, table, columns):
        self.columns[table] = list(columns)
        self.rows[table] = []
        return _ListWriter(self.rows[table])

    def write_summary(self, summary):
        self.summary = summary


@hookimpl
def register_metric_sinks(register):
    from labsim.default_plugins.sqlite_sink import SqliteSink

    register(SummaryJsonSink)
    register(CsvSink)
    register(MemorySink)
    register(SqliteSink)
