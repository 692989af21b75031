"""An event's message as received is json on PostgreSQL (migration 0009): stored as the service
wrote it, byte for byte, and a database from before moves over with its messages."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from leadscore.service import ingest_pg
from leadscore.store import open_engine
from leadscore.store.db import _MIGRATIONS

#: as orjson writes it: keys in the sender's order, a float to the bit, an integer past 64 bits
MESSAGE = (
    '{"userId":"u-1","type":"track","properties":{"z":0.30000000000000004,'
    '"a":1180591620717411303424}}'
)


def _migrate(engine: sa.Engine, to: str, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, to)


def _kind_and_text(conn: sa.Connection) -> tuple[str, str]:
    kind = conn.exec_driver_sql(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'events' AND column_name = 'message'"
    ).scalar_one()
    text = conn.exec_driver_sql("SELECT message::text FROM events").scalar_one()
    return str(kind), str(text)


def test_the_message_is_json_kept_as_written_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            row = {
                "message_id": "m-1",
                "type": "track",
                "lead_id": "u-1",
                "anonymous_id": None,
                "event": "Visited",
                "ts_us": 1,
                "received_at_us": 2,
                "properties": {"z": 0.1 + 0.2},
                "message": ingest_pg.fragment(MESSAGE),
            }
            assert ingest_pg.insert_events(conn, [row]) == {"m-1"}
            assert _kind_and_text(conn) == ("json", MESSAGE)
            got = conn.exec_driver_sql("SELECT message FROM events").scalar_one()
            assert got["properties"] == {"z": 0.1 + 0.2, "a": 2**70}
        # back to jsonb (keys sorted by PostgreSQL) and forward: the same message
        _migrate(engine, "0008", down=True)
        with engine.connect() as conn:
            kind, text = _kind_and_text(conn)
            assert kind == "jsonb" and json.loads(text) == json.loads(MESSAGE)
        _migrate(engine, "head")
        with engine.connect() as conn:
            kind, text = _kind_and_text(conn)
            assert kind == "json" and json.loads(text) == json.loads(MESSAGE)
    finally:
        engine.dispose()
