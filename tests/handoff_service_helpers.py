"""Shared parts of the live handoff's tests: the issue's routing file (plus CRM statuses), a
clock the test sets, and the real app on a real database with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from leadscore.api import create_app
from leadscore.service.auth import create_key
from leadscore.service.facade import Service
from leadscore.service.webhooks import add_webhook
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.handoff_helpers import ISSUE_EXAMPLE
from tests.service_helpers import MODEL, TestClient, basic, bearer, mid, table_count

#: the issue's example, exactly, with CRM statuses added
ROUTING = (
    ISSUE_EXAMPLE
    + """\
crm_stages:
  Working: sal
  Qualified: sql
  Closed Won: customer
  Nurture: recycled
"""
)

#: Tuesday 2 June 2026, 10:00 in New York: inside the enterprise team's working hours
TUESDAY_10_NY = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SetClock:
    """The service's time, set by the test: nothing moves unless the test moves it."""

    def __init__(self, at: datetime = TUESDAY_10_NY) -> None:
        self.us = to_us(at)

    def now_us(self) -> int:
        return self.us

    def now(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.us)

    def advance(self, **delta: float) -> None:
        self.us += timedelta(**delta) // timedelta(microseconds=1)


class HandoffApi:
    """The real app on a real database with the test model and the routing active."""

    def __init__(self, url: str, routing: str | None = ROUTING, *, hooks: bool = True) -> None:
        self.engine = open_engine(url)
        self.clock = SetClock()
        self.app = create_app(self.engine, deliver=False, clock=self.clock, watch_sla=False)
        self.service: Service = self.app.state.service
        self.service.add_model(MODEL, "test")
        if routing:
            self.service.add_routing(routing, "test", "routing.yaml")
        if hooks:
            add_webhook(
                self.engine,
                "http://127.0.0.1:9/hooks",
                ["lead.mql", "lead.assigned", "lead.sla_breached", "lead.stage_changed"],
            )
        _, self.write_key = create_key(self.engine, "website", "ingest")
        _, self.read_token = create_key(self.engine, "ops", "read")
        _, self.admin_token = create_key(self.engine, "admin", "admin")
        self.client = TestClient(self.app)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()

    # ------------------------------------------------------------------ calls

    def send(self, *msgs: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.post(
            "/v1/batch",
            content=json.dumps({"batch": list(msgs)}).encode(),
            headers={"Content-Type": "application/json", **basic(self.write_key)},
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert body["rejected"] == [], body
        return body

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        return self.client.request(
            method,
            path,
            content=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **bearer(token or self.admin_token)},
        )

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
        resp = self.call(method, path, body)
        assert resp.status_code == status, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/leads/{lead_id}")

    def mql(self, lead: str, **options: Any) -> dict[str, Any]:
        """Make ``lead`` an MQL now (``mql_messages``, with its options); returns the lead as
        shown."""
        self.send(*self.mql_messages(lead, **options))
        return self.lead(lead)

    def mql_messages(
        self,
        lead: str,
        *,
        employees: int = 2000,
        country: str = "US",
        email: str | None = None,
        demo: bool = True,
        **traits: Any,
    ) -> list[dict[str, Any]]:
        """The messages that make ``lead`` an MQL now: a senior title, a company, and a demo
        request (fast track) or pricing visits (threshold)."""
        now = iso(self.clock.now())
        msgs: list[dict[str, Any]] = [
            {
                "type": "identify",
                "userId": lead,
                "messageId": mid(),
                "timestamp": now,
                "traits": {
                    "title": "VP Sales",
                    "email": email or f"{lead}@{lead}.example",
                    "country": country,
                    "company": {"employees": employees},
                    **traits,
                },
            }
        ]
        if demo:
            msgs.append(
                {
                    "type": "track",
                    "userId": lead,
                    "messageId": mid(),
                    "event": "Demo Requested",
                    "timestamp": now,
                }
            )
        else:
            msgs += [
                {
                    "type": "page",
                    "userId": lead,
                    "messageId": mid(),
                    "timestamp": now,
                    "properties": {"path": "/pricing"},
                }
                for _ in range(3)
            ]
        return msgs

    # ------------------------------------------------------------------ the store

    def count(self, table: sa.Table, *where: Any) -> int:
        return table_count(self.engine, table, *where)

    def rows(self, table: sa.Table, *where: Any) -> list[Any]:
        with self.engine.connect() as conn:
            order = table.c.id if "id" in table.c else next(iter(table.c))
            return list(conn.execute(sa.select(table).where(*where).order_by(order)).all())

    def outbox(self, event: str) -> list[dict[str, Any]]:
        return [json.loads(r.payload) for r in self.rows(t.outbox, t.outbox.c.event == event)]


@contextmanager
def handoff_api(url: str, routing: str | None = ROUTING, **kw: Any) -> Iterator[HandoffApi]:
    api = HandoffApi(url, routing, **kw)
    try:
        yield api
    finally:
        api.close()


@contextmanager
def libpq_traces(
    engine: sa.Engine, folder: Path, *, unprepared: bool = False
) -> Iterator[list[Path]]:
    """Every PostgreSQL connection checked out of ``engine`` from now on traced to a file of its
    own in ``folder`` (libpq's trace; the list fills as connections are checked out), until
    the block ends; ``unprepared``: its statements sent with their text (none prepared).
    SQLite connections are left as they are."""
    files: list[Path] = []
    opened: list[Any] = []

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        if hasattr(dbapi, "pgconn"):
            if unprepared:
                dbapi.prepare_threshold = None
            files.append(folder / f"trace{len(files)}.txt")
            opened.append(files[-1].open("w"))
            dbapi.pgconn.trace(opened[-1].fileno())

    def checkin(dbapi: Any, _record: Any) -> None:
        if hasattr(dbapi, "pgconn"):
            dbapi.pgconn.untrace()

    sa.event.listen(engine, "checkout", checkout)
    sa.event.listen(engine, "checkin", checkin)
    try:
        yield files
    finally:
        sa.event.remove(engine, "checkout", checkout)
        sa.event.remove(engine, "checkin", checkin)
        for f in opened:
            f.close()
