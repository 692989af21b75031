"""On PostgreSQL the columns holding a lead's id, an anonymous id or a messageId compare byte by
byte (``COLLATE "C"``, migration 0008), as SQLite's do: the ingest's statements still find their
rows through the same indexes, ids that differ only in case or accents stay apart, a listing by
lead orders them as SQLite does, and a database from before moves over with its rows."""

from __future__ import annotations

import sqlalchemy as sa

from leadscore.service import ingest, ingest_pg
from leadscore.service.common import dumps
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.migration_helpers import migrate as _migrate

#: ids equal in a case-blind or accent-blind locale's first pass, and in byte order
IDS = ["B-1", "a-1", "é-1", "e-1", "A-1"]

_COLUMNS = {
    "leads": ("lead_id",),
    "events": ("message_id", "lead_id", "anonymous_id"),
    "identities": ("anonymous_id", "lead_id"),
    "stage_history": ("lead_id",),
    "assignments": ("lead_id",),
    "touches": ("lead_id",),
    "mql_episodes": ("lead_id",),
}


def _collations(conn: sa.Connection) -> set[str | None]:
    got = set()
    for table, columns in _COLUMNS.items():
        for column in columns:
            got.add(
                conn.exec_driver_sql(
                    "SELECT collation_name FROM information_schema.columns "
                    "WHERE table_name = %(t)s AND column_name = %(c)s",
                    {"t": table, "c": column},
                ).scalar_one()
            )
    return got


def _plan(conn: sa.Connection, sql: str, params: dict[str, str]) -> str:
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cur.execute("EXPLAIN (COSTS OFF) " + sql, params)
    return "\n".join(r[0] for r in cur.fetchall())


def test_ids_compare_byte_by_byte_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert _collations(conn) == {"C"}
            conn.execute(
                sa.insert(t.leads),
                [
                    {"lead_id": x, "traits": {}, "created_at_us": 1, "updated_at_us": 1}
                    for x in IDS + [f"u-{i}" for i in range(3000)]
                ],
            )
            rows = [
                {
                    "message_id": f"m-{x}",
                    "type": "track",
                    "lead_id": x,
                    "anonymous_id": None,
                    "event": "Visited",
                    "ts_us": 1,
                    "received_at_us": 1,
                    "properties": {},
                    "message": ingest_pg.fragment(dumps({"userId": x})),
                }
                for x in IDS
            ]
            assert ingest_pg.insert_events(conn, rows) == {f"m-{x}" for x in IDS}
            # stored once: the same messageIds again are skipped
            assert ingest_pg.insert_events(conn, rows) == set()
            conn.exec_driver_sql("ANALYZE leads")
            conn.exec_driver_sql("ANALYZE events")
            got = ingest_pg.lead_state(conn, ["a-1", "é-1"])
            assert sorted(r[0] for r in got) == ["a-1", "é-1"]
            # the ingest's statements still look their rows up in the indexes
            plan = _plan(conn, ingest_pg._LEAD_STATE, {"ids": '["a-1"]'})
            assert "leads_pkey" in plan and "Seq Scan" not in plan, plan
            sql, _names = ingest._UPDATE_SCORES._batch_sql(conn)
            plan = _plan(conn, sql, {"rows": "[]", "keys": '["a-1"]'})
            assert "leads_pkey" in plan and "Seq Scan on leads" not in plan, plan
            # a join between two id columns can use either side's index (a few rows: a sequential
            # scan would be cheaper, so it is ruled out to see what the indexes serve)
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = _plan(
                conn,
                "SELECT e.message_id FROM leads l JOIN events e ON e.lead_id = l.lead_id "
                "WHERE l.lead_id = %(x)s",
                {"x": "a-1"},
            )
            assert "ix_events_lead_ts" in plan and "leads_pkey" in plan, plan
            listed = conn.execute(
                sa.select(t.leads.c.lead_id)
                .where(t.leads.c.lead_id.in_(IDS))
                .order_by(t.leads.c.lead_id)
            ).scalars()
            assert list(listed) == sorted(IDS)  # byte order, as SQLite's
        _migrate(engine, "0007", down=True)
        with engine.connect() as conn:
            assert _collations(conn) == {None}
            assert conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar() == 5
        _migrate(engine, "head")
        with engine.begin() as conn:
            assert _collations(conn) == {"C"}
            assert ingest_pg.insert_events(conn, rows) == set()
            assert len(ingest_pg.lead_state(conn, IDS)) == len(IDS)
    finally:
        engine.dispose()
