"""The ``sql`` metric sink: a run's record tables (a cluster's ``jobs``, ``attempts``, ``events``
...) in a database that a SQLAlchemy URL names — PostgreSQL for a team sharing one, or any other
database SQLAlchemy speaks (SQLite: ``sqlite:///runs.db``).

    metrics_config:
      sinks: [summary_json, csv, sql]
      sql: {url: "postgresql+psycopg://labsim@db.example/labsim", run_id: philly-fifo}

Needs SQLAlchemy and a driver: ``pip install 'labsim-cluster[postgres]'`` (SQLAlchemy Core and
psycopg); only this sink imports them. Keep passwords out of the experiment file (it is echoed
into summary.json): libpq reads ``PGPASSWORD`` or ``~/.pgpass``.

Schema (version :data:`SCHEMA_VERSION`, the ``sqlite`` sink's ``run.sqlite`` shared by many
runs): one table per record table, named and with the columns as in its CSV, plus ``run_key``
first; ``labsim_runs`` has one row per run (``run_key``, ``run_id``, ``experiment``,
``status``: ``writing`` or ``complete``); ``labsim_meta`` has ``(key, value)`` rows —
``schema_version`` and each table's columns. A run's policies keep apart by the ``policy``
column, runs by ``run_id`` (default: the name of the run's output folder). Numbers stay numbers:
a column of whole numbers is a 64-bit integer column, of other numbers double precision, any
other text; a later value that does not fit widens it (integer → double → text).

Rows are inserted as they happen and committed in batches (:data:`BATCH` rows) under a fresh
``run_key`` whose ``labsim_runs`` row says ``writing``; when the run ends well one transaction
removes every earlier run of the same ``run_id`` and marks this one ``complete``. A crash or a
kill leaves only rows of a run that never became complete — readers (``labsim jobs``) see none
of them, and the next run of that ``run_id`` removes them. ``store.json`` in the run folder
names the database (without its password) and the run, so that ``labsim jobs RUN_DIR`` finds it.
"""

from __future__ import annotations

import json
import numbers
import uuid
from pathlib import Path

from labsim.components import MetricSink
from labsim.default_plugins.sqlite_sink import SCHEMA_VERSION, BatchedTable
from labsim.errors import UsageError

BATCH = 10_000
RUNS = "labsim_runs"
META = "labsim_meta"
POINTER = "store.json"
INSTALL = "pip install 'labsim-cluster[postgres]'"

SETTINGS_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["url"],
    "description": "Where the sql metric sink writes (labsim-cluster): a SQLAlchemy URL, and the run's name there.",
    "properties": {
        "url": {"type": "string", "minLength": 1,
                "description": "A SQLAlchemy database URL: postgresql+psycopg://USER@HOST/DB (password from "
                               "PGPASSWORD or ~/.pgpass), sqlite:///PATH."},
        "run_id": {"type": "string", "minLength": 1,
                   "description": "The run's name in the database (default: the output folder's name); a "
                                  "later run of the same name replaces it when it ends well."},
    },
}


def sqlalchemy():
    """SQLAlchemy, or a :class:`UsageError` saying how to install it."""
    try:
        import sqlalchemy as sa
    except ImportError:
        raise UsageError(f"metrics_config.sinks: the sql sink needs SQLAlchemy: {INSTALL}") from None
    return sa


def connect(url: str, where: str = "metrics_config.sql.url"):
    """An engine for *url*, checked by connecting; a :class:`UsageError` naming *where* if not."""
    sa = sqlalchemy()
    try:
        engine = sa.create_engine(url)
        with engine.connect():
            pass
    except ImportError as ex:
        raise UsageError(f"{where}: {ex} (the database driver is missing: {INSTALL})") from None
    except Exception as ex:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors alike
        raise UsageError(f"{where}: cannot connect to {public_url(url)}: {_first_line(ex)}") from None
    return engine


def public_url(url: str) -> str:
    """*url* without its password (for messages and ``store.json``)."""
    try:
        return sqlalchemy().engine.make_url(url)._replace(password=None).render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, less anything after '@'
        return url.split("@")[-1]


def _absolute(url: str) -> str:
    """*url*, a SQLite file named by a relative path made absolute (as it was opened: from the
    current folder), so that ``labsim jobs`` finds it from anywhere."""
    parsed = sqlalchemy().engine.make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return url
    return parsed.set(database=str(Path(db).resolve())).render_as_string(hide_password=False)


def _first_line(ex: Exception) -> str:
    text = str(getattr(ex, "orig", None) or ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def schema_tables(sa, metadata):
    """The two bookkeeping tables, on *metadata*."""
    runs = sa.Table(RUNS, metadata, sa.Column("run_key", sa.String(64), primary_key=True),
                    sa.Column("run_id", sa.Text, nullable=False, index=True), sa.Column("experiment", sa.Text),
                    sa.Column("status", sa.String(16), nullable=False))
    meta = sa.Table(META, metadata, sa.Column("key", sa.String(255), primary_key=True), sa.Column("value", sa.Text))
    return runs, meta


class _Table(BatchedTable):
    """One record table: rows buffered, the SQL table created (or widened) at the first flush."""

    def __init__(self, sink, name: str, columns: list[str]):
        self.sink, self.name, self.columns = sink, name, list(columns)
        self.batch = BATCH
        self.pending: list[tuple] = []
        self.table = None
        self.kinds: list[str] = []

    def flush(self):
        batch = [_kind(r[i] for r in self.pending) for i in range(len(self.columns))]
        if self.table is None or any(RANK[b] > RANK[k] for b, k in zip(batch, self.kinds)):
            self.table, self.kinds = self.sink.define(self.name, self.columns, batch)
        if self.pending:
            key = self.sink.run_key
            names = ["run_key", *self.columns]
            casts = [str, *(CAST[k] for k in self.kinds)]
            rows = [dict(zip(names, (None if v is None else cast(v) for cast, v in zip(casts, (key, *r)))))
                    for r in self.pending]
            with self.sink.engine.begin() as con:
                con.execute(self.table.insert(), rows)
            self.pending = []


class SqlSink(MetricSink):
    """Every record table in a database a SQLAlchemy URL names (PostgreSQL for a team), many runs
    side by side; needs ``labsim-cluster[postgres]``."""

    name = "sql"
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"url": {"type": "string"}, "run_id": {"type": "string"}}}
    experiment_fields = {"metrics_config.sql": SETTINGS_SCHEMA}

    def __init__(self, out_dir, config=None):
        super().__init__(out_dir, config)
        url = self.config.get("url")
        if not url:
            raise UsageError("metrics_config.sql: the sql sink needs a url (metrics_config: {sql: {url: "
                             "postgresql+psycopg://USER@HOST/DB}})")
        self.sa = sa = sqlalchemy()
        self.url = url
        self.engine = connect(url)
        self.run_id = str(self.config.get("run_id") or Path(out_dir).name)
        self.run_key = uuid.uuid4().hex
        self.tables: list[_Table] = []
        self.metadata = sa.MetaData()
        self.runs, self.meta = schema_tables(sa, self.metadata)
        self.complete = False
        try:
            self.metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as con:
                found = con.execute(sa.select(self.meta.c.value).where(self.meta.c.key == "schema_version")).scalar()
                if found is None:
                    con.execute(self.meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
                elif found != str(SCHEMA_VERSION):
                    raise UsageError(f"metrics_config.sql.url: {public_url(url)} holds labsim store schema "
                                     f"version {found}; this labsim writes version {SCHEMA_VERSION}")
                con.execute(self.runs.insert(), [{"run_key": self.run_key, "run_id": self.run_id,
                                                  "experiment": None, "status": "writing"}])
        except UsageError:
            raise
        except sa.exc.SQLAlchemyError as ex:
            raise UsageError(f"metrics_config.sql.url: cannot write to {public_url(url)}: {_first_line(ex)}") from None

    def open_table(self, table, columns):
        t = _Table(self, table, list(columns))
        self.tables.append(t)
        return t

    def define(self, name: str, columns: list[str], kinds: list[str | None]):
        """The SQL table of record table *name* and its columns' kinds, able to take values of
        *kinds* (``integer``, ``number``, ``text``; None: no value seen yet): created, or the
        existing one given the columns it lacks and its columns widened where *kinds* need it
        (integer → number → text)."""
        sa = self.sa
        types = {"integer": sa.BigInteger(), "number": sa.Float(53), "text": sa.Text()}
        with self.engine.begin() as con:
            inspector = sa.inspect(con)
            if not inspector.has_table(name):
                table = sa.Table(name, sa.MetaData(), sa.Column("run_key", sa.String(64), index=True),
                                 *(sa.Column(c, types[k or "number"]) for c, k in zip(columns, kinds)))
                table.create(con)
            else:
                have = {c["name"]: _kind_of(sa, c["type"]) for c in inspector.get_columns(name)}
                prep = con.dialect.identifier_preparer
                for c, k in zip(columns, kinds):
                    typ = types[k or "number"].compile(dialect=con.dialect)
                    if c not in have:
                        con.execute(sa.text(f"ALTER TABLE {prep.quote(name)} ADD COLUMN {prep.quote(c)} {typ}"))
                    elif RANK[k] > RANK[have[c]] and con.dialect.name == "postgresql":
                        con.execute(sa.text(f"ALTER TABLE {prep.quote(name)} ALTER COLUMN {prep.quote(c)} "
                                            f"TYPE {typ} USING {prep.quote(c)}::{typ}"))
            key = f"columns.{name}"
            con.execute(sa.delete(self.meta).where(self.meta.c.key == key))
            con.execute(self.meta.insert(), [{"key": key, "value": json.dumps(columns)}])
        table = sa.Table(name, sa.MetaData(), autoload_with=self.engine)
        # SQLite keeps a column's declared type but stores any value: cast to what the value is
        found = [_kind_of(sa, table.c[c].type) for c in columns]
        return table, [f if RANK[f] >= RANK[k] else k for f, k in zip(found, kinds)]

    def write_summary(self, summary):
        self.experiment = summary.get("experiment")

    def prepare(self) -> list[tuple[Path, Path]]:
        """Flush every table, make this run the complete one of its ``run_id`` and stage
        ``store.json``."""
        sa = self.sa
        for t in self.tables:
            t.flush()
        tables = [t.table for t in self.tables if t.table is not None]
        with self.engine.begin() as con:
            old = [k for (k,) in con.execute(sa.select(self.runs.c.run_key).where(
                self.runs.c.run_id == self.run_id, self.runs.c.run_key != self.run_key))]
            _delete_runs(sa, con, self.metadata, old, tables)
            con.execute(sa.update(self.runs).where(self.runs.c.run_key == self.run_key).values(
                status="complete", experiment=getattr(self, "experiment", None)))
        self.complete = True
        path = Path(self.out_dir) / POINTER
        temp = path.with_name(f".{path.name}.tmp-{self.run_key}")
        temp.write_text(json.dumps({"url": public_url(_absolute(self.url)), "run_id": self.run_id,
                                    "schema_version": SCHEMA_VERSION}, indent=2) + "\n", encoding="utf-8")
        self.temp = temp
        return [(temp, path)]

    def discard(self) -> None:
        """The run failed: remove what it wrote (a complete mark included)."""
        sa = self.sa
        try:
            with self.engine.begin() as con:
                _delete_runs(sa, con, self.metadata, [self.run_key],
                             [t.table for t in self.tables if t.table is not None])
        except sa.exc.SQLAlchemyError:
            pass   # left as an incomplete run: no reader sees it, the next run of its run_id removes it
        if getattr(self, "temp", None) is not None:
            self.temp.unlink(missing_ok=True)
        self.engine.dispose()

    def close(self, ok):
        self.engine.dispose()
        return []


def _delete_runs(sa, con, metadata, keys: list[str], tables) -> None:
    """Remove the runs *keys*: their rows of every table (those named in ``labsim_meta`` too)."""
    if not keys:
        return
    names = {t.name for t in tables}
    meta = metadata.tables[META]
    for (key,) in con.execute(sa.select(meta.c.key).where(meta.c.key.like("columns.%"))):
        names.add(key.split(".", 1)[1])
    inspector = sa.inspect(con)
    for name in sorted(names):
        if inspector.has_table(name):
            table = sa.Table(name, sa.MetaData(), sa.Column("run_key"))
            con.execute(sa.delete(table).where(table.c.run_key.in_(keys)))
    runs = metadata.tables[RUNS]
    con.execute(sa.delete(runs).where(runs.c.run_key.in_(keys)))


#: the column kinds, narrowest first; None: no value seen
RANK = {None: -1, "integer": 0, "number": 1, "text": 2}
CAST = {"integer": int, "number": float, "text": str}


def _kind(values) -> str | None:
    """``integer`` if every value given is a whole number, ``number`` if every one is a number
    (bools aside), else ``text``; None if none is given."""
    kind = None
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return "text"
        if not isinstance(v, numbers.Integral):
            kind = "number"
        elif kind is None:
            kind = "integer"
    return kind


def _kind_of(sa, typ) -> str:
    """The kind a database column type holds."""
    if isinstance(typ, sa.Integer):
        return "integer"
    return "number" if isinstance(typ, (sa.Float, sa.Numeric)) else "text"


__all__ = ["SqlSink", "connect", "public_url"]
