"""On PostgreSQL a lone request whose messages all name their leads takes its leads' locks as far
as they are free (in key order, up to the first one held elsewhere), carries its leads' scores
forward from their state as read meanwhile, and keeps what it worked out for a lead only when
the lead's row is the same once it holds the lead's lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from leadscore.service import ingest_ahead, locks
from leadscore.service.events import events_for, events_query
from tests.service_helpers import Api, ago, api_on, assert_matches, identify, page, track, wait_for


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    with api_on(pg_url) as a:
        yield a


@pytest.fixture
def ahead(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[set[str]]]:
    """What the requests worked out ahead (by lead), what they kept of it, and the leads whose
    events they took from what they read with their last locks, request by request."""
    seen: dict[str, list[set[str]]] = {"worked": [], "kept": [], "read": []}
    carry_ahead, kept = ingest_ahead.carry_ahead, ingest_ahead.kept
    events = ingest_ahead.ReadAhead.events

    def events_spy(self: ingest_ahead.ReadAhead, *a: Any, **k: Any) -> Any:
        got = events(self, *a, **k)
        seen["read"].append(set(got or ()))
        return got

    def carry_spy(*a: Any, **k: Any) -> Any:
        got = carry_ahead(*a, **k)
        seen["worked"].append(set(got.steps))
        return got

    def kept_spy(*a: Any, **k: Any) -> Any:
        got = kept(*a, **k)
        seen["kept"].append(set(got))
        return got

    monkeypatch.setattr(ingest_ahead, "carry_ahead", carry_spy)
    monkeypatch.setattr(ingest_ahead, "kept", kept_spy)
    monkeypatch.setattr(ingest_ahead.ReadAhead, "events", events_spy)
    return seen


_WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


def _send_while_held(
    api: Api, lead: str, msgs: list[dict[str, Any]], change: str | None = None
) -> dict[str, Any]:
    """Sends ``msgs`` while another transaction holds ``lead``'s lock; that transaction runs
    ``change`` (SQL) once the request waits, then commits. The request's answer."""
    got: list[httpx.Response] = []
    with api.engine.begin() as holder:
        locks.lock_leads(holder, [lead])
        sender = threading.Thread(target=lambda: got.append(api.send(*msgs)))
        sender.start()
        wait_for(lambda: _waiting(api), "the request to wait for the lead's lock")
        assert not got
        if change is not None:
            holder.exec_driver_sql(change)
    sender.join(60)
    assert got and got[0].status_code == 200, got
    body: dict[str, Any] = got[0].json()
    return body


def _waiting(api: Api) -> int:
    """How many transactions wait for an advisory lock."""
    with api.engine.connect() as conn:
        return int(conn.exec_driver_sql(_WAITING).scalar() or 0)


def _known(api: Api, *leads: str) -> None:
    api.ok(*(identify(x, {"title": "VP Sales", "company": {"employees": 2000}}) for x in leads))
    api.ok(*(page(x, "/", timestamp=ago(0.9)) for x in leads))


def test_a_lead_unchanged_while_the_request_waited_keeps_what_was_worked_out(
    pg_api: Api, ahead: dict[str, list[set[str]]]
) -> None:
    _known(pg_api, "lead-x", "lead-y")
    msgs = [
        page("lead-x", "/pricing", timestamp=ago(0.5)),
        page("lead-y", "/pricing", timestamp=ago(0.5)),
        # a lead not seen before: scored from its events, read with the last lock
        page("lead-new", "/pricing", timestamp=ago(0.5)),
        page("lead-new", "/pricing/plans", timestamp=ago(0.4)),
    ]
    body = _send_while_held(pg_api, "lead-x", msgs)
    assert body["accepted"] == 4
    assert ahead["worked"] == [{"lead-x", "lead-y"}]
    assert ahead["kept"] == [{"lead-x", "lead-y"}]
    assert ahead["read"] == [{"lead-new"}]
    for lead in ("lead-x", "lead-y", "lead-new"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_lead_changed_while_the_request_waited_is_worked_out_again(
    pg_url: str, pg_api: Api, ahead: dict[str, list[set[str]]]
) -> None:
    """Two services (as two processes) each send an event of lead-x while a third transaction
    holds it: both work lead-x out ahead from the same row; the one that gets the lead second
    finds the row the first wrote, and scores lead-x again from it, counting both events."""
    _known(pg_api, "lead-x", "lead-y")
    got: list[httpx.Response] = []
    with api_on(pg_url, model="") as other, pg_api.engine.begin() as holder:
        locks.lock_leads(holder, ["lead-x"])
        sends = [
            (pg_api, [page("lead-x", "/pricing", timestamp=ago(0.5)), page("lead-y", "/")]),
            (other, [page("lead-x", "/pricing/plans", timestamp=ago(0.4))]),
        ]
        senders = [
            threading.Thread(target=lambda a=a, m=m: got.append(a.send(*m))) for a, m in sends
        ]
        for th in senders:
            th.start()
        wait_for(lambda: _waiting(pg_api) >= 2, "both requests to wait for lead-x")
        holder.commit()
        for th in senders:
            th.join(60)
    assert len(got) == 2 and all(r.status_code == 200 for r in got), got
    assert sorted(map(sorted, ahead["worked"])) == [["lead-x"], ["lead-x", "lead-y"]]
    # the first to hold lead-x found it as it read it; the second, changed by the first
    assert sum("lead-x" in k for k in ahead["kept"]) == 1
    assert any("lead-y" in k for k in ahead["kept"])
    for lead in ("lead-x", "lead-y"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_request_whose_leads_are_free_works_nothing_out_ahead(
    pg_api: Api, ahead: dict[str, list[set[str]]]
) -> None:
    _known(pg_api, "lead-x")
    assert pg_api.ok(track("lead-x", "Demo Requested", timestamp=ago(0.5)))["accepted"] == 1
    assert ahead["worked"] == []
    assert pg_api.row("lead-x").stage == "mql"
    assert_matches(pg_api.row("lead-x"), pg_api.reference("lead-x"), tol=0.01)


def _held_by(conn: sa.Connection, pid: int) -> set[int]:
    """The advisory lock keys a backend holds (their 64-bit values)."""
    rows = conn.exec_driver_sql(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted AND pid = %s",
        (pid,),
    )
    return {int(k) for (k,) in rows}


def test_trying_the_locks_takes_them_in_key_order_up_to_the_first_held_elsewhere(
    pg_api: Api,
) -> None:
    leads = [f"lead-{i}" for i in range(12)]
    engine = pg_api.engine
    with engine.connect() as c:
        keys = {
            x: int(c.exec_driver_sql("SELECT hashtextextended(%s, 0)", (f"lead:{x}",)).scalar())
            for x in leads
        }
    order = sorted(leads, key=lambda x: (keys[x], f"lead:{x}"))
    blocked = order[5]
    with engine.begin() as holder, engine.begin() as trier:
        locks.lock_leads(holder, [blocked])
        statement = locks.try_ingest_locks(leads)
        assert statement is not None
        rows = trier.exec_driver_sql(*statement).all()
        assert [x for x, _ in rows] == [f"lead:{x}" for x in order[:6]]
        assert [ok for _, ok in rows] == [True] * 5 + [False]
        assert set(locks.taken_ahead(trier, rows, leads)) == set(order[5:])
        pid = trier.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as watcher:
            held = _held_by(watcher, int(pid))  # type: ignore[arg-type]
        assert {k & 0xFFFFFFFFFFFFFFFF for k in held} == {
            keys[x] & 0xFFFFFFFFFFFFFFFF for x in order[:5]
        }


def test_events_read_ahead_are_what_the_request_would_read_under_its_locks(pg_api: Api) -> None:
    leads = ["lead-a", "lead-b", "lead-c"]
    for x in leads:
        pg_api.ok(
            *(page(x, f"/p{d}", timestamp=ago(d)) for d in (3, 2, 1, 0.5)),
            track(x, "Webinar Attended", {"n": 1}, timestamp=ago(1.5)),
        )
    day = 86_400_000_000
    at = pg_api.service.now_us()
    with pg_api.engine.connect() as conn:
        rows = conn.exec_driver_sql(*events_query(2 * day, leads, at - day)).all()
        read = ingest_ahead.ReadAhead(leads, at - day, rows)

        def shown(events: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
            assert events is not None
            return {k: [(e.key, e.ts_us, dict(e.properties)) for e in v] for k, v in events.items()}

        for window, ids, when in [
            (2 * day, ["lead-a", "lead-b"], at - day),
            (2 * day, ["lead-c"], at),  # later: fewer of the events read count
            (day, leads, at),
        ]:
            got = shown(read.events(window, ids, when))
            assert got == shown(events_for(conn, window, ids, when))
            assert sum(map(len, got.values())) > 0
        # what it did not read: read as usual
        assert read.events(2 * day, ["lead-a", "lead-d"], at) is None
        assert read.events(2 * day, ["lead-a"], at - 2 * day) is None
