"""Crash safety: SIGKILL `leadscore serve` in the middle of a load, restart it on the same SQLite
file, and nothing acknowledged is lost, no lead disagrees with its stored events, and the
webhooks that were still pending are delivered."""

from __future__ import annotations

import base64
import json
import random
import threading
from pathlib import Path

import httpx
import sqlalchemy as sa

from leadscore.model import parse_model
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    MODEL,
    Receiver,
    Server,
    ago,
    assert_matches,
    cli,
    mid,
    python_score,
    verify_signature,
    wait_for,
)

SECRET = "whsec_crash-test"
LEADS = 30


def _batch(rng: random.Random, n: int) -> list[dict]:
    msgs = []
    for _ in range(n):
        lead = f"lead-{rng.randrange(LEADS)}"
        kind = rng.random()
        when = ago(rng.uniform(0, 20))
        if kind < 0.15:
            title = rng.choice(["VP Sales", "Engineer", "Director"])
            msg = {"type": "identify", "userId": lead, "traits": {"title": title}}
        elif kind < 0.75:
            path = rng.choice(["/pricing", "/docs", "/pricing/teams", "/"])
            msg = {"type": "page", "userId": lead, "properties": {"path": path}}
        elif kind < 0.95:
            msg = {"type": "track", "userId": lead, "event": "Webinar Attended"}
        else:
            msg = {"type": "track", "userId": lead, "event": "Demo Requested"}
        msgs.append({**msg, "messageId": mid(), "timestamp": when})
    return msgs


def test_sigkill_mid_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    with Receiver(statuses=[503] * 10_000) as rx:  # the CRM is down during the load
        cli("webhooks", "add", rx.url, "--secret", SECRET, "--database-url", db_url)
        server = Server(db_url, model, tmp_path / "server.log").start()
        key = cli("keys", "create", "--name", "load", "--database-url", db_url).strip()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        acked: list[str] = []
        sent = threading.Event()
        failures: list[BaseException] = []

        def load() -> None:
            rng = random.Random(11)
            with httpx.Client(base_url=server.base, headers=auth, timeout=10) as client:
                while True:
                    msgs = _batch(rng, 50)
                    try:
                        resp = client.post("/v1/batch", content=json.dumps({"batch": msgs}))
                    except httpx.HTTPError:
                        return  # the server is gone
                    except BaseException as e:  # pragma: no cover - reported below
                        failures.append(e)
                        return
                    if resp.status_code != 200:
                        failures.append(AssertionError(resp.text))
                        return
                    acked.extend(m["messageId"] for m in msgs)
                    if len(acked) >= 40 * 50:
                        sent.set()

        loader = threading.Thread(target=load)
        loader.start()
        try:
            assert sent.wait(120), "the load did not get going"
            server.kill()  # mid-load: the loader is sending its next batch
        finally:
            loader.join(30)
            server.stop()
        assert not failures, failures
        assert not loader.is_alive()

        engine = open_engine(db_url)
        try:
            with engine.connect() as conn:
                stored = set(conn.execute(sa.select(t.events.c.message_id)).scalars())
                pending = conn.execute(
                    sa.select(sa.func.count()).where(t.outbox.c.delivered_at_us.is_(None))
                ).scalar_one()
                mqls = set(
                    conn.execute(
                        sa.select(t.leads.c.lead_id).where(t.leads.c.stage == "mql")
                    ).scalars()
                )
                rows = conn.execute(sa.select(t.leads)).all()
                notified = conn.execute(sa.select(t.outbox.c.payload)).scalars().all()
            missing = [m for m in acked if m not in stored]
            assert missing == [], f"{len(missing)} acknowledged messages were lost"
            assert len(stored) >= len(acked)
            # every lead's stored state is what the engine makes of its stored events
            m = parse_model(MODEL, "m")
            assert len(rows) == LEADS
            for row in rows:
                ref = python_score(engine, m, row.lead_id, row.scored_at_us)
                assert_matches(row, ref)
                if ref.mql:
                    assert row.stage == "mql", row.lead_id
            # one notification per MQL, written with it; some still undelivered at the kill
            assert mqls and sorted(json.loads(p)["lead_id"] for p in notified) == sorted(mqls)
            assert pending > 0
            with engine.begin() as conn:  # skip the backoff wait rather than sleep through it
                conn.execute(
                    sa.update(t.outbox)
                    .where(t.outbox.c.delivered_at_us.is_(None))
                    .values(next_attempt_us=0)
                )
        finally:
            engine.dispose()

        with rx.lock:
            rx.statuses.clear()  # the CRM is back
        restarted = Server(db_url, model, tmp_path / "server.log").start()
        try:
            wait_for(
                lambda: {json.loads(b)["lead_id"] for _, b in rx.delivered()} == mqls,
                "the pending webhooks to be delivered after the restart",
            )
            health = httpx.get(restarted.base + "/health", timeout=5).json()
            assert health["model_version"] == 1  # the same model: not a new version
        finally:
            restarted.stop()
        for headers, body in rx.delivered():
            verify_signature(SECRET, headers, body)
