"""The read API and access control: the real app on SQLite and PostgreSQL with real keys."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa

from leadscore.service.auth import create_key, revoke_key
from leadscore.store import schema as t
from tests.service_helpers import (
    Api,
    ago,
    assert_error,
    basic,
    bearer,
    group,
    identify,
    iso,
    now_dt,
    page,
    parse_iso,
    python_score,
    track,
    us,
)


def _people(api: Api) -> None:
    """Five leads: two MQLs, graded and scored differently."""
    api.ok(
        identify("ann", {"email": "ann@acme.io", "title": "VP Sales", "name": "Ann Lee"}),
        group("ann", "acme", {"name": "Acme", "employees": 900}),
        track("ann", "Demo Requested", timestamp=ago(0, hours=5)),
        identify("bob", {"email": "bob@globex.com", "title": "Director", "first_name": "Bob"}),
        track("bob", "Demo Requested", timestamp=ago(0, hours=3)),
        identify("cat", {"email": "cat@gmail.com", "title": "Engineer"}),
        page("cat", "/pricing"),
        page("cat", "/pricing/teams"),
        identify("dan", {"email": "dan@initech.com", "title": "Head of IT"}),
        page("dan", "/docs"),
        identify("eve", {"email": "eve@acme.io"}),
    )


def test_list_filters_sorts_and_pages(api: Api) -> None:
    _people(api)
    everyone = api.leads()
    assert everyone["total"] == 5
    scores = [x["score"] for x in everyone["leads"]]
    assert scores == sorted(scores, reverse=True)  # default: highest score first
    assert everyone["leads"][0]["lead_id"] == "ann"
    assert {x["lead_id"] for x in api.leads(stage="mql")["leads"]} == {"ann", "bob"}
    assert {x["lead_id"] for x in api.leads(stage="lead")["leads"]} == {"cat", "dan", "eve"}
    grades = {x["lead_id"]: x["grade"] for x in everyone["leads"]}
    assert grades["ann"] == "A2" and grades["bob"] == "B2"
    assert [x["lead_id"] for x in api.leads(grade="A2")["leads"]] == ["ann"]
    assert {x["lead_id"] for x in api.leads(grade="b")["leads"]} == {"bob", "dan"}
    high = api.leads(min_score=40)["leads"]
    assert {x["lead_id"] for x in high} == {
        x["lead_id"] for x in everyone["leads"] if x["score"] >= 40
    }
    assert {x["lead_id"] for x in high} == {"ann", "bob"}
    assert [x["lead_id"] for x in api.leads(q="ACME")["leads"]] == ["ann", "eve"]
    assert [x["lead_id"] for x in api.leads(q="bo")["leads"]] == ["bob"]
    assert api.leads(q="nobody-at-all")["total"] == 0
    assert api.leads(q="%")["total"] == 0  # typed text, not a wildcard
    assert api.leads(q="a_n")["total"] == 0
    assert_error(api.get("/api/leads", q="\u0000"), 422, "invalid_request")
    assert_error(api.get("/api/leads/a%00b"), 404, "not_found")
    assert [x["lead_id"] for x in api.leads(sort="lead_id")["leads"]] == [
        "ann",
        "bob",
        "cat",
        "dan",
        "eve",
    ]
    assert [x["lead_id"] for x in api.leads(sort="-lead_id", limit=2)["leads"]] == ["eve", "dan"]
    page2 = api.leads(sort="lead_id", limit=2, offset=2)
    assert (page2["total"], page2["limit"], page2["offset"]) == (5, 2, 2)
    assert [x["lead_id"] for x in page2["leads"]] == ["cat", "dan"]
    assert api.leads(sort="lead_id", offset=10)["leads"] == []
    by_mql = [x["lead_id"] for x in api.leads(sort="mql_at")["leads"]]
    assert by_mql[:2] == ["ann", "bob"]  # leads without an MQL time come last
    combined = api.leads(stage="lead", sort="-score", limit=1)["leads"]
    assert [x["lead_id"] for x in combined] == ["dan"]  # cat's personal email costs 20
    row = everyone["leads"][0]
    assert (row["email"], row["name"], row["company"]) == ("ann@acme.io", "Ann Lee", "Acme")
    assert {x["lead_id"]: x["name"] for x in everyone["leads"]}["bob"] == "Bob"
    for bad in ({"sort": "height"}, {"stage": "won"}, {"limit": 5000}, {"offset": -1}):
        assert_error(api.get("/api/leads", **bad), 422, "invalid_request")


def test_sorting_by_mql_time_follows_time_within_a_second(api: Api) -> None:
    second = (now_dt() - timedelta(days=1)).replace(microsecond=0)
    api.ok(identify("early", {"title": "VP"}), identify("late", {"title": "VP"}))
    api.ok(
        track("late", "Demo Requested", timestamp=iso(second + timedelta(milliseconds=500))),
        track("early", "Demo Requested", timestamp=iso(second)),
    )
    assert [x["lead_id"] for x in api.leads(sort="mql_at")["leads"]] == ["early", "late"]
    assert [x["lead_id"] for x in api.leads(sort="-mql_at")["leads"]] == ["late", "early"]


def test_min_score_finds_a_lead_whose_future_event_has_come_due(api: Api) -> None:
    api.ok(identify("u1", {"title": "VP"}))
    soon = now_dt() + timedelta(hours=2)
    api.ok(track("u1", "Webinar Attended", timestamp=iso(soon)))
    assert api.leads(min_score=25)["total"] == 0  # 20 now; 30 once the webinar has happened
    api.clock.advance(hours=2, seconds=1)  # the service's clock: no waiting
    assert api.lead("u1")["score"] == 30
    assert [x["lead_id"] for x in api.leads(min_score=25)["leads"]] == ["u1"]


def test_one_lead_in_full(api: Api) -> None:
    _people(api)
    api.ok(page(None, "/pricing", anonymousId="anon-ann", timestamp=ago(2)))
    api.ok(identify("ann", {"city": "Oslo"}, anonymousId="anon-ann"))
    lead = api.lead("ann")
    assert lead["lead_id"] == "ann" and lead["stage"] == "mql"
    assert lead["traits"] == {
        "email": "ann@acme.io",
        "title": "VP Sales",
        "name": "Ann Lee",
        "city": "Oslo",
    }
    assert lead["company"] == {"name": "Acme", "employees": 900, "id": "acme"}
    ref = python_score(
        api.engine, api.service.active.model, "ann", us(parse_iso(lead["scored_at"]))
    )
    assert {k: lead[k] for k in ref.record("ann")} == ref.record("ann")
    assert {r["rule"] for r in lead["reasons"]} >= {"Demo request", "Senior title", "Pricing page"}
    assert [h["stage"] for h in lead["stage_history"]] == ["lead", "mql"]
    assert parse_iso(lead["mql_at"]) == parse_iso(lead["stage_history"][1]["at"])
    events = lead["recent_events"]
    assert [e["type"] for e in events] == ["identify", "group", "identify", "track", "page"]
    assert events[-1] == {**events[-1], "event": "page", "properties": {"path": "/pricing"}}
    stamps = [parse_iso(e["timestamp"]) for e in events]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert len(api.lead("ann", events=2)["recent_events"]) == 2
    assert api.lead("ann", events=0)["recent_events"] == []
    assert_error(api.get("/api/leads/nobody"), 404, "not_found")


def test_access_needs_the_right_key(api: Api) -> None:
    batch = {"batch": [page("u1", "/pricing")]}
    # ingest: no key, a wrong key, a revoked key -> 401; a read token -> 403
    assert_error(api.post("/v1/batch", batch), 401, "unauthorized")
    assert_error(api.post("/v1/batch", batch, basic("lsw_not-a-key")), 401)
    key_id, secret = create_key(api.engine, "old site", "ingest")
    assert api.post("/v1/batch", batch, basic(secret)).status_code == 200
    revoke_key(api.engine, key_id)
    assert_error(api.post("/v1/batch", {"batch": [page("u1", "/")]}, basic(secret)), 401)
    err = assert_error(api.post("/v1/batch", batch, basic(api.read_token)), 403, "forbidden")
    assert "write key" in err["message"]
    assert_error(api.post("/v1/batch", {**batch, "writeKey": api.read_token}), 403)
    # the read API: no token, a wrong one, Basic auth -> 401; a write key -> 403
    assert_error(api.client.get("/api/leads"), 401, "unauthorized")
    assert_error(api.get("/api/leads", token="lsr_wrong"), 401)
    assert_error(api.client.get("/api/leads", headers=basic(api.read_token)), 401)
    assert_error(api.get("/api/leads", token=api.write_key), 403, "forbidden")
    assert_error(api.get("/api/leads/u1", token=api.write_key), 403)
    assert_error(api.get("/api/models", token=api.write_key), 403)
    # models: only admin may change them
    assert_error(api.client.put("/api/models", content=b"x", headers=bearer(api.read_token)), 403)
    assert_error(api.client.put("/api/models", content=b"x", headers=bearer(api.write_key)), 403)
    assert api.get("/api/leads", token=api.admin_token).status_code == 200
    assert api.count(t.events) == 1
    unauth = api.client.get("/api/leads")
    assert unauth.headers.get("www-authenticate")


def test_keys_are_stored_hashed(api: Api) -> None:
    secrets = [api.write_key, api.read_token, api.admin_token]
    with api.engine.connect() as conn:
        rows = conn.execute(sa.select(t.api_keys)).mappings().all()
        dump = " ".join(
            str(v)
            for table in t.metadata.sorted_tables
            for row in conn.execute(sa.select(table)).all()
            for v in row
        )
    assert len(rows) == 3
    for secret in secrets:
        assert secret not in dump
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert digest in {r["secret_hash"] for r in rows}
    assert {r["scope"] for r in rows} == {"ingest", "read", "admin"}
    assert all(len(r["prefix"]) < 10 for r in rows)


def test_health_and_openapi(api: Api) -> None:
    health = api.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["model_version"] == 1 and body["model"] == "service-test"
    assert body["database"] == api.engine.dialect.name
    spec = api.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/v1/batch",
        "/v1/identify",
        "/v1/alias",
        "/api/leads",
        "/api/leads/{lead_id}",
        "/api/models",
        "/health",
    ):
        assert path in paths, path
    assert api.client.get("/docs").status_code == 200
