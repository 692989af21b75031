"""Assignment at MQL time, on SQLite and PostgreSQL: in the transaction that makes the MQL, the
episode, the routing decision with its path, the owner, round robin, the SLA deadline and
``lead.assigned``; reps away and at their cap; lead-to-account matching; routing versions."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadscore.store import schema as t
from tests.handoff_service_helpers import ROUTING, HandoffApi, handoff_api, iso
from tests.service_helpers import assert_error, mid


@pytest.fixture
def h(service_db_url: str) -> Iterator[HandoffApi]:
    with handoff_api(service_db_url) as api:
        yield api


def test_a_new_mql_is_routed_with_its_path_sla_and_notification(h: HandoffApi) -> None:
    lead = h.mql("u-1")
    assert lead["stage"] == "mql"
    assert (lead["owner"], lead["team"]) == ("ann@acme.io", "enterprise")
    assert lead["assigned_at"] == iso(h.clock.now())
    routing = lead["routing"]
    assert routing["rule"] == "Enterprise North America" and routing["kind"] == "route"
    assert routing["routing_version"] == 1
    assert routing["path"] == [
        {"step": "rule", "rule": "Enterprise North America", "matched": True},
        {"step": "rep", "team": "enterprise", "rep": "ann@acme.io", "result": "assigned"},
    ]
    # the demo request is a fast track: five minutes from the MQL
    mql_at = lead["mql_at"]
    assert lead["sla"]["name"] == "Demo within 5 minutes"
    assert lead["sla"]["due_at"] == iso(h.clock.now() + timedelta(minutes=5))
    assert lead["sla"]["first_touch_at"] is None and lead["sla"]["breached_at"] is None
    assert lead["stage_history"][-1]["by"] == "model"
    # one episode, one assignment, written with the MQL
    (ep,) = h.rows(t.mql_episodes)
    assert (ep.lead_id, ep.track, ep.owner, ep.team, ep.stage) == (
        "u-1",
        "fast_track",
        "ann@acme.io",
        "enterprise",
        "mql",
    )
    assert ep.assigned_at_us == h.clock.us and iso_us(ep.mql_at_us) == mql_at
    (a,) = h.rows(t.assignments)
    assert (a.owner, a.kind, a.by, a.episode_id) == ("ann@acme.io", "route", "routing", ep.id)
    (note,) = h.outbox("lead.assigned")
    assert note["lead_id"] == "u-1" and note["owner"] == "ann@acme.io"
    assert note["sla"]["name"] == "Demo within 5 minutes"
    (mql,) = h.outbox("lead.mql")
    assert (mql["lead_id"], mql["owner"], mql["team"]) == ("u-1", "ann@acme.io", "enterprise")


def iso_us(us: int) -> str:
    from leadscore.service.common import iso as _iso

    got = _iso(us)
    assert got is not None
    return got


def test_round_robin_in_file_order_and_the_smb_rule(h: HandoffApi) -> None:
    owners = [h.mql(f"e-{i}")["owner"] for i in range(4)]
    assert owners == ["ann@acme.io", "raj@acme.io", "ann@acme.io", "raj@acme.io"]
    small = h.mql("s-1", employees=300)
    assert (small["owner"], small["team"]) == ("lee@acme.io", "smb")
    assert small["routing"]["path"][0] == {
        "step": "rule",
        "rule": "Enterprise North America",
        "matched": False,
    }
    # a threshold MQL (no demo request) is on the business-day SLA
    slow = h.mql("s-2", employees=300, demo=False)
    assert slow["sla"]["name"] == "Other MQLs within a business day"
    with h.engine.connect() as conn:
        rr = dict(
            conn.execute(
                t.round_robin.select().with_only_columns(
                    t.round_robin.c.team, t.round_robin.c.last_member
                )
            ).all()
        )
    assert rr == {"enterprise": "raj@acme.io", "smb": "lee@acme.io"}
    mine = h.ok("GET", "/api/leads?owner=raj@acme.io&sort=lead_id")
    assert [x["lead_id"] for x in mine["leads"]] == ["e-1", "e-3"]
    assert {x["owner"] for x in mine["leads"]} == {"raj@acme.io"}


def test_a_rep_away_is_skipped_and_rejoins_without_catch_up(h: HandoffApi) -> None:
    rep = h.ok("PUT", "/api/reps/ann@acme.io", {"away": True})
    assert rep["away"] is True and rep["teams"] == ["enterprise"]
    got = [h.mql(f"e-{i}") for i in range(2)]
    assert [g["owner"] for g in got] == ["raj@acme.io", "raj@acme.io"]
    assert {
        "step": "rep",
        "team": "enterprise",
        "rep": "ann@acme.io",
        "result": "skipped",
        "reason": "away",
    } in got[0]["routing"]["path"]
    h.ok("PUT", "/api/reps/ann@acme.io", {"away": False})
    # back: the rotation goes on from where it is, one lead each
    assert [h.mql(f"b-{i}")["owner"] for i in range(3)] == [
        "ann@acme.io",
        "raj@acme.io",
        "ann@acme.io",
    ]
    reps = {r["email"]: r for r in h.ok("GET", "/api/reps")["reps"]}
    assert reps["raj@acme.io"]["open_mqls"] == 3 and reps["ann@acme.io"]["open_mqls"] == 2
    assert reps["ann@acme.io"]["away"] is False and reps["ann@acme.io"]["back_at"] is not None
    assert reps["lee@acme.io"]["open_mqls"] == 0
    assert_error(h.call("PUT", "/api/reps/nobody@acme.io", {"away": True}), 404, "not_found")
    assert_error(h.call("PUT", "/api/reps/ann@acme.io", {"away": "soon"}), 422, "invalid_request")
    assert_error(h.call("PUT", "/api/reps/ann@acme.io", {"away": True}, token=h.read_token), 403)


def test_reps_at_their_cap_are_skipped_then_the_fallback(service_db_url: str) -> None:
    capped = ROUTING.replace("max_open_mqls: 25", "max_open_mqls: 1")
    with handoff_api(service_db_url, capped) as h:
        owners = [h.mql(f"e-{i}")["owner"] for i in range(3)]
        assert owners == ["ann@acme.io", "raj@acme.io", "lee@acme.io"]
        last = h.lead("e-2")
        assert last["routing"]["kind"] == "fallback" and last["team"] is None
        steps = last["routing"]["path"]
        assert [s.get("reason") for s in steps if s["step"] == "rep"] == ["at cap", "at cap"]
        assert steps[-1]["step"] == "fallback"
        # a lead disqualified is no longer open: its rep can take the next one
        h.ok(
            "POST",
            "/api/leads/e-0/stage",
            {"stage": "disqualified", "by": "ann@acme.io", "reason": "bad fit"},
        )
        assert h.mql("e-3")["owner"] == "ann@acme.io"


def test_outside_working_hours_the_team_is_skipped(h: HandoffApi) -> None:
    h.clock.advance(hours=10)  # 20:00 in New York
    lead = h.mql("late")
    assert lead["owner"] == "lee@acme.io" and lead["routing"]["kind"] == "fallback"
    reasons = {s.get("reason") for s in lead["routing"]["path"] if s["step"] == "rep"}
    assert reasons == {"outside hours"}


def test_a_lead_from_an_owned_company_goes_to_its_owner(h: HandoffApi) -> None:
    first = h.mql("first", email="kim@northwind.io")
    assert first["owner"] == "ann@acme.io"
    second = h.mql("second", email="Max@NorthWind.io")
    assert second["owner"] == "ann@acme.io"  # not raj: the account's owner first
    assert second["routing"]["kind"] == "account"
    assert second["routing"]["path"][0] == {
        "step": "account",
        "owner": "ann@acme.io",
        "result": "assigned",
    }
    with h.engine.connect() as conn:
        domains = dict(
            conn.execute(
                t.leads.select().with_only_columns(t.leads.c.lead_id, t.leads.c.email_domain)
            ).all()
        )
    assert domains == {"first": "northwind.io", "second": "northwind.io"}
    # free mail is nobody's account
    a = h.mql("g1", email="one@outlook.com")
    b = h.mql("g2", email="two@outlook.com")
    assert (a["owner"], b["owner"]) == ("raj@acme.io", "ann@acme.io")
    assert b["routing"]["kind"] == "route"


def test_several_mqls_in_one_call_are_routed_one_after_the_other(h: HandoffApi) -> None:
    from tests.service_helpers import mid

    now = iso(h.clock.now())
    msgs = []
    for lead in ("x", "y", "z"):
        msgs.append(
            {
                "type": "identify",
                "userId": lead,
                "messageId": mid(),
                "timestamp": now,
                "traits": {"title": "VP Sales", "country": "US", "company": {"employees": 2000}},
            }
        )
        msgs.append(
            {
                "type": "track",
                "userId": lead,
                "messageId": mid(),
                "timestamp": now,
                "event": "Demo Requested",
            }
        )
    h.send(*msgs)
    assert [h.lead(x)["owner"] for x in ("x", "y", "z")] == [
        "ann@acme.io",
        "raj@acme.io",
        "ann@acme.io",
    ]
    assert h.count(t.assignments) == 3 and h.count(t.mql_episodes) == 3


def test_routing_versions_through_the_api(service_db_url: str) -> None:
    with handoff_api(service_db_url, routing=None) as h:
        assert h.ok("GET", "/api/routing") == {"active": None, "versions": []}
        # an MQL while no routing is active has an episode but no owner ...
        lead = h.mql("early")
        assert lead["owner"] is None and lead["routing"] is None
        bad = h.call("PUT", "/api/routing", {"source": ROUTING.replace("team: smb", "team: smbb")})
        err = assert_error(bad, 422, "invalid_routing")
        assert err["details"] and err["details"][0]["line"] > 0
        assert_error(h.call("PUT", "/api/routing", {"source": ROUTING}, token=h.read_token), 403)
        # ... and is routed when a routing is activated
        got = h.ok("PUT", "/api/routing", {"source": ROUTING}, status=201)
        assert got["version"] == 1 and got["active"] is True and got["routed"] == 1
        assert h.lead("early")["owner"] == "ann@acme.io"
        again = h.client.put(
            "/api/routing",
            content=ROUTING.replace("max_open_mqls: 25", "max_open_mqls: 30").encode(),
            headers={
                "Content-Type": "application/yaml",
                "Authorization": f"Bearer {h.admin_token}",
            },
        )
        assert again.status_code == 201, again.text
        listed = h.ok("GET", "/api/routing")
        assert listed["active"]["version"] == 2
        assert [v["version"] for v in listed["versions"]] == [2, 1]
        assert h.ok("POST", "/api/routing/1/activate")["version"] == 1
        assert_error(h.call("POST", "/api/routing/9/activate"), 404, "not_found")
        # the service started again finds the active version
        assert h.service._routing.current is not None
        from leadscore.service.facade import Service

        assert Service(h.engine, clock=h.clock).routing.version == 1  # type: ignore[union-attr]


def test_model_activation_routes_the_mqls_it_makes(h: HandoffApi) -> None:
    from tests.service_helpers import MODEL

    h.mql("p", demo=False, employees=2000)  # 35 fit + 30 pricing = 65: an MQL already
    h.mql("q", demo=False, employees=100)  # 20 fit + 30 pricing = 50: an MQL at 50 too
    before = h.count(t.mql_episodes)
    lower = MODEL.replace("threshold: 50", "threshold: 30").replace("min_fit: 20", "min_fit: 0")
    h.send(
        {
            "type": "identify",
            "userId": "r",
            "messageId": "m-r",
            "timestamp": iso(h.clock.now()),
            "traits": {"title": "Engineer", "country": "US", "company": {"employees": 2000}},
        }
    )
    h.send(
        *[
            {
                "type": "page",
                "userId": "r",
                "messageId": f"m-r{i}",
                "timestamp": iso(h.clock.now()),
                "properties": {"path": "/pricing"},
            }
            for i in range(3)
        ]
    )
    assert h.lead("r")["stage"] == "lead"  # fit 15 < min_fit 20
    got = h.service.add_model(lower, "test")
    assert got["new_mqls"] == 1
    r = h.lead("r")
    assert (
        r["stage"] == "mql"
        and r["owner"] is not None
        and r["routing"]["rule"] == "Enterprise North America"
    )
    assert h.count(t.mql_episodes) == before + 1


def _other_database(url: str, tmp_path: Path) -> str:
    """A second, empty database of the same kind."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    import psycopg

    base, _, _ = url.rpartition("/")
    name = "s_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return f"{base}/{name}"


def test_batching_mqls_routes_them_as_one_call_each_would(
    service_db_url: str, tmp_path: Path
) -> None:
    """The handoff decides a call's MQLs one after the other in memory and writes them
    together: random leads (shared company domains, free mail, a rep away then back, a small
    cap) sent in random batches get the same owners, rules, kinds and paths as the same leads
    sent one per call."""
    rng = random.Random(7)
    capped = ROUTING.replace("max_open_mqls: 25", "max_open_mqls: 4")
    leads = []
    for i in range(40):
        domain = rng.choice(["a.io", "b.io", "c.io", "outlook.com", f"x{i}.io"])
        traits = {
            "title": "VP Sales",
            "email": f"p{i}@{domain}",
            "country": rng.choice(["US", "CA", "GB"]),
            "company": {"employees": rng.choice([300, 2000, 4000])},
        }
        leads.append((f"l{i:02d}", traits))
    cuts = sorted(rng.sample(range(1, 40), 8))
    batches = [leads[a:b] for a, b in zip([0, *cuts], [*cuts, 40], strict=True)]
    back_at = cuts[3]  # raj comes back before this lead, in both runs

    def run(url: str, groups: list[list[tuple[str, dict[str, Any]]]]) -> list[tuple[Any, ...]]:
        with handoff_api(url, capped) as h:
            h.ok("PUT", "/api/reps/raj@acme.io", {"away": True})
            sent = 0
            for group in groups:
                if sent == back_at:
                    h.ok("PUT", "/api/reps/raj@acme.io", {"away": False})
                now = iso(h.clock.now())
                msgs = []
                for lead, traits in group:
                    msgs.append(
                        {
                            "type": "identify",
                            "userId": lead,
                            "messageId": mid(),
                            "timestamp": now,
                            "traits": traits,
                        }
                    )
                    msgs.append(
                        {
                            "type": "track",
                            "userId": lead,
                            "messageId": mid(),
                            "timestamp": now,
                            "event": "Demo Requested",
                        }
                    )
                h.send(*msgs)
                sent += len(group)
            rows = sorted(h.rows(t.assignments), key=lambda a: a.lead_id)
            return [
                (
                    a.lead_id,
                    a.owner,
                    a.team,
                    a.rule,
                    a.kind,
                    json.loads(a.decision)["path"]
                    if isinstance(a.decision, str)
                    else a.decision["path"],
                )
                for a in rows
            ]

    together = run(service_db_url, batches)
    one_by_one = run(_other_database(service_db_url, tmp_path), [[x] for x in leads])
    assert together == one_by_one
    assert {r[4] for r in together} == {"route", "account", "fallback"}
    assert any(s.get("reason") == "away" for r in together for s in r[5])
