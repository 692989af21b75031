"""After the handoff, on SQLite and PostgreSQL: touches and the SLA clock (breaches marked at
the deadline, escalation, late touches clearing a breach), stage moves through the lifecycle
rules (409s, BANT, recycling and a new MQL), reassignment, CRM statuses coming back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from leadscore.store import schema as t
from tests.handoff_service_helpers import HandoffApi, handoff_api, iso
from tests.service_helpers import assert_error

BANT = {
    "budget": "$40k approved",
    "authority": "VP Sales signs",
    "need": "replacing spreadsheets",
    "timeline": "live by Q3",
}


@pytest.fixture
def h(service_db_url: str) -> Iterator[HandoffApi]:
    with handoff_api(service_db_url) as api:
        yield api


def test_a_touch_in_time_meets_the_sla(h: HandoffApi) -> None:
    h.mql("u")
    mql_at = h.clock.now()
    h.clock.advance(minutes=3)
    got = h.ok("POST", "/api/leads/u/touches", {"kind": "call", "by": "ann@acme.io"}, status=201)
    assert got["first_touch_at"] == iso(h.clock.now())
    h.clock.advance(minutes=10)
    assert h.service.check_sla() == 0
    lead = h.lead("u")
    assert lead["sla"]["first_touch_at"] == iso(mql_at + timedelta(minutes=3))
    assert lead["sla"]["breached_at"] is None and lead["owner"] == "ann@acme.io"
    assert lead["touches"] == [
        {
            "kind": "call",
            "by": "ann@acme.io",
            "at": iso(h.clock.now() - timedelta(minutes=10)),
            "received_at": iso(h.clock.now() - timedelta(minutes=10)),
        }
    ]
    assert h.outbox("lead.sla_breached") == []


def test_a_missed_deadline_is_marked_at_its_time_and_escalated(h: HandoffApi) -> None:
    h.mql("u")
    due = h.clock.now() + timedelta(minutes=5)
    h.clock.advance(minutes=4, seconds=59)
    assert h.service.check_sla() == 0
    assert h.service.next_sla_due() == h.clock.us + 1_000_000
    h.clock.advance(minutes=2)  # the scheduler runs a minute late: the breach keeps its time
    assert h.service.check_sla() == 1
    assert h.service.check_sla() == 0  # once
    lead = h.lead("u")
    assert lead["sla"]["breached_at"] == iso(due)
    assert lead["sla"]["notified_at"] == iso(h.clock.now())
    assert lead["sla"]["escalated_to"] == "lee@acme.io"
    assert (lead["owner"], lead["team"]) == ("lee@acme.io", "smb")
    assert [a["kind"] for a in lead["assignments"]] == ["route", "escalate"]
    assert lead["assignments"][1]["by"] == "sla" and lead["assignments"][1]["from"] == "ann@acme.io"
    (note,) = h.outbox("lead.sla_breached")
    assert note["breached_at"] == iso(due) and note["owner"] == "ann@acme.io"
    assert note["escalate_to"] == "lee@acme.io"
    assert [n["owner"] for n in h.outbox("lead.assigned")] == ["ann@acme.io", "lee@acme.io"]
    (ep,) = h.rows(t.mql_episodes)
    assert (ep.owner, ep.escalated_to, ep.assigned_at_us) == (
        "lee@acme.io",
        "lee@acme.io",
        ep.mql_at_us,
    )
    # a touch logged late but made before the deadline clears the breach
    h.ok(
        "POST",
        "/api/leads/u/touches",
        {"kind": "email", "by": "ann@acme.io", "at": iso(due - timedelta(seconds=30))},
        status=201,
    )
    lead = h.lead("u")
    assert lead["sla"]["breached_at"] is None
    assert lead["sla"]["first_touch_at"] == iso(due - timedelta(seconds=30))
    assert h.service.check_sla() == 0  # and it is not marked again


def test_a_touch_after_the_deadline_does_not_clear_it(h: HandoffApi) -> None:
    h.mql("u")
    h.clock.advance(minutes=6)
    h.ok("POST", "/api/leads/u/touches", {"kind": "call", "by": "ann@acme.io"}, status=201)
    assert h.service.check_sla() == 1  # the touch came too late
    assert h.lead("u")["sla"]["breached_at"] is not None


def test_business_day_sla_skips_the_night(h: HandoffApi) -> None:
    h.clock.advance(hours=3)  # 13:00 New York, Tuesday
    lead = h.mql("slow", demo=False)
    # 24 working hours from Tuesday 13:00 (9 h a day): Thursday 10:00 + 6 h... in New York
    assert lead["sla"]["name"] == "Other MQLs within a business day"
    due = h.rows(t.mql_episodes)[0].sla_due_at_us
    assert due > h.clock.us + 24 * 3600 * 1_000_000


def test_bad_touches_are_refused(h: HandoffApi) -> None:
    h.send({"type": "identify", "userId": "cold", "messageId": "m1", "traits": {"title": "x"}})
    assert_error(
        h.call("POST", "/api/leads/cold/touches", {"kind": "call", "by": "ann@acme.io"}),
        422,
        "invalid_request",
    )
    h.mql("u")
    before = iso(h.clock.now() - timedelta(minutes=1))
    err = assert_error(
        h.call("POST", "/api/leads/u/touches", {"kind": "call", "by": "ann@acme.io", "at": before}),
        422,
        "invalid_request",
    )
    assert "before the lead became an MQL" in err["message"]
    assert_error(
        h.call("POST", "/api/leads/u/touches", {"kind": "fax", "by": "ann@acme.io"}),
        422,
        "invalid_request",
    )
    assert_error(h.call("POST", "/api/leads/u/touches", {"kind": "call"}), 422, "invalid_request")
    assert_error(
        h.call("POST", "/api/leads/nobody/touches", {"kind": "call", "by": "a@b.io"}),
        404,
        "not_found",
    )
    ahead = iso(h.clock.now() + timedelta(hours=1))
    assert_error(
        h.call("POST", "/api/leads/u/touches", {"kind": "call", "by": "a@b.io", "at": ahead}),
        422,
        "invalid_request",
    )
    assert h.count(t.touches) == 0


def test_stage_moves_are_checked_kept_and_announced(h: HandoffApi) -> None:
    h.mql("u")
    err = assert_error(
        h.call("POST", "/api/leads/u/stage", {"stage": "customer!", "by": "ann@acme.io"}),
        409,
        "invalid_move",
    )
    assert err["details"][0]["allowed"] == [
        "sal",
        "sql",
        "opportunity",
        "customer",
        "recycled",
        "disqualified",
    ]
    err = assert_error(
        h.call("POST", "/api/leads/u/stage", {"stage": "lead", "by": "ann@acme.io"}),
        409,
        "invalid_move",
    )
    assert err["details"][0]["from"] == "mql" and err["details"][0]["to"] == "lead"
    h.clock.advance(minutes=1)
    moved = h.ok("POST", "/api/leads/u/stage", {"stage": "sal", "by": "ann@acme.io"})
    assert (moved["from"], moved["stage"]) == ("mql", "sal")
    # sql needs BANT as confirmed
    assert_error(
        h.call("POST", "/api/leads/u/stage", {"stage": "sql", "by": "ann@acme.io"}),
        422,
        "invalid_request",
    )
    h.clock.advance(minutes=1)
    h.ok("POST", "/api/leads/u/stage", {"stage": "sql", "by": "ann@acme.io", "bant": BANT})
    lead = h.lead("u")
    assert lead["stage"] == "sql"
    hist = lead["stage_history"]
    assert [(x["stage"], x["by"]) for x in hist] == [
        ("lead", None),
        ("mql", "model"),
        ("sal", "ann@acme.io"),
        ("sql", "ann@acme.io"),
    ]
    assert hist[-1]["bant"] == BANT and hist[-1]["at"] == iso(h.clock.now())
    (ep,) = h.rows(t.mql_episodes)
    assert ep.stage == "sql" and ep.sal_at_us is not None and ep.sql_at_us == h.clock.us
    notes = h.outbox("lead.stage_changed")
    assert [(n["from"], n["stage"], n["by"]) for n in notes] == [
        ("mql", "sal", "ann@acme.io"),
        ("sal", "sql", "ann@acme.io"),
    ]
    assert notes[1]["bant"] == BANT
    # a moved-on lead is not breached when its deadline passes
    h.clock.advance(minutes=10)
    assert h.service.check_sla() == 0
    # the model does not make a worked lead an MQL again
    h.send(
        {
            "type": "track",
            "userId": "u",
            "messageId": "again",
            "event": "Demo Requested",
            "timestamp": iso(h.clock.now()),
        }
    )
    assert h.lead("u")["stage"] == "sql" and h.count(t.mql_episodes) == 1
    # disqualification needs a listed reason
    err = assert_error(
        h.call(
            "POST",
            "/api/leads/u/stage",
            {"stage": "disqualified", "by": "ann@acme.io", "reason": "too small"},
        ),
        422,
        "invalid_request",
    )
    assert "bad fit" in err["message"]
    h.ok(
        "POST",
        "/api/leads/u/stage",
        {"stage": "disqualified", "by": "ann@acme.io", "reason": "Bad Fit"},
    )
    (ep,) = h.rows(t.mql_episodes)
    assert (ep.closed_stage, ep.closed_reason, ep.stage) == (
        "disqualified",
        "bad fit",
        "disqualified",
    )
    err = assert_error(
        h.call("POST", "/api/leads/u/stage", {"stage": "sal", "by": "ann@acme.io"}),
        409,
        "invalid_move",
    )
    assert err["details"][0]["allowed"] == []
    assert_error(
        h.call("POST", "/api/leads/ghost/stage", {"stage": "sal", "by": "a@b.io"}), 404, "not_found"
    )


def test_two_moves_at_once_one_wins(h: HandoffApi) -> None:
    h.mql("u")
    answers: list[int] = []
    start = threading.Barrier(2)

    def move(stage: str, reason: str) -> None:
        start.wait()
        resp = h.call(
            "POST",
            "/api/leads/u/stage",
            {"stage": stage, "by": "x@acme.io", "reason": reason, "from": "mql"},
        )
        answers.append(resp.status_code)
        if resp.status_code == 409:
            assert_error(resp, 409, "conflict")

    threads = [
        threading.Thread(target=move, args=a) for a in (("sal", ""), ("disqualified", "no intent"))
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sorted(answers) == [200, 409]
    assert len([x for x in h.lead("u")["stage_history"] if x["by"] == "x@acme.io"]) == 1


def test_the_stage_compare_and_set_refuses_a_lead_moved_under_it(h: HandoffApi) -> None:
    """The move reads the stage, then changes it only if it is still the same: a writer outside
    this process (another server, the CLI) that moved it in between makes it a conflict."""
    from leadscore.errors import ConflictError
    from leadscore.service import sales
    from leadscore.service.notify import Notifier

    h.mql("u")
    with h.engine.begin() as conn:
        real_check = sales.check_move

        def check_then_someone_moves(*a, **kw):  # type: ignore[no-untyped-def]
            got = real_check(*a, **kw)
            conn.execute(t.leads.update().where(t.leads.c.lead_id == "u").values(stage="sal"))
            return got

        sales.check_move = check_then_someone_moves  # type: ignore[assignment]
        try:
            with pytest.raises(ConflictError):
                sales.move(
                    conn,
                    Notifier(conn, h.clock.us),
                    h.service.routing,
                    lead="u",
                    to="sql",
                    by="a@acme.io",
                    reason=None,
                    bant=BANT,
                    come_back_at_us=None,
                    at_us=h.clock.us,
                    now_us=h.clock.us,
                )
        finally:
            sales.check_move = real_check  # type: ignore[assignment]


def test_a_recycled_lead_qualifies_again_as_a_new_mql(h: HandoffApi) -> None:
    h.mql("u")
    back = h.clock.now() + timedelta(days=30)
    assert_error(
        h.call("POST", "/api/leads/u/stage", {"stage": "recycled", "by": "ann@acme.io"}),
        422,
        "invalid_request",
    )
    h.ok(
        "POST",
        "/api/leads/u/stage",
        {
            "stage": "recycled",
            "by": "ann@acme.io",
            "reason": "next budget year",
            "come_back_at": iso(back),
        },
    )
    lead = h.lead("u")
    assert lead["stage"] == "recycled" and lead["stage_history"][-1]["come_back_at"] == iso(back)
    # before its come-back date the model does not make it an MQL ...
    h.clock.advance(days=1)
    h.send(
        {
            "type": "track",
            "userId": "u",
            "messageId": "d2",
            "event": "Demo Requested",
            "timestamp": iso(h.clock.now()),
        }
    )
    assert h.lead("u")["stage"] == "recycled"
    # ... after it, it does: a new episode, routed again
    h.clock.advance(days=30)
    h.send(
        {
            "type": "track",
            "userId": "u",
            "messageId": "d3",
            "event": "Demo Requested",
            "timestamp": iso(h.clock.now()),
        }
    )
    lead = h.lead("u")
    assert lead["stage"] == "mql" and lead["mql_episodes"] == 2
    eps = h.rows(t.mql_episodes)
    assert [e.stage for e in eps] == ["recycled", "mql"]
    assert eps[0].closed_reason == "next budget year" and eps[1].mql_at_us == h.clock.us
    assert eps[1].owner is not None and lead["sla"]["due_at"] == iso(
        h.clock.now() + timedelta(minutes=5)
    )
    assert [x["stage"] for x in lead["stage_history"]] == ["lead", "mql", "recycled", "mql"]


def test_rep_emails_are_the_same_whatever_their_case(h: HandoffApi) -> None:
    """Reps are stored and compared lower-cased: owners, who touched or moved a lead, time
    away."""
    assert h.mql("u")["owner"] == "ann@acme.io"
    got = h.ok("POST", "/api/leads/u/assign", {"owner": " RAJ@Acme.IO", "by": "Ops@Acme.io"})
    assert (got["owner"], got["team"], got["by"]) == ("raj@acme.io", "enterprise", "ops@acme.io")
    again = h.ok("POST", "/api/leads/u/assign", {"owner": "raj@ACME.io", "by": "ops@acme.io"})
    assert again["unchanged"] is True
    h.ok("POST", "/api/leads/u/touches", {"kind": "call", "by": "Raj@Acme.io"}, status=201)
    h.ok("POST", "/api/leads/u/stage", {"stage": "sal", "by": "RAJ@acme.io"})
    lead = h.lead("u")
    assert lead["owner"] == "raj@acme.io"
    assert lead["touches"][0]["by"] == "raj@acme.io"
    assert lead["stage_history"][-1]["by"] == "raj@acme.io"
    assert lead["assignments"][-1]["by"] == "ops@acme.io"
    # away, given in capitals, is the routing file's ann: round robin passes her by
    assert h.ok("PUT", "/api/reps/ANN@Acme.io", {"away": True})["email"] == "ann@acme.io"
    assert [r.email for r in h.rows(t.reps)] == ["ann@acme.io"]
    assert h.mql("v")["owner"] == "raj@acme.io"
    assert h.mql("w")["owner"] == "raj@acme.io"
    h.ok("PUT", "/api/reps/Ann@acme.IO", {"away": False})
    assert h.mql("x")["owner"] == "ann@acme.io"


def test_reassignment_is_kept_in_history(h: HandoffApi) -> None:
    h.mql("u")
    got = h.ok(
        "POST",
        "/api/leads/u/assign",
        {"owner": "raj@acme.io", "by": "ops@acme.io", "reason": "speaks German"},
    )
    assert (got["owner"], got["previous_owner"], got["team"]) == (
        "raj@acme.io",
        "ann@acme.io",
        "enterprise",
    )
    lead = h.lead("u")
    assert lead["owner"] == "raj@acme.io"
    assert lead["assignments"][-1] == {
        "owner": "raj@acme.io",
        "team": "enterprise",
        "kind": "reassign",
        "rule": None,
        "at": iso(h.clock.now()),
        "by": "ops@acme.io",
        "reason": "speaks German",
        "from": "ann@acme.io",
    }
    assert lead["routing"]["owner"] == "ann@acme.io"  # the decision stays as it was made
    (ep,) = h.rows(t.mql_episodes)
    assert ep.owner == "raj@acme.io"
    assert h.outbox("lead.assigned")[-1]["kind"] == "reassign"
    assert_error(
        h.call("POST", "/api/leads/u/assign", {"owner": "stranger@x.io", "by": "ops@acme.io"}),
        404,
        "not_found",
    )
    assert_error(
        h.call("POST", "/api/leads/nope/assign", {"owner": "raj@acme.io", "by": "ops@acme.io"}),
        404,
        "not_found",
    )
    assert_error(
        h.call("POST", "/api/leads/u/assign", {"owner": "raj@acme.io"}), 422, "invalid_request"
    )


def test_crm_statuses_come_back_as_stages(h: HandoffApi) -> None:
    h.mql("u")
    early = iso(h.clock.now() - timedelta(seconds=1))
    assert_error(
        h.call("POST", "/api/crm/stages", {"lead_id": "u", "status": "working", "at": early}),
        422,
        "invalid_request",
    )
    h.clock.advance(minutes=1)
    at = h.clock.now() - timedelta(seconds=1)
    got = h.ok(
        "POST",
        "/api/crm/stages",
        {"lead_id": "u", "status": "working", "at": iso(at), "by": "sf-sync"},
    )
    assert (got["stage"], got["status"]) == ("sal", "working")
    assert (
        h.ok("POST", "/api/crm/stages", {"lead_id": "u", "status": "Working"})["unchanged"] is True
    )
    last = h.lead("u")["stage_history"][-1]
    assert (last["stage"], last["by"], last["at"], last["reason"]) == (
        "sal",
        "sf-sync",
        iso(at),
        "CRM status working",
    )
    assert last["received_at"] == iso(h.clock.now())
    err = assert_error(
        h.call("POST", "/api/crm/stages", {"lead_id": "u", "status": "Lost"}),
        422,
        "invalid_request",
    )
    assert "working" in err["message"]
    assert_error(
        h.call("POST", "/api/crm/stages", {"lead_id": "u", "status": "Qualified"}),
        422,
        "invalid_request",
    )  # no BANT from a status
    h.ok("POST", "/api/crm/stages", {"lead_id": "u", "status": "Closed Won"})
    assert h.lead("u")["stage"] == "customer"
    assert_error(
        h.call("POST", "/api/crm/stages", {"lead_id": "ghost", "status": "Working"}),
        404,
        "not_found",
    )


def test_the_scheduler_thread_marks_breaches_at_start_and_when_woken(h: HandoffApi) -> None:
    from leadscore.service.sla_watch import SlaWatch
    from tests.service_helpers import wait_for

    h.mql("down")
    h.clock.advance(minutes=7)  # the deadline passed while nothing watched
    watch = SlaWatch(h.engine, h.service.check_sla, h.clock, max_wait_s=30)
    h.service.on_deadline = watch.wake
    watch.start()
    try:
        wait_for(lambda: h.lead("down")["sla"]["breached_at"], "the breach found at start")
        assert h.lead("down")["sla"]["breached_at"] == iso(h.clock.now() - timedelta(minutes=2))
        h.mql("up")  # a new MQL wakes the watch, which then waits for its deadline
        h.clock.advance(minutes=5, seconds=1)
        watch.wake()
        wait_for(lambda: h.lead("up")["sla"]["breached_at"], "the breach of the new MQL")
    finally:
        watch.stop()
    assert len(h.outbox("lead.sla_breached")) == 2


def test_a_recycled_lead_moved_back_to_mql_by_hand_is_a_new_routed_mql(h: HandoffApi) -> None:
    h.mql("u")
    h.ok(
        "POST", "/api/leads/u/stage", {"stage": "recycled", "by": "ann@acme.io", "reason": "later"}
    )
    h.clock.advance(hours=1)
    got = h.ok(
        "POST", "/api/leads/u/stage", {"stage": "mql", "by": "ann@acme.io", "reason": "called back"}
    )
    assert (got["from"], got["stage"]) == ("recycled", "mql")
    lead = h.lead("u")
    assert lead["mql_episodes"] == 2 and lead["mql_at"] == iso(h.clock.now())
    assert lead["owner"] == "raj@acme.io"  # the next in the rotation
    assert lead["sla"]["due_at"] == iso(h.clock.now() + timedelta(minutes=5))
    eps = h.rows(t.mql_episodes)
    assert [(e.stage, e.owner) for e in eps] == [
        ("recycled", "ann@acme.io"),
        ("mql", "raj@acme.io"),
    ]
    assert [a.kind for a in h.rows(t.assignments)] == ["route", "route"]
