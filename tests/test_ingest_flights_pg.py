"""What an ingest sends PostgreSQL together, while it holds its leads: the subscribed webhooks
are read with the leads (no round trip of their own when a lead becomes an MQL), and the last
writes — scores, the new MQL's stage and history, the handoff's episode, assignment and
notifications — go in one round trip with the COMMIT, with no pipeline opened inside another
(which waits for what was sent before it as it begins, and for its own statements as it
ends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.store import schema as t
from tests.handoff_service_helpers import HandoffApi, handoff_api, libpq_traces


@pytest.fixture
def traced(pg_url: str, tmp_path: Path) -> Iterator[tuple[HandoffApi, list[Path]]]:
    """The app with routing and webhooks; every connection checked out from now on traced to
    a file of its own (libpq's trace), its statements sent with their text (none prepared)."""
    with handoff_api(pg_url) as api, libpq_traces(api.engine, tmp_path, unprepared=True) as files:
        yield api, files


def _flights(trace: Path) -> list[list[str]]:
    """The statements the client sent, by round trip: what it sent before it next read."""
    flights: list[list[str]] = []
    current: list[str] = []
    last = None
    for line in trace.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        if fields[1] == "F":
            if last == "B" and current:
                flights.append(current)
                current = []
            if fields[3] in ("Query", "Parse"):
                current.append(" ".join(fields[4:]))
        last = fields[1]
    if current:
        flights.append(current)
    return flights


def _with(flights: list[list[str]], text: str) -> list[str]:
    found = [f for f in flights if any(text in s for s in f)]
    assert len(found) == 1, (text, flights)
    return found[0]


def test_a_new_mql_reads_its_webhooks_with_its_leads_and_writes_its_handoff_at_once(
    traced: tuple[HandoffApi, list[Path]],
) -> None:
    api, files = traced
    lead = api.mql("lead-1")
    assert lead["stage"] == "mql" and lead["owner"]
    assert len(api.outbox("lead.mql")) == 1
    assert len(api.outbox("lead.assigned")) == 1
    assert api.count(t.assignments) == 1
    writes = [
        f for f in map(_flights, files) if any("INSERT INTO events" in s for x in f for s in x)
    ]
    assert len(writes) == 1
    flights = writes[0]
    first = _with(flights, "INSERT INTO events")
    assert any("pg_advisory_xact_lock(" in s for s in first)
    assert any("FROM leads" in s for s in first)
    assert any("FROM webhooks" in s for s in first)
    last = _with(flights, "INSERT INTO mql_episodes")
    for text in (
        "UPDATE leads SET fit",  # the scores
        "UPDATE leads SET assigned_at_us",  # the stage, owner
        "INSERT INTO stage_history",
        "INSERT INTO assignments",
    ):
        assert any(text in s for s in last), (text, last)
    # both notifications (lead.mql, lead.assigned) are queued there, and nowhere else
    assert [f.index(s) for f in flights for s in f if "INSERT INTO outbox" in s] == [
        last.index(s) for s in last if "INSERT INTO outbox" in s
    ]
    assert len([s for s in last if "INSERT INTO outbox" in s]) == 2
    # and the COMMIT, last, in the same round trip: the transaction ends with them
    assert "COMMIT" in last[-1] and flights[-1] is last
    # in the order they were queued
    with api.engine.connect() as conn:
        events = conn.execute(sa.select(t.outbox.c.event).order_by(t.outbox.c.id)).scalars()
        assert list(events) == ["lead.mql", "lead.assigned"]
