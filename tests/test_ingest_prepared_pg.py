"""What an ingest costs PostgreSQL per statement: the ingest path's statements are prepared on
the server at their first run on a connection (not at the fifth, each run before parsed and
planned anew), and the MQL episodes of one call go in one INSERT, whatever their number, with
the rows the row-by-row INSERTs stored (the same on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service.facade import Service
from leadscore.service.messages import check_message
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.handoff_service_helpers import HandoffApi, handoff_api, iso
from tests.service_helpers import MODEL, ago, identify, mid, track, us


def test_the_ingest_statements_are_prepared_at_their_first_run(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        service = Service(engine)
        service.add_model(MODEL, "test")
        request = [
            identify("u-1", {"title": "VP Marketing"}, timestamp=ago(days=2)),
            track("u-1", "Webinar Attended", timestamp=ago(days=1)),
            track("u-2", "Webinar Attended", timestamp=ago(days=1)),
        ]
        at = us(datetime.now(UTC))
        service.ingest([(i, check_message(m, at)) for i, m in enumerate(request)], at)
        # one request ran: every statement of its path is prepared on its connection already
        with engine.connect() as conn:
            prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
            texts = [" ".join(s.split()) for (s,) in prepared]
            conn.commit()
        for start in (
            "INSERT INTO events",  # its events
            "SELECT x, pg_advisory_xact_lock(k)",  # its leads' locks
            "SELECT lead_id, traits::text",  # their state
            "SELECT id, events FROM webhooks",  # the webhooks a new MQL notifies
            "UPDATE leads SET fit",  # the scores
        ):
            assert sum(s.startswith(start) for s in texts) == 1, (start, texts)
        # and a second request runs them as they are, preparing nothing more
        again = [track("u-1", "Webinar Attended", timestamp=ago(hours=1))]
        at = us(datetime.now(UTC)) + 1
        service.ingest([(i, check_message(m, at)) for i, m in enumerate(again)], at)
        with engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
            conn.commit()
        assert count == len(texts)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leadscore.db'}"
    return str(request.getfixturevalue("pg_url"))


def _qualifying(api: HandoffApi, leads: list[str]) -> list[dict[str, Any]]:
    """An identify and a demo request per lead, at the API's clock: each lead an MQL."""
    now = iso(api.clock.now())
    msgs: list[dict[str, Any]] = []
    for lead in leads:
        msgs += [
            {
                "type": "identify",
                "userId": lead,
                "messageId": mid(),
                "timestamp": now,
                "traits": {
                    "title": "VP Sales",
                    "email": f"{lead}@{lead}.example",
                    "country": "US",
                    "company": {"employees": 2000},
                },
            },
            {
                "type": "track",
                "userId": lead,
                "messageId": mid(),
                "event": "Demo Requested",
                "timestamp": now,
            },
        ]
    return msgs


@pytest.fixture
def traced(url: str, tmp_path: Path) -> Iterator[tuple[HandoffApi, list[Path]]]:
    """The app with routing; on PostgreSQL every connection checked out traced to a file."""
    with handoff_api(url) as api:
        files: list[Path] = []
        opened: list[Any] = []

        def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
            if hasattr(dbapi, "pgconn"):
                files.append(tmp_path / f"trace{len(files)}.txt")
                opened.append(files[-1].open("w"))
                dbapi.pgconn.trace(opened[-1].fileno())

        def checkin(dbapi: Any, _record: Any) -> None:
            if hasattr(dbapi, "pgconn"):
                dbapi.pgconn.untrace()

        sa.event.listen(api.engine, "checkout", checkout)
        sa.event.listen(api.engine, "checkin", checkin)
        try:
            yield api, files
        finally:
            sa.event.remove(api.engine, "checkout", checkout)
            sa.event.remove(api.engine, "checkin", checkin)
            for f in opened:
                f.close()


def test_the_mql_episodes_of_one_request_go_in_one_statement(
    traced: tuple[HandoffApi, list[Path]],
) -> None:
    api, files = traced
    leads = ["lead-a", "lead-b", "lead-c"]
    api.send(*_qualifying(api, leads))
    with api.engine.connect() as conn:
        episodes = conn.execute(
            sa.select(t.mql_episodes).order_by(t.mql_episodes.c.lead_id)
        ).mappings()
        got = [dict(r) for r in episodes]
        stored = {
            r.lead_id: r
            for r in conn.execute(
                sa.select(
                    t.leads.c.lead_id,
                    t.leads.c.mql_at_us,
                    t.leads.c.owner,
                    t.leads.c.team,
                    t.leads.c.assigned_at_us,
                )
            )
        }
        assigned = conn.execute(
            sa.select(t.assignments.c.lead_id, t.assignments.c.episode_id)
        ).all()
    # one episode per new MQL, with what the lead itself says of its qualification and owner
    assert [e["lead_id"] for e in got] == leads
    for e in got:
        lead = stored[e["lead_id"]]
        assert e["stage"] == "mql" and e["closed_at_us"] is None
        assert e["mql_at_us"] == lead.mql_at_us
        assert (e["owner"], e["team"], e["assigned_at_us"]) == (
            lead.owner,
            lead.team,
            lead.assigned_at_us,
        )
        assert e["owner"] and e["grade"] and e["score"] > 0 and e["track"]
    # each assignment found its own lead's episode
    assert sorted(assigned) == sorted((e["lead_id"], e["id"]) for e in got)
    if files:  # PostgreSQL: one INSERT of the three rows, not three
        sent = "".join(f.read_text(errors="replace") for f in files)
        parses = [line for line in sent.splitlines() if "\tParse\t" in line]
        binds = [line for line in sent.splitlines() if "\tBind\t" in line]
        episode_parses = [line for line in parses if "INSERT INTO mql_episodes" in line]
        assert len(episode_parses) == 1
        name = episode_parses[0].split("\t")[4].split()[0]  # prepared: named
        assert name != '""'
        assert sum(line.split("\t")[4].split()[:2] == ['""', name] for line in binds) == 1
