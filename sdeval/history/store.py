"""The history database: SQLAlchemy Core tables, a versioned migration list, connections.

A path or ``sqlite:///...`` is the embedded default. SQLite runs in WAL mode with a busy timeout and
every write transaction starts with ``BEGIN IMMEDIATE``, so two cron jobs writing at once queue on the
lock instead of failing with "database is locked". A ``postgresql+psycopg://`` URL (the driver is the
``sdeval[postgres]`` extra) lets several machines share one history; migrations there take an advisory
lock so two first runs do not both create the tables.

Schema versions are a list of functions, each taking the database from version ``n - 1`` to ``n``;
they are never edited once released (a newer sdeval opens an older database by running the missing
ones). A database written by a newer sdeval (a version above :data:`SCHEMA_VERSION`) is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sdeval.core.errors import SdevalError, UsageError

#: the version this sdeval writes; a database above it is refused
SCHEMA_VERSION = 2
#: seconds a writer waits for another writer's lock (SQLite busy timeout)
BUSY_TIMEOUT_S = 60.0
#: the advisory lock key PostgreSQL migrations take (any constant; "sdevalhi" as bytes)
_PG_LOCK_KEY = 0x73646576616C6869

metadata = sa.MetaData()

schema_table = sa.Table("sdeval_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String(32), nullable=False, unique=True),
    sa.Column("command", sa.String(32), nullable=False),
    sa.Column("command_line", sa.Text),
    sa.Column("label", sa.String(200), nullable=False),
    # ISO 8601 UTC text: sorts the same on SQLite and PostgreSQL, and never shifts with a time zone
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("ended_at", sa.String(40)),
    sa.Column("host", sa.String(255)),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("sdeval_version", sa.String(40)),
    sa.Column("versions", sa.Text),  # JSON: package versions
    sa.Column("protocol_hash", sa.String(32), nullable=False),
    sa.Column("protocol", sa.Text),  # JSON: the part of the protocol the hash is taken of
    sa.Column("n_images", sa.Integer),
    sa.Column("exit_status", sa.Integer),
    sa.Column("passed", sa.Boolean),
    sa.Column("out_dir", sa.Text),
    sa.Column("tags", sa.Text),  # JSON object (v1); run_tags holds them queryable (v2)
    sa.Column("details", sa.Text),  # JSON: top reasons, compare decisions, policy hash... (v2)
)

run_values = sa.Table(
    "run_values", metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Float),
    sa.Column("lo", sa.Float),
    sa.Column("hi", sa.Float),
    sa.Column("higher_is_better", sa.Boolean),
    # v2: the values regression alerts watch (a metric's mean, a set value, pass rate...), not its quantiles
    sa.Column("watched", sa.Boolean),
)

run_tags = sa.Table(
    "run_tags", metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text),
)

run_images = sa.Table(
    "run_images", metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text),
    sa.Column("verdict", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("metrics", sa.Text),  # JSON: metric name -> value
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("baseline", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("spread", sa.Float),
    sa.Column("higher_is_better", sa.Boolean),
    sa.Column("message", sa.Text),
)

sa.Index("ix_runs_series", runs.c.label, runs.c.protocol_hash, runs.c.started_at)
sa.Index("ix_run_values_name", run_values.c.name)
sa.Index("ix_alerts_run", alerts.c.run_id)


class HistoryError(SdevalError):
    """The history store cannot be opened or written (exit 2): names the store, never its password."""


class HistoryVersionError(HistoryError):
    """The database was written by a newer sdeval than this one."""


# -- migrations ------------------------------------------------------------------------------------------
# Each step is plain DDL/DML frozen at the time it was released: it must not use the tables above
# (they describe the newest schema), so that an old database goes through exactly what it missed.


def _v1(conn: Connection) -> None:
    """The first schema: runs and their values."""
    conn.exec_driver_sql("CREATE TABLE sdeval_schema (version INTEGER NOT NULL)")
    serial = "SERIAL" if conn.dialect.name == "postgresql" else "INTEGER"
    conn.exec_driver_sql(f"""CREATE TABLE runs (
        id {serial} PRIMARY KEY, uid VARCHAR(32) NOT NULL UNIQUE, command VARCHAR(32) NOT NULL,
        command_line TEXT, label VARCHAR(200) NOT NULL, started_at VARCHAR(40) NOT NULL,
        ended_at VARCHAR(40), host VARCHAR(255), git_commit VARCHAR(64), sdeval_version VARCHAR(40),
        versions TEXT, protocol_hash VARCHAR(32) NOT NULL, protocol TEXT, n_images INTEGER,
        exit_status INTEGER, passed BOOLEAN, out_dir TEXT, tags TEXT)""")
    conn.exec_driver_sql("""CREATE TABLE run_values (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, name VARCHAR(200) NOT NULL,
        value FLOAT, lo FLOAT, hi FLOAT, higher_is_better BOOLEAN, PRIMARY KEY (run_id, name))""")
    conn.exec_driver_sql("CREATE INDEX ix_runs_series ON runs (label, protocol_hash, started_at)")
    conn.exec_driver_sql("INSERT INTO sdeval_schema (version) VALUES (0)")


def _v2(conn: Connection) -> None:
    """Tags as rows, per-image rows, recorded alerts, run details, which values alerts watch."""
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN details TEXT")
    conn.exec_driver_sql("ALTER TABLE run_values ADD COLUMN watched BOOLEAN")
    # v1 wrote quantiles as "metric.p10" etc.; the watched values were the names without a dot
    conn.execute(sa.text("UPDATE run_values SET watched = (name NOT LIKE :dotted)"), {"dotted": "%.%"})
    conn.exec_driver_sql("CREATE INDEX ix_run_values_name ON run_values (name)")
    conn.exec_driver_sql("""CREATE TABLE run_tags (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, key VARCHAR(200) NOT NULL,
        value TEXT, PRIMARY KEY (run_id, key))""")
    conn.exec_driver_sql("""CREATE TABLE run_images (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, content_hash VARCHAR(64) NOT NULL,
        path TEXT, verdict VARCHAR(32), error TEXT, metrics TEXT, PRIMARY KEY (run_id, content_hash))""")
    serial = "SERIAL" if conn.dialect.name == "postgresql" else "INTEGER"
    conn.exec_driver_sql(f"""CREATE TABLE alerts (
        id {serial} PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        metric VARCHAR(200) NOT NULL, value FLOAT, baseline FLOAT, threshold FLOAT, spread FLOAT,
        higher_is_better BOOLEAN, message TEXT)""")
    conn.exec_driver_sql("CREATE INDEX ix_alerts_run ON alerts (run_id)")
    rows = conn.exec_driver_sql("SELECT id, tags FROM runs WHERE tags IS NOT NULL").fetchall()
    copied = [{"run_id": rid, "key": str(k), "value": None if v is None else str(v)}
              for rid, tags in rows for k, v in (json.loads(tags) or {}).items()]
    if copied:
        conn.execute(sa.text("INSERT INTO run_tags (run_id, key, value) VALUES (:run_id, :key, :value)"), copied)


#: (version, step): step n takes a database at version n - 1 (0: empty) to n
MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1), (2, _v2))
assert MIGRATIONS[-1][0] == SCHEMA_VERSION


# -- opening a store -------------------------------------------------------------------------------------


def to_url(location: str | os.PathLike[str]) -> sa.URL:
    """A SQLAlchemy URL from a path (SQLite) or a URL; ``postgresql://`` means psycopg 3."""
    text = os.fspath(location).strip()
    if not text:
        raise UsageError("--history: empty location (a path such as evals.db, or a sqlite:/// or "
                         "postgresql+psycopg:// URL)")
    if "://" not in text:
        path = Path(text).expanduser().absolute()
        if path.is_dir():
            raise UsageError(f"--history {text}: is a folder; give a database file such as {path / 'evals.db'}")
        return sa.URL.create("sqlite", database=str(path))
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise UsageError(f"--history: {exc}") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"--history: {url.get_backend_name()} is not supported (a path or sqlite:/// URL, "
                         "or postgresql+psycopg://)")
    return url


def describe_url(url: sa.URL) -> str:
    """The URL as it may be shown: never the password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's documented pysqlite recipe: the driver's own implicit BEGIN is turned off and
        # the "begin" hook below issues it, so a write transaction can take the lock up front
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE: a writer takes the write lock first (and waits on the busy timeout); a deferred
        # transaction that upgrades from read to write can fail at once with SQLITE_BUSY
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def _postgres_engine(url: sa.URL) -> Engine:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise HistoryError("a PostgreSQL history needs the psycopg driver: pip install 'sdeval[postgres]'") from exc
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


@dataclass
class Store:
    """An open history database (call :meth:`close`, or use it as a context manager)."""

    engine: Engine
    url: sa.URL

    @property
    def name(self) -> str:
        return describe_url(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def read(self) -> Any:
        """A read transaction: ``with store.read() as conn``."""
        return self.engine.begin()

    def write(self) -> Any:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        return _WriteTx(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _WriteTx:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect().execution_options(write=True)
        self.tx = self.conn.begin()
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()


def open_store(location: str | os.PathLike[str] | sa.URL, *, migrate: bool = True,
               target: int = SCHEMA_VERSION) -> Store:
    """Open (and create or migrate to ``target``) the history at ``location``.

    Raises :class:`HistoryVersionError` for a database newer than this sdeval, :class:`HistoryError`
    when it cannot be reached.
    """
    url = location if isinstance(location, sa.URL) else to_url(location)
    engine = _sqlite_engine(url) if url.get_backend_name() == "sqlite" else _postgres_engine(url)
    store = Store(engine, url)
    try:
        if migrate:
            migrate_store(store, target)
        else:
            check_version(store)
    except sa.exc.SQLAlchemyError as exc:
        store.close()
        raise HistoryError(f"history {store.name}: cannot open it: {_reason(exc)}") from exc
    except BaseException:
        store.close()
        raise
    return store


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def stored_version(conn: Connection) -> int | None:
    """The database's schema version; None for an empty database."""
    if not sa.inspect(conn).has_table("sdeval_schema"):
        if sa.inspect(conn).has_table("runs"):
            raise HistoryError("the database has a 'runs' table but no sdeval_schema table: "
                               "it is not an sdeval history")
        return None
    row = conn.exec_driver_sql("SELECT MAX(version) FROM sdeval_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _refuse_newer(store: Store, version: int) -> None:
    if version > SCHEMA_VERSION:
        from sdeval.core.versions import package_versions

        raise HistoryVersionError(
            f"history {store.name} has schema version {version}, written by a newer sdeval; this sdeval "
            f"({package_versions().get('sdeval')}) reads versions up to {SCHEMA_VERSION}. Upgrade sdeval (pip install -U sdeval) "
            "or use another --history; the database was not changed.")


def check_version(store: Store) -> int | None:
    with store.read() as conn:
        version = stored_version(conn)
    if version is not None:
        _refuse_newer(store, version)
    return version


def migrate_store(store: Store, target: int = SCHEMA_VERSION) -> int:
    """Run the missing migration steps up to ``target`` in one write transaction; returns the version."""
    with store.read() as conn:  # the common case (up to date) without taking the write lock
        version = stored_version(conn)
    if version is not None:
        _refuse_newer(store, version)
        if version >= target:
            return version
    with store.write() as conn:
        if store.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        version = stored_version(conn)  # again, under the lock: another process may have migrated
        current = version or 0
        if version is not None:
            _refuse_newer(store, version)
        for step_version, step in MIGRATIONS:
            if current < step_version <= target:
                step(conn)
                conn.exec_driver_sql(f"UPDATE sdeval_schema SET version = {int(step_version)}")
                current = step_version
        return current
