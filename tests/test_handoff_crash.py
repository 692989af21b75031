"""The live handoff in a real `leadscore serve --routing` process: the SLA scheduler marks
breaches as deadlines pass, and a SIGKILL in the middle of assignments and deadlines leaves, after
a restart, no MQL unassigned, none assigned twice, and no breach missed — deadlines that passed
while the server was down are marked at start-up with the time they really passed."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import MODEL, Receiver, Server, cli, mid, wait_for

#: deadlines of a second or two, so they pass during the test
ROUTING = """\
routing: 1
name: crash-test
teams:
  enterprise:
    members: [ann@acme.io, raj@acme.io]
  smb:
    members: [lee@acme.io]
rules:
  - name: Big
    when: {field: company.employees, gte: 1000}
    team: enterprise
  - name: Everyone else
    team: smb
fallback: lee@acme.io
sla:
  - name: Demo within a second
    when: {field: fast_track, equals: true}
    first_touch_within: 1s
    escalate_to: lee@acme.io
  - name: Others within two seconds
    first_touch_within: 2s
"""


def _mqls(first: int, n: int) -> list[dict]:
    """``n`` new leads that each become an MQL: half by a demo request (fast track)."""
    msgs = []
    for i in range(first, first + n):
        lead = f"lead-{i}"
        msgs.append(
            {
                "type": "identify",
                "userId": lead,
                "messageId": mid(),
                "traits": {
                    "title": "VP Sales",
                    "email": f"p{i}@co{i}.example",
                    "company": {"employees": 2000 if i % 3 else 300},
                },
            }
        )
        if i % 2:
            msgs.append(
                {"type": "track", "userId": lead, "messageId": mid(), "event": "Demo Requested"}
            )
        else:
            msgs += [
                {
                    "type": "page",
                    "userId": lead,
                    "messageId": mid(),
                    "properties": {"path": "/pricing"},
                }
                for _ in range(3)
            ]
    return msgs


def _check(db_url: str, acked: set[str]) -> dict[str, int]:
    """The handoff's invariants; returns a few counts."""
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            leads = {r.lead_id: r for r in conn.execute(sa.select(t.leads))}
            eps = conn.execute(sa.select(t.mql_episodes)).all()
            assigns = conn.execute(sa.select(t.assignments)).all()
            breaches = [
                json.loads(p)
                for p in conn.execute(
                    sa.select(t.outbox.c.payload).where(t.outbox.c.event == "lead.sla_breached")
                ).scalars()
            ]
    finally:
        engine.dispose()
    now = time.time_ns() // 1000
    mqls = {k for k, r in leads.items() if r.stage == "mql"}
    assert acked <= mqls, f"{len(acked - mqls)} acknowledged MQLs are missing"
    by_lead = Counter(e.lead_id for e in eps)
    assert set(by_lead) == mqls and set(by_lead.values()) == {1}, "one episode per MQL"
    routed = Counter(a.episode_id for a in assigns if a.kind in ("route", "account", "fallback"))
    first_owner = {a.episode_id: a.owner for a in assigns if a.kind != "escalate"}
    escalated = Counter(a.episode_id for a in assigns if a.kind == "escalate")
    notified = Counter(b["episode_id"] for b in breaches)
    for e in eps:
        assert leads[e.lead_id].owner is not None and e.owner is not None, (
            f"{e.lead_id} is unassigned"
        )
        assert routed[e.id] == 1, f"{e.lead_id} was routed {routed[e.id]} times"
        assert e.sla_due_at_us is not None
        if e.sla_due_at_us < now - 1_000_000:  # the deadline passed with nobody touching it
            assert e.sla_breached_at_us == e.sla_due_at_us, f"{e.lead_id}: breach missed"
            assert notified[e.id] == 1, f"{e.lead_id}: breach sent {notified[e.id]} times"
        fast = e.sla_name == "Demo within a second"
        if e.sla_breached_at_us is not None and fast:
            # escalated to lee, by a reassignment unless lee had it already
            assert e.owner == "lee@acme.io" and e.escalated_to == "lee@acme.io"
            assert escalated[e.id] == (first_owner[e.id] != "lee@acme.io")
        else:
            assert escalated[e.id] == 0
    return {
        "mqls": len(mqls),
        "breached": sum(1 for e in eps if e.sla_breached_at_us),
        "escalated": sum(escalated.values()),
    }


def test_sigkill_during_assignments_and_deadlines_misses_nothing(
    tmp_path: Path, service_db_url: str
) -> None:
    db_url = service_db_url
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    with Receiver(statuses=[503] * 100_000) as rx:
        cli(
            "webhooks",
            "add",
            rx.url,
            "--events",
            "lead.assigned,lead.sla_breached",
            "--database-url",
            db_url,
        )
        key = cli("keys", "create", "--name", "load", "--database-url", db_url).strip()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        server = Server(db_url, model, tmp_path / "server.log", "--routing", str(routing)).start()
        acked: set[str] = set()
        going = threading.Event()
        stop = threading.Event()
        failures: list[BaseException] = []

        def load() -> None:
            first = 0
            with httpx.Client(base_url=server.base, headers=auth, timeout=10) as client:
                while not stop.is_set():
                    msgs = _mqls(first, 10)
                    try:
                        resp = client.post("/v1/batch", content=json.dumps({"batch": msgs}))
                    except httpx.HTTPError:
                        return  # the server is gone
                    if resp.status_code != 200:
                        failures.append(AssertionError(resp.text))
                        return
                    acked.update(f"lead-{i}" for i in range(first, first + 10))
                    first += 10
                    if first >= 200:
                        going.set()

        loader = threading.Thread(target=load)
        loader.start()
        try:
            assert going.wait(120), "the load did not get going"
            # the first deadlines pass and the scheduler marks breaches while MQLs still arrive
            wait_for(lambda: _breached(db_url) > 0, "the scheduler to mark a breach", timeout=30)
            server.kill()
        finally:
            stop.set()
            loader.join(30)
            server.stop()
        assert not failures, failures
        time.sleep(2.5)  # every deadline passes while the server is down
        restarted = Server(
            db_url, model, tmp_path / "server.log", "--routing", str(routing)
        ).start()
        try:
            wait_for(lambda: _pending(db_url) == 0, "the deadlines passed while down to be marked")
            counts = _check(db_url, acked)
        finally:
            restarted.stop()
        assert counts["mqls"] >= 200 and counts["breached"] == counts["mqls"]
        assert counts["escalated"] > 0
        assert (
            "Routing 'crash-test' is version 1 (unchanged)" in (tmp_path / "server.log").read_text()
        )


def _count(db_url: str, *where: object) -> int:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(t.mql_episodes).where(*where)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _breached(db_url: str) -> int:
    return _count(db_url, t.mql_episodes.c.sla_breached_at_us.is_not(None))


def _pending(db_url: str) -> int:
    return _count(db_url, t.mql_episodes.c.sla_notified_at_us.is_(None))
