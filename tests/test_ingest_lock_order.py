"""On PostgreSQL a request whose messages all name their lead (a userId) stores its events before
it waits for the leads' locks, so that the leads are held for less time; one that carries an
anonymous id reads the links, and stores its events, only under the locks. Either way the lead
ends up scored as a fresh re-score."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from leadscore.service import locks
from leadscore.store import schema as t
from tests.service_helpers import Api, ago, api_on, assert_matches, identify, page, wait_for


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    with api_on(pg_url) as a:
        yield a


#: the backend waiting for an advisory lock, and whether it holds a lock on the events table
_WAITER = """
SELECT bool_or(r.relation = 'events'::regclass AND r.granted)
FROM pg_locks a JOIN pg_locks r ON r.pid = a.pid
WHERE a.locktype = 'advisory' AND NOT a.granted
"""


def _waiter_wrote_events(api: Api) -> bool | None:
    with api.engine.connect() as conn:
        got: bool | None = conn.exec_driver_sql(_WAITER).scalar()
        return got


def _send_while_held(api: Api, lead: str, msgs: list[dict[str, Any]]) -> tuple[bool, Any]:
    """Sends ``msgs`` while another transaction holds ``lead``'s lock: whether the waiting
    request had written to the events table, and its answer once the lock is let go."""
    got: list[httpx.Response] = []
    with api.engine.begin() as holder:
        locks.lock_leads(holder, [lead])
        sender = threading.Thread(target=lambda: got.append(api.send(*msgs)))
        sender.start()
        wrote = wait_for(
            lambda: (w := _waiter_wrote_events(api)) is not None and (w,),
            "the request to wait for the lead's lock",
        )[0]
        assert not got
    sender.join(60)
    assert got and got[0].status_code == 200, got
    return wrote, got[0].json()


def test_a_request_naming_its_leads_stores_its_events_before_it_waits(pg_api: Api) -> None:
    pg_api.ok(identify("lead-x", {"title": "VP Sales"}, timestamp=ago(1)))
    msgs = [page("lead-x", "/pricing", timestamp=ago(0.5)), page("lead-y", "/", timestamp=ago(0.5))]
    wrote, body = _send_while_held(pg_api, "lead-x", msgs)
    assert wrote is True
    assert body["accepted"] == 2
    for lead in ("lead-x", "lead-y"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_request_with_an_anonymous_id_waits_before_it_stores_anything(pg_api: Api) -> None:
    pg_api.ok(identify("lead-x", {"title": "VP Sales"}, anonymousId="anon-1", timestamp=ago(1)))
    msgs = [page(None, "/pricing", anonymousId="anon-1", timestamp=ago(0.5))]
    wrote, body = _send_while_held(pg_api, "lead-x", msgs)
    assert wrote is False
    assert body["accepted"] == 1
    with pg_api.engine.connect() as conn:
        leads = conn.execute(
            sa.select(t.events.c.lead_id).where(t.events.c.anonymous_id == "anon-1")
        ).scalars()
        assert set(leads) == {"lead-x"}  # the link, read under the lock, gave its lead
    assert_matches(pg_api.row("lead-x"), pg_api.reference("lead-x"), tol=0.01)
