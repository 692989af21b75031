"""Group commit on PostgreSQL: requests that arrive while a process is writing are written by it
together, in one transaction, under the locks of all their leads taken at once; each is
answered only once that transaction has committed, with its own result, and a request that
fails on its own fails alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service import locks
from leadscore.service.messages import check_message
from leadscore.service.webhooks import add_webhook
from leadscore.store import schema as t
from tests.service_helpers import Api, ago, api_on, assert_matches, identify, page, track, wait_for


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    with api_on(pg_url) as a:
        # a real refusal from the database for one message id: its request must fail alone
        with a.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'refused by the test'; END $$; "
                "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW "
                "WHEN (NEW.message_id = 'refused') EXECUTE FUNCTION refuse()"
            )
        yield a


def _stored(api: Api, ids: list[str]) -> int:
    """Committed rows only: read on a connection of its own."""
    return api.count(t.events, t.events.c.message_id.in_(ids))


@contextmanager
def _queued_behind(
    api: Api, lead: str, send: Callable[[str], None], names: tuple[str, ...]
) -> Iterator[None]:
    """Another transaction holds ``lead``'s lock: request ``first`` (sent by ``send``) is written
    alone and waits for it, and ``names`` queue behind this process's writer meanwhile, in that
    order. Inside: the lock is still held; on leaving, it is released and every request answered."""
    svc = api.service
    threads: dict[str, threading.Thread] = {}

    def start(name: str) -> None:
        threads[name] = threading.Thread(target=send, args=(name,))
        threads[name].start()

    try:
        with api.engine.begin() as holder:
            locks.lock_leads(holder, [lead])
            before = svc._ingests.groups
            start("first")
            wait_for(lambda: svc._ingests.groups == before + 1, "the first writer")
            for n, name in enumerate(names, 1):
                start(name)
                wait_for(lambda n=n: svc._ingests.pending() == n, f"{n} queued requests")
            yield
    finally:
        for th in threads.values():
            th.join(60)


def test_requests_waiting_for_the_writer_are_one_group_each_with_its_own_result(
    pg_api: Api,
) -> None:
    svc = pg_api.service
    demo = track("u4", "Demo Requested", timestamp=ago(0.1))
    requests: dict[str, list[dict[str, Any]]] = {
        "first": [identify("u1", {"email": "ann@acme.io"}), page("u1", "/pricing")],
        # an anonymous visitor who then identifies: its events are stored under the locks
        "anon": [
            page(None, "/pricing", anonymousId="anon-2", timestamp=ago(0.3)),
            identify("u2", {"title": "VP Sales"}, anonymousId="anon-2", timestamp=ago(0.2)),
        ],
        "bad": [page("u3", "/"), {**page("u3", "/docs"), "messageId": "refused"}],
        "b": [identify("u4", {"title": "VP Marketing"}, timestamp=ago(0.2)), demo],
        # the same demo request again (a client's retry) and a lead of its own
        "c": [dict(demo), page("u5", "/", timestamp=ago(0.1)), page("u1", "/docs")],
        # the new lead u5 again: c scores it from its history, which must not hold d's event
        "d": [track("u5", "Webinar Attended", timestamp=ago(0.05))],
    }
    ids = {name: [m["messageId"] for m in msgs] for name, msgs in requests.items()}
    answers: dict[str, Any] = {}
    seen_on_answer: dict[str, int] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        msgs = [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        try:
            answers[name] = svc.ingest(msgs)
        except Exception as e:  # the test looks at which error
            answers[name] = e
        seen_on_answer[name] = _stored(pg_api, ids[name])

    # another transaction holds u1's lock: the first request's group waits for it, and the
    # others queue behind this process's writer meanwhile
    with _queued_behind(pg_api, "u1", send, ("anon", "bad", "b", "c", "d")):
        assert answers == {}  # nothing is answered before its commit

    # the five that waited: one group, written in one transaction
    assert (svc._ingests.groups, svc._ingests.calls) == (2, 6)
    assert answers["first"].accepted == 2 and seen_on_answer["first"] == 2
    assert (answers["anon"].accepted, answers["anon"].leads) == (2, ["u2"])
    assert (answers["b"].accepted, answers["b"].duplicates) == (2, 0)
    assert answers["b"].new_mqls == ["u4"]
    assert (answers["c"].accepted, answers["c"].duplicates) == (2, 1)  # the retried demo
    assert answers["c"].leads == ["u1", "u5"]  # a duplicate touches no lead
    for name in ("anon", "b"):
        assert seen_on_answer[name] == 2  # committed when answered
    assert seen_on_answer["c"] == 3  # its copy of the demo is b's row
    assert (answers["d"].accepted, answers["d"].leads) == (1, ["u5"])
    assert isinstance(answers["bad"], sa.exc.DBAPIError)
    assert "refused by the test" in str(answers["bad"])
    assert seen_on_answer["bad"] == 0  # its good message is not stored either
    with pg_api.engine.connect() as conn:
        leads = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
        anon = conn.execute(
            sa.select(t.events.c.lead_id).where(t.events.c.anonymous_id == "anon-2")
        ).scalars()
        assert set(anon) == {"u2"}  # the visit joined the lead it was linked to
    assert leads == {"u1", "u2", "u4", "u5"}  # the bad request's lead was not kept
    for lead in ("u1", "u2", "u4", "u5"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)
    assert pg_api.row("u4").stage == "mql"


#: another backend waiting for an advisory lock
_WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid <> %s"


def test_a_group_ended_by_a_deadlock_is_written_again_whole(pg_api: Api) -> None:
    """The group holds the lower of two leads and waits for the higher; another transaction
    holding the higher asks for the lower. PostgreSQL ends the group's transaction (it waited
    first, so its deadlock check runs first): the group is written again, every request of it,
    and each is answered once, with its events stored once."""
    svc, engine = pg_api.service, pg_api.engine
    with engine.connect() as conn:
        keys = conn.exec_driver_sql(
            "SELECT x FROM unnest(ARRAY['lead-1','lead-2','lead-3','lead-4','lead-5','lead-6']) "
            "AS x ORDER BY hashtextextended('lead:' || x, 0)"
        ).scalars()
        low, *_, high = list(keys)
    requests = {
        "first": [page("w", "/")],
        "both": [page(low, "/pricing"), page(high, "/pricing")],
        "other": [track("u9", "Webinar Attended")],
    }
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        answers[name] = svc.ingest(
            [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        )

    threads: dict[str, threading.Thread] = {}
    with engine.connect() as other, engine.connect() as holder, engine.connect() as look:
        other.exec_driver_sql("SET deadlock_timeout = '60s'")  # the group's check runs first
        other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        other.commit()
        holder.begin()
        locks.lock_leads(holder, ["w"])  # the first request's writer waits; two more queue
        threads["first"] = threading.Thread(target=send, args=("first",))
        threads["first"].start()
        wait_for(lambda: svc._ingests.groups == 1, "the first writer")
        for n, name in enumerate(("both", "other"), 1):
            threads[name] = threading.Thread(target=send, args=(name,))
            threads[name].start()
            wait_for(lambda n=n: svc._ingests.pending() == n, f"{n} queued requests")
        other.begin()
        locks.lock_leads(other, [high])
        holder.commit()  # the group of two starts, takes `low`, and waits for `high`

        wait_for(lambda: svc._ingests.groups == 2, "the group of two to start")

        def group_waits() -> bool:
            n = look.exec_driver_sql(_WAITING, (other_pid,)).scalar()
            look.rollback()
            return n == 1

        wait_for(group_waits, "the group to wait for the higher lead")
        # `low` is the group's: this waits until PostgreSQL ends the group's transaction
        locks.lock_leads(other, [low])
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
        assert look.exec_driver_sql(held, (other_pid,)).scalar() == 2  # the group let `low` go
        assert "both" not in answers and "other" not in answers  # the group was not answered
        other.commit()
    for th in threads.values():
        th.join(60)

    assert (svc._ingests.groups, svc._ingests.calls) == (2, 3)
    assert (answers["both"].accepted, answers["both"].leads) == (2, sorted([low, high]))
    assert (answers["other"].accepted, answers["other"].leads) == (1, ["u9"])
    ids = [m["messageId"] for name in ("both", "other") for m in requests[name]]
    assert pg_api.count(t.events, t.events.c.message_id.in_(ids)) == 3  # each stored once
    for lead in (low, high, "u9"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_call_failing_after_its_events_were_stored_leaves_none_of_them(pg_api: Api) -> None:
    """The group's events go in first, all at once; then a call fails on its own (the database
    refuses its MQL's history row): the group is written again without it. None of its events
    is kept, a later call's copy of one of its messages is that call's own event now, and every
    other call's answer, lead scores and MQL notification are as if the failed call never came."""
    svc, engine = pg_api.service, pg_api.engine
    add_webhook(engine, "https://example.com/hook", ["lead.mql"])
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_mql() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'history refused by the test'; END $$; "
            "CREATE TRIGGER refuse_mql BEFORE INSERT ON stage_history FOR EACH ROW "
            "WHEN (NEW.lead_id = 'doomed') EXECUTE FUNCTION refuse_mql()"
        )
    shared = page("u1", "/pricing", timestamp=ago(0.3))
    requests: dict[str, list[dict[str, Any]]] = {
        "first": [page("w", "/")],
        "a": [page("u1", "/docs", timestamp=ago(0.4))],
        # a new lead that becomes an MQL, and a page of u1, which "a" and "c" touch too
        "doomed": [
            identify("doomed", {"title": "VP Marketing"}, timestamp=ago(0.2)),
            track("doomed", "Demo Requested", timestamp=ago(0.1)),
            shared,
        ],
        # the same page of u1 (a client's retry), and an MQL of its own
        "c": [
            dict(shared),
            identify("u4", {"title": "VP Marketing"}, timestamp=ago(0.2)),
            track("u4", "Demo Requested", timestamp=ago(0.1)),
        ],
    }
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        msgs = [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        try:
            answers[name] = svc.ingest(msgs)
        except Exception as e:  # the test looks at which error
            answers[name] = e

    # the first writer waits for w's lock; the others queue behind it
    with _queued_behind(pg_api, "w", send, ("a", "doomed", "c")):
        pass

    assert (svc._ingests.groups, svc._ingests.calls) == (2, 4)  # a, doomed and c: one group
    assert isinstance(answers["doomed"], sa.exc.DBAPIError)
    assert "history refused by the test" in str(answers["doomed"])
    doomed_ids = [m["messageId"] for m in requests["doomed"][:2]]
    assert _stored(pg_api, doomed_ids) == 0
    assert (answers["a"].accepted, answers["a"].leads) == (1, ["u1"])
    # the copy of the doomed call's page is stored now, once, as c's own event
    assert (answers["c"].accepted, answers["c"].duplicates) == (3, 0)
    assert answers["c"].leads == ["u1", "u4"]
    assert (answers["c"].new_mqls, answers["c"].notified) == (["u4"], 1)
    assert _stored(pg_api, [shared["messageId"]]) == 1
    with engine.connect() as conn:
        leads = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
        notes = conn.execute(sa.select(t.outbox.c.payload).where(t.outbox.c.event == "lead.mql"))
        notified = [json.loads(p)["lead_id"] for p in notes.scalars()]
    assert leads == {"w", "u1", "u4"}  # the doomed lead was not kept
    assert notified == ["u4"]  # the doomed lead's MQL was not notified
    for lead in ("u1", "u4"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)
    assert pg_api.count(t.events, t.events.c.lead_id == "u1") == 2  # a's page and c's


def test_a_lead_touched_by_several_requests_of_a_group_is_written_once(pg_api: Api) -> None:
    """Three requests of one group touch u1, each after the one before it: each carries on from
    the score the one before it made (the group's copy of the lead, not a read of the row), the
    row is written once, after the last of them, and holds the score of all three."""
    svc, engine = pg_api.service, pg_api.engine
    pg_api.ok(
        identify("u1", {"title": "Engineer"}, timestamp=ago(1)), page("u1", "/", timestamp=ago(1))
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE lead_writes (lead_id text, tx bigint); "
            "CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO lead_writes VALUES (NEW.lead_id, txid_current()); RETURN NEW; END $$; "
            "CREATE TRIGGER log_write AFTER UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION log_write()"
        )
    requests: dict[str, list[dict[str, Any]]] = {
        "first": [page("w", "/")],
        "a": [page("u1", "/pricing", timestamp=ago(0.5)), page("u2", "/", timestamp=ago(0.5))],
        "b": [track("u1", "Webinar Attended", timestamp=ago(0.3))],
        "c": [page("u1", "/docs", timestamp=ago(0.1)), page("u3", "/", timestamp=ago(0.1))],
    }
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        answers[name] = svc.ingest(
            [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        )

    # the first writer waits for w's lock; the others queue behind it
    with _queued_behind(pg_api, "w", send, ("a", "b", "c")):
        pass

    assert (svc._ingests.groups, svc._ingests.calls) == (3, 5)  # a, b and c: one group
    assert [answers[x].leads for x in "abc"] == [["u1", "u2"], ["u1"], ["u1", "u3"]]
    assert all(answers[x].accepted == len(requests[x]) for x in "abc")
    with engine.connect() as conn:
        writes = conn.exec_driver_sql(
            "SELECT lead_id, count(*), count(DISTINCT tx) FROM lead_writes GROUP BY lead_id"
        ).all()
    # u1, u2 and u3 once each, in one transaction; w in the first one
    assert sorted(writes) == [("u1", 1, 1), ("u2", 1, 1), ("u3", 1, 1), ("w", 1, 1)]
    assert pg_api.count(t.events, t.events.c.lead_id == "u1") == 5
    for lead in ("u1", "u2", "u3"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_lone_request_refused_by_the_database_gets_its_error_and_stores_nothing(
    pg_api: Api,
) -> None:
    """A request written alone takes the group's path (its events, locks and leads in one round
    trip): refused there, it gets the database's error, and the next request is written."""
    svc = pg_api.service
    bad = [page("u7", "/"), {**page("u7", "/docs"), "messageId": "refused"}]
    at = svc.now_us()
    with pytest.raises(sa.exc.DBAPIError, match="refused by the test"):
        svc.ingest([(i, check_message(m, at)) for i, m in enumerate(bad)])
    assert _stored(pg_api, [m["messageId"] for m in bad]) == 0
    good = [page("u7", "/pricing"), track("u7", "Webinar Attended")]
    got = svc.ingest([(i, check_message(m, svc.now_us())) for i, m in enumerate(good)])
    assert (got.accepted, got.leads) == (2, ["u7"])
    assert_matches(pg_api.row("u7"), pg_api.reference("u7"), tol=0.01)


def _flights(text: str) -> list[list[str]]:
    """The statements a client sent (libpq's trace), by round trip: what it sent before it next
    read."""
    flights: list[list[str]] = []
    current: list[str] = []
    last = None
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        if fields[1] == "F":
            if last == "B" and current:
                flights.append(current)
                current = []
            if fields[3] in ("Query", "Parse"):
                current.append(" ".join(fields[4:]))
        last = fields[1]
    if current:
        flights.append(current)
    return flights


def test_a_groups_scores_and_its_commit_go_in_one_round_trip(pg_api: Api, tmp_path: Any) -> None:
    """The group's last statement, the UPDATE of all its leads' scores, is sent with the
    COMMIT; a lone request's last writes are too. Each request is answered once committed."""
    svc, engine = pg_api.service, pg_api.engine
    traces: list[Any] = []

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        dbapi.prepare_threshold = None  # every statement sent with its text
        traces.append((tmp_path / f"t{len(traces)}.txt").open("w"))
        dbapi.pgconn.trace(traces[-1].fileno())

    def checkin(dbapi: Any, _record: Any) -> None:
        dbapi.pgconn.untrace()

    requests: dict[str, list[dict[str, Any]]] = {
        "first": [page("w", "/")],
        "a": [page("u1", "/pricing"), page("u2", "/")],
        "b": [track("u1", "Webinar Attended"), page("u3", "/docs")],
    }
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        answers[name] = svc.ingest(
            [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        )

    sa.event.listen(engine, "checkout", checkout)
    sa.event.listen(engine, "checkin", checkin)
    try:
        with _queued_behind(pg_api, "w", send, ("a", "b")):
            pass
    finally:
        sa.event.remove(engine, "checkout", checkout)
        sa.event.remove(engine, "checkin", checkin)
        for f in traces:
            f.close()
    assert (svc._ingests.groups, svc._ingests.calls) == (2, 3)  # a and b: one group
    assert [answers[x].accepted for x in ("first", "a", "b")] == [1, 2, 2]
    writes = [
        flights
        for flights in (_flights(f_.read_text(errors="replace")) for f_ in tmp_path.iterdir())
        if any("INSERT INTO events" in s for f in flights for s in f)
    ]
    assert len(writes) == 2  # the first request's transaction, and the group's
    for flights in writes:
        last = flights[-1]
        assert any("UPDATE leads SET fit" in s for s in last), last
        assert "COMMIT" in last[-1], last
    for lead in ("w", "u1", "u2", "u3"):
        assert_matches(pg_api.row(lead), pg_api.reference(lead), tol=0.01)


def test_a_lone_request_whose_last_writes_are_refused_stores_nothing(pg_api: Api) -> None:
    """The COMMIT goes with a request's last writes; when the database refuses one of them it
    skips the COMMIT: the request gets the error, nothing of it is kept, and the connection
    serves the next request."""
    svc, engine = pg_api.service, pg_api.engine
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_score() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'score refused by the test'; END $$; "
            "CREATE TRIGGER refuse_score BEFORE UPDATE ON leads FOR EACH ROW "
            "WHEN (NEW.lead_id = 'u9' AND NEW.score IS DISTINCT FROM OLD.score) "
            "EXECUTE FUNCTION refuse_score()"
        )
    bad = [page("u9", "/pricing"), track("u9", "Webinar Attended")]
    for _ in range(3):  # on whichever pooled connection
        at = svc.now_us()
        with pytest.raises(sa.exc.DBAPIError, match="score refused by the test"):
            svc.ingest([(i, check_message(m, at)) for i, m in enumerate(bad)])
        assert _stored(pg_api, [m["messageId"] for m in bad]) == 0
        assert pg_api.count(t.leads, t.leads.c.lead_id == "u9") == 0
        good = [page("u8", "/pricing")]
        got = svc.ingest([(i, check_message(m, svc.now_us())) for i, m in enumerate(good)])
        assert (got.accepted, got.leads) == (1, ["u8"])
    assert pg_api.count(t.events, t.events.c.lead_id == "u8") == 3
    assert_matches(pg_api.row("u8"), pg_api.reference("u8"), tol=0.01)


def test_a_lone_request_whose_commit_is_refused_gets_the_error_and_stores_nothing(
    pg_api: Api,
) -> None:
    """The COMMIT sent with a request's last writes fails itself (a check the database runs at
    COMMIT): the request is told it failed, nothing of it is kept, and the connection, back
    in the pool, serves the next request."""
    svc = pg_api.service
    with pg_api.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'commit refused by the test'; END $$; "
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.message_id LIKE 'late%%') EXECUTE FUNCTION refuse_commit()"
        )
    for n in range(3):  # on whichever pooled connection
        bad = [page("u6", "/pricing"), {**page("u6", "/docs"), "messageId": f"late{n}"}]
        at = svc.now_us()
        with pytest.raises(sa.exc.DBAPIError, match="commit refused by the test"):
            svc.ingest([(i, check_message(m, at)) for i, m in enumerate(bad)])
        assert _stored(pg_api, [m["messageId"] for m in bad]) == 0
        assert pg_api.count(t.leads, t.leads.c.lead_id == "u6") == 0
        good = [page("u8", "/pricing")]
        got = svc.ingest([(i, check_message(m, svc.now_us())) for i, m in enumerate(good)])
        assert (got.accepted, got.leads) == (1, ["u8"])
    assert pg_api.count(t.events, t.events.c.lead_id == "u8") == 3


def test_requests_refused_midway_through_their_last_writes_leave_the_connection_working(
    pg_api: Api,
) -> None:
    """Again and again on one pooled connection, a new MQL's history row is refused: the
    statements after it in the same round trip (its notification, scores, COMMIT) are skipped,
    whichever of them the driver was preparing then; each such request gets its error and
    keeps nothing, and each next request's MQL is written whole and notified."""
    svc, engine = pg_api.service, pg_api.engine
    add_webhook(engine, "https://example.com/hook", ["lead.mql"])
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_mql() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'history refused by the test'; END $$; "
            "CREATE TRIGGER refuse_mql BEFORE INSERT ON stage_history FOR EACH ROW "
            "WHEN (NEW.lead_id LIKE 'doomed%%') EXECUTE FUNCTION refuse_mql()"
        )

    def mql(lead: str) -> list[dict[str, Any]]:
        return [
            identify(lead, {"title": "VP Marketing"}, timestamp=ago(0.2)),
            track(lead, "Demo Requested", timestamp=ago(0.1)),
        ]

    for n in range(12):
        at = svc.now_us()
        with pytest.raises(sa.exc.DBAPIError, match="history refused by the test"):
            svc.ingest([(i, check_message(m, at)) for i, m in enumerate(mql(f"doomed{n}"))])
        got = svc.ingest([(i, check_message(m, svc.now_us())) for i, m in enumerate(mql(f"ok{n}"))])
        assert (got.new_mqls, got.notified) == ([f"ok{n}"], 1)
    with engine.connect() as conn:
        leads = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
        notes = conn.execute(sa.select(t.outbox.c.payload).where(t.outbox.c.event == "lead.mql"))
        notified = sorted(json.loads(p)["lead_id"] for p in notes.scalars())
    assert leads == {f"ok{n}" for n in range(12)}
    assert notified == sorted(f"ok{n}" for n in range(12))
    assert pg_api.count(t.events, t.events.c.lead_id.like("doomed%")) == 0
    for n in (0, 11):
        assert pg_api.row(f"ok{n}").stage == "mql"


def test_a_group_whose_commit_is_refused_answers_no_request_as_stored(pg_api: Api) -> None:
    """The COMMIT sent with a group's scores fails itself (a check the database runs at
    COMMIT): no request of the group is answered as stored, none of their events is kept, and
    the next request is written."""
    svc = pg_api.service
    with pg_api.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'commit refused by the test'; END $$; "
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.message_id = 'late') EXECUTE FUNCTION refuse_commit()"
        )
    requests: dict[str, list[dict[str, Any]]] = {
        "first": [page("w", "/")],
        "a": [page("u1", "/pricing"), page("u2", "/")],
        "b": [track("u1", "Webinar Attended"), {**page("u3", "/docs"), "messageId": "late"}],
    }
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        at = svc.now_us()
        msgs = [(i, check_message(m, at)) for i, m in enumerate(requests[name])]
        try:
            answers[name] = svc.ingest(msgs)
        except Exception as e:  # the test looks at which error
            answers[name] = e

    with _queued_behind(pg_api, "w", send, ("a", "b")):
        pass
    assert (svc._ingests.groups, svc._ingests.calls) == (2, 3)  # a and b: one group
    assert answers["first"].accepted == 1
    for name in ("a", "b"):
        assert isinstance(answers[name], sa.exc.DBAPIError), answers[name]
        assert "commit refused by the test" in str(answers[name])
        assert _stored(pg_api, [m["messageId"] for m in requests[name]]) == 0
    assert pg_api.count(t.leads, t.leads.c.lead_id.in_(["u1", "u2", "u3"])) == 0
    got = svc.ingest([(0, check_message(page("u1", "/docs"), svc.now_us()))])
    assert (got.accepted, got.leads) == (1, ["u1"])
    assert_matches(pg_api.row("u1"), pg_api.reference("u1"), tol=0.01)


def test_a_webhook_added_while_a_request_waits_for_its_lead_is_notified_of_its_mql(
    pg_api: Api,
) -> None:
    """The webhooks a new MQL notifies are read with the leads, once their locks are granted:
    a webhook added while the request waits for its lead is notified."""
    svc, engine = pg_api.service, pg_api.engine
    msgs = [
        identify("u4", {"title": "VP Marketing"}, timestamp=ago(0.2)),
        track("u4", "Demo Requested", timestamp=ago(0.1)),
    ]
    answers: list[Any] = []

    def send() -> None:
        at = svc.now_us()
        answers.append(svc.ingest([(i, check_message(m, at)) for i, m in enumerate(msgs)]))

    writer = threading.Thread(target=send)
    with engine.connect() as holder, engine.connect() as look:
        holder.begin()
        locks.lock_leads(holder, ["u4"])
        writer.start()

        def waits() -> bool:
            n = look.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).scalar()
            look.rollback()
            return n == 1

        wait_for(waits, "the request to wait for its lead")
        hook = add_webhook(engine, "https://example.com/hook", ["lead.mql"])
        holder.commit()
    writer.join(60)
    assert (answers[0].new_mqls, answers[0].notified) == (["u4"], 1)
    with engine.connect() as conn:
        queued = conn.execute(
            sa.select(t.outbox.c.webhook_id).where(t.outbox.c.event == "lead.mql")
        ).scalars()
        assert list(queued) == [hook["id"]]
