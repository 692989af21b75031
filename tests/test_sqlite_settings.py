"""Every SQLite connection of the service runs with the same settings: WAL with
``synchronous=FULL`` (a commit is on disk when it returns), the WAL copied back into the
database file every ``WAL_CHECKPOINT_PAGES`` pages and cut back to ``WAL_SIZE_LIMIT`` after, and
a page cache of ``CACHE_KIB``, all connections' memory held to ``HEAP_LIMIT``. The checkpoint and cache settings change what a commit costs,
never what it keeps."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from leadscore.store.db import CACHE_KIB, HEAP_LIMIT, WAL_CHECKPOINT_PAGES, WAL_SIZE_LIMIT


def _settings(conn: sa.Connection) -> dict[str, object]:
    return {
        name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
        for name in (
            "journal_mode",
            "synchronous",
            "wal_autocheckpoint",
            "journal_size_limit",
            "cache_size",
            "soft_heap_limit",
        )
    }


def test_every_connection_has_the_settings(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'settings.db'}")
    try:
        with engine.connect() as first, engine.connect() as second:  # two pooled connections
            assert first.connection.dbapi_connection is not second.connection.dbapi_connection
            for conn in (first, second):
                assert _settings(conn) == {
                    "journal_mode": "wal",
                    "synchronous": 2,  # FULL
                    "wal_autocheckpoint": WAL_CHECKPOINT_PAGES,
                    "journal_size_limit": WAL_SIZE_LIMIT,
                    "cache_size": -CACHE_KIB,
                    "soft_heap_limit": HEAP_LIMIT,
                }
    finally:
        engine.dispose()


def test_writes_past_a_checkpoint_are_all_kept(tmp_path: Path) -> None:
    """More pages than one checkpoint's worth, written in many commits: the WAL was copied
    back (the database file holds the rows), and every row reads back after reopening."""
    path = tmp_path / "checkpoint.db"
    engine = open_engine(f"sqlite:///{path}")
    rows = 0
    try:
        for n in range(60):
            with engine.begin() as conn:
                conn.execute(
                    sa.insert(t.api_keys),
                    [
                        {
                            "name": f"k{n}-{i}",
                            "scope": "ingest",
                            "prefix": "lsw_x",
                            "secret_hash": f"{n}-{i}-" + "x" * 900,
                            "created_at_us": n,
                        }
                        for i in range(300)
                    ],
                )
            rows += 300
        # 18,000 rows of about 1 KB, over 4,000 pages: a checkpoint has copied them into the file
        assert path.stat().st_size > WAL_CHECKPOINT_PAGES * 4096 // 2
    finally:
        engine.dispose()
    engine = open_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)).scalar() == rows
    finally:
        engine.dispose()
