"""Retention (`serve --retain-events-days N`): events older than N days are deleted in the
background and no stored or served score changes; a model that counts older events is
refused, at start and when activated later."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import sqlalchemy as sa

from leadscore.api import create_app
from leadscore.service.auth import create_key
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    LEADSCORE,
    MODEL,
    SteppedClock,
    TestClient,
    ago,
    assert_error,
    assert_matches,
    basic,
    bearer,
    mid,
    now_dt,
    python_score,
    us,
    wait_for,
)

WINDOW = 30
#: the test model with a 30-day window: events older than that count for nothing
WINDOWED = MODEL.replace(
    "  half_life_days: 30\n", f"  half_life_days: 30\n  window_days: {WINDOW}\n"
)
DAYS = 45
LEADS = 12


def _load(client: TestClient, key: str) -> None:
    rng = random.Random(7)
    msgs = []
    for i in range(LEADS):
        lead = f"ret-{i}"
        msgs.append(
            {
                "type": "identify",
                "userId": lead,
                "messageId": mid(),
                "timestamp": ago(120),
                "traits": {
                    "title": rng.choice(["VP Sales", "Engineer"]),
                    "company": {"employees": rng.choice([50, 800])},
                },
            }
        )
        for _ in range(15):
            when = ago(rng.uniform(0, 120))
            if rng.random() < 0.7:
                msgs.append(
                    {
                        "type": "page",
                        "userId": lead,
                        "messageId": mid(),
                        "timestamp": when,
                        "properties": {"path": rng.choice(["/pricing", "/docs"])},
                    }
                )
            else:
                msgs.append(
                    {
                        "type": "track",
                        "userId": lead,
                        "messageId": mid(),
                        "timestamp": when,
                        "event": "Webinar Attended",
                    }
                )
    resp = client.post("/v1/batch", json={"batch": msgs}, headers=basic(key))
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


def _snapshot(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r.lead_id: tuple(r) for r in conn.execute(sa.select(t.leads))}


def test_old_events_are_purged_in_the_background_and_no_score_changes(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}")
    clock = SteppedClock()
    # first without retention: the events of all 120 days are stored and scored
    app = create_app(engine, deliver=False, watch_sla=False, clock=clock)
    app.state.service.add_model(WINDOWED, "test")
    _, key = create_key(engine, "website", "ingest")
    _, token = create_key(engine, "ops", "read")
    with TestClient(app) as client:
        _load(client, key)
        listed = client.get("/api/leads", params={"limit": 100}, headers=bearer(token)).json()
    cutoff = us(now_dt()) - DAYS * 86_400 * 1_000_000
    with engine.connect() as conn:
        old = conn.execute(sa.select(sa.func.count()).where(t.events.c.ts_us < cutoff)).scalar_one()
        total = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one()
    assert old > 50 and total > old
    before = _snapshot(engine)

    # then serving with --retain-events-days 45: the purge runs at start
    app = create_app(engine, deliver=False, watch_sla=False, clock=clock, retain_events_days=DAYS)
    app.state.service.set_retention(DAYS)
    with TestClient(app) as client:
        wait_for(lambda: app.state.retention.purged >= old, "the purge at start")
        again = client.get("/api/leads", params={"limit": 100}, headers=bearer(token)).json()
    with engine.connect() as conn:
        left = conn.execute(sa.select(t.events.c.ts_us)).scalars().all()
    assert len(left) == total - old and min(left) >= cutoff
    # nothing stored changed, every score served is the same
    assert _snapshot(engine) == before
    assert [(x["lead_id"], x["score"], x["grade"]) for x in again["leads"]] == [
        (x["lead_id"], x["score"], x["grade"]) for x in listed["leads"]
    ]
    # and a re-score from what is left gives each stored score: the deleted events counted
    # for nothing
    model = app.state.service.active.model
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.leads)).all()
    for row in rows:
        assert_matches(row, python_score(engine, model, row.lead_id, row.scored_at_us))
    engine.dispose()


def test_a_model_counting_older_events_is_refused_now_and_later(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}")
    app = create_app(engine, deliver=False, watch_sla=False, retain_events_days=20)
    service = app.state.service
    _, admin = create_key(engine, "admin", "admin")
    with TestClient(app) as client:
        # a model with a window of 30 days, or none, cannot be activated under a 20-day retention
        for text in (WINDOWED, MODEL):
            resp = client.put(
                "/api/models",
                content=text.encode(),
                headers={**bearer(admin), "Content-Type": "application/yaml"},
            )
            body = assert_error(resp, 422, "invalid_request")
            assert "--retain-events-days" in body["message"]
        assert service.active_or_none is None
        short = WINDOWED.replace(f"window_days: {WINDOW}", "window_days: 14")
        resp = client.put(
            "/api/models",
            content=short.encode(),
            headers={**bearer(admin), "Content-Type": "application/yaml"},
        )
        assert resp.status_code in (200, 201), resp.text
        # a stored version with a longer window cannot be activated either
        version = service.add_model(
            WINDOWED.replace("name: service-test", "name: long"), "t", activate=False
        )["version"]
        resp = client.post(f"/api/models/{version}/activate", headers=bearer(admin))
        assert_error(resp, 422, "invalid_request")
    assert service.active.model.window_days == 14
    engine.dispose()


def test_serve_refuses_a_retention_shorter_than_the_window(tmp_path: Path) -> None:
    model = tmp_path / "leadscore.yaml"
    model.write_text(WINDOWED)
    proc = subprocess.run(
        [
            *LEADSCORE,
            "serve",
            "--model",
            str(model),
            "--retain-events-days",
            "7",
            "--database-url",
            f"sqlite:///{tmp_path / 'leadscore.db'}",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Error: model 'service-test' counts events for 30 days" in proc.stderr
    assert "--retain-events-days 30 or more" in proc.stderr
    assert "Traceback" not in proc.stderr
