"""Real-time scores, read-time decay, the MQL handoff and model versions: the real app on SQLite
and PostgreSQL, every stored or served score checked against the Python engine."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.errors import ModelError
from leadscore.model import parse_model
from leadscore.store import schema as t
from tests.service_helpers import (
    Api,
    ago,
    assert_error,
    assert_matches,
    bearer,
    cli,
    from_us,
    group,
    identify,
    page,
    parse_iso,
    python_score,
    track,
    us,
)

DAY_US = 86_400 * 1_000_000

#: A second model: other rules, a window, numeric and negated conditions, a lower threshold.
MODEL_V2 = """\
model: 1
name: service-test-v2
fit:
  rules:
    - name: Big company
      when: {field: company.employees, gte: 1000}
      points: 25
    - name: Software
      when: {field: company.industry, equals: software}
      points: 10
    - name: Has phone
      when: {field: phone, exists: true}
      points: 5
    - name: Not a student
      when: {not: {field: title, contains: student}}
      points: 5
engagement:
  half_life_days: 14
  window_days: 45
  rules:
    - name: Pricing
      event: page
      when: {field: path, starts_with: /pricing}
      points: 8
      cap: 20
    - name: Long webinar
      event: webinar attended
      when: {field: minutes, gt: 30}
      points: 12
    - name: Demo
      event: Demo Requested
      points: 30
      fast_track: true
mql:
  threshold: 40
  min_fit: 10
grades:
  fit: {A: 35, B: 20, C: 10}
  engagement: {1: 30, 2: 15, 3: 5}
"""

BAD_MODEL = """\
model: 1
name: broken
fit:
  rules:
    - name: Size
      when: {field: company.employees, between: [500, 10]}
      pionts: 10
engagement:
  half_life_days: -3
  rules:
    - name: Size
      event: page
      when: {field: path, matches: "(unclosed"}
      points: 5
mql: {}
"""


def test_after_the_response_every_touched_lead_is_scored(api: Api) -> None:
    calls = [
        [identify("u1", {"title": "VP Sales"}), identify("u2", {"email": "x@gmail.com"})],
        [page("u1", "/pricing", timestamp=ago(3)), page("u2", "/pricing", timestamp=ago(1))],
        [group("u1", "g", {"employees": 400}), track("u2", "Webinar Attended")],
        [track("u1", "Webinar Attended", timestamp=ago(10)), page("u1", "/docs")],
    ]
    for batch in calls:
        api.ok(*batch)
        for lead in ("u1", "u2"):
            served = api.lead(lead)
            ref = python_score(
                api.engine, api.service.active.model, lead, us(parse_iso(served["scored_at"]))
            )
            assert served == {**served, **ref.record(lead)}
            assert_matches(api.row(lead), api.reference(lead))
    listed = {x["lead_id"]: x for x in api.leads()["leads"]}
    assert listed["u1"]["score"] == api.lead("u1")["score"]


def test_scores_decay_at_read_time_without_a_write(api: Api) -> None:
    api.ok(
        identify("u1", {"title": "Director"}),
        page("u1", "/pricing", timestamp=ago(2)),
        track("u1", "Webinar Attended", timestamp=ago(1)),
    )
    row = api.row("u1")
    later = row.scored_at_us + 30 * DAY_US  # one half-life
    now = api.service.current(row, row.scored_at_us)
    then = api.service.current(row, later)
    assert now is not None and then is not None
    assert then.engagement == pytest.approx(now.engagement / 2, rel=1e-9)
    assert then.fit == now.fit == 20
    assert_matches(then, api.reference("u1", later))
    view = api.service.lead_view(row, later)
    assert view["score"] < api.lead("u1")["score"]
    assert parse_iso(view["scored_at"]) == from_us(later)  # as of the instant asked for
    assert api.row("u1") == row  # nothing was written


def test_a_lead_that_crosses_the_threshold_becomes_an_mql_at_that_events_time(api: Api) -> None:
    api.ok(identify("u1", {"title": "VP Sales"}), group("u1", "g", {"employees": 300}))
    assert api.lead("u1")["stage"] == "lead"
    t1, t2, t3 = ago(0, hours=3), ago(0, hours=2), ago(0, hours=1)
    # fit 35; each pricing view adds about 11: the second one crosses 50
    api.ok(
        page("u1", "/pricing", timestamp=t3),
        page("u1", "/pricing", timestamp=t1),
        page("u1", "/pricing/x", timestamp=t2),
    )
    lead = api.lead("u1")
    assert lead["stage"] == "mql" and lead["mql"] is True
    assert parse_iso(lead["mql_at"]) == parse_iso(t2)
    assert lead["mql_reason"].startswith("score ") and lead["mql_reason"].endswith(
        "reached threshold 50"
    )
    assert [h["stage"] for h in lead["stage_history"]] == ["lead", "mql"]
    assert lead["stage_history"][1]["at"] == lead["mql_at"]
    assert lead["stage_history"][1]["model_version"] == 1
    assert lead["stage_history"][1]["reason"] == lead["mql_reason"]
    assert api.leads(stage="mql")["leads"][0]["lead_id"] == "u1"


def test_the_mql_time_is_the_qualifying_events_when_a_batch_links_a_visitor(api: Api) -> None:
    """Identify, then the visitor's pricing view and demo request, in one batch: the lead
    qualifies at the demo request, not at the identify that linked the visitor."""
    t0, t1, t2 = ago(0, hours=3), ago(0, hours=2), ago(0, hours=1)
    api.ok(
        track(None, "Demo Requested", anonymousId="anon", timestamp=t2),
        page(None, "/pricing", anonymousId="anon", timestamp=t1),
        identify(
            "u1", {"title": "VP", "company": {"employees": 300}}, anonymousId="anon", timestamp=t0
        ),
    )
    lead = api.lead("u1")
    assert lead["stage"] == "mql" and parse_iso(lead["mql_at"]) == parse_iso(t2)
    assert_matches(api.row("u1"), api.reference("u1"))


def test_fast_track_qualifies_with_its_reason_and_only_with_enough_fit(api: Api) -> None:
    api.ok(identify("fit", {"title": "Director"}), identify("nofit", {"title": "Intern"}))
    demo_at = ago(60)  # fit 20 and 25 points: below the threshold even when it happened
    api.ok(
        track("fit", "Demo Requested", timestamp=demo_at),
        track("nofit", "Demo Requested", timestamp=demo_at),
    )
    lead = api.lead("fit")
    assert lead["score"] < 50 and lead["fast_track"] is True
    assert lead["stage"] == "mql"
    assert lead["mql_reason"] == "fast track: Demo request"
    assert parse_iso(lead["mql_at"]) == parse_iso(demo_at)
    other = api.lead("nofit")
    assert other["fast_track"] is True and other["mql"] is False and other["stage"] == "lead"
    assert other["mql_at"] is None and len(other["stage_history"]) == 1


def test_mql_is_sticky(api: Api) -> None:
    api.ok(identify("u1", {"title": "VP", "email": "ann@acme.io"}), track("u1", "Demo Requested"))
    first = api.lead("u1")
    assert first["stage"] == "mql"
    # the score drops: a personal email costs 20 fit points, below the min-fit gate
    api.ok(identify("u1", {"email": "ann@gmail.com"}))
    dropped = api.lead("u1")
    assert dropped["fit"] == 0 and dropped["mql"] is False
    assert dropped["stage"] == "mql" and dropped["mql_at"] == first["mql_at"]
    assert dropped["mql_reason"] == first["mql_reason"]
    assert [h["stage"] for h in dropped["stage_history"]] == ["lead", "mql"]
    # and qualifying again later changes neither the time nor the history
    api.ok(identify("u1", {"email": "ann@acme.io"}), track("u1", "Demo Requested"))
    again = api.lead("u1")
    assert (again["mql_at"], len(again["stage_history"])) == (first["mql_at"], 2)
    assert api.count(t.stage_history) == 1
    # read a year later, decayed to nothing: still an MQL
    row = api.row("u1")
    assert api.service.lead_view(row, row.scored_at_us + 365 * DAY_US)["stage"] == "mql"


def test_an_invalid_model_gets_422_with_the_same_problems_as_leadscore_validate(
    api: Api, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_MODEL)
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    cli_lines = [
        line.split(":", 1)[1] for line in proc.stderr.splitlines() if line.startswith(str(bad))
    ]
    assert len(cli_lines) >= 5
    for body, ctype in ((BAD_MODEL.encode(), "application/yaml"), (None, "application/json")):
        if body is None:
            body = json.dumps({"source": BAD_MODEL}).encode()
        resp = api.client.put(
            "/api/models", content=body, headers={"Content-Type": ctype, **bearer(api.admin_token)}
        )
        err = assert_error(resp, 422, "invalid_model")
        texts = [d["text"] for d in err["details"]]
        assert [x.split(":", 1)[1] for x in texts] == cli_lines
        assert [f"{d['line']}:{d['column']}: {d['message']}" for d in err["details"]] == cli_lines
        assert any("did you mean 'points'?" in x for x in texts)
    assert [m["version"] for m in api.get("/api/models").json()["models"]] == [1]


def test_points_past_the_float_range_are_refused_when_the_model_is_put(api: Api) -> None:
    """Two fit rules of 1e308 points once summed to infinity and failed ingest (an infinite
    score has no record); such a model is refused, naming where, and ingest goes on."""
    huge = MODEL_V2.replace("points: 25", "points: 1.0e+308").replace(
        "points: 10\n", "points: 1.0e+308\n", 1
    )
    resp = api.client.put(
        "/api/models",
        content=huge.encode(),
        headers={"Content-Type": "application/yaml", **bearer(api.admin_token)},
    )
    err = assert_error(resp, 422, "invalid_model")
    assert [(d["line"], d["column"]) for d in err["details"]] == [(7, 15), (10, 15)]
    assert all("points must be between -1,000,000" in d["message"] for d in err["details"])
    assert [m["version"] for m in api.get("/api/models").json()["models"]] == [1]
    api.ok(identify("big", {"company": {"employees": 5000, "industry": "Software"}}))
    assert_matches(api.row("big"), api.reference("big"))


def _population(api: Api, n: int = 40, seed: int = 7) -> list[str]:
    """Leads with varied traits and events, some anonymous before identifying."""
    rng = random.Random(seed)
    titles = ["VP Sales", "Student", "Head of Ops", "Engineer", "", None]
    industries = ["Software", " software ", "Retail", None]
    leads = []
    for i in range(n):
        lead = f"lead-{i:02d}"
        leads.append(lead)
        traits = {
            "title": rng.choice(titles),
            "email": f"p{i}@{rng.choice(['gmail.com', 'acme.io'])}",
        }
        if rng.random() < 0.4:
            traits["phone"] = "555-0100"
        msgs = [identify(lead, traits, anonymousId=f"anon-{i}", timestamp=ago(rng.uniform(0, 50)))]
        if rng.random() < 0.7:
            emp = rng.choice([50, 300, "1200", 5000, "n/a"])
            msgs.append(
                group(lead, f"g{i}", {"employees": emp, "industry": rng.choice(industries)})
            )
        for _ in range(rng.randint(0, 8)):
            when = ago(rng.uniform(0, 60))
            kind = rng.random()
            user = lead if rng.random() < 0.8 else None
            extra = {"anonymousId": f"anon-{i}"} if user is None else {}
            if kind < 0.5:
                path = rng.choice(["/pricing", "/pricing/teams", "/docs", "/"])
                msgs.append(page(user, path, timestamp=when, **extra))
            elif kind < 0.8:
                props = {"minutes": rng.choice([10, 45, "60", None])}
                msgs.append(track(user, "Webinar Attended", props, timestamp=when, **extra))
            else:
                msgs.append(track(user, "Demo Requested", timestamp=when, **extra))
        rng.shuffle(msgs)
        api.ok(*msgs)
    return leads


def test_activating_a_model_rescores_every_lead_with_the_sql_engine(api: Api) -> None:
    leads = _population(api)
    before = {lead: api.row(lead) for lead in leads}
    for lead in leads:
        assert_matches(before[lead], api.reference(lead))
    resp = api.client.put(
        "/api/models",
        content=MODEL_V2.encode(),
        headers={"Content-Type": "application/yaml", **bearer(api.admin_token)},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json() == {
        **resp.json(),
        "version": 2,
        "active": True,
        "leads_rescored": len(leads),
    }
    v2 = parse_model(MODEL_V2, "v2")
    assert api.service.active.version == 2
    for lead in leads:
        row = api.row(lead)
        assert row.model_version == 2
        ref = python_score(api.engine, v2, lead, row.scored_at_us)
        assert_matches(row, ref)
        # MQL is sticky through a model change; newly qualified leads say why
        if before[lead].stage == "mql":
            assert row.stage == "mql" and row.mql_at_us == before[lead].mql_at_us
        elif ref.mql:
            assert row.stage == "mql" and row.mql_reason.endswith("(model v2 activated)")
        else:
            assert row.stage == "lead"
        # read later, the served score is still the engine's: the window and decay apply
        for days in (1, 20, 50):
            at = row.scored_at_us + days * DAY_US
            current = api.service.current(row, at)
            assert current is not None
            assert_matches(current, python_score(api.engine, v2, lead, at))
    assert sum(api.row(x).stage == "mql" for x in leads) > sum(
        b.stage == "mql" for b in before.values()
    )
    assert sum(api.row(x).fit > 0 for x in leads) > len(leads) // 2


def test_model_versions_and_who_activated_them(api: Api) -> None:
    api.ok(identify("u1", {"title": "VP"}), page("u1", "/pricing"))
    admin = bearer(api.admin_token)
    resp = api.client.put(
        "/api/models?activate=false",
        content=MODEL_V2.encode(),
        headers={"Content-Type": "text/plain", **admin},
    )
    assert resp.status_code == 201 and resp.json() == {
        "version": 2,
        "name": "service-test-v2",
        "active": False,
    }
    assert api.lead("u1")["reasons"][0]["rule"] == "Senior title"  # still scored by v1
    act = api.client.post("/api/models/2/activate", headers=admin)
    assert act.status_code == 200 and act.json()["leads_rescored"] == 1
    assert api.lead("u1")["reasons"][0]["rule"] == "Pricing"
    assert_error(api.client.post("/api/models/9/activate", headers=admin), 404, "not_found")
    models = api.get("/api/models").json()["models"]
    assert [(m["version"], m["active"], m["name"]) for m in models] == [
        (2, True, "service-test-v2"),
        (1, False, "service-test"),
    ]
    assert models[0]["created_by"] == "key:admin" and models[0]["source"] == MODEL_V2
    assert [a["by"] for a in models[0]["activations"]] == ["key:admin"]
    assert [a["by"] for a in models[1]["activations"]] == ["test"]
    assert models[0]["activations"][0]["leads_rescored"] == 1
    # the read token sees models but cannot change them
    assert_error(
        api.client.put("/api/models", content=MODEL_V2.encode(), headers=bearer(api.read_token)),
        403,
        "forbidden",
    )
    assert_error(api.client.post("/api/models/1/activate", headers=bearer(api.write_key)), 403)
    with api.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.models)).scalar_one() == 2


def test_cli_validate_agrees_with_a_model_the_service_accepts(api: Api, tmp_path: Path) -> None:
    good = tmp_path / "v2.yaml"
    good.write_text(MODEL_V2)
    assert "ok" in cli("validate", str(good))
    resp = api.client.put("/api/models", content=MODEL_V2.encode(), headers=bearer(api.admin_token))
    assert resp.status_code == 201


def test_activating_a_model_during_ingest_leaves_every_lead_consistent(api: Api) -> None:
    rng = random.Random(3)
    leads = [f"l{i:03d}" for i in range(200)]
    api.ok(*[identify(x, {"title": "VP", "phone": "1"}) for x in leads])
    api.ok(*[page(x, "/pricing", timestamp=ago(rng.uniform(0, 10))) for x in leads])
    sent = threading.Semaphore(0)
    stop = threading.Event()
    failures: list[str] = []

    def load() -> None:
        while not stop.is_set():
            x = rng.choice(leads)
            resp = api.send(
                page(x, "/pricing", timestamp=ago(rng.uniform(0, 10))),
                track(x, "Webinar Attended", {"minutes": 45}),
            )
            if resp.status_code != 200:
                failures.append(resp.text)
            sent.release()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for _ in range(5):
            sent.acquire()
        resp = api.client.put(
            "/api/models", content=MODEL_V2.encode(), headers=bearer(api.admin_token)
        )
        assert resp.status_code == 201, resp.text
        for _ in range(5):  # and some more after it
            sent.acquire()
    finally:
        stop.set()
        loader.join(30)
    assert not failures, failures[:3]
    v2 = parse_model(MODEL_V2, "v2")
    for x in leads:
        row = api.row(x)
        assert row.model_version == 2, x
        assert_matches(row, python_score(api.engine, v2, x, row.scored_at_us))


def test_without_a_model_events_wait_with_a_retryable_503(tmp_path: Path) -> None:
    from tests.service_helpers import api_on

    with api_on(f"sqlite:///{tmp_path / 'x.db'}", model="") as bare:
        err = assert_error(bare.send(page("u1", "/pricing")), 503, "no_model")
        assert "--model" in err["message"] and bare.count(t.events) == 0
        assert bare.client.get("/health").json()["model_version"] is None
        resp = bare.client.put(
            "/api/models", content=MODEL_V2.encode(), headers=bearer(bare.admin_token)
        )
        assert resp.status_code == 201 and resp.json()["leads_rescored"] == 0
        assert bare.send(page("u1", "/pricing")).status_code == 200


def test_starting_with_a_model_file_activates_it_once(api: Api) -> None:
    """What `leadscore serve --model FILE` does at start: the same text is not a new version."""
    from tests.service_helpers import MODEL

    api.ok(identify("u1", {"title": "VP"}), page("u1", "/pricing"))
    assert api.service.ensure_model(MODEL, "leadscore.yaml", "cli:leadscore.yaml") == {
        "version": 1,
        "unchanged": True,
    }
    changed = api.service.ensure_model(MODEL_V2, "leadscore.yaml", "cli:leadscore.yaml")
    assert changed["version"] == 2 and changed["leads_rescored"] == 1
    models = api.get("/api/models").json()["models"]
    assert models[0]["activations"][0]["by"] == "cli:leadscore.yaml"
    with pytest.raises(ModelError, match=r"leadscore\.yaml:7:7: unknown key 'pionts'"):
        api.service.ensure_model(BAD_MODEL, "leadscore.yaml", "cli:leadscore.yaml")
    assert api.service.active.version == 2


def test_late_events_are_carried_into_the_stored_score_and_a_late_qualifier_sets_mql_at(
    api: Api,
) -> None:
    """Events older than a lead's last score (a queued client flushing late, a second source)
    are added decayed; one that may have qualified the lead earlier re-scores its history."""
    api.ok(
        identify("late", {"title": "Head of Growth"}),
        page("late", "/", timestamp=ago(0, minutes=1)),
    )
    # late and not enough to qualify: the stored score is still the engine's
    api.ok(
        page("late", "/pricing", timestamp=ago(10)),
        track("late", "Webinar Attended", timestamp=ago(5)),
    )
    assert_matches(api.row("late"), api.reference("late"))
    assert api.row("late").stage == "lead"
    # late and qualifying: with a demo request four days ago it crossed the threshold then
    demo_at = ago(4)
    api.ok(track("late", "Demo Requested", timestamp=demo_at))
    row = api.row("late")
    assert_matches(row, api.reference("late"))
    assert row.stage == "mql" and row.mql_at_us == us(parse_iso(demo_at))
    assert row.mql_reason.startswith("score ") and row.mql_reason.endswith("threshold 50")
