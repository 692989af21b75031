"""Webhooks that go wrong: URLs that cannot be sent to, removed webhooks, notifications that used
up their retries, redirects. The real deliverer on SQLite and PostgreSQL, posting to real local
HTTP receivers."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.errors import ConfigError
from leadscore.service.common import now_us
from leadscore.service.webhook_urls import check_url
from leadscore.service.webhooks import (
    MAX_ATTEMPTS,
    REMOVED,
    Deliverer,
    add_webhook,
    list_webhooks,
    remove_webhook,
    retry_failed,
)
from leadscore.store import schema as t
from tests.service_helpers import LEADSCORE, Api, Receiver, identify, track

SECRET = "whsec_test-secret"


def _qualify(api: Api, lead: str = "u1") -> None:
    api.ok(identify(lead, {"title": "VP Sales"}), track(lead, "Demo Requested"))
    assert api.row(lead).stage == "mql"


def _outbox(api: Api) -> dict[int, Any]:
    with api.engine.connect() as conn:
        return {r.webhook_id: r for r in conn.execute(sa.select(t.outbox)).all()}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1/", "not a valid URL"),
        ("http://example.com/a\r\nX-Injected: 1", "control characters"),
        ("http://example.com/a b", "control characters"),
        ("https://user:pass@example.com/hook", "user name or password"),
        ("https://token@example.com/hook", "user name or password"),
        ("ftp://example.com/hook", "not an http(s) URL"),
        ("javascript:alert(1)", "not an http(s) URL"),
        ("example.com/hook", "not an http(s) URL"),
        ("http:///hook", "no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://exämple.com/", "ASCII"),
        ("http://example.com/" + "a" * 3000, "limit"),
    ],
)
def test_a_webhook_url_that_cannot_be_sent_to_is_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_url(url)
    assert words in str(e.value)
    assert "pass@" not in str(e.value) and "token@" not in str(e.value)


def test_upper_case_schemes_are_taken_and_stored_in_lower_case(api: Api) -> None:
    hook = add_webhook(api.engine, "HTTPS://CRM.Example:8443/Hooks/MQL?x=1", ["lead.mql"])
    assert hook["url"] == "https://crm.example:8443/Hooks/MQL?x=1"
    assert check_url("Http://[::1]:8080/a") == "http://[::1]:8080/a"
    with pytest.raises(ConfigError):
        add_webhook(api.engine, "http://[::1/", ["lead.mql"])
    assert [h["url"] for h in list_webhooks(api.engine)] == [hook["url"]]


def test_the_cli_refuses_a_bad_url_with_an_error_not_a_traceback(tmp_path: Any) -> None:
    import subprocess

    db = f"sqlite:///{tmp_path / 'l.db'}"
    proc = subprocess.run(
        [*LEADSCORE, "webhooks", "add", "http://[::1/", "--database-url", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Error:" in proc.stderr and "not a valid URL" in proc.stderr


def test_a_stored_url_that_cannot_be_sent_to_fails_alone(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL stored before URLs were checked: its delivery fails (once, logged), and every other
    webhook's notifications are sent, now and later."""
    with api.engine.begin() as conn:
        bad_id = conn.execute(
            sa.insert(t.webhooks)
            .values(url="http://[::1/", events="lead.mql", secret=SECRET, created_at_us=now_us())
            .returning(t.webhooks.c.id)
        ).scalar_one()
    with Receiver() as rx:
        good = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api, "u1")
        deliverer = Deliverer(api.engine)
        try:
            with caplog.at_level(logging.WARNING, logger="leadscore.webhooks"):
                assert deliverer.deliver_due() == 2
                _qualify(api, "u2")
                assert deliverer.deliver_due() == 2
                assert deliverer.deliver_due() == 0  # the bad ones are not retried
        finally:
            deliverer.stop()
        assert len(rx.delivered()) == 2
    with api.engine.connect() as conn:
        rows = conn.execute(sa.select(t.outbox).where(t.outbox.c.webhook_id == bad_id)).all()
    assert len(rows) == 2
    for row in rows:
        assert row.attempts == 1 and row.failed_at_us is not None
        assert "cannot be sent to" in row.last_error
    stats = {h["id"]: h for h in list_webhooks(api.engine)}
    assert stats[good["id"]]["delivered"] == 2 and stats[bad_id]["failed"] == 2
    assert any(f"to webhook {bad_id} " in r.getMessage() for r in caplog.records)


def test_a_removed_webhook_leaves_nothing_pending(api: Api) -> None:
    with Receiver() as rx:
        hook = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api)
        assert list_webhooks(api.engine)[0]["pending"] == 1
        assert remove_webhook(api.engine, hook["id"])
        [listed] = list_webhooks(api.engine)
        assert (listed["pending"], listed["failed"]) == (0, 1)
        assert _outbox(api)[hook["id"]].last_error == REMOVED
        # a notification written by an ingest that committed just after the removal
        with api.engine.begin() as conn:
            conn.execute(
                sa.insert(t.outbox).values(
                    webhook_id=hook["id"],
                    event="lead.mql",
                    payload="{}",
                    created_at_us=now_us(),
                    next_attempt_us=0,
                    attempts=0,
                )
            )
        assert list_webhooks(api.engine)[0]["pending"] == 1
        deliverer = Deliverer(api.engine, poll_s=0.05)
        deliverer.start()  # ends what a removed webhook still has pending
        deliverer.stop()
        assert list_webhooks(api.engine)[0]["pending"] == 0
        assert rx.requests == []
    with pytest.raises(ConfigError, match="removed"):
        retry_failed(api.engine, hook["id"])


def test_notifications_that_used_up_their_retries_are_sent_again_on_request(api: Api) -> None:
    with Receiver(statuses=[500] * MAX_ATTEMPTS) as rx, Receiver() as other:
        hook = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        add_webhook(api.engine, other.url, ["lead.mql"], secret=SECRET)
        _qualify(api)
        deliverer = Deliverer(api.engine)
        try:
            for _ in range(MAX_ATTEMPTS + 1):
                with api.engine.begin() as conn:
                    conn.execute(sa.update(t.outbox).values(next_attempt_us=0))
                deliverer.deliver_due()
            assert _outbox(api)[hook["id"]].failed_at_us is not None
            assert list_webhooks(api.engine)[0]["failed"] == 1
            from tests.service_helpers import cli

            out = cli("webhooks", "retry", "--database-url", api.url)
            assert out == ""  # the count goes to standard error, like every other message
            row = _outbox(api)[hook["id"]]
            assert row.failed_at_us is None and row.attempts == 0
            assert deliverer.deliver_due() == 1  # only the failed one: the other was delivered
        finally:
            deliverer.stop()
        row = _outbox(api)[hook["id"]]
        assert row.delivered_at_us is not None and row.attempts == 1
        assert len(rx.requests) == MAX_ATTEMPTS + 1 and len(other.requests) == 1
        assert retry_failed(api.engine) == 0
    with pytest.raises(ConfigError, match="no webhook 999"):
        retry_failed(api.engine, 999)


def test_a_redirect_to_another_host_is_not_followed(api: Api) -> None:
    with Receiver() as elsewhere:

        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(307)
                self.send_header("Location", elsewhere.url.replace("127.0.0.1", "localhost"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            hook = add_webhook(api.engine, url, ["lead.mql"], secret=SECRET)
            _qualify(api)
            deliverer = Deliverer(api.engine)
            try:
                assert deliverer.deliver_due() == 1
            finally:
                deliverer.stop()
        finally:
            server.shutdown()
            server.server_close()
        assert elsewhere.requests == []
    row = _outbox(api)[hook["id"]]
    assert row.delivered_at_us is None and row.failed_at_us is None and row.attempts == 1
    assert "HTTP 307" in row.last_error and "not followed" in row.last_error


def test_a_receiver_that_trickles_its_answer_holds_nothing(api: Api) -> None:
    """The status decides: a 200 whose body would take days to arrive is a delivery now, and
    the turn goes on (the body is never read)."""
    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            self.wfile.flush()
            while not stop.wait(0.2):
                try:
                    self.wfile.write(b".")
                    self.wfile.flush()
                except OSError:
                    return

        def log_message(self, *_a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        hook = add_webhook(api.engine, url, ["lead.mql"], secret=SECRET)
        _qualify(api, "u1")
        _qualify(api, "u2")
        deliverer = Deliverer(api.engine, poll_s=0.05, per_receiver=1)
        deliverer.start()
        try:
            from tests.service_helpers import wait_for

            wait_for(
                lambda: list_webhooks(api.engine)[0]["delivered"] == 2,
                "both notifications to count as delivered",
            )
        finally:
            stop.set()
            deliverer.stop()
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    row = _outbox(api)[hook["id"]]
    assert row.attempts == 1 and row.last_error is None


def test_no_webhook_url_secret_reaches_the_log(tmp_path: Any) -> None:
    """A receiver may keep its own secret in its URL (a token in the query string, or a user name
    and password stored before URLs were checked): a real `leadscore serve` logs every failed
    delivery as scheme://host[:port]/path, and stores the error the same way."""
    import json
    from http.server import BaseHTTPRequestHandler as Handler

    from tests.service_helpers import MODEL, Server, basic, cli, wait_for

    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    key = cli("keys", "create", "--name", "web", "--database-url", db).strip()

    class Redirect(Handler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(302)
            self.send_header("Location", "http://other.example/cb?sig=SECRET-LOCATION")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_a: Any) -> None:
            pass

    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirect.serve_forever, daemon=True).start()
    port = redirect.server_address[1]
    log = tmp_path / "serve.log"
    server = Server(db, model, log, "--log-format", "json")
    with Receiver(statuses=[500] * 5) as rx:
        # taken by `webhooks add`: the query string is the receiver's business
        for url in (f"{rx.url}?token=SECRET-QUERY", f"http://127.0.0.1:{port}/r?k=SECRET-REDIR"):
            cli("webhooks", "add", url, "--events", "lead.mql", "--database-url", db)
        engine = sa.create_engine(db)
        with engine.begin() as conn:  # stored before URLs were checked
            for url in (
                "http://user:SECRET-PASSWORD@127.0.0.1:1/h?token=SECRET-Q2",
                "http://[::1/?token=SECRET-Q3",
            ):
                conn.execute(
                    sa.insert(t.webhooks).values(
                        url=url, events="lead.mql", secret=SECRET, created_at_us=now_us()
                    )
                )
        server.start()
        try:
            batch = {
                "batch": [identify("u1", {"title": "VP Sales"}), track("u1", "Demo Requested")]
            }
            import httpx

            assert httpx.post(server.base + "/v1/batch", json=batch, headers=basic(key)).is_success

            def all_tried() -> bool:
                with engine.connect() as conn:
                    tried = conn.execute(
                        sa.select(sa.func.count()).where(t.outbox.c.attempts > 0)
                    ).scalar_one()
                return tried == 4

            wait_for(all_tried, "every webhook to be tried once")
        finally:
            server.stop()
            redirect.shutdown()
            redirect.server_close()
    with engine.connect() as conn:
        errors = [r.error or "" for r in conn.execute(sa.select(t.deliveries)).all()]
    engine.dispose()
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    warned = [r["message"] for r in lines if r["logger"] == "leadscore.webhooks"]
    assert len(warned) >= 4, text
    for shown in (
        rx.url + ")",  # the path stays: which receiver it was
        f"http://127.0.0.1:{port}/r)",
        "http://127.0.0.1:1/h)",
        "http://other.example/cb",
    ):
        assert shown in text, (shown, text)
    assert "SECRET" not in text, text
    assert len(errors) == 4 and not any("SECRET" in e for e in errors), errors


def test_an_erasure_while_its_notification_is_being_posted_is_no_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """The person is erased while the deliverer posts their notification: the outcome cannot be
    recorded (the row is gone), which is not a failed turn — no error, no traceback — and the
    other notification of the same turn is recorded as delivered."""
    hold = threading.Event()
    with Receiver(hold=hold) as rx:
        hook = add_webhook(api.engine, rx.url, ["lead.mql"], secret=SECRET)
        _qualify(api, "gone")
        _qualify(api, "stays")
        deliverer = Deliverer(api.engine)
        try:
            with caplog.at_level(logging.WARNING, logger="leadscore.webhooks"):
                posting = threading.Thread(target=deliverer.deliver_due)
                posting.start()
                assert rx.arrived.wait(10)
                resp = api.client.delete(
                    "/api/leads/gone", headers={"Authorization": f"Bearer {api.admin_token}"}
                )
                assert resp.status_code == 200, resp.text
                hold.set()
                posting.join(30)
                assert not posting.is_alive()
        finally:
            deliverer.stop()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
    rows = list(_outbox_rows(api, hook["id"]))
    assert len(rows) == 1 and rows[0].delivered_at_us is not None  # "stays"'s notification
    assert "stays" in rows[0].payload and "gone" not in rows[0].payload
    with api.engine.connect() as conn:
        attempts = conn.execute(sa.select(t.deliveries)).all()
    assert [a.outbox_id for a in attempts] == [rows[0].id]


def _outbox_rows(api: Api, hook_id: int) -> list[Any]:
    with api.engine.connect() as conn:
        return list(conn.execute(sa.select(t.outbox).where(t.outbox.c.webhook_id == hook_id)))
