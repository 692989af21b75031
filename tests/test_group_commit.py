"""Group commit: requests that wait for SQLite's one writer are written in one transaction (those
queued while a transaction is written join it before its commit), and each is answered only
once that transaction has committed; one bad request fails alone."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.service.facade import Service
from leadscore.service.group_commit import Call, GroupCommit
from leadscore.service.messages import check_message
from leadscore.service.webhooks import add_webhook
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.handoff_helpers import ISSUE_EXAMPLE
from tests.handoff_service_helpers import TUESDAY_10_NY, to_us
from tests.service_helpers import (
    MODEL,
    assert_matches,
    from_us,
    identify,
    iso,
    lead_row,
    page,
    python_score,
    track,
)


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------- the mechanism alone


def test_calls_queued_behind_the_writer_are_written_as_one_group() -> None:
    gate = threading.Event()
    groups: list[list[str]] = []

    def write(calls: list[Call[str, str]]) -> None:
        groups.append([c.work for c in calls])
        if c := next((c for c in calls if c.work == "first"), None):
            gate.wait(10)
            c.result = "FIRST"
        for c in calls:
            if c.work == "bad":
                c.error = ValueError("bad call")
            elif c.result is None:
                c.result = c.work.upper()

    gc: GroupCommit[str, str] = GroupCommit(write)
    out: dict[str, Any] = {}

    def submit(work: str) -> None:
        try:
            out[work] = gc.submit(work)
        except ValueError as e:
            out[work] = e

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    _wait(lambda: groups, "the first writer")
    others = [threading.Thread(target=submit, args=(w,)) for w in ("a", "bad", "b")]
    for th in others:
        th.start()
    _wait(lambda: gc.pending() == 3, "three queued calls")
    assert out == {}  # nobody is answered while the writer holds the first call
    gate.set()
    for th in [first, *others]:
        th.join(10)
    assert groups[0] == ["first"]
    assert sorted(groups[1]) == ["a", "b", "bad"]  # the three waiting calls: one group
    assert (out["first"], out["a"], out["b"]) == ("FIRST", "A", "B")
    assert isinstance(out["bad"], ValueError)  # its own error, and only its own
    assert (gc.groups, gc.calls) == (2, 4)


def test_a_writer_takes_the_calls_queued_while_it_wrote_before_its_commit() -> None:
    gate = threading.Event()
    writes: list[list[str]] = []
    gc: GroupCommit[str, str]

    def write(calls: list[Call[str, str]]) -> None:
        writes.append([c.work for c in calls])
        if calls[0].work == "first":
            gate.wait(10)
        for c in calls:
            c.result = c.work.upper()
        while more := gc.join(calls):  # what queued meanwhile: into this transaction
            writes.append([c.work for c in more])
            for c in more:
                if c.work == "bad":
                    c.error = ValueError("bad call")
                else:
                    c.result = c.work.upper()

    gc = GroupCommit(write, max_calls=3)
    out: dict[str, Any] = {}

    def submit(work: str) -> None:
        try:
            out[work] = gc.submit(work)
        except ValueError as e:
            out[work] = e

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    _wait(lambda: writes, "the first writer")
    others = [threading.Thread(target=submit, args=(w,)) for w in ("a", "bad", "b")]
    for n, th in enumerate(others, 1):  # queued in this order
        th.start()
        _wait(lambda: gc.pending() == n, f"{n} queued")  # noqa: B023 - waited for at once
    gate.set()
    for th in [first, *others]:
        th.join(10)
    # the first transaction took two more (three calls at most); the last one its own
    assert writes == [["first"], ["a", "bad"], ["b"]]
    assert (out["first"], out["a"], out["b"]) == ("FIRST", "A", "B")
    assert isinstance(out["bad"], ValueError)
    assert (gc.groups, gc.calls) == (2, 4)
    assert gc.join([]) == []  # nothing waiting: nothing to take


def test_a_writer_that_fails_fails_every_call_of_its_group() -> None:
    def write(calls: list[Call[int, int]]) -> None:
        for c in calls:
            c.result = c.work
        raise OSError("the commit failed")

    gc: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(OSError, match="the commit failed"):
        gc.submit(1)
    assert gc.pending() == 0


# ---------------------------------------------------------------------- the service on SQLite


@pytest.fixture
def service(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    engine = open_engine(url)
    svc = Service(engine)
    svc.add_model(MODEL, "test")
    # a real refusal from the database for one message id: its whole request must fail alone
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.message_id = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    yield svc, tmp_path / "leadscore.db"
    engine.dispose()


def _checked(svc: Service, *msgs: dict[str, Any]) -> list[Any]:
    at = svc.now_us()
    return [(i, check_message(m, at)) for i, m in enumerate(msgs)]


def _stored(db: Path, ids: list[str]) -> int:
    """Committed rows only: read on a connection of its own."""
    with sqlite3.connect(db) as raw:
        marks = ",".join("?" * len(ids))
        q = f"SELECT count(*) FROM events WHERE message_id IN ({marks})"
        return int(raw.execute(q, ids).fetchone()[0])


def test_each_request_is_answered_after_its_rows_are_committed_and_a_bad_one_fails_alone(
    service: Any,
) -> None:
    svc, db = service
    requests = {
        "first": [identify("u1", {"email": "ann@acme.io"}), page("u1", "/pricing")],
        "a": [track("u2", "Webinar Attended"), page("u2", "/")],
        "bad": [page("u3", "/"), {**page("u3", "/docs"), "messageId": "refused"}],
        "b": [identify("u4", {"title": "VP Marketing"}), track("u4", "Demo Requested")],
    }
    ids = {name: [m["messageId"] for m in msgs] for name, msgs in requests.items()}
    seen_on_answer: dict[str, int] = {}

    def on_answer(name: str) -> None:
        # at the moment of the answer, another connection sees the request's rows
        seen_on_answer[name] = _stored(db, ids[name])

    def before_release(answers: dict[str, Any]) -> None:
        time.sleep(0.1)
        assert answers == {}  # nothing is answered before its commit

    answers = _queued_behind_a_blocked_writer(svc, db, requests, on_answer, before_release)

    # the three that queued while the first was written joined its transaction: one commit
    assert (svc._ingests.groups, svc._ingests.calls) == (1, 4)
    for name in ("first", "a", "b"):
        assert answers[name].accepted == 2, answers[name]
        assert seen_on_answer[name] == 2  # committed when answered
    assert isinstance(answers["bad"], sa.exc.IntegrityError)
    assert "refused by the test" in str(answers["bad"])
    assert seen_on_answer["bad"] == 0  # its good message is not stored either
    with svc.engine.connect() as conn:
        leads = set(conn.execute(sa.select(t.leads.c.lead_id)).scalars())
        u4 = conn.execute(sa.select(t.leads.c.stage).where(t.leads.c.lead_id == "u4")).scalar()
    assert leads == {"u1", "u2", "u4"}  # the bad request's lead was rolled back with it
    assert u4 == "mql"  # the demo request after it in the group was scored and qualified


def _queued_behind_a_blocked_writer(
    svc: Service,
    db: Path,
    requests: dict[str, list[dict[str, Any]]],
    on_answer: Callable[[str], None] = lambda name: None,
    before_release: Callable[[dict[str, Any]], None] = lambda answers: None,
) -> dict[str, Any]:
    """``requests`` sent one thread each while another connection holds SQLite's write lock:
    the first becomes the writer and waits at BEGIN, the others queue behind it, in order
    (``_one_group``), and ``before_release`` is given the answers so far. Each one's answer,
    or its error; ``on_answer(name)`` runs on the request's thread as soon as it is answered."""
    answers: dict[str, Any] = {}

    def send(name: str) -> None:
        try:
            answers[name] = svc.ingest(_checked(svc, *requests[name]))
        except Exception as e:  # the test looks at which error
            answers[name] = e
        on_answer(name)

    sends = [lambda name=name: send(name) for name in requests]
    _one_group(svc, db, sends, lambda: before_release(answers))
    return answers


def _one_group(
    svc: Service,
    db: Path,
    sends: list[Callable[[], None]],
    before_release: Callable[[], None] = lambda: None,
) -> None:
    """Each of ``sends`` on a thread of its own while another connection holds SQLite's write
    lock: the first becomes the writer and waits at BEGIN, the others queue behind it, in
    order, ``before_release`` runs, and the lock is let go. Returns once every thread is done."""
    blocker = sqlite3.connect(db, isolation_level=None, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    threads = [threading.Thread(target=f) for f in sends]
    threads[0].start()
    _wait(lambda: svc._ingests.groups == 1, "the first writer")
    for queued, th in enumerate(threads[1:], 1):
        th.start()
        _wait(lambda: svc._ingests.pending() == queued, f"{queued} queued")  # noqa: B023
    try:
        before_release()
    finally:
        blocker.rollback()
        blocker.close()
        for th in threads:
            th.join(30)


def test_a_group_with_a_failing_request_is_written_again_without_it_and_no_savepoint(
    service: Any,
) -> None:
    """SQLite keeps a copy of every page a request in a savepoint changes, so no request is put
    in one: a request that fails on its own is answered with its error, the transaction rolled
    back, and the group (the writer's own request and those that joined it) written again
    without it, in a second transaction, which commits."""
    svc, db = service
    savepoints: list[str] = []
    begins: list[int] = []
    sa.event.listen(svc.engine, "savepoint", lambda conn, name: savepoints.append(name))
    sa.event.listen(svc.engine, "begin", lambda conn: begins.append(1))
    requests = {
        "first": [identify("u1", {"email": "ann@acme.io"}), page("u1", "/pricing")],
        "a": [track("u2", "Webinar Attended"), page("u2", "/")],
        "bad": [page("u3", "/"), {**page("u3", "/docs"), "messageId": "refused"}],
        "b": [identify("u4", {"title": "VP Marketing"}), track("u4", "Demo Requested")],
    }
    answers = _queued_behind_a_blocked_writer(svc, db, requests)

    assert (svc._ingests.groups, svc._ingests.calls) == (1, 4)  # one group, joined
    assert savepoints == []
    assert len(begins) == 2  # written, rolled back at the failure, written again
    for name in ("first", "a", "b"):
        assert answers[name].accepted == 2, answers[name]
    assert isinstance(answers["bad"], sa.exc.IntegrityError)
    every = [m["messageId"] for name in ("first", "a", "b") for m in requests[name]]
    assert _stored(db, every) == 6
    assert _stored(db, [m["messageId"] for m in requests["bad"]]) == 0


def test_a_request_written_well_once_and_refused_when_written_again_gets_its_error(
    service: Any,
) -> None:
    """A request that was written without error before another one failed, and fails when the
    group is written again (the database refuses it the second time it is asked): it is
    answered with that error, the group is written a third time without both, and only the
    others' events are stored, once each."""
    svc, db = service
    inserts = [0]

    def second_time(message_id: str) -> int:  # outside the transaction: not rolled back
        inserts[0] += 1
        return int(inserts[0] > 1)

    sa.event.listen(
        svc.engine,
        "connect",
        lambda dbapi, _record: dbapi.create_function("second_time", 1, second_time),
    )
    svc.engine.dispose()  # every connection from now on knows the function
    with svc.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_again BEFORE INSERT ON events "
            "WHEN NEW.message_id = 'again' AND second_time(NEW.message_id) "
            "BEGIN SELECT RAISE(ABORT, 'refused the second time'); END"
        )
    begins: list[int] = []
    sa.event.listen(svc.engine, "begin", lambda conn: begins.append(1))
    requests = {
        "first": [identify("u1", {"email": "ann@acme.io"}), page("u1", "/pricing")],
        "again": [page("u5", "/"), {**page("u5", "/docs"), "messageId": "again"}],
        "bad": [page("u3", "/"), {**page("u3", "/docs"), "messageId": "refused"}],
        "a": [track("u2", "Webinar Attended"), page("u2", "/")],
    }
    answers = _queued_behind_a_blocked_writer(svc, db, requests)

    assert inserts == [2]  # written well once, refused once
    assert len(begins) == 3  # refused "bad", then "again", then committed
    assert (svc._ingests.groups, svc._ingests.calls) == (1, 4)
    assert answers["first"].accepted == 2 and answers["a"].accepted == 2
    assert isinstance(answers["bad"], sa.exc.IntegrityError)
    assert "refused the second time" in str(answers["again"])
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT message_id, count(*) FROM events GROUP BY message_id").fetchall()
    assert dict(rows) == dict.fromkeys(
        [m["messageId"] for name in ("first", "a") for m in requests[name]], 1
    )


def test_a_writer_whose_own_request_fails_leaves_the_queued_ones_to_the_next_writer(
    service: Any,
) -> None:
    """The writer's own request fails before any other joined it: it is answered with its
    error, nothing is written again, and the requests queued behind it are written and
    committed by the next writer, together."""
    svc, db = service
    requests = {
        "bad": [page("u3", "/"), {**page("u3", "/docs"), "messageId": "refused"}],
        "a": [track("u2", "Webinar Attended"), page("u2", "/")],
        "b": [identify("u4", {"title": "VP Marketing"}), track("u4", "Demo Requested")],
    }
    answers = _queued_behind_a_blocked_writer(svc, db, requests)

    assert isinstance(answers["bad"], sa.exc.IntegrityError)
    assert answers["a"].accepted == 2 and answers["b"].accepted == 2
    assert (svc._ingests.groups, svc._ingests.calls) == (2, 3)
    assert _stored(db, [m["messageId"] for m in requests["a"] + requests["b"]]) == 4
    assert _stored(db, [m["messageId"] for m in requests["bad"]]) == 0


def test_several_senders_at_once_every_acknowledged_event_stored_once_and_scores_fresh(
    service: Any,
) -> None:
    """Four senders, each posting requests one after the other, some of them refused by the
    database (joined or not, whichever the moment gives): every acknowledged event is stored
    once, none of a refused request, and every lead's stored score is what a fresh scoring of
    its stored events gives."""
    svc, db = service
    senders, each = 4, 12
    sent: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for k in range(senders):
        for j in range(each):
            lead = f"u{(k * each + j) % 10}"
            msgs = [
                identify(lead, {"title": "VP Marketing", "email": f"{lead}@acme.io"}),
                page(lead, "/pricing"),
                track(lead, ["Webinar Attended", "Email Opened", "Demo Requested"][j % 3]),
            ]
            if j % 5 == 4:
                msgs.append({**page(lead, "/docs"), "messageId": "refused"})
            sent[k, j] = msgs
    answers: dict[tuple[int, int], Any] = {}

    def sender(k: int) -> None:
        for j in range(each):
            try:
                answers[k, j] = svc.ingest(_checked(svc, *sent[k, j]))
            except Exception as e:  # the test looks at which error
                answers[k, j] = e

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)

    acknowledged = [m["messageId"] for key, msgs in sent.items() for m in msgs if key[1] % 5 != 4]
    refused = [m["messageId"] for key, msgs in sent.items() for m in msgs if key[1] % 5 == 4]
    for key, answer in answers.items():
        if key[1] % 5 == 4:
            assert isinstance(answer, sa.exc.IntegrityError), (key, answer)
        else:
            assert answer.accepted == 3, (key, answer)
    assert len(answers) == senders * each
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT message_id, count(*) FROM events GROUP BY message_id").fetchall()
    assert dict(rows) == dict.fromkeys(acknowledged, 1)
    assert _stored(db, refused) == 0
    model = svc.active.model
    for lead in {f"u{i}" for i in range(10)}:
        row = lead_row(svc.engine, lead)
        assert_matches(row, python_score(svc.engine, model, lead, row.scored_at_us))


class _Fixed:
    """A clock that stands still: two services given the same requests see the same times."""

    def __init__(self, us: int) -> None:
        self.us = us

    def now_us(self) -> int:
        return self.us


_LEADS = (
    "SELECT lead_id, traits, stage, fit, engagement, score, grade, mql, fast_track, rule_sums, "
    "scored_at_us, rescore_at_us, model_version, mql_at_us, mql_reason, owner "
    "FROM leads ORDER BY lead_id"
)
_HISTORY = "SELECT lead_id, stage, at_us, reason FROM stage_history ORDER BY lead_id, at_us, id"
_EVENTS = "SELECT message_id, lead_id, type, event, ts_us FROM events ORDER BY id"


def _state(svc: Service, queries: tuple[str, ...]) -> tuple[list[Any], ...]:
    with svc.engine.connect() as conn:
        return tuple(conn.exec_driver_sql(q).all() for q in queries)


def _apart_and_joined(
    folder: Path,
    now: int,
    requests: list[list[dict[str, Any]]],
    setup: Callable[[Service], None] | None = None,
    queries: tuple[str, ...] = (_LEADS, _HISTORY, _EVENTS),
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The same requests written by two services at the same (standing) time: one transaction
    each, and all but the first joining the first's transaction (queued, in order, while it
    waited for SQLite's write lock). Each one's answers and stored state (``queries``);
    ``setup``: what each service has before the requests (routing, webhooks)."""
    services = []
    for name in ("apart", "joined"):
        engine = open_engine(f"sqlite:///{folder / name}.db")
        svc = Service(engine, clock=_Fixed(now))
        svc.add_model(MODEL, "test")
        if setup is not None:
            setup(svc)
        services.append(svc)
    apart, joined = services
    n = len(requests)
    answers: dict[str, list[Any]] = {"apart": [None] * n, "joined": [None] * n}

    def send(svc: Service, side: str, k: int) -> None:
        try:
            r = svc.ingest(_checked(svc, *requests[k]))
            answers[side][k] = (r.accepted, r.duplicates, r.leads, r.new_mqls)
        except Exception as e:  # compared as the error it was
            answers[side][k] = repr(e)

    try:
        for k in range(n):
            send(apart, "apart", k)
        assert (apart._ingests.groups, apart._ingests.calls) == (n, n)

        _one_group(
            joined, folder / "joined.db", [lambda k=k: send(joined, "joined", k) for k in range(n)]
        )
        assert (joined._ingests.groups, joined._ingests.calls) == (1, n)
        return (
            (answers["apart"], *_state(apart, queries)),
            (answers["joined"], *_state(joined, queries)),
        )
    finally:
        for svc in services:
            svc.engine.dispose()


def test_requests_that_joined_a_transaction_store_what_they_store_one_after_the_other(
    tmp_path: Path,
) -> None:
    """The same requests, written one transaction each, and all but the first joining the
    first's transaction: the same answers, leads, scores to the last bit, stage history and
    events."""
    now = time.time_ns() // 1000
    at = [iso(from_us(now - k * 3_600_000_000)) for k in range(6)]
    requests = [
        [identify("u1", {"email": "ann@acme.io", "title": "VP Marketing"}, timestamp=at[5])],
        [page("u1", "/pricing", timestamp=at[4]), track("u2", "Webinar Attended")],
        [track("u1", "Demo Requested", timestamp=at[3]), identify("u2", {"title": "CTO"})],
        [page("u2", "/docs"), page("u3", "/", timestamp=at[2]), page("u1", "/docs")],
        [track("u3", "Email Opened", timestamp=at[1]), track("u2", "Demo Requested")],
    ]
    want, got = _apart_and_joined(tmp_path, now, requests)
    assert got == want
    assert any(row.stage == "mql" for row in want[1])  # the scores did something


_MESSAGE = st.tuples(
    st.sampled_from(["identify", "track", "page", "again"]),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["Demo Requested", "Webinar Attended", "Email Opened", "Pricing Viewed"]),
    st.sampled_from(["/pricing", "/docs", "/"]),
    st.sampled_from(
        [{}, {"email": "ann@acme.io"}, {"title": "VP Marketing"}, {"email": "bo@gmail.com"}]
    ),
    st.none() | st.integers(0, 200 * 24),  # hours before now, or no time (stamped on receipt)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_MESSAGE, min_size=1, max_size=4), min_size=2, max_size=5))
def test_any_requests_joined_store_what_they_store_apart(drawn: list[list[Any]]) -> None:
    """Random requests of identifies, tracks, pages and messages sent again (a duplicate of an
    earlier one, counted once), some stamped up to 200 days back: joined or apart, the same
    answers and stored state to the last bit."""
    now = time.time_ns() // 1000
    sent: list[dict[str, Any]] = []
    requests = []
    for request in drawn:
        msgs = []
        for kind, user, event, path, traits, hours in request:
            when = {} if hours is None else {"timestamp": iso(from_us(now - hours * 3_600_000_000))}
            if kind == "again" and sent:
                m = sent[len(sent) // 2]
            elif kind == "identify":
                m = identify(user, traits, **when)
            elif kind == "track":
                m = track(user, event, **when)
            else:
                m = page(user, path, **when)
            sent.append(m)
            msgs.append(m)
        requests.append(msgs)
    with tempfile.TemporaryDirectory() as folder:
        want, got = _apart_and_joined(Path(folder), now, requests)
    assert got == want


# ---------------------------------------------------------------------- the handoff, joined

_HANDOFF = (
    "SELECT lead_id, owner, team, assigned_at_us FROM leads ORDER BY lead_id",
    "SELECT lead_id, owner, team, rule, kind, at_us FROM assignments ORDER BY id",
    "SELECT * FROM round_robin ORDER BY team",
    "SELECT lead_id, owner, team, sla_name, sla_due_at_us FROM mql_episodes ORDER BY id",
    "SELECT webhook_id, event, payload FROM outbox ORDER BY id",
    "SELECT anonymous_id, lead_id FROM identities ORDER BY anonymous_id",
    _HISTORY,
    _EVENTS,
)


def _routed(svc: Service) -> None:
    """The issue's routing (round robin over two reps), both webhooks' events subscribed, and
    a refusal from the database for the MQL episode of one lead (its request's handoff fails)."""
    svc.add_routing(ISSUE_EXAMPLE, "test", "routing.yaml")
    add_webhook(svc.engine, "http://127.0.0.1:9/hooks", ["lead.mql", "lead.assigned"])
    with svc.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON mql_episodes WHEN NEW.lead_id = 'u5' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )


def test_joined_requests_route_link_and_notify_as_apart_and_one_failing_in_its_handoff(
    tmp_path: Path,
) -> None:
    """Joined requests making MQLs routed round robin, with webhooks, an anonymous id linked to
    a lead, and one request whose handoff the database refuses (rolled back alone: the round
    robin goes on from where the request before it left it, and a messageId it gave is new to
    a later request): the same answers, owners, assignments, round robin, episodes, outbox
    rows, links, history and events as the same requests written one transaction each."""
    big = {"company": {"employees": 5000}, "country": "US", "title": "VP Marketing"}

    def named(user: str) -> dict[str, Any]:
        return identify(user, {**big, "email": f"{user}@{user}corp.com"})

    visit = page(None, "/pricing", anonymousId="a1")
    again = track("u3", "Webinar Attended")
    requests = [
        [named("u1"), track("u1", "Demo Requested")],
        [visit, named("u2"), track("u2", "Demo Requested")],
        [named("u5"), track("u5", "Demo Requested"), again],  # its handoff fails
        [{**named("u4"), "anonymousId": "a1"}, track("u4", "Demo Requested")],
        [named("u3"), again, track("u3", "Demo Requested"), track("u1", "Demo Requested")],
        [named("u6"), track("u6", "Demo Requested")],
    ]
    want, got = _apart_and_joined(
        tmp_path, to_us(TUESDAY_10_NY), requests, setup=_routed, queries=_HANDOFF
    )
    assert got == want
    answers, owners, assignments, round_robin = want[:4]
    assert "refused by the test" in answers[2]  # the failing request, told its own error
    assert answers[4][:2] == (4, 0)  # the failed request's messageId was new to this one
    assert [a[0] for a in assignments] == ["u1", "u2", "u4", "u3", "u6"]
    assert [a[1] for a in assignments] == ["ann@acme.io", "raj@acme.io"] * 2 + ["ann@acme.io"]
    assert round_robin and owners  # the handoff did something
    assert want[6] == [("a1", "u4")]


# ---------------------------------------------------------------------- a commit that fails


def test_a_commit_that_fails_fails_the_requests_that_joined_it_too(tmp_path: Path) -> None:
    """The database refuses the commit itself (a foreign key checked at commit, broken by one
    joined request): the request that began the transaction and every one that joined it are
    told, none is stored, and the next request is written as usual."""
    db = tmp_path / "leadscore.db"
    engine = open_engine(f"sqlite:///{db}")
    try:
        svc = Service(engine)
        svc.add_model(MODEL, "test")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE trap (lead_id TEXT REFERENCES leads (lead_id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER at_commit AFTER INSERT ON events WHEN NEW.message_id = 'late' "
                "BEGIN INSERT INTO trap VALUES ('nobody'); END"
            )
        requests = {
            "first": [page("u1", "/pricing")],
            "a": [page("u2", "/")],
            "bad": [page("u3", "/", messageId="late")],
            "b": [page("u4", "/docs")],
        }
        answers = _queued_behind_a_blocked_writer(svc, db, requests)

        assert (svc._ingests.groups, svc._ingests.calls) == (1, 4)  # all in one transaction
        for name in requests:
            assert isinstance(answers[name], sa.exc.IntegrityError), (name, answers[name])
            assert "FOREIGN KEY" in str(answers[name])
        every = [m["messageId"] for msgs in requests.values() for m in msgs]
        assert _stored(db, every) == 0
        after = svc.ingest(_checked(svc, page("u5", "/")))
        assert after.accepted == 1
        with sqlite3.connect(db) as raw:
            assert raw.execute("SELECT lead_id FROM leads").fetchall() == [("u5",)]
    finally:
        engine.dispose()
