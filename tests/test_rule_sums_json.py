"""A lead's scoring state (``leads.rule_sums``) is json on PostgreSQL, kept as written: the score
UPDATE and the leads' read no longer turn its numbers into decimals and back (migration 0007),
its floats come back to the bit, and a database from before moves over with its values."""

from __future__ import annotations

import sqlalchemy as sa

from leadscore.service import ingest, ingest_pg
from leadscore.service.common import loads
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.migration_helpers import migrate as _migrate

#: floats whose shortest text has 17 digits, a negative zero's neighbour and a large one
SUMS = [0.1 + 0.2, 4.999996310736189, -1e-300, 1.7976931348623157e308, 0.0]


def _score(lead_id: str, sums: list[float]) -> dict[str, object]:
    return {
        "b_id": lead_id,
        "fit": 10.0,
        "engagement": 1.0,
        "score": 11.0,
        "grade": "B",
        "mql": False,
        "fast_track": False,
        "rule_sums": {"v": 1, "h": [0, 2], "s": sums, "c": [True, False]},
        "scored_at_us": 5,
        "model_version": 1,
        "rescore_at_us": None,
        "updated_at_us": 5,
    }


def _column_type(conn: sa.Connection) -> str:
    return str(
        conn.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'leads' AND column_name = 'rule_sums'"
        ).scalar_one()
    )


def _stored(conn: sa.Connection) -> dict[str, object]:
    """Lead a's state as the ingest reads it (as text, read by orjson)."""
    (row,) = ingest_pg.lead_state(conn, ["a"])
    return loads(row[3])  # type: ignore[no-any-return]


def test_the_scoring_state_is_json_kept_to_the_bit_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert _column_type(conn) == "json"
            conn.execute(
                sa.insert(t.leads),
                [
                    {"lead_id": x, "traits": {}, "created_at_us": 1, "updated_at_us": 1}
                    for x in ("a", "b")
                ],
            )
            # the ingest's own statement
            assert ingest._UPDATE_SCORES.run(conn, [_score("a", SUMS), _score("b", [])]) == 2
        with engine.connect() as conn:
            got = _stored(conn)
            assert got["s"] == SUMS
            # SQLAlchemy reads the same values (jsonb wrote the largest float as a 309-digit
            # integer, which the standard library's json reads as an int)
            via_sa = conn.execute(sa.select(t.leads.c.rule_sums).where(t.leads.c.lead_id == "a"))
            assert via_sa.scalar_one() == got
            assert [x.hex() for x in got["s"]] == [x.hex() for x in SUMS]  # type: ignore[attr-defined]
            assert got["c"] == [True, False]
            # a lead never scored has none
            (b,) = conn.execute(sa.select(t.leads.c.rule_sums).where(t.leads.c.lead_id == "b"))
            assert b[0]["s"] == []
        # back to jsonb and forward again: the values move over
        _migrate(engine, "0006", down=True)
        with engine.connect() as conn:
            assert _column_type(conn) == "jsonb"
            assert _stored(conn)["s"] == SUMS
        _migrate(engine, "head")
        with engine.connect() as conn:
            assert _column_type(conn) == "json"
            assert _stored(conn)["s"] == SUMS
            options = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'leads'"
            ).scalar_one()
            assert options == ["fillfactor=85"]
    finally:
        engine.dispose()
