"""The notifications of a request's new MQLs are queued in the order they happened: each lead's
``lead.mql`` (written with its stage and history, at the end of the request) before the
handoff's ``lead.assigned``, on SQLite as on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.store import schema as t
from tests.handoff_service_helpers import handoff_api


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leadscore.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_two_new_mqls_of_one_request_are_notified_mql_first_then_assigned(url: str) -> None:
    with handoff_api(url) as api:
        msgs = [m for lead in ("lead-a", "lead-b") for m in api.mql_messages(lead)]
        api.send(*msgs)
        with api.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.outbox.c.event, t.outbox.c.payload).order_by(t.outbox.c.id)
            ).all()
            history = conn.execute(
                sa.select(t.stage_history.c.lead_id).where(t.stage_history.c.stage == "mql")
            ).scalars()
            assert sorted(history) == ["lead-a", "lead-b"]
        got = [(event, json.loads(payload)["lead_id"]) for event, payload in rows]
        assert got == [
            ("lead.mql", "lead-a"),
            ("lead.mql", "lead-b"),
            ("lead.assigned", "lead-a"),
            ("lead.assigned", "lead-b"),
        ]
        for lead in ("lead-a", "lead-b"):
            shown = api.lead(lead)
            assert shown["stage"] == "mql" and shown["owner"]
