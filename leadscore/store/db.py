"""Open the service's database: the same default for the CLI and the server, migrations on open.

The URL comes from ``--database-url``, else ``LEADSCORE_DATABASE_URL``, else the SQLite file
``./leadscore.db``. SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk when
it returns, so an acknowledged event survives a crash or power cut.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from ..errors import ConfigError, MissingExtraError

__all__ = ["DEFAULT_URL", "WRITES", "database_url", "open_engine", "shown_url", "upgrade"]

DEFAULT_URL = "sqlite:///leadscore.db"
#: execution option of a transaction that reads before it writes (see ``_sqlite_begin``)
WRITES = "leadscore_writes"
_MIGRATIONS = Path(__file__).parent / "migrations"


def shown_url(url: Any) -> str:
    """A database URL as it may be printed or logged: no password, neither in its user part nor
    as a query parameter (``?password=…``, ``sslpassword``, a key or token)."""
    parsed = make_url(url) if isinstance(url, str) else url
    secret = {k: "***" for k in parsed.query if re.search("pass|secret|token|key", k, re.I)}
    if secret:
        parsed = parsed.update_query_dict(secret)
    return str(parsed.render_as_string(hide_password=True))


def database_url(given: str | None = None) -> str:
    url = given or os.environ.get("LEADSCORE_DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            f"{url!r} is not a database URL; use sqlite:///FILE or postgresql://…"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
        )
    if parsed.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingExtraError(
                "PostgreSQL needs its driver, which is not installed: "
                "pip install 'leadscore[postgres]'"
            ) from None
    return url


#: pages the WAL may hold before a commit copies them back into the database file (SQLite's
#: default is 1,000: with about 250 pages written per 100-event ingest, one commit in four
#: copied the pages again, the same leads' and indexes' pages each time, and flushed the file)
WAL_CHECKPOINT_PAGES = 4_000
#: what the WAL file is cut back to after a checkpoint, if it grew past it (bytes)
WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: each connection's page cache, in KiB (SQLite's default is 2,000): an ingest touches pages
#: all over the events' indexes and the leads, and read a hundred of them again per batch
CACHE_KIB = 32 * 1024
#: what all the process's SQLite connections together may keep in memory (bytes) before their
#: page caches reuse their own pages instead of growing: a pool of up to 15 connections with
#: 32 MiB caches could otherwise hold 480 MiB of a large database's pages (SQLite's soft heap
#: limit, process-wide; it never makes a statement fail)
HEAP_LIMIT = 128 * 1024 * 1024


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cur.execute(f"PRAGMA soft_heap_limit={HEAP_LIMIT}")
    cur.close()
    from ..sql.sqlite import connect_functions

    connect_functions(dbapi_conn)


def _sqlite_begin(conn: Any) -> None:
    # a read begins deferred, so in WAL mode it neither waits for the writer nor holds it up;
    # a transaction that reads before it writes takes the write lock at once, as it could not
    # wait for it later. One that writes first waits for the lock at its first write.
    immediate = conn.get_execution_options().get(WRITES, False)
    sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"
    # on the driver's connection (every write transaction begins here; SQLAlchemy's statement
    # machinery cost more than the BEGIN), its error raised as SQLAlchemy's, as it would be:
    # a lost connection (closed under the pool) is thrown away at once, as SQLAlchemy does,
    # not handed back to the pool, whose reset would fail on it again and log that as an error
    try:
        conn.connection.driver_connection.execute(sql)
    except sqlite3.Error as e:
        lost = conn.dialect.is_disconnect(e, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(e)
        raise DBAPIError.instance(
            sql, None, e, sqlite3.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from e


def _postgres_settings(dbapi_conn: Any, _record: Any) -> None:
    # a backend whose process died while the backend waited (for a lock, say) notices within a
    # second and ends the transaction, giving up its locks, instead of waiting on
    # (PostgreSQL 14 and later; older servers do not know the setting)
    try:
        dbapi_conn.execute("SET client_connection_check_interval = 1000")
        dbapi_conn.commit()
    except Exception:
        dbapi_conn.rollback()


def open_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """An engine on the service database, with every migration applied."""
    url = database_url(url)
    if url.startswith("sqlite"):
        # the pool hands out the connection returned last: SQLite drops a connection's whole
        # page cache when another connection has written since its last transaction, so the
        # writes (one at a time) stay on one connection whose pages stay cached; handed out
        # in turn, each write re-read about 180 pages of a 100-event ingest from the files
        # (an in-memory database has a pool of one connection per thread, which takes no order)
        queued = SQLiteDialect_pysqlite.get_pool_class(make_url(url)) is QueuePool
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            **({"pool_use_lifo": True} if queued else {}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLAlchemy's pysqlite driver: let BEGIN be explicit so transactions are real
        event.listen(engine, "begin", _sqlite_begin)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

    else:
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        event.listen(engine, "connect", _postgres_settings)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as e:
        raise ConfigError(
            f"cannot open the database {shown_url(url)}: {str(e).splitlines()[0]}"
        ) from None
    if migrate:
        upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.execution_options(**{WRITES: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            # several processes starting at once on one database: one migrates, the others
            # wait and find nothing left to do (the lock ends with the transaction)
            conn.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtextextended('leadscore:migrate', 0))"
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
