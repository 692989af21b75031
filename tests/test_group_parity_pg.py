"""A PostgreSQL group stores what its calls store one after the other: the same leads (scores,
parts, stages), the same events, the same answers, whatever the calls share (a lead created by
one and touched by a later one, an anonymous id linked by one and used by a later one, a
messageId given twice)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service.group_commit import Call
from leadscore.service.ingest import IngestCall
from leadscore.service.messages import check_message
from leadscore.store import schema as t
from tests.service_helpers import Api, ago, api_on, identify, page, track


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    with api_on(pg_url) as a:
        yield a


def _calls(p: str) -> list[list[dict[str, Any]]]:
    """Requests whose ids all start with ``p``."""
    return [
        [identify(f"{p}u1", {"title": "VP Sales"}, messageId=f"{p}m1"), page(f"{p}u1", "/")],
        [page(None, "/pricing", anonymousId=f"{p}a1", timestamp=ago(0.3))],
        [
            identify(f"{p}u2", {"email": "x@acme.io"}, anonymousId=f"{p}a1", timestamp=ago(0.2)),
            track(f"{p}u1", "Webinar Attended", timestamp=ago(0.1)),
        ],
        [track(None, "Demo Requested", anonymousId=f"{p}a1", timestamp=ago(0.05))],
        [
            track(f"{p}u1", "Demo Requested", timestamp=ago(2)),
            identify(f"{p}u1", {"company": {"employees": 300}}, messageId=f"{p}m1"),
            track(f"{p}u3", "Webinar Attended", timestamp=ago(0.01)),
        ],
        [page(f"{p}u3", "/docs"), track(f"{p}u2", "Webinar Attended", timestamp=ago(1))],
    ]


def _write(api: Api, requests: list[list[dict[str, Any]]], at: int, together: bool) -> list[Any]:
    svc = api.service
    calls = [Call(IngestCall([check_message(m, at) for m in msgs], at)) for msgs in requests]
    if together:
        svc._write_ingests(calls)
    else:
        for c in calls:
            svc._write_ingests([c])
    out = []
    for c in calls:
        assert c.error is None, c.error
        r = c.result
        out.append((r.accepted, r.duplicates, len(r.leads), len(r.new_mqls)))
    return out


_COLUMNS = ("fit", "engagement", "score", "grade", "mql", "stage", "mql_at_us", "rescore_at_us")


def _leads(api: Api, p: str) -> dict[str, Any]:
    with api.engine.connect() as conn:
        rows = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id.like(f"{p}%"))).all()
        events = conn.execute(
            sa.select(t.events.c.lead_id, sa.func.count())
            .where(t.events.c.message_id.like(f"{p}%") | t.events.c.anonymous_id.like(f"{p}%"))
            .group_by(t.events.c.lead_id)
        ).all()
    got: dict[str, Any] = {
        r.lead_id.removeprefix(p): (
            tuple(getattr(r, c) for c in _COLUMNS),
            r.rule_sums,
            r.traits,
        )
        for r in rows
    }
    got["events"] = sorted(((x or "").removeprefix(p), n) for x, n in events)
    return got


def _named(template: list[list[dict[str, Any]]], p: str) -> list[list[dict[str, Any]]]:
    """The requests with every id prefixed ``p`` (messageIds too: the same times in both)."""
    text = json.dumps(template).replace("~", p)
    requests = json.loads(text)
    n = 0
    for msgs in requests:
        for m in msgs:
            if not m["messageId"].startswith(p):
                n += 1
                m["messageId"] = f"{p}x{n}"
    return requests


def test_a_group_stores_what_its_calls_store_one_after_the_other(pg_api: Api) -> None:
    at = pg_api.service.now_us()
    template = _calls("~")
    alone = _write(pg_api, _named(template, "s-"), at, together=False)
    together = _write(pg_api, _named(template, "g-"), at, together=True)
    assert together == alone
    assert _leads(pg_api, "g-") == _leads(pg_api, "s-")


def test_a_routed_group_hands_off_as_its_calls_do_one_after_the_other(
    postgres_server: Any,
) -> None:
    """With a routing active, the group's new MQLs get the owners, episodes, assignments and
    notifications they get one call after the other (round robin, an account's owner)."""
    from datetime import timedelta

    from tests.handoff_service_helpers import handoff_api
    from tests.handoff_service_helpers import iso as iso_of

    results = []
    for together in (False, True):
        with handoff_api(postgres_server.create_database()) as api:
            now = api.clock.now()

            def at(hours: float, now: Any = now) -> str:
                return iso_of(now - timedelta(hours=hours))

            big = {"company": {"employees": 2000}, "country": "US", "title": "VP Sales"}
            requests = [
                [
                    identify("a1", {**big, "email": "a1@big.com"}, timestamp=at(3)),
                    track("a1", "Demo Requested", timestamp=at(2)),
                ],
                [
                    identify("b1", {**big, "email": "b1@other.com"}, timestamp=at(3)),
                    track("b1", "Demo Requested", timestamp=at(1)),
                ],
                [
                    identify("a2", {**big, "email": "a2@big.com"}, timestamp=at(3)),
                    track("a2", "Demo Requested", timestamp=at(1)),
                    track("a1", "Webinar Attended", timestamp=at(0.5)),
                ],
                [page(None, "/", anonymousId="v", timestamp=at(4))],
                [
                    identify(
                        "c1", {**big, "email": "c1@third.com"}, anonymousId="v", timestamp=at(1)
                    ),
                    track("c1", "Demo Requested", timestamp=at(0.5)),
                ],
                [track("b1", "Webinar Attended", timestamp=at(0.2))],
            ]
            t_us = api.service.now_us()
            calls = [
                Call(IngestCall([check_message(m, t_us) for m in msgs], t_us)) for msgs in requests
            ]
            if together:
                api.service._write_ingests(calls)
            else:
                for c in calls:
                    api.service._write_ingests([c])
            answers = []
            for c in calls:
                assert c.error is None, c.error
                r = c.result
                answers.append((r.accepted, r.duplicates, r.leads, r.new_mqls, r.notified))
            with api.engine.connect() as conn:
                leads = conn.execute(
                    sa.select(
                        t.leads.c.lead_id,
                        t.leads.c.stage,
                        t.leads.c.owner,
                        t.leads.c.team,
                        t.leads.c.mql_at_us,
                        t.leads.c.score,
                        t.leads.c.rule_sums,
                    ).order_by(t.leads.c.lead_id)
                ).all()
                episodes = conn.execute(
                    sa.select(
                        t.mql_episodes.c.lead_id,
                        t.mql_episodes.c.owner,
                        t.mql_episodes.c.sla_name,
                        t.mql_episodes.c.sla_due_at_us,
                        t.mql_episodes.c.score,
                    ).order_by(t.mql_episodes.c.lead_id)
                ).all()
                outbox = conn.execute(
                    sa.select(t.outbox.c.event, t.outbox.c.payload).order_by(t.outbox.c.id)
                ).all()
            results.append(
                (
                    answers,
                    [tuple(r) for r in leads],
                    [tuple(r) for r in episodes],
                    [(e, json.loads(p).get("lead_id")) for e, p in outbox],
                )
            )
    alone, together_ = results
    assert together_[0] == alone[0]
    assert together_[1] == alone[1]
    assert together_[2] == alone[2]
    assert sorted(together_[3]) == sorted(alone[3])
    assert any(r[3] for r in alone[0])


def test_a_call_refused_inside_its_last_round_trip_fails_alone_and_writes_go_on(
    pg_api: Api,
) -> None:
    """A new MQL's stage refused by the database (in the round trip that sends the call's last
    statements together): that call gets the error, the others of its group are written, and
    the connection goes on writing groups and lone requests (its prepared statements too)."""
    with pg_api.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_mql() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'mql refused by the test'; END $$; "
            "CREATE TRIGGER refuse_mql BEFORE UPDATE ON leads FOR EACH ROW "
            "WHEN (NEW.stage = 'mql' AND starts_with(NEW.lead_id, 'bad')) EXECUTE FUNCTION refuse_mql()"
        )
    svc = pg_api.service
    for n in range(8):
        at = svc.now_us()
        requests = [
            [page(f"ok{n}", "/")],
            [
                identify(f"bad{n}", {"title": "VP Sales"}),
                track(f"bad{n}", "Demo Requested", timestamp=ago(0.01)),
            ],
            [track(f"ok{n}", "Webinar Attended", timestamp=ago(0.01))],
        ]
        calls = [Call(IngestCall([check_message(m, at) for m in msgs], at)) for msgs in requests]
        svc._write_ingests(calls if n % 2 == 0 else calls[1:2])
        assert "mql refused by the test" in str(calls[1].error)
        if n % 2 == 0:
            assert calls[0].error is None and calls[2].error is None
            assert calls[2].result is not None and calls[2].result.accepted == 1
        lone = Call(IngestCall([check_message(page(f"lone{n}", "/"), at)], at))
        svc._write_ingests([lone])
        assert lone.error is None
    with pg_api.engine.connect() as conn:
        kept = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
    assert not any(x.startswith("bad") for x in kept)
    assert {f"lone{n}" for n in range(8)} <= kept
    assert {f"ok{n}" for n in range(0, 8, 2)} <= kept


def test_a_huge_number_in_traits_or_properties_does_not_block_the_lead(pg_api: Api) -> None:
    """A number at the edge of a double (1e308: 309 digits as PostgreSQL's jsonb writes it)
    in a trait or an event's property is stored, and the lead is written again after it, from
    its stored traits and from its stored events (a late event re-scores it from its history)."""
    pg_api.ok(
        page(None, "/pricing", anonymousId="a-big", properties={"path": "/pricing", "n": 1e308})
    )
    pg_api.ok(identify("big", {"title": "VP Sales", "revenue": 1e308}, anonymousId="a-big"))
    pg_api.ok(page("big", "/pricing", timestamp=ago(2)))
    pg_api.ok(identify("big", {"title": "VP Sales"}))
    row = pg_api.row("big")
    assert row.fit == 20
    assert row.engagement > 0


def test_a_score_refused_in_the_groups_last_update_fails_its_call_alone(pg_api: Api) -> None:
    """The group's scores go in one UPDATE after its last call: when the database refuses it,
    the group is written again with each call's statements apart, which finds the call whose
    lead it was; that call gets the error, the others are written."""
    with pg_api.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_score() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'score refused by the test'; END $$; "
            "CREATE TRIGGER refuse_score BEFORE UPDATE ON leads FOR EACH ROW "
            "WHEN (NEW.score IS NOT NULL AND starts_with(NEW.lead_id, 'bad')) "
            "EXECUTE FUNCTION refuse_score()"
        )
    svc = pg_api.service
    at = svc.now_us()
    requests = [[page("ok1", "/")], [page("bad1", "/")], [page("ok1", "/docs"), page("ok2", "/")]]
    calls = [Call(IngestCall([check_message(m, at) for m in msgs], at)) for msgs in requests]
    svc._write_ingests(calls)
    assert "score refused by the test" in str(calls[1].error)
    assert calls[0].error is None and calls[2].error is None
    assert calls[0].result is not None and calls[2].result is not None
    assert (calls[0].result.accepted, calls[2].result.accepted) == (1, 2)
    with pg_api.engine.connect() as conn:
        kept = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
        pages = conn.execute(
            sa.select(sa.func.count()).select_from(t.events).where(t.events.c.lead_id == "ok1")
        ).scalar()
    assert kept == {"ok1", "ok2"} and pages == 2
    assert pg_api.row("ok1").engagement == pg_api.reference("ok1").engagement


def test_a_message_id_belongs_to_the_first_call_that_gives_it_even_an_anonymous_one(
    pg_api: Api,
) -> None:
    """A messageId given by an anonymous visitor's call and again by a later call naming its
    lead: as one after the other, the first call stores it and the later one counts it as a
    duplicate, though the group stores the named calls' events before the anonymous ones'."""
    template = [
        [page(None, "/pricing", anonymousId="~a", messageId="~m")],
        [page("~u", "/pricing", messageId="~m"), page("~u", "/")],
    ]
    at = pg_api.service.now_us()
    alone = _write(pg_api, _named(template, "s-"), at, together=False)
    together = _write(pg_api, _named(template, "g-"), at, together=True)
    assert alone == [(1, 0, 0, 0), (1, 1, 1, 0)]
    assert together == alone
    assert _leads(pg_api, "g-") == _leads(pg_api, "s-")


def test_written_apart_a_message_id_still_belongs_to_the_anonymous_call_before(
    pg_api: Api,
) -> None:
    """The same, when the group's events INSERT is refused (a message of a third call) and the
    group is written again with each call's statements apart."""
    with pg_api.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test'; END $$; "
            "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW "
            "WHEN (NEW.message_id = 'refused') EXECUTE FUNCTION refuse()"
        )
    template = [
        [page(None, "/pricing", anonymousId="~a", messageId="~m")],
        [page("~u", "/pricing", messageId="~m"), page("~u", "/")],
    ]
    at = pg_api.service.now_us()
    alone = _write(pg_api, _named(template, "s-"), at, together=False)
    svc = pg_api.service
    requests = [*_named(template, "g-"), [page("g-v", "/", messageId="refused")]]
    calls = [Call(IngestCall([check_message(m, at) for m in msgs], at)) for msgs in requests]
    svc._write_ingests(calls)
    assert "refused by the test" in str(calls[2].error)
    got = []
    for c in calls[:2]:
        assert c.error is None and c.result is not None
        r = c.result
        got.append((r.accepted, r.duplicates, len(r.leads), len(r.new_mqls)))
    assert got == alone == [(1, 0, 0, 0), (1, 1, 1, 0)]
    assert _leads(pg_api, "g-") == _leads(pg_api, "s-")
