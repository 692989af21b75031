"""The MQL episodes of one call go to PostgreSQL in one INSERT, whatever their number (one
statement's overhead on both sides instead of one per MQL), with the rows the row-by-row INSERTs
stored; the same rows on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.store import schema as t
from tests.handoff_service_helpers import HandoffApi, handoff_api, libpq_traces


@pytest.fixture
def traced(service_db_url: str, tmp_path: Path) -> Iterator[tuple[HandoffApi, list[Path]]]:
    """The app with routing, on SQLite and on PostgreSQL; on PostgreSQL every connection
    checked out traced to a file."""
    with handoff_api(service_db_url) as api, libpq_traces(api.engine, tmp_path) as files:
        yield api, files


def test_the_mql_episodes_of_one_request_go_in_one_statement(
    traced: tuple[HandoffApi, list[Path]],
) -> None:
    api, files = traced
    leads = ["lead-a", "lead-b", "lead-c"]
    api.send(*[m for lead in leads for m in api.mql_messages(lead)])
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
        sent = "".join(f.read_text(errors="replace") for f in files).splitlines()
        assert _runs(sent, "INSERT INTO mql_episodes") == 1


def _runs(trace: list[str], text: str) -> int:
    """How many times the client ran the statement whose text holds ``text`` (libpq's trace): an
    unnamed statement is parsed at each run, a prepared one bound at each run by its name."""
    fields = [line.split("\t") for line in trace]
    parsed = [f[4].split() for f in fields if len(f) > 4 and f[3] == "Parse" and text in f[4]]
    names = {p[0] for p in parsed}
    assert len(names) == 1, names
    (name,) = names
    if name == '""':
        return len(parsed)
    return sum(1 for f in fields if len(f) > 4 and f[3] == "Bind" and f[4].split()[1] == name)
