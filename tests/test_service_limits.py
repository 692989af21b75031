"""Load the service cannot be knocked over by: per-key rate limits (429 with Retry-After), the
official clients backing off and delivering everything, requests shed with 503 beyond the cap
in flight, and webhook receivers that are down, hanging or redirecting never holding up
ingest. The real app in process (its limiter on a clock the test moves) and a real
`leadscore serve` with the real Segment and RudderStack clients."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from leadscore.api import create_app
from leadscore.api.limits import Limits
from leadscore.errors import ConfigError
from leadscore.service.auth import create_key
from leadscore.service.ratelimit import Rate, Settings
from leadscore.service.webhook_urls import check_url
from leadscore.service.webhooks import Deliverer, add_webhook
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    LEADSCORE,
    MODEL,
    Receiver,
    Server,
    TestClient,
    assert_error,
    basic,
    bearer,
    cli,
    identify,
    page,
    table_count,
    track,
    wait_for,
)


class Clock:
    """The limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Limited:
    """The real app on SQLite with its own limits, two write keys and two read tokens."""

    def __init__(self, tmp: Path, settings: Settings) -> None:
        self.engine = open_engine(f"sqlite:///{tmp / 'leadscore.db'}")
        self.clock = Clock()
        self.app = create_app(self.engine, deliver=False, limits=Limits(settings, self.clock))
        self.app.state.service.add_model(MODEL, "test")
        self.keys = [create_key(self.engine, f"site-{i}", "ingest")[1] for i in range(2)]
        self.tokens = [create_key(self.engine, f"ops-{i}", "read")[1] for i in range(2)]
        self.client = TestClient(self.app)

    def send(self, key: str, *msgs: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            "/v1/batch",
            content=json.dumps({"batch": list(msgs)}).encode(),
            headers={"Content-Type": "application/json", **basic(key)},
        )

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    lim = Limited(
        tmp_path,
        Settings(ingest=Rate(per_s=10, burst=30), api=Rate(per_s=1, burst=3)),
    )
    try:
        yield lim
    finally:
        lim.close()


def _pages(user: str, n: int) -> list[dict[str, Any]]:
    return [page(user, f"/docs/{i}") for i in range(n)]


def _assert_429(resp: httpx.Response, words: str) -> int:
    err = assert_error(resp, 429, "rate_limited")
    assert words in err["message"], err
    after = int(resp.headers["Retry-After"])
    assert after >= 1 and err["details"] == [{"retry_after_s": after}]
    return after


def test_a_noisy_write_key_is_refused_and_the_other_key_is_not(limited: Limited) -> None:
    noisy, quiet = limited.keys
    assert limited.send(noisy, *_pages("n", 20)).status_code == 200
    assert limited.send(noisy, *_pages("n", 10)).status_code == 200  # the burst of 30 is used
    after = _assert_429(limited.send(noisy, *_pages("n", 10)), "over its limit of 10 events")
    assert after == 1  # 10 tokens come back in a second
    # its empty bucket is refused before the body is read: even a body that is not JSON
    refused = limited.client.post("/v1/batch", content=b"\xff not json", headers=basic(noisy))
    _assert_429(refused, "write key")
    # the quiet key has its own bucket, whole
    for _ in range(3):
        assert limited.send(quiet, *_pages("q", 10)).status_code == 200
    assert table_count(limited.engine, t.events, t.events.c.lead_id == "q") == 30
    assert table_count(limited.engine, t.events, t.events.c.lead_id == "n") == 30
    limited.clock.now += after
    assert limited.send(noisy, *_pages("n", 10)).status_code == 200


def test_a_key_in_the_body_is_limited_too_and_a_batch_over_the_burst_waits_for_a_full_bucket(
    limited: Limited,
) -> None:
    key = limited.keys[0]
    body = {"writeKey": key, "batch": _pages("b", 100)}
    resp = limited.client.post("/v1/batch", content=json.dumps(body).encode())
    assert resp.status_code == 200, resp.text  # a full bucket takes it (charged the burst)
    resp = limited.client.post(
        "/v1/track",
        content=json.dumps({"writeKey": key, **track("b", "Webinar Attended")}).encode(),
    )
    assert _assert_429(resp, "1 events were sent") == 1
    limited.clock.now += 3.0  # 30 tokens: full again
    again = {"writeKey": key, "batch": _pages("b", 100)}
    resp = limited.client.post("/v1/batch", content=json.dumps(again).encode())
    assert resp.status_code == 200 and resp.json()["accepted"] == 100
    assert table_count(limited.engine, t.events) == 200


def test_the_read_api_is_limited_per_token_and_per_address_without_one(
    limited: Limited,
) -> None:
    one, two = limited.tokens
    for _ in range(3):
        assert limited.client.get("/api/leads", headers=bearer(one)).status_code == 200
    _assert_429(limited.client.get("/api/leads", headers=bearer(one)), "API token")
    assert limited.client.get("/api/leads", headers=bearer(two)).status_code == 200
    # guessing tokens: 401s from this address until its bucket is empty, then 429s
    wrong = [limited.client.get("/api/leads", headers=bearer("nope")) for _ in range(4)]
    assert [r.status_code for r in wrong] == [401, 401, 401, 429]
    _assert_429(wrong[-1], "client address")
    assert limited.client.get("/api/leads").status_code == 429  # no token at all: the same
    limited.clock.now += 1.0
    assert limited.client.get("/api/leads", headers=bearer(one)).status_code == 200
    assert limited.client.get("/health").status_code == 200  # never limited


def test_429_and_503_are_in_the_published_schema(limited: Limited) -> None:
    paths = limited.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/batch", "/v1/track", "/api/leads", "/api/models"):
        for op in paths[path].values():
            assert {"429", "503"} <= set(op["responses"]), (path, sorted(op["responses"]))


# ---------------------------------------------------------------------- a real server


def _serve(tmp: Path, *args: str) -> tuple[Server, str]:
    db = f"sqlite:///{tmp / 'leadscore.db'}"
    model = tmp / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db, model, tmp / "server.log", *args).start()
    key = cli("keys", "create", "--name", "web", "--database-url", db).strip()
    return server, key


@pytest.fixture
def slow_limit(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A real server allowing each write key 20 events a second, 20 at once."""
    server, key = _serve(tmp_path, "--ingest-rate", "20", "--ingest-burst", "20")
    try:
        yield server, key
    finally:
        server.stop()


class Statuses:
    """What a client's own HTTP session received (a response hook on the real session)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.seen: list[tuple[int, str | None]] = []

    def hook(self, resp: Any, *_a: Any, **_kw: Any) -> None:
        self.seen.append((resp.status_code, resp.headers.get("Retry-After")))

    def __enter__(self) -> Statuses:
        self.session.hooks["response"].append(self.hook)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.session.hooks["response"].remove(self.hook)


def _stored(server: Server, user: str) -> int:
    engine = open_engine(server.db_url)
    try:
        return table_count(engine, t.events, t.events.c.lead_id == user)
    finally:
        engine.dispose()


def test_the_segment_client_waits_as_told_and_every_message_arrives(
    slow_limit: tuple[Server, str],
) -> None:
    """Segment's client reads Retry-After on a 429, puts the batch back and waits that long."""
    import segment.analytics as analytics
    from segment.analytics import request as segment_request

    server, key = slow_limit
    errors: list[Exception] = []
    with Statuses(segment_request._session) as statuses:
        client = analytics.Client(
            write_key=key,
            host=server.base,
            on_error=lambda e, batch: errors.append(e),
            upload_size=10,
        )
        try:
            for i in range(60):
                client.page("seg-1", name="Docs", properties={"path": f"/docs/{i}"})
            client.flush()
        finally:
            client.shutdown()
    assert errors == []
    assert _stored(server, "seg-1") == 60
    refused = [after for status, after in statuses.seen if status == 429]
    assert refused and all(after is not None and int(after) >= 1 for after in refused)
    assert 200 in [s for s, _ in statuses.seen]


def test_the_rudderstack_client_backs_off_and_every_message_arrives(
    slow_limit: tuple[Server, str],
) -> None:
    """RudderStack's client retries a 429 with its own exponential backoff (it does not read
    Retry-After): the limit slows it down and nothing is lost."""
    import rudderstack.analytics as rudder_analytics
    from rudderstack.analytics import request as rudder_request

    server, key = slow_limit
    errors: list[Exception] = []
    with Statuses(rudder_request._session) as statuses:
        client = rudder_analytics.Client(
            write_key=key,
            host=server.base,
            on_error=lambda e, batch: errors.append(e),
            upload_size=10,
        )
        try:
            for i in range(50):
                client.track("rud-1", "Docs Read", {"n": i})
            client.flush()
        finally:
            client.join()
    assert errors == []
    assert _stored(server, "rud-1") == 50
    assert 429 in [s for s, _ in statuses.seen]


def test_the_rudderstack_client_does_not_retry_a_bad_batch(
    slow_limit: tuple[Server, str],
) -> None:
    """RudderStack's client reads ``code`` and ``message`` at the top of an error body; an
    ingest error carries them there too (beside ``error``), so the client gives up on a 400 or
    401 at once instead of retrying it, and still retries a 429."""
    from datetime import UTC, datetime, timedelta

    import rudderstack.analytics as rudder_analytics
    from rudderstack.analytics import request as rudder_request

    server, key = slow_limit
    future = datetime.now(UTC) + timedelta(days=3)  # refused: more than a day ahead
    for write_key, status, code in (
        (key, 400, "invalid_messages"),
        ("lsw_wrong", 401, "unauthorized"),
    ):
        errors: list[Exception] = []
        with Statuses(rudder_request._session) as statuses:
            client = rudder_analytics.Client(
                write_key=write_key,
                host=server.base,
                on_error=lambda e, batch, errors=errors: errors.append(e),
                max_retries=3,
            )
            try:
                client.track("rud-bad", "Docs Read", timestamp=future)
                client.flush()
            finally:
                client.join()
        assert [s for s, _ in statuses.seen] == [status]  # sent once: not retried
        assert len(errors) == 1 and getattr(errors[0], "status", None) == status, errors
        assert getattr(errors[0], "code", None) == code, errors
    # the body keeps the one error shape as well
    resp = httpx.post(server.base + "/v1/batch", json={"batch": []}, headers=basic(key))
    err = assert_error(resp, 400)
    body = resp.json()
    assert body["code"] == err["code"] and body["message"] == err["message"]
    # the read API answers the error shape alone
    resp = httpx.get(server.base + "/api/leads")
    assert set(resp.json()) == {"error"}
    resp = httpx.get(server.base + "/metrics", headers=bearer(key))
    assert "a key of scope ingest cannot read metrics" in assert_error(resp, 403)["message"]


def _hold_a_request(server: Server, key: str) -> socket.socket:
    """An ingest request whose body never finishes: it stays in flight."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        % basic(key)["Authorization"].encode()
    )
    return s


def _hold_an_api_request(server: Server, token: str) -> socket.socket:
    """A model upload whose body never finishes: an API request in flight."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(
        b"PUT /api/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/yaml\r\nContent-Length: 100\r\n\r\nmodel: 1\n" % token.encode()
    )
    return s


def test_ingest_beyond_the_cap_in_flight_is_shed_with_a_503_at_once(tmp_path: Path) -> None:
    server, key = _serve(tmp_path, "--ingest-inflight", "2", "--api-inflight", "1")
    held: list[socket.socket] = []
    try:
        token = cli(
            "keys", "create", "--name", "ops", "--scope", "read", "--database-url", server.db_url
        ).strip()
        held = [_hold_a_request(server, key) for _ in range(2)]
        body = json.dumps({"batch": [identify("shed-1", {"email": "a@acme.io"})]})
        headers = {"Content-Type": "application/json", **basic(key)}

        def shed() -> httpx.Response | None:
            resp = httpx.post(server.base + "/v1/batch", content=body, headers=headers, timeout=10)
            return resp if resp.status_code == 503 else None

        resp = wait_for(shed, "a third ingest request to be shed")
        err = assert_error(resp, 503, "overloaded")
        assert "2 ingest requests already" in err["message"]
        assert len(resp.headers["X-Request-Id"]) == 32
        assert 1 <= int(resp.headers["Retry-After"]) <= 3
        # the read API and /health have their own room
        got = httpx.get(server.base + "/api/leads", headers=bearer(token), timeout=10)
        assert got.status_code == 200
        assert httpx.get(server.base + "/health", timeout=10).status_code == 200
        for s in held:
            s.close()
        held = []
        wait_for(
            lambda: (
                httpx.post(
                    server.base + "/v1/batch", content=body, headers=headers, timeout=10
                ).status_code
                == 200
            ),
            "ingest to be taken again once the held requests ended",
        )
        assert _stored(server, "shed-1") == 1
        # the API's own cap: one upload held, the next API request is shed, ingest is not
        admin = cli(
            "keys", "create", "--name", "a", "--scope", "admin", "--database-url", server.db_url
        ).strip()
        held = [_hold_an_api_request(server, admin)]

        def api_shed() -> httpx.Response | None:
            resp = httpx.get(server.base + "/api/leads", headers=bearer(token), timeout=10)
            return resp if resp.status_code == 503 else None

        resp = wait_for(api_shed, "an API request to be shed")
        assert "1 API request already" in assert_error(resp, 503, "overloaded")["message"]
        assert len(resp.headers["X-Request-Id"]) == 32
        # a shed request is counted under its route, as any other answer
        scrape = httpx.get(server.base + "/metrics", headers=bearer(token), timeout=10).text
        for route in ("/v1/batch", "/api/leads"):
            counted = f'leadscore_http_requests_total{{method="{"POST" if route[1] == "v" else "GET"}",route="{route}",status="503"}}'
            assert counted in scrape, scrape
        assert 'route="unmatched"' not in scrape, scrape
        body = json.dumps({"batch": [identify("shed-2", {"email": "b@acme.io"})]})
        resp = httpx.post(server.base + "/v1/batch", content=body, headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
    finally:
        for s in held:
            s.close()
        server.stop()


# ---------------------------------------------------------------------- webhooks and ingest


class Redirecting:
    """A real receiver answering every POST with ``status`` and a Location elsewhere."""

    def __init__(self, status: int, location: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Redirecting:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_and_port_is_not_followed(tmp_path: Path, status: int) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}")
    app = create_app(engine, deliver=False)
    app.state.service.add_model(MODEL, "test")
    _, key = create_key(engine, "web", "ingest")
    try:
        with Receiver() as elsewhere:
            other = elsewhere.url.replace("127.0.0.1", "localhost")
            with Redirecting(status, other) as rx, TestClient(app) as client:
                hook = add_webhook(engine, rx.url, ["lead.mql"], secret="whsec_x")
                body = {
                    "batch": [identify("r1", {"title": "VP Sales"}), track("r1", "Demo Requested")]
                }
                resp = client.post("/v1/batch", content=json.dumps(body), headers=basic(key))
                assert resp.status_code == 200
                deliverer = Deliverer(engine)
                try:
                    assert deliverer.deliver_due() == 1
                finally:
                    deliverer.stop()
            assert elsewhere.requests == []
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.outbox).where(t.outbox.c.webhook_id == hook["id"])).one()
        assert row.delivered_at_us is None and row.attempts == 1
        assert f"HTTP {status}" in row.last_error and "not followed" in row.last_error
        assert "localhost" in row.last_error  # it names where it was sent
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "ws://example.com/hook",
        "data:text/plain,hello",
        "mailto:ops@example.com",
        "//example.com/hook",
    ],
)
def test_only_http_and_https_urls_are_taken(url: str) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        check_url(url)


@pytest.mark.parametrize("receiver", ["hanging", "down", "redirecting"])
def test_a_receiver_that_hangs_is_down_or_redirects_never_holds_up_ingest(
    tmp_path: Path, receiver: str
) -> None:
    """Every batch that makes an MQL is answered while the receiver still sits on the first
    notification (or refuses connections, or redirects): delivery is never on ingest's path."""
    release = threading.Event()
    with Receiver(hold=release) as hanging, Redirecting(302, "http://localhost:9/x") as redirect:
        with Receiver() as gone:
            down_url = gone.url
        url = {"hanging": hanging.url, "down": down_url, "redirecting": redirect.url}[receiver]
        server, key = _serve(tmp_path)
        try:
            cli("webhooks", "add", url, "--events", "lead.mql", "--database-url", server.db_url)
            headers = {"Content-Type": "application/json", **basic(key)}

            def mql(lead: str) -> None:
                msgs = [identify(lead, {"title": "VP Sales"}), track(lead, "Demo Requested")]
                resp = httpx.post(
                    server.base + "/v1/batch",
                    content=json.dumps({"batch": msgs}),
                    headers=headers,
                    timeout=30,
                )
                assert resp.status_code == 200, resp.text
                assert resp.json()["accepted"] == 2

            mql("first")
            engine = open_engine(server.db_url)
            try:

                def attempted() -> bool:
                    if receiver == "hanging":
                        return hanging.arrived.is_set()
                    return table_count(engine, t.deliveries) > 0

                wait_for(attempted, "the first notification to be attempted", timeout=30)
                for i in range(20):
                    mql(f"lead-{i}")
                if receiver == "hanging":
                    assert hanging.requests == []  # still sitting on the first one
                assert table_count(engine, t.outbox) == 21
                assert table_count(engine, t.outbox, t.outbox.c.delivered_at_us.is_not(None)) == 0
            finally:
                engine.dispose()
        finally:
            release.set()
            server.stop()


def test_limits_that_cannot_work_are_an_error_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *LEADSCORE,
            "serve",
            "--ingest-rate",
            "inf",
            "--database-url",
            f"sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Error: the limits cannot work: a rate is a number" in proc.stderr
