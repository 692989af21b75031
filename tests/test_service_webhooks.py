"""The MQL handoff's durable outbox: signed deliveries, retries with backoff, a delivery log. The
real app and deliverer on SQLite and PostgreSQL, posting to a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import sqlalchemy as sa

from leadscore.service.webhooks import (
    MAX_ATTEMPTS,
    Deliverer,
    add_webhook,
    list_webhooks,
    remove_webhook,
)
from leadscore.store import schema as t
from tests.service_helpers import Api, Receiver, identify, track, verify_signature, wait_for

SECRET = "whsec_test-secret"


def _qualify(api: Api, lead: str = "u1") -> None:
    api.ok(
        identify(lead, {"title": "VP Sales", "email": f"{lead}@acme.io"}),
        track(lead, "Demo Requested"),
    )
    assert api.row(lead).stage == "mql"


def _outbox(api: Api) -> list:
    with api.engine.connect() as conn:
        return list(conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id)).all())


def _make_due(api: Api) -> None:
    """Skip the backoff wait: every pending row is due now."""
    with api.engine.begin() as conn:
        conn.execute(
            sa.update(t.outbox)
            .where(t.outbox.c.delivered_at_us.is_(None))
            .values(next_attempt_us=0)
        )


def test_a_failing_receiver_gets_the_notification_once_it_recovers(api: Api) -> None:
    with Receiver(statuses=[500, 503]) as rx:
        hook = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api)
        [row] = _outbox(api)
        assert row.webhook_id == hook["id"] and row.event == "lead.mql" and row.attempts == 0
        deliverer = Deliverer(api.engine)
        try:
            assert deliverer.deliver_due() == 1
            first = _outbox(api)[0]
            assert first.attempts == 1 and first.last_error == "HTTP 500"
            assert first.delivered_at_us is None
            assert first.next_attempt_us - _last_attempt(api) == 10_000_000  # backoff 10 s
            assert deliverer.deliver_due() == 0  # not due yet
            _make_due(api)
            assert deliverer.deliver_due() == 1
            second = _outbox(api)[0]
            assert second.attempts == 2 and second.last_error == "HTTP 503"
            assert second.next_attempt_us - _last_attempt(api) == 20_000_000  # doubled
            _make_due(api)
            assert deliverer.deliver_due() == 1
            _make_due(api)
            assert deliverer.deliver_due() == 0  # delivered: never sent again
        finally:
            deliverer.stop()
        done = _outbox(api)[0]
        assert done.attempts == 3 and done.delivered_at_us is not None and done.last_error is None
        with api.engine.connect() as conn:
            log = conn.execute(
                sa.select(t.deliveries.c.status_code, t.deliveries.c.error)
                .where(t.deliveries.c.outbox_id == done.id)
                .order_by(t.deliveries.c.id)
            ).all()
        assert [tuple(x) for x in log] == [(500, "HTTP 500"), (503, "HTTP 503"), (200, None)]
        assert [s for _, _, s in rx.requests] == [500, 503, 200]
        [(_, body)] = rx.delivered()
        ids = {h["X-Leadscore-Delivery"] for h, _, _ in rx.requests}
        assert ids == {str(done.id)}  # stable across retries: the receiver can de-duplicate
        for h, b, _ in rx.requests:
            verify_signature(SECRET, h, b)
            assert h["X-Leadscore-Event"] == "lead.mql" and h["Content-Type"] == "application/json"
        payload = json.loads(body)
        lead = api.lead("u1")
        assert payload["type"] == "lead.mql" and payload["lead_id"] == "u1"
        assert payload["mql_at"] == lead["mql_at"] and payload["reason"] == lead["mql_reason"]
        assert payload["model_version"] == 1
        assert payload["traits"] == {"title": "VP Sales", "email": "u1@acme.io"}
        assert payload["score"]["mql"] is True and payload["score"]["lead_id"] == "u1"
        assert list_webhooks(api.engine)[0] | {"created_at": None} == {
            "id": hook["id"],
            "url": rx.url,
            "events": ["lead.mql"],
            "active": True,
            "created_at": None,
            "delivered": 1,
            "pending": 0,
            "failed": 0,
        }


def test_a_receiver_that_never_answers_is_given_up_after_the_last_retry(api: Api) -> None:
    with Receiver(statuses=[500] * MAX_ATTEMPTS) as rx:
        add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api)
        deliverer = Deliverer(api.engine)
        try:
            for _ in range(MAX_ATTEMPTS + 2):
                _make_due(api)
                deliverer.deliver_due()
        finally:
            deliverer.stop()
        [row] = _outbox(api)
        assert row.attempts == MAX_ATTEMPTS and row.failed_at_us is not None
        assert len(rx.requests) == MAX_ATTEMPTS
        assert api.count(t.deliveries) == MAX_ATTEMPTS
        assert list_webhooks(api.engine)[0]["failed"] == 1


def test_an_unreachable_receiver_is_retried(api: Api) -> None:
    with Receiver() as rx:
        url = rx.url
    add_webhook(api.engine, url, ["lead.mql"], secret=SECRET)  # nobody listens there now
    _qualify(api)
    deliverer = Deliverer(api.engine, timeout_s=2)
    try:
        assert deliverer.deliver_due() == 1
    finally:
        deliverer.stop()
    [row] = _outbox(api)
    assert row.attempts == 1 and row.delivered_at_us is None and row.failed_at_us is None
    assert row.last_error and "Connect" in row.last_error
    assert list_webhooks(api.engine)[0]["pending"] == 1


def test_each_active_webhook_gets_one_notification_per_new_mql(api: Api) -> None:
    with Receiver() as a, Receiver() as b, Receiver() as gone:
        add_webhook(api.engine, a.url, ["lead.mql"], secret=SECRET)
        add_webhook(api.engine, b.url, ["lead.mql"], secret="whsec_other")
        removed = add_webhook(api.engine, gone.url, ["lead.mql"], secret=SECRET)
        assert remove_webhook(api.engine, removed["id"])
        _qualify(api, "u1")
        _qualify(api, "u2")
        # qualifying again (MQL is sticky) notifies nobody again
        api.ok(track("u1", "Demo Requested"))
        assert len(_outbox(api)) == 4
        deliverer = Deliverer(api.engine)
        try:
            assert deliverer.deliver_due() == 4
        finally:
            deliverer.stop()
        assert sorted(json.loads(x)["lead_id"] for _, x in a.delivered()) == ["u1", "u2"]
        assert sorted(json.loads(x)["lead_id"] for _, x in b.delivered()) == ["u1", "u2"]
        for h, body in b.delivered():
            verify_signature("whsec_other", h, body)
        assert gone.requests == []


def _last_attempt(api: Api) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(t.deliveries.c.at_us))).scalar_one())


def test_a_slow_receiver_does_not_hold_up_the_others(api: Api) -> None:
    """Each webhook has its own worker: while one receiver sits on its request, the other
    receives its notification; the slow one gets its own once it answers."""
    release = threading.Event()
    with Receiver(hold=release) as slow, Receiver() as fast:
        add_webhook(api.engine, slow.url, ["lead.mql"], secret=SECRET)
        add_webhook(api.engine, fast.url, ["lead.mql"], secret=SECRET)
        deliverer = Deliverer(api.engine)
        deliverer.start()
        try:
            _qualify(api)
            deliverer.wake()
            assert slow.arrived.wait(30), "the slow receiver was never called"
            wait_for(lambda: fast.delivered(), "the fast receiver's notification")
            assert slow.requests == []  # still answering the first one
            release.set()
            wait_for(lambda: slow.delivered(), "the slow receiver's notification")
        finally:
            release.set()
            deliverer.stop()
    assert [r.delivered_at_us is not None for r in _outbox(api)] == [True, True]


def test_every_failed_delivery_is_logged_with_its_webhook(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with Receiver() as rx:
        url = rx.url
    hook = add_webhook(api.engine, url, ["lead.mql"], secret=SECRET)  # nobody listens there now
    with Receiver(statuses=[500]) as rx:
        other = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api)
        deliverer = Deliverer(api.engine, timeout_s=2)
        try:
            with caplog.at_level(logging.WARNING, logger="leadscore.webhooks"):
                assert deliverer.deliver_due() == 2
        finally:
            deliverer.stop()
    rows = {r.webhook_id: r for r in _outbox(api)}
    messages = [r.getMessage() for r in caplog.records if r.name == "leadscore.webhooks"]
    for hook_id, what in ((hook["id"], "Connect"), (other["id"], "HTTP 500")):
        row = rows[hook_id]
        assert any(
            f"delivery {row.id} to webhook {hook_id} " in m and what in m for m in messages
        ), messages
