"""On SQLite the pool hands out the connection returned last. A SQLite connection drops its
whole page cache when another connection has written since its last transaction; the writes of
ingest (one at a time) so stay on one connection, whose pages stay cached, even once a read that
overlapped a write has made the pool hold a second connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from leadscore.store.db import WRITES
from tests.service_helpers import Api, page


def test_the_connection_returned_last_is_handed_out_next(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        first, second = engine.connect(), engine.connect()
        last = second.connection.dbapi_connection
        first.close()
        second.close()  # returned last
        for n in range(3):
            with engine.begin() as conn:
                assert conn.connection.dbapi_connection is last
                conn.execute(
                    sa.insert(t.api_keys).values(
                        name=f"k{n}",
                        scope="ingest",
                        prefix="lsw_x",
                        secret_hash=f"h{n}",
                        created_at_us=n,
                    )
                )
    finally:
        engine.dispose()


def test_ingests_after_an_overlapping_read_write_on_one_connection(tmp_path: Path) -> None:
    api = Api(f"sqlite:///{tmp_path / 'ingest.db'}")
    try:
        writers: list[object] = []

        def record(conn: sa.Connection) -> None:
            if conn.get_execution_options().get(WRITES, False):
                writers.append(conn.connection.dbapi_connection)

        sa.event.listen(api.engine, "begin", record)
        with api.engine.connect() as reader:  # a read in flight while a request is written
            reader.execute(sa.select(sa.func.count()).select_from(t.leads)).scalar_one()
            api.ok(page("u1", "/pricing"))
        for n in range(4):
            api.ok(page(f"u{n}", "/docs"))
        assert len(writers) == 5
        assert len(set(map(id, writers[1:]))) == 1, "the writes changed connection"
        assert api.count(t.events) == 5
    finally:
        api.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///file:shared?mode=memory&uri=true"])
def test_an_in_memory_database_still_opens(url: str) -> None:
    """The pool's order is for a database file: an in-memory one (a pool of one connection per
    thread, which takes no order) opens and takes writes as before."""
    engine = open_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(t.api_keys).values(
                    name="k", scope="ingest", prefix="lsw_x", secret_hash="h", created_at_us=1
                )
            )
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)).scalar() == 1
    finally:
        engine.dispose()


def test_a_write_that_cannot_take_the_lock_fails_as_sqlalchemys_operational_error(
    tmp_path: Path,
) -> None:
    """The write transaction's BEGIN IMMEDIATE runs on the driver's connection: when another
    connection holds SQLite's write lock past the busy timeout, it fails with the
    ``OperationalError`` the service tells apart from its own errors, told to the outcome, and
    the process's lock is given back; once the lock is free, the next write goes through."""
    import sqlite3
    import threading

    from leadscore.service.common import Tx

    db = tmp_path / "locked.db"
    engine = open_engine(f"sqlite:///{db}")
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        with engine.connect() as conn:  # the connection the writes get (the pool's last)
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
        blocker.execute("BEGIN IMMEDIATE")
        told: list[BaseException | None] = []
        lock = threading.Lock()
        with pytest.raises(sa.exc.OperationalError, match="locked"), Tx(engine, lock, told.append):
            pytest.fail("the transaction began without the lock")
        assert len(told) == 1 and isinstance(told[0], sa.exc.OperationalError)
        assert not lock.locked()
        blocker.execute("COMMIT")
        with Tx(engine, lock, told.append) as conn:
            conn.execute(
                sa.insert(t.api_keys).values(
                    name="k", scope="ingest", prefix="lsw_x", secret_hash="h", created_at_us=1
                )
            )
        assert told[1:] == [None]
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)).scalar() == 1
    finally:
        blocker.close()
        engine.dispose()


def test_a_write_on_a_closed_connection_fails_with_it_invalidated_and_the_next_goes_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pooled connection whose driver connection was closed under it: the write
    transaction's BEGIN IMMEDIATE (run on the driver's connection) fails as SQLAlchemy tells a
    lost connection, ``connection_invalidated``, the connection thrown away at once rather than
    handed back to the pool to fail its reset there (an error in the log), and the next write
    goes through on a new connection."""
    import logging
    import threading

    from leadscore.service.common import Tx

    engine = open_engine(f"sqlite:///{tmp_path / 'closed.db'}")
    closed: list[object] = []

    def close_it(dbapi_conn: object, _record: object, _proxy: object) -> None:
        dbapi_conn.close()  # type: ignore[attr-defined]
        closed.append(dbapi_conn)

    try:
        sa.event.listen(engine, "checkout", close_it, once=True)
        told: list[BaseException | None] = []
        lock = threading.Lock()
        with (
            caplog.at_level(logging.ERROR, logger="sqlalchemy"),
            pytest.raises(sa.exc.DBAPIError, match="closed database") as failed,
            Tx(engine, lock, told.append),
        ):
            pytest.fail("the transaction began on a closed connection")
        assert failed.value.connection_invalidated
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not lock.locked()
        with Tx(engine, lock, told.append) as conn:
            assert conn.connection.dbapi_connection is not closed[0]
            conn.execute(
                sa.insert(t.api_keys).values(
                    name="k", scope="ingest", prefix="lsw_x", secret_hash="h", created_at_us=1
                )
            )
        assert told[-1] is None
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)).scalar() == 1
    finally:
        engine.dispose()
