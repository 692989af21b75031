"""`leadscore serve` as users run it: a real process on 127.0.0.1, keys and webhooks made with the
CLI in the same database, and the official Segment and RudderStack Python clients sending to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from leadscore.model import parse_model
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    MODEL,
    Receiver,
    Server,
    assert_matches,
    bearer,
    cli,
    parse_iso,
    python_score,
    us,
    verify_signature,
    wait_for,
)


@dataclass
class Served:
    server: Server
    db_url: str
    write_key: str
    read_token: str

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(
            self.server.base + path, params=params, headers=bearer(self.read_token), timeout=10
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def check_scores(self, lead_id: str) -> dict[str, Any]:
        """The served lead, checked against the Python engine on what the server stored."""
        lead = self.get(f"/api/leads/{lead_id}")
        engine = open_engine(self.db_url)
        try:
            ref = python_score(
                engine, parse_model(MODEL, "m"), lead_id, us(parse_iso(lead["scored_at"]))
            )
        finally:
            engine.dispose()
        assert_matches(lead, ref, tol=0.006)  # served numbers are rounded to 2 decimals
        return lead  # type: ignore[no-any-return]


def _serve(db_url: str, tmp: Path) -> Served:
    model = tmp / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db_url, model, tmp / "server.log").start()
    # keys made with the CLI while the server runs work at once: the same database
    write_key = cli(
        "keys", "create", "--name", "website", "--scope", "ingest", "--database-url", db_url
    ).strip()
    read_token = cli(
        "keys", "create", "--name", "ops", "--scope", "read", "--database-url", db_url
    ).strip()
    assert write_key.startswith("lsw_") and read_token.startswith("lsr_")
    return Served(server, db_url, write_key, read_token)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    s = _serve(f"sqlite:///{tmp / 'leadscore.db'}", tmp)
    try:
        yield s
    finally:
        s.server.stop()


def test_the_segment_client_sends_to_the_server(served: Served) -> None:
    import segment.analytics as analytics

    analytics.write_key = served.write_key
    analytics.host = served.server.base
    analytics.sync_mode = True  # each call is sent at once; a refused call raises
    analytics.max_retries = 0
    try:
        analytics.page(anonymous_id="seg-anon", name="Pricing", properties={"path": "/pricing"})
        analytics.identify(
            "seg-1", {"email": "ann@acme.io", "title": "VP Marketing"}, anonymous_id="seg-anon"
        )
        analytics.group("seg-1", "acme", {"name": "Acme", "employees": 800})
        analytics.page("seg-1", name="Pricing", properties={"path": "/pricing/teams"})
        analytics.track("seg-1", "Webinar Attended", {"title": "Scoring 101"})
    finally:
        analytics.default_client = None
    lead = served.check_scores("seg-1")
    assert lead["traits"] == {"email": "ann@acme.io", "title": "VP Marketing"}
    assert lead["company"] == {"name": "Acme", "employees": 800, "id": "acme"}
    assert {r["rule"] for r in lead["reasons"]} == {
        "Senior title",
        "Company size",
        "Pricing page",
        "Any page",
        "Webinar",
    }
    assert lead["stage"] == "mql"  # fit 35 + two pricing views and a webinar
    assert [e["type"] for e in lead["recent_events"]].count("page") == 2
    listed = served.get("/api/leads", stage="mql", q="acme.io")["leads"]
    assert [x["lead_id"] for x in listed] == ["seg-1"]


def test_the_rudderstack_client_sends_gzipped_batches_to_the_server(served: Served) -> None:
    import rudderstack.analytics as rudder_analytics

    errors: list[Any] = []
    rudder_analytics.write_key = served.write_key
    rudder_analytics.dataPlaneUrl = served.server.base
    rudder_analytics.on_error = lambda e, batch: errors.append(e)
    rudder_analytics.max_retries = 0
    try:
        rudder_analytics.identify("rud-1", {"email": "bo@globex.com", "title": "Head of Sales"})
        rudder_analytics.group("rud-1", "globex", {"name": "Globex", "employees": 2500})
        for path in ("/pricing", "/pricing/enterprise", "/docs"):
            rudder_analytics.page("rud-1", name="Page", properties={"path": path})
        rudder_analytics.track("rud-1", "Demo Requested", {"source": "pricing"})
        rudder_analytics.flush()  # the client batches and gzips; wait until all are sent
    finally:
        if rudder_analytics.default_client is not None:
            rudder_analytics.default_client.join()
        rudder_analytics.default_client = None
    assert errors == []
    lead = served.check_scores("rud-1")
    assert lead["company"]["name"] == "Globex" and lead["traits"]["title"] == "Head of Sales"
    assert lead["stage"] == "mql" and lead["fast_track"] is True
    assert len(lead["recent_events"]) == 6


def test_a_lead_from_anonymous_visits_to_the_mql_webhook(
    service_db_url: str, tmp_path: Path
) -> None:
    import segment.analytics

    s = _serve(service_db_url, tmp_path)
    try:
        with Receiver() as rx:
            secret = cli(
                "webhooks",
                "add",
                rx.url,
                "--events",
                "lead.mql",
                "--database-url",
                service_db_url,
            ).strip()
            client = segment.analytics.Client(
                s.write_key, host=s.server.base, sync_mode=True, max_retries=0
            )
            for path in ("/pricing", "/case-studies/acme", "/pricing/teams"):
                client.page(anonymous_id="visitor-7", name="Page", properties={"path": path})
            assert s.get("/api/leads")["total"] == 0  # only a visitor so far
            client.identify(
                "lead-7",
                {"email": "kim@initech.com", "title": "Director of Marketing"},
                anonymous_id="visitor-7",
            )
            lead = s.check_scores("lead-7")
            assert lead["stage"] == "lead"
            assert lead["engagement"] > 20  # the visitor's pricing views count for the lead
            assert rx.requests == []
            client.track("lead-7", "Demo Requested", {"plan": "teams"})

            [(headers, body)] = wait_for(rx.delivered, "the lead.mql webhook")
        verify_signature(secret, headers, body)
        payload = json.loads(body)
        final = s.check_scores("lead-7")
        assert payload["type"] == "lead.mql" and payload["lead_id"] == "lead-7"
        assert final["stage"] == "mql" and payload["mql_at"] == final["mql_at"]
        assert payload["reason"] == final["mql_reason"]
        assert payload["traits"]["email"] == "kim@initech.com"
        demo = next(e for e in final["recent_events"] if e["event"] == "Demo Requested")
        assert final["mql_at"] == demo["timestamp"]  # the event that qualified the lead
        assert [h["stage"] for h in final["stage_history"]] == ["lead", "mql"]
        paths = [e["properties"]["path"] for e in final["recent_events"] if e["type"] == "page"]
        assert sorted(paths) == ["/case-studies/acme", "/pricing", "/pricing/teams"]
        listing = cli("webhooks", "list", "--database-url", service_db_url)
        assert rx.url in listing
        engine = open_engine(service_db_url)
        try:
            with engine.connect() as conn:
                delivered = conn.execute(
                    sa.select(sa.func.count()).where(t.outbox.c.delivered_at_us.is_not(None))
                ).scalar_one()
                assert delivered == 1
        finally:
            engine.dispose()
    finally:
        s.server.stop()


def test_serve_and_key_commands_explain_what_is_wrong(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.test_service_scoring import BAD_MODEL

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_MODEL)
    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    cases = [
        (["serve", "--model", str(bad), "--database-url", db], f"{bad}:7:7: unknown key 'pionts'"),
        (["serve", "--database-url", "mysql://x@localhost/db"], "not supported"),
        (["keys", "create", "--name", "x", "--scope", "root", "--database-url", db], "'root'"),
        (["keys", "revoke", "99", "--database-url", db], "no active key 99"),
        (["webhooks", "add", "ftp://example.com", "--database-url", db], "not an http(s) URL"),
        (
            ["webhooks", "add", "https://x.test", "--events", "lead.won", "--database-url", db],
            "lead.won",
        ),
    ]
    for args, words in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "leadscore", *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and words in proc.stderr, (args, proc.stderr)
    # a revoked key is listed as such and never shown again
    secret = cli("keys", "create", "--name", "site", "--database-url", db).strip()
    cli("keys", "revoke", "1", "--database-url", db)
    listing = cli("keys", "list", "--database-url", db)
    assert "site" in listing and secret not in listing and secret[:8] in listing
