"""The first statement of a write transaction on PostgreSQL is the function
``leadscore_begin_write`` (migration 0009), whose plans the server keeps for the connection's
life: it takes the writes lock, shared or exclusive, and then reads the active versions; a
database moves up to it and back down without it, and SQLite is unchanged."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from leadscore.service import locks
from leadscore.service.common import Tx
from leadscore.store import open_engine
from tests.migration_helpers import migrate as _migrate


def _functions(conn: sa.Connection) -> int:
    return int(
        conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE proname = 'leadscore_begin_write'"
        ).scalar_one()
    )


def _lock_modes(conn: sa.Connection) -> list[str]:
    """The advisory locks this connection's transaction holds."""
    rows = conn.exec_driver_sql(
        "SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    )
    return sorted(r[0] for r in rows)


def test_the_function_takes_the_lock_in_its_mode_and_reads_the_versions(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO models (version, name, source, created_at_us, created_by, active) "
                "VALUES (3, 'm', 'x', 0, 'test', true), (2, 'm', 'x', 0, 'test', false)"
            )
        with engine.connect() as conn:
            for exclusive, mode in ((False, "ShareLock"), (True, "ExclusiveLock")):
                with conn.begin():
                    assert locks.begin_write(conn, exclusive) == (3, None)
                    assert _lock_modes(conn) == [mode]
                assert _lock_modes(conn) == []  # it ended with the transaction
                conn.rollback()
        with Tx(engine, None) as conn:
            assert _lock_modes(conn) == ["ShareLock"]
    finally:
        engine.dispose()


def test_a_database_moves_up_to_the_function_and_down_without_it(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert _functions(conn) == 1
        _migrate(engine, "0008", down=True)
        with engine.connect() as conn:
            assert _functions(conn) == 0
        _migrate(engine, "head")
        with engine.connect() as conn:
            assert _functions(conn) == 1
        with Tx(engine, None) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM leads").scalar_one() == 0
    finally:
        engine.dispose()


def test_sqlite_moves_through_the_migration_unchanged(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}")
    try:
        _migrate(engine, "0008", down=True)
        _migrate(engine, "head")
        with Tx(engine, None) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM leads").scalar_one() == 0
    finally:
        engine.dispose()
