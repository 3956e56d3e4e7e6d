"""The ``sqlite`` metric sink: every record table of a run in one SQLite file, ``run.sqlite``.

Rows are inserted as they happen and committed in batches (:data:`BATCH` rows) in WAL mode into
a temporary file beside the destination; when the run ends well the WAL is checkpointed into the
file and it is renamed into place with the run's other outputs, so a crash or a kill leaves no
half-written database (the temporary file is removed, or left under a dot-name). Schema
(version :data:`SCHEMA_VERSION`): one SQL table per record table, named and with the columns as
in its CSV (values as the simulation produced them: numbers stay numbers), and a ``labsim_meta``
table of ``(key, value)`` rows — ``schema_version`` and each table's column list.

    metrics_config: {sinks: [summary_json, csv, sqlite]}
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from labsim.components import MetricSink
from labsim.errors import UsageError

SCHEMA_VERSION = 1
BATCH = 10_000


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


class BatchedTable:
    """Rows of one record table buffered and written ``batch`` (:data:`BATCH`) at a time: a
    database sink's table subclasses it and says how a batch is written (``flush``)."""

    pending: list
    batch: int = BATCH

    def append(self, row):
        self.pending.append(tuple(row))
        if len(self.pending) >= self.batch:
            self.flush()

    def extend(self, rows):
        self.pending.extend(tuple(r) for r in rows)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self):  # pragma: no cover - each table writes its own way
        raise NotImplementedError


class _Table(BatchedTable):
    def __init__(self, sink, name: str, columns: list[str]):
        self.sink, self.name = sink, name
        cols = ", ".join(_ident(c) for c in columns)
        sink.db.execute(f"CREATE TABLE {_ident(name)} ({cols})")
        sink.db.execute("INSERT INTO labsim_meta VALUES (?, ?)", (f"columns.{name}", json.dumps(columns)))
        self.sql = f"INSERT INTO {_ident(name)} VALUES ({', '.join('?' * len(columns))})"
        self.pending: list = []

    def flush(self):
        if self.pending:
            self.sink.db.executemany(self.sql, self.pending)
            self.sink.db.commit()
            self.pending = []


class SqliteSink(MetricSink):
    """Every record table in one SQLite file (``run.sqlite``), written as the run goes."""

    name = "sqlite"
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"path": {"type": "string", "description": "Default: run.sqlite."}}}

    def __init__(self, out_dir, config=None):
        super().__init__(out_dir, config)
        self.path = Path((config or {}).get("path") or Path(out_dir) / "run.sqlite")
        self.temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.tables: list[_Table] = []
        try:
            self.temp.parent.mkdir(parents=True, exist_ok=True)
            self.temp.unlink(missing_ok=True)
            self.db = sqlite3.connect(self.temp)
        except (OSError, sqlite3.Error) as ex:
            raise UsageError(f"cannot write output {self.path}: {ex}") from None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE labsim_meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("INSERT INTO labsim_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.db.commit()

    def open_table(self, table, columns):
        t = _Table(self, table, list(columns))
        self.tables.append(t)
        return t

    def _close_db(self) -> None:
        for t in self.tables:
            t.flush()
        self.db.commit()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()

    def prepare(self) -> list[tuple[Path, Path]]:
        self._close_db()
        return [(self.temp, self.path)]

    def discard(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.temp) + suffix).unlink(missing_ok=True)

    def close(self, ok):
        return []
