"""A notification's id (the `X-Leadscore-Delivery` receivers drop repeats by) is never given
out twice, even after an erasure removed the newest notifications; and a SQLite database made
before outbox ids were kept unique is moved over with every row it held."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from leadscore.store import open_engine
from leadscore.store import schema as t
from leadscore.store.db import _MIGRATIONS
from tests.handoff_service_helpers import HandoffApi, handoff_api


@pytest.fixture
def hapi(service_db_url: str) -> Iterator[HandoffApi]:
    with handoff_api(service_db_url) as a:
        yield a


def _ids(api: HandoffApi) -> list[int]:
    return [r.id for r in api.rows(t.outbox)]


def test_an_erased_persons_notification_ids_are_not_given_to_the_next(hapi: HandoffApi) -> None:
    hapi.mql("keep-1", email="keep@keepcorp.example")
    hapi.mql("erase-2", email="erase@erasecorp.example")
    ever = _ids(hapi)
    theirs = [r.id for r in hapi.rows(t.outbox, t.outbox.c.payload.contains("erase-2"))]
    assert theirs and max(theirs) == max(ever)  # the person's are the newest, and pending
    resp = hapi.call("DELETE", "/api/leads/erase-2")
    assert resp.status_code == 200, resp.text
    assert max(_ids(hapi)) < min(theirs)  # gone from the outbox

    hapi.mql("next-3", email="next@nextcorp.example")
    new = [r.id for r in hapi.rows(t.outbox, t.outbox.c.payload.contains("next-3"))]
    assert new and min(new) > max(ever)


def _at_0003(path: Path) -> sa.Engine:
    engine = open_engine(f"sqlite:///{path}", migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    return engine


def test_a_sqlite_database_from_before_keeps_every_notification_and_delivery(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = _at_0003(path)
    with old.begin() as conn:
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'outbox'").scalar()
        assert "AUTOINCREMENT" not in sql
        conn.execute(
            sa.insert(t.webhooks).values(
                id=1,
                url="https://crm.example/hook",
                secret="s",
                events="lead.mql",
                created_at_us=1,
                active=True,
            )
        )
        for i in (1, 2, 3):
            conn.execute(
                sa.insert(t.outbox).values(
                    id=i,
                    webhook_id=1,
                    event="lead.mql",
                    payload=f'{{"n": {i}}}',
                    created_at_us=i,
                    next_attempt_us=i,
                    delivered_at_us=10 if i < 3 else None,
                )
            )
        conn.execute(
            sa.insert(t.deliveries).values(outbox_id=1, at_us=5, status_code=200, duration_ms=1.0)
        )
    old.dispose()

    engine = open_engine(f"sqlite:///{path}")  # migrates to the newest
    with engine.begin() as conn:
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'outbox'").scalar()
        assert "AUTOINCREMENT" in sql
        rows = conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id)).all()
        assert [(r.id, r.payload, r.delivered_at_us) for r in rows] == [
            (1, '{"n": 1}', 10),
            (2, '{"n": 2}', 10),
            (3, '{"n": 3}', None),
        ]
        assert conn.execute(sa.select(t.deliveries.c.outbox_id)).scalars().all() == [1]
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        indexes = {r[1] for r in conn.exec_driver_sql("PRAGMA index_list('outbox')")}
        assert "ix_outbox_due" in indexes
        # the newest row erased: the next one still gets a new id
        conn.execute(sa.delete(t.outbox).where(t.outbox.c.id == 3))
        new = conn.execute(
            sa.insert(t.outbox)
            .values(
                webhook_id=1, event="lead.mql", payload="{}", created_at_us=4, next_attempt_us=4
            )
            .returning(t.outbox.c.id)
        ).scalar_one()
        assert new == 4
    engine.dispose()
