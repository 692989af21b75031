"""A write transaction on PostgreSQL begins with its writes lock and the read of the active
versions in one round trip (``locks.begin_write``): BEGIN goes in the same query, where the
driver would send it on its own first and wait for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from leadscore.service import locks
from leadscore.service.common import Tx
from leadscore.store import open_engine


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    got = open_engine(pg_url)
    yield got
    got.dispose()


def _queries(trace: Path) -> list[str]:
    """The queries the client sent (libpq's trace: simple ``Query`` and extended ``Parse``)."""
    out = []
    for line in trace.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) > 4 and fields[1] == "F" and fields[3] in ("Query", "Parse"):
            out.append(" ".join(fields[4:]))
    return out


def test_begin_the_writes_lock_and_the_versions_go_in_one_query(
    engine: Engine, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.txt"
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        conn.rollback()
        with trace.open("w") as f:
            driver.pgconn.trace(f.fileno())  # type: ignore[union-attr]
            try:
                with conn.begin():
                    versions = locks.begin_write(conn)
                    conn.exec_driver_sql("CREATE TEMP TABLE t (x int) ON COMMIT DROP")
            finally:
                driver.pgconn.untrace()  # type: ignore[union-attr]
    sent = _queries(trace)
    # the lock and the versions are one function (migration 0009), whose plans the server keeps
    assert "BEGIN; SELECT * FROM leadscore_begin_write(false)" in sent[0], sent
    # the driver sent no BEGIN of its own: the transaction was open already
    assert not [q for q in sent if '"BEGIN"' in q], sent
    assert versions == (None, None)  # no model, no routing activated in a fresh database


def test_what_a_write_transaction_writes_is_committed_or_rolled_back(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE begun (x int)")
    with Tx(engine, None) as conn:
        conn.exec_driver_sql("INSERT INTO begun VALUES (1)")
    with pytest.raises(ZeroDivisionError), Tx(engine, None) as conn:
        conn.exec_driver_sql("INSERT INTO begun VALUES (2)")
        raise ZeroDivisionError
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM begun").scalars().all() == [1]


def test_the_versions_are_read_after_the_writes_lock_is_granted(engine: Engine) -> None:
    """An activation holds the writes lock exclusively; a write that begins meanwhile waits,
    and reads the versions the activation committed."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE gate (x int)")
    got: list[tuple[int | None, int | None]] = []
    activating = Tx(engine, None, exclusive=True)
    conn = activating.__enter__()
    waiter = threading.Thread(target=lambda: got.append(_versions(engine)))
    waiter.start()
    try:
        with engine.connect() as other:  # the waiter waits for the writes lock
            _wait_for_lock_wait(other)
        conn.execute(
            sa.text(
                "INSERT INTO models (version, name, source, created_at_us, created_by, active) "
                "VALUES (7, 'm', 'x', 0, 'test', true)"
            )
        )
    finally:
        activating.__exit__(None, None, None)
    waiter.join(30)
    assert got == [(7, None)]


def _versions(engine: Engine) -> tuple[int | None, int | None]:
    tx = Tx(engine, None)
    with tx:
        assert tx.versions is not None
        return tx.versions


def _wait_for_lock_wait(conn: sa.Connection) -> None:
    for _ in range(300):
        waiting = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).scalar_one()
        conn.rollback()
        if waiting:
            return
        threading.Event().wait(0.05)
    raise AssertionError("no write waited for the writes lock")


def test_a_failing_first_query_is_the_databases_error_and_the_connection_serves_again(
    engine: Engine,
) -> None:
    holder = Tx(engine, None, exclusive=True)
    holder.__enter__()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '50ms'")
            conn.commit()
            with pytest.raises(sa.exc.OperationalError) as failed, conn.begin():
                locks.begin_write(conn)
            assert "lock timeout" in str(failed.value)
            conn.exec_driver_sql("RESET lock_timeout")
            conn.commit()
    finally:
        holder.__exit__(None, None, None)
    with Tx(engine, None) as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1


def test_a_connection_with_an_isolation_level_of_its_own_begins_as_the_driver_would(
    engine: Engine,
) -> None:
    """BEGIN goes with the writes lock only where the driver's BEGIN would be the plain one: a
    connection set to another isolation level begins with the driver's own BEGIN."""
    conn = engine.connect().execution_options(isolation_level="SERIALIZABLE")
    with conn, conn.begin():
        assert locks.begin_write(conn) == (None, None)
        level = conn.exec_driver_sql("SHOW transaction_isolation").scalar_one()
    assert level == "serializable"


def test_a_connection_lost_before_the_first_query_is_an_operational_error_and_not_reused(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the connection between its checkout and the BEGIN sent with the writes
    lock: the write fails as one on a lost server does (OperationalError), the connection is
    dropped, not handed out again, and the next write gets a working one."""
    killed: list[int] = []

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        if killed:
            return
        pid = dbapi.info.backend_pid
        killed.append(pid)
        with engine.pool._creator() as other:  # type: ignore[attr-defined]
            other.autocommit = True
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with engine.connect() as warm:  # a pooled connection, checked out again below
        warm.exec_driver_sql("SELECT 1")
    sa.event.listen(engine, "checkout", checkout)
    try:
        with pytest.raises(sa.exc.OperationalError), Tx(engine, None):
            pytest.fail("the write must not begin")
    finally:
        sa.event.remove(engine, "checkout", checkout)
    assert killed
    with Tx(engine, None) as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        assert pid != killed[0]
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")], caplog.text


def test_a_connection_lost_while_its_first_query_waits_for_the_writes_lock(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the connection while BEGIN and the writes lock wait for an activation:
    the write fails with an OperationalError (not a hang), and, the activation over, the next
    write gets a working connection."""
    got: list[BaseException] = []

    def write() -> None:
        try:
            with Tx(engine, None):
                pass
        except BaseException as e:  # the test looks at which error
            got.append(e)

    holder = Tx(engine, None, exclusive=True)
    holder.__enter__()
    waiter = threading.Thread(target=write)
    try:
        waiter.start()
        with engine.connect() as other:
            _wait_for_lock_wait(other)
            ended = other.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND NOT granted"
            ).scalars()
            assert list(ended) == [True]
            other.commit()
        waiter.join(30)
    finally:
        holder.__exit__(None, None, None)
    assert not waiter.is_alive()
    assert len(got) == 1 and isinstance(got[0], sa.exc.OperationalError), got
    for _ in range(3):  # whichever pooled connection
        with Tx(engine, None) as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")], caplog.text
