"""Erasing a person (DELETE /api/leads/{id}, `leadscore leads erase`): afterwards no table holds
their id, anonymous id, email or any trait value; an audit record says an erasure happened;
a later event for the same id starts a new lead. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.service.erasure import check_erased
from leadscore.store import schema as t
from tests.handoff_service_helpers import HandoffApi, handoff_api, iso
from tests.service_helpers import LEADSCORE, assert_error, cli, mid

PERSON = "erase-me-7f3q"
ANON = "anon-erase-9k2w"
EMAIL = "zz.unique7@erasecorp-q.example"
#: trait values nobody else has: none may be left anywhere
SECRETS = [PERSON, ANON, EMAIL, "Erasecorp Q Unique", "VP of Zyxwv Erasure", "+1 555 0199 4242"]


@pytest.fixture
def hapi(service_db_url: str) -> Iterator[HandoffApi]:
    with handoff_api(service_db_url) as a:
        yield a


def _person(api: HandoffApi) -> None:
    now = iso(api.clock.now())
    api.send(
        {
            "type": "page",
            "anonymousId": ANON,
            "messageId": mid(),
            "timestamp": now,
            "properties": {"path": "/pricing"},
        },
    )
    api.mql(
        PERSON,
        email=EMAIL,
        title="VP of Zyxwv Erasure",
        phone="+1 555 0199 4242",
        company={"name": "Erasecorp Q Unique", "employees": 2000},
    )
    api.send(
        {
            "type": "identify",
            "userId": PERSON,
            "anonymousId": ANON,
            "messageId": mid(),
            "timestamp": now,
        },
    )
    api.service.touch(PERSON, "call", "ann@acme.io")
    api.service.move(PERSON, "sal", "ann@acme.io")


def _every_value(engine: sa.Engine) -> Iterator[tuple[str, str]]:
    """(table, value as text) for every value of every row of every table in the database."""
    meta = sa.MetaData()
    meta.reflect(engine)
    assert "erasures" in meta.tables and "events" in meta.tables
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if value is None:
                        continue
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
                    yield table.name, text


def _leftovers(engine: sa.Engine) -> list[tuple[str, str]]:
    return [(table, s) for table, text in _every_value(engine) for s in SECRETS if s in text]


def test_erasing_a_person_leaves_no_trace_but_the_audit_record(hapi: HandoffApi) -> None:
    hapi.mql("keep-1", email="keep@keepcorp.example")
    before_other = hapi.lead("keep-1")
    _person(hapi)
    # the person is everywhere before: events, identities, history, assignments, touches,
    # episodes, notifications
    found = {table for table, _ in _leftovers(hapi.engine)}
    assert {
        "leads",
        "events",
        "identities",
        "stage_history",
        "assignments",
        "touches",
        "mql_episodes",
        "outbox",
    } <= found
    # one notification has been delivered (it is kept, redacted), one used up its retries
    # (dropped with the rest: `webhooks retry` must not send it)
    with hapi.engine.begin() as conn:
        first, second = (
            conn.execute(
                sa.select(t.outbox.c.id)
                .where(t.outbox.c.payload.contains(PERSON))
                .order_by(t.outbox.c.id)
                .limit(2)
            )
            .scalars()
            .all()
        )
        conn.execute(sa.update(t.outbox).where(t.outbox.c.id == first).values(delivered_at_us=1))
        conn.execute(sa.update(t.outbox).where(t.outbox.c.id == second).values(failed_at_us=1))
        conn.execute(
            sa.insert(t.deliveries),
            [
                {"outbox_id": x, "at_us": 1, "status_code": 500, "duration_ms": 1.0}
                for x in (first, second)
            ],
        )

    read = hapi.call("DELETE", f"/api/leads/{PERSON}", token=hapi.read_token)
    assert_error(read, 403)
    resp = hapi.call("DELETE", f"/api/leads/{PERSON}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["erased"] is True and body["lead_id"] == PERSON
    assert body["removed"]["events"] >= 4 and body["removed"]["identities"] == 1

    assert _leftovers(hapi.engine) == []
    erasures = hapi.rows(t.erasures)
    assert len(erasures) == 1
    assert erasures[0].by.startswith("key ") and "admin" in erasures[0].by
    assert PERSON not in (erasures[0].subject_hash or "")
    assert [e["id"] for e in check_erased(hapi.engine, PERSON)] == [erasures[0].id]
    assert check_erased(hapi.engine, "keep-1") == []
    assert_error(hapi.call("GET", f"/api/leads/{PERSON}"), 404)
    # the one notification already sent keeps its event name only
    sent = hapi.rows(t.outbox, t.outbox.c.id == first)
    assert [json.loads(r.payload).get("erased") for r in sent] == [True]
    assert hapi.count(t.outbox, t.outbox.c.id == second) == 0
    assert hapi.count(t.deliveries, t.deliveries.c.outbox_id == first) == 1
    assert hapi.count(t.outbox, t.outbox.c.payload.contains("keep-1")) > 0
    # nobody else is touched
    after_other = hapi.lead("keep-1")
    assert after_other["score"] == before_other["score"]
    assert after_other["stage"] == before_other["stage"]

    # a later event for the same id starts a new lead, with nothing of the old one
    hapi.send(
        {
            "type": "track",
            "userId": PERSON,
            "messageId": mid(),
            "event": "Webinar Attended",
            "timestamp": iso(hapi.clock.now()),
        },
    )
    fresh = hapi.lead(PERSON)
    assert fresh["stage"] == "lead"
    assert fresh["traits"] == {}
    assert hapi.count(t.events, t.events.c.lead_id == PERSON) == 1
    assert hapi.count(t.stage_history, t.stage_history.c.lead_id == PERSON) == 0
    # an anonymous id once linked to them is free again
    assert hapi.count(t.identities, t.identities.c.anonymous_id == ANON) == 0


def test_erasing_an_unknown_lead_is_a_404_and_records_nothing(hapi: HandoffApi) -> None:
    assert_error(hapi.call("DELETE", "/api/leads/nobody-here"), 404, "not_found")
    assert hapi.count(t.erasures) == 0


def test_the_cli_erases_a_person_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    with handoff_api(db) as hapi:
        _person(hapi)
    # answered no, or without --yes and no one to answer (a script): an error, nothing erased
    for answer in ("n\n", ""):
        proc = _run("leads", "erase", PERSON, "--database-url", db, stdin=answer)
        assert proc.returncode == 1, proc.stderr
        assert f"Error: '{PERSON}' was not erased (not confirmed)" in proc.stderr, proc.stderr
        assert "pass --yes" in proc.stderr
    done = _run("leads", "erase", PERSON, "--yes", "--by", "dpo@acme.io", "--database-url", db)
    assert done.returncode == 0, done.stderr
    # what was removed, by table and count ("events 3", never "1 events")
    assert re.search(
        r"erased \(audit record \d+\); rows removed by table: .*\bevents \d+", done.stderr
    )
    from leadscore.store import open_engine

    engine = open_engine(db)
    try:
        assert _leftovers(engine) == []
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.erasures.c.by)).scalars().all() == ["cli dpo@acme.io"]
    finally:
        engine.dispose()
    listed = cli("leads", "erasures", "--check", PERSON, "--database-url", db)
    assert "cli dpo@acme.io" in listed

    proc = _run("leads", "erase", PERSON, "--yes", "--database-url", db)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: no lead 'erase-me-7f3q'"), proc.stderr
    assert "Traceback" not in proc.stderr


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEADSCORE, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
