"""The SLA watch's reads (the next deadline, the breaches due) take the pending deadlines from
an index of their own, in the order they fall due, on SQLite and PostgreSQL; an episode without
an SLA, or whose breach is marked, is not in it; databases made before (migration 0005) move
over with their rows, and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadscore.service.sla_watch import _pending, due_query, next_due
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.migration_helpers import migrate as _migrate

INDEX = "ix_mql_episodes_sla_pending"
#: every episode row has them all, so that one INSERT takes every row
SLA_COLUMNS = ("sla_due_at_us", "first_touch_at_us", "sla_breached_at_us", "sla_notified_at_us")


def _episode(i: int, **values: object) -> dict[str, object]:
    return {
        "lead_id": f"u-{i}",
        "mql_at_us": 1_000 + i,
        "track": "threshold",
        "stage": "mql",
        **dict.fromkeys(SLA_COLUMNS),
        **values,
    }


def _episodes(n: int) -> list[dict[str, object]]:
    """``n`` episodes without an SLA, and after them: one due at 500 touched in time, one due at
    400 already marked breached, one due at 300 touched late, one due at 700 untouched."""
    return [
        *(_episode(i) for i in range(n)),
        _episode(n, sla_due_at_us=500, first_touch_at_us=450),
        _episode(n + 1, sla_due_at_us=400, sla_breached_at_us=401, sla_notified_at_us=402),
        _episode(n + 2, sla_due_at_us=300, first_touch_at_us=350),
        _episode(n + 3, sla_due_at_us=700),
    ]


def _sql(engine: sa.Engine, query: Any) -> str:
    return str(query.compile(engine, compile_kwargs={"literal_binds": True}))


def test_the_sla_reads_take_the_pending_deadlines_from_their_index_on_sqlite(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = open_engine(f"sqlite:///{path}", migrate=False)
    _migrate(old, "0005")
    with old.begin() as conn:
        conn.execute(sa.insert(t.mql_episodes), _episodes(50))
    old.dispose()

    engine = open_engine(f"sqlite:///{path}")  # migrates to the newest
    try:
        with engine.connect() as conn:
            indexes = dict(
                conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'"
                ).all()
            )
            assert "ix_mql_episodes_sla_due" not in indexes
            assert indexes[INDEX].endswith(
                "WHERE sla_due_at_us IS NOT NULL AND sla_breached_at_us IS NULL "
                "AND sla_notified_at_us IS NULL"
            )
            # the episodes in the index: those with a deadline, not marked
            in_index = conn.exec_driver_sql(
                f"SELECT sla_due_at_us FROM mql_episodes INDEXED BY {INDEX} "
                "WHERE sla_due_at_us IS NOT NULL AND sla_breached_at_us IS NULL "
                "AND sla_notified_at_us IS NULL ORDER BY sla_due_at_us, id"
            ).all()
            assert [r[0] for r in in_index] == [300, 500, 700]
            # the deadline touched late is the next one
            assert next_due(conn) == 300
            due = conn.execute(due_query("sqlite", 600, 200)).all()
            assert [r.sla_due_at_us for r in due] == [300]
            for query in (
                sa.select(sa.func.min(t.mql_episodes.c.sla_due_at_us)).where(*_pending()),
                due_query("sqlite", 600, 200),
            ):
                plan = [
                    r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _sql(engine, query))
                ]
                assert any(INDEX in step for step in plan), plan
                assert not any("TEMP B-TREE" in step or "SCAN" in step for step in plan), plan
        # and back, and forth again
        _migrate(engine, "0005", down=True)
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
            assert "ix_mql_episodes_sla_due" in names and INDEX not in names
            assert next_due(conn) == 300
        _migrate(engine, "head")
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
            assert INDEX in names and "ix_mql_episodes_sla_due" not in names
    finally:
        engine.dispose()


def test_the_sla_reads_take_the_pending_deadlines_from_their_index_on_postgres(
    pg_url: str,
) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(t.mql_episodes), _episodes(5_000))
            conn.exec_driver_sql("ANALYZE mql_episodes")
            assert next_due(conn) == 300
            due = conn.execute(due_query("postgresql", 600, 200)).all()
            assert [r.sla_due_at_us for r in due] == [300]
            for query in (
                sa.select(sa.func.min(t.mql_episodes.c.sla_due_at_us)).where(*_pending()),
                due_query("postgresql", 600, 200),
            ):
                plan = "\n".join(
                    r[0] for r in conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + _sql(engine, query))
                )
                assert INDEX in plan, plan
                assert "Seq Scan" not in plan and "Sort" not in plan, plan
            conn.execute(sa.delete(t.mql_episodes))
        _migrate(engine, "0005", down=True)
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT indexname FROM pg_indexes").all()}
            assert "ix_mql_episodes_sla_due" in names and INDEX not in names
        _migrate(engine, "head")
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT indexname FROM pg_indexes").all()}
            assert INDEX in names and "ix_mql_episodes_sla_due" not in names
    finally:
        engine.dispose()
