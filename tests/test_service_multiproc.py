"""Several `leadscore serve` processes on one PostgreSQL database, each taking any request:
events of the same leads sent to all of them at once are stored once each and scored as a fresh
re-score would, every MQL is notified once; a model activated through one process is used by
the others; a process killed while it holds a lead's lock does not block the others."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from leadscore.model import parse_model
from leadscore.service import locks
from leadscore.service.auth import create_key
from leadscore.service.common import Tx
from leadscore.service.delivery import Deliverer
from leadscore.service.facade import Service
from leadscore.service.messages import check_message
from leadscore.service.webhooks import add_webhook
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.handoff_service_helpers import handoff_api, iso
from tests.service_helpers import (
    MODEL,
    Receiver,
    Server,
    ago,
    assert_matches,
    basic,
    bearer,
    lead_row,
    mid,
    python_score,
    verify_signature,
    wait_for,
)

SECRET = "whsec_multiproc-test"
LEADS = 16


def _batch(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Messages of a few leads that every sender shares: traits, pages, webinars, demo
    requests (MQLs), and anonymous visits that an identify later links to the lead."""
    msgs = []
    for _ in range(n):
        lead = f"lead-{rng.randrange(LEADS)}"
        anon = f"anon-{lead}-{rng.randrange(3)}"
        kind = rng.random()
        when = ago(rng.uniform(0, 20))
        if kind < 0.12:
            title = rng.choice(["VP Sales", "Engineer", "Director"])
            msg = {"type": "identify", "userId": lead, "traits": {"title": title}}
        elif kind < 0.2:  # links the anonymous id's visits to the lead
            msg = {"type": "identify", "userId": lead, "anonymousId": anon, "traits": {}}
        elif kind < 0.35:
            msg = {"type": "page", "anonymousId": anon, "properties": {"path": "/pricing"}}
        elif kind < 0.8:
            path = rng.choice(["/pricing", "/docs", "/pricing/teams", "/"])
            msg = {"type": "page", "userId": lead, "properties": {"path": path}}
        elif kind < 0.97:
            msg = {"type": "track", "userId": lead, "event": "Webinar Attended"}
        else:
            msg = {"type": "track", "userId": lead, "event": "Demo Requested"}
        msgs.append({**msg, "messageId": mid(), "timestamp": when})
    return msgs


def _servers(pg_url: str, tmp_path: Path, n: int) -> list[Server]:
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    servers: list[Server] = []
    try:
        for i in range(n):
            servers.append(Server(pg_url, model, tmp_path / f"server-{i}.log").start())
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def test_three_processes_ingest_the_same_leads_at_once(pg_url: str, tmp_path: Path) -> None:
    engine = open_engine(pg_url)
    _, key = create_key(engine, "site", "ingest")
    auth = basic(key)
    with Receiver() as rx:
        add_webhook(engine, rx.url, ["lead.mql"], SECRET)
        servers = _servers(pg_url, tmp_path, 3)
        acked: list[str] = []
        lock = threading.Lock()
        failures: list[BaseException] = []

        def send(server: Server, seed: int) -> None:
            rng = random.Random(seed)
            try:
                with httpx.Client(base_url=server.base, headers=auth, timeout=60) as client:
                    for i in range(12):
                        msgs = _batch(rng, 40)
                        # a client retrying a batch through another process: stored once
                        again = i % 4 == 0
                        for target in [client] + ([client] if again else []):
                            resp = target.post("/v1/batch", content=json.dumps({"batch": msgs}))
                            assert resp.status_code == 200, resp.text
                            assert resp.json()["rejected"] == [], resp.text
                        with lock:
                            acked.extend(m["messageId"] for m in msgs)
            except BaseException as e:
                failures.append(e)

        try:
            threads = [threading.Thread(target=send, args=(servers[i % 3], i)) for i in range(9)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(300)
            assert not failures, failures
            assert not any(th.is_alive() for th in threads)

            with engine.connect() as conn:
                stored = Counter(conn.execute(sa.select(t.events.c.message_id)).scalars())
                rows = conn.execute(sa.select(t.leads)).all()
                mqls = {r.lead_id for r in rows if r.stage == "mql"}
                queued = conn.execute(
                    sa.select(t.outbox.c.payload).where(t.outbox.c.event == "lead.mql")
                ).scalars()
                queued_leads = sorted(json.loads(p)["lead_id"] for p in queued)
            # every acknowledged event stored, once
            assert set(stored) == set(acked) and len(acked) == len(set(acked))
            assert max(stored.values()) == 1
            # every lead as a fresh re-score of what it has stored
            model = parse_model(MODEL, "m")
            assert len(rows) == LEADS
            for row in rows:
                ref = python_score(engine, model, row.lead_id, row.scored_at_us)
                assert_matches(row, ref)
                if ref.mql:  # (a lead stays at mql when its score falls back)
                    assert row.stage == "mql", row.lead_id
            # every MQL queued once, and posted once by one of the three processes
            assert mqls and queued_leads == sorted(mqls)

            def all_delivered() -> bool:
                with engine.connect() as conn:
                    return not conn.execute(
                        sa.select(sa.func.count()).where(t.outbox.c.delivered_at_us.is_(None))
                    ).scalar_one()

            wait_for(all_delivered, "every notification to be delivered", timeout=60)
        finally:
            for s in servers:
                s.stop()
        posted = [json.loads(b)["lead_id"] for _, b in rx.delivered()]
        assert sorted(posted) == sorted(mqls)
        for headers, body in rx.delivered():
            verify_signature(SECRET, headers, body)
    engine.dispose()


NEW_MODEL = MODEL.replace("name: service-test", "name: service-test-2").replace(
    "      points: 25\n", "      points: 40\n"
)


def test_a_model_activated_through_one_process_is_used_by_another(
    pg_url: str, tmp_path: Path
) -> None:
    engine = open_engine(pg_url)
    _, key = create_key(engine, "site", "ingest")
    _, admin = create_key(engine, "admin", "admin")
    a, b = _servers(pg_url, tmp_path, 2)
    try:
        assert httpx.get(b.base + "/health").json()["model_version"] == 1
        resp = httpx.put(
            a.base + "/api/models", content=NEW_MODEL.encode(), headers=bearer(admin), timeout=60
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["version"] == 2
        # at once, with no wait: an ingest through B scores with version 2
        msg = {
            "type": "track",
            "userId": "lead-b",
            "event": "Demo Requested",
            "messageId": mid(),
            "timestamp": ago(0.1),
        }
        resp = httpx.post(b.base + "/v1/batch", json={"batch": [msg]}, headers=basic(key))
        assert resp.status_code == 200, resp.text
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == "lead-b")).one()
        assert row.model_version == 2
        assert_matches(
            row, python_score(engine, parse_model(NEW_MODEL, "m"), "lead-b", row.scored_at_us)
        )
        # and B's reads show it (they look again at most a second after the last look)
        wait_for(
            lambda: httpx.get(b.base + "/health").json()["model_version"] == 2,
            "process B to report model version 2",
        )
    finally:
        a.stop()
        b.stop()
        engine.dispose()


#: a process that takes a lead's lock the way ingest does, says so, and waits to be killed
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from leadscore.service import locks
    from leadscore.store import open_engine

    engine = open_engine(sys.argv[1])
    with engine.begin() as conn:
        locks.lock_leads(conn, [sys.argv[2]])
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _waiting_for_advisory_lock(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).scalar_one()
        )


def _lock_holder(pg_url: str, lead: str) -> subprocess.Popen[str]:
    """A process that holds ``lead``'s lock in an open transaction (``_HOLDER``), once it has
    it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, pg_url, lead], stdout=subprocess.PIPE, text=True
    )
    if holder.stdout is None or holder.stdout.readline().strip() != "locked":
        _stop(holder)
        raise AssertionError("the lock holder did not take the lock")
    return holder


def _stop(holder: subprocess.Popen[str]) -> None:
    if holder.poll() is None:
        holder.kill()
        holder.wait(10)
    if holder.stdout is not None:
        holder.stdout.close()


def test_a_process_killed_holding_a_leads_lock_blocks_no_one(pg_url: str, tmp_path: Path) -> None:
    engine = open_engine(pg_url)
    _, key = create_key(engine, "site", "ingest")
    (server,) = _servers(pg_url, tmp_path, 1)
    holder = _lock_holder(pg_url, "lead-x")
    try:
        msgs = [
            {"type": "identify", "userId": "lead-x", "traits": {"title": "VP Sales"}},
            {"type": "track", "userId": "lead-x", "event": "Demo Requested"},
            {"type": "page", "userId": "lead-y", "properties": {"path": "/pricing"}},
        ]
        msgs = [{**m, "messageId": mid(), "timestamp": ago(0.1)} for m in msgs]
        other = httpx.post(
            server.base + "/v1/batch", json={"batch": [msgs[2]]}, headers=basic(key), timeout=30
        )
        assert other.status_code == 200, other.text  # another lead is not held up
        got: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: got.append(
                httpx.post(
                    server.base + "/v1/batch",
                    json={"batch": msgs[:2]},
                    headers=basic(key),
                    timeout=60,
                )
            )
        )
        sender.start()
        # the ingest of lead-x waits for the lock the holder has
        wait_for(lambda: _waiting_for_advisory_lock(engine), "the ingest to wait for lead-x")
        assert not got
        holder.kill()  # SIGKILL: the server ends its transaction, and the lock with it
        holder.wait(10)
        sender.join(60)
        assert got and got[0].status_code == 200, got
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == "lead-x")).one()
        assert row.stage == "mql"
        assert_matches(
            row, python_score(engine, parse_model(MODEL, "m"), "lead-x", row.scored_at_us)
        )
    finally:
        _stop(holder)
        server.stop()
        engine.dispose()


# ---------------------------------------------------------------------- two services in one test


def test_two_services_route_in_turn_and_mark_each_breach_once(pg_url: str) -> None:
    """Two services on one database (as two processes would be) make MQLs of one team at once:
    the round robin alternates as if they came one by one; then both look for SLA breaches at
    once, and each is marked, notified and escalated once."""
    with handoff_api(pg_url) as h:
        other = Service(open_engine(pg_url), clock=h.clock)
        try:
            services = [h.service, other]
            failures: list[BaseException] = []

            def make(i: int) -> None:
                try:
                    for n in range(12):
                        lead = f"ent-{i}-{n}"
                        now = iso(h.clock.now())
                        msgs = [
                            {
                                "type": "identify",
                                "userId": lead,
                                "traits": {
                                    "title": "VP Sales",
                                    "email": f"{lead}@{lead}.example",
                                    "country": "US",
                                    "company": {"employees": 2000},
                                },
                            },
                            {"type": "track", "userId": lead, "event": "Demo Requested"},
                        ]
                        parsed = [
                            (
                                k,
                                check_message(
                                    {**m, "messageId": mid(), "timestamp": now}, h.clock.us
                                ),
                            )
                            for k, m in enumerate(msgs)
                        ]
                        services[i % 2].ingest(parsed)
                except BaseException as e:
                    failures.append(e)

            threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(120)
            assert not failures, failures
            owners = Counter(r.owner for r in h.rows(t.assignments))
            assert owners == {"ann@acme.io": 24, "raj@acme.io": 24}

            h.clock.advance(minutes=10)  # past "Demo within 5 minutes"
            marked: list[int] = []
            checkers = [
                threading.Thread(target=lambda s=s: marked.append(s.check_sla())) for s in services
            ]
            for th in checkers:
                th.start()
            for th in checkers:
                th.join(120)
            assert sum(marked) == 48
            breaches = [p["lead_id"] for p in h.outbox("lead.sla_breached")]
            assert len(breaches) == len(set(breaches)) == 48
            escalations = h.rows(t.assignments, t.assignments.c.kind == "escalate")
            assert len(escalations) == 48
            assert {r.owner for r in escalations} == {"lee@acme.io"}
        finally:
            other.engine.dispose()


def test_a_claimed_notification_is_sent_once_and_again_only_when_its_claim_ends(
    pg_url: str,
) -> None:
    with Receiver() as rx, handoff_api(pg_url, hooks=False) as h:
        add_webhook(h.engine, rx.url, ["lead.mql"], SECRET)
        for n in range(20):
            h.mql(f"lead-{n}", employees=50)
        dead = Deliverer(h.engine, clock=h.clock)  # a process that claims and then dies
        first = Deliverer(h.engine, clock=h.clock)
        second = Deliverer(h.engine, clock=h.clock)
        try:
            claimed = dead.claim(limit=5)
            assert len(claimed) == 5
            # two deliverers at once: the other 15, each posted by one of them
            sent: list[int] = []
            both = [
                threading.Thread(target=lambda d=d: sent.append(d.deliver_due(limit=3)))
                for d in (first, second)
            ]
            for th in both:
                th.start()
            for th in both:
                th.join(60)
            while n := first.deliver_due() + second.deliver_due():
                sent.append(n)
            assert sum(sent) == 15
            posted = [json.loads(b)["lead_id"] for _, b in rx.delivered()]
            assert len(posted) == len(set(posted)) == 15
            assert not {json.loads(r.payload)["lead_id"] for r in claimed} & {*posted}
            # the dead claim's rows come due again when its lease ends, and are sent then
            h.clock.advance(seconds=dead.lease_s - 1)
            assert first.deliver_due() == 0
            h.clock.advance(seconds=2)
            assert first.deliver_due() + second.deliver_due() == 5
            posted = [json.loads(b)["lead_id"] for _, b in rx.delivered()]
            assert sorted(posted) == sorted(f"lead-{n}" for n in range(20))
        finally:
            for d in (dead, first, second):
                d.stop()


def test_a_serve_process_killed_holding_a_leads_lock_blocks_no_one(
    pg_url: str, tmp_path: Path
) -> None:
    """A `leadscore serve` process is killed while its ingest holds one lead's lock (and waits
    for the next one, which a test process holds): another serve process takes that lead's
    events at once, and the killed one's batch left nothing behind."""
    engine = open_engine(pg_url)
    _, key = create_key(engine, "site", "ingest")
    with engine.connect() as conn:  # the order the locks are taken in: by key
        first, second = (
            conn.exec_driver_sql(
                "SELECT x FROM unnest(ARRAY['lead-a', 'lead-b']) AS x "
                "ORDER BY hashtextextended('lead:' || x, 0)"
            )
            .scalars()
            .all()
        )
    a, b = _servers(pg_url, tmp_path, 2)

    def page(lead: str) -> dict[str, Any]:
        return {
            "type": "page",
            "userId": lead,
            "messageId": mid(),
            "timestamp": ago(0.1),
            "properties": {"path": "/pricing"},
        }

    holder = _lock_holder(pg_url, second)
    try:
        killed = [page(first), page(second)]
        sender = threading.Thread(target=lambda: _post_quietly(a.base, key, killed), daemon=True)
        sender.start()
        # A holds the first lead's lock and waits for the second one's
        wait_for(lambda: _waiting_for_advisory_lock(engine), "process A to wait for a lock")
        a.kill()
        sender.join(30)
        resp = httpx.post(
            b.base + "/v1/batch", json={"batch": [page(first)]}, headers=basic(key), timeout=30
        )
        assert resp.status_code == 200, resp.text
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(t.events.c.message_id)).scalars())
        assert not {m["messageId"] for m in killed} & stored  # never acknowledged, not stored
        assert len(stored) == 1
        row = lead_row(engine, first)
        assert_matches(row, python_score(engine, parse_model(MODEL, "m"), first, row.scored_at_us))
    finally:
        _stop(holder)
        a.stop()
        b.stop()
        engine.dispose()


def _post_quietly(base: str, key: str, msgs: list[dict[str, Any]]) -> None:
    """Post a batch to a process about to be killed: the answer never comes."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(base + "/v1/batch", json={"batch": msgs}, headers=basic(key), timeout=30)


def test_two_writers_locking_leads_in_opposite_orders_end_in_a_retryable_deadlock(
    pg_url: str,
) -> None:
    """The one case where leads' locks are not taken in key order (a link made meanwhile) can
    deadlock: PostgreSQL ends one transaction, and ``deadlocked`` says it may be tried again."""
    engine = open_engine(pg_url)
    first_locked = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(leads: list[str]) -> None:
        try:
            with Tx(engine, None) as conn:
                locks.lock_leads(conn, [leads[0]])
                first_locked.wait(10)
                locks.lock_leads(conn, [leads[1]])
        except sa.exc.OperationalError as e:
            errors.append(e)

    threads = [
        threading.Thread(target=writer, args=(order,))
        for order in (["lead-a", "lead-b"], ["lead-b", "lead-a"])
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(errors) == 1 and locks.deadlocked(errors[0])
    assert not locks.deadlocked(sa.exc.OperationalError("SELECT 1", {}, Exception("gone")))
    engine.dispose()
