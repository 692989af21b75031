"""What an operator watches: GET /metrics in the Prometheus text format, /health naming a dead
background thread, JSON logs with a request id on every line, and no secret in any log."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

import leadscore
from leadscore.api import create_app
from leadscore.api.logs import JsonFormatter, RequestIdFilter, TextFormatter, scrub
from leadscore.service.delivery import MAX_ATTEMPTS, Deliverer
from leadscore.service.webhooks import add_webhook
from leadscore.store import schema as t
from tests.handoff_service_helpers import handoff_api
from tests.service_helpers import (
    MODEL,
    Api,
    Receiver,
    Server,
    TestClient,
    api_on,
    assert_error,
    basic,
    bearer,
    cli,
    identify,
    page,
    track,
    wait_for,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels, read with the client library's parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: Any, token: str) -> Samples:
    resp = client.get("/metrics", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a counter grew (the counters are the process's: other tests move them too)."""
    return value(after, name, **labels) - value(before, name, **labels)


# ---------------------------------------------------------------------- /metrics


def test_metrics_count_messages_by_outcome_batches_mqls_and_requests(api: Api) -> None:
    before = scrape(api.client, api.read_token)
    sent = [
        identify("ops-1", {"title": "VP Sales", "company": {"employees": 300}}),
        track("ops-1", "Demo Requested"),  # fast track: an MQL
        page("ops-2", "/pricing"),
    ]
    assert api.ok(*sent)["accepted"] == 3
    # one message sent again (a duplicate), one refused by index, one new
    again = api.send(sent[2], {"type": "track", "messageId": "no-user"}, page("ops-2", "/"))
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert len(again.json()["rejected"]) == 1
    # a call none of whose messages can be accepted: refused whole, its message counted
    assert_error(api.send({"type": "track"}), 400, "invalid_messages")
    after = scrape(api.client, api.read_token)

    name = "leadscore_ingest_messages_total"
    assert delta(before, after, name, outcome="accepted") == 4
    assert delta(before, after, name, outcome="duplicate") == 1
    assert delta(before, after, name, outcome="rejected") == 2
    assert delta(before, after, "leadscore_mqls_total", via="ingest") == 1
    # the latency histogram: one observation per call that stored
    assert delta(before, after, "leadscore_ingest_batch_duration_seconds_count") == 2
    assert delta(before, after, "leadscore_ingest_batch_duration_seconds_bucket", le="+Inf") == 2
    assert value(after, "leadscore_ingest_batch_duration_seconds_sum") > 0
    http = "leadscore_http_requests_total"
    assert delta(before, after, http, method="POST", route="/v1/batch", status="200") == 2
    assert delta(before, after, http, method="POST", route="/v1/batch", status="400") == 1
    # the first scrape is counted once it has answered
    assert delta(before, after, http, method="GET", route="/metrics", status="200") == 1
    # routes by their template, not their path: a lead id is not a label value
    api.lead("ops-1")
    api.client.get("/no/such/path")
    later = scrape(api.client, api.read_token)
    got = "leadscore_http_requests_total"
    assert delta(after, later, got, method="GET", route="/api/leads/{lead_id}", status="200") == 1
    assert delta(after, later, got, method="GET", route="unmatched", status="404") == 1
    # the docs' static files by their mount, not each file's path
    assert api.client.get("/docs").status_code == 200
    asset = re.search(r'src="([^"]+\.js)"', api.client.get("/docs").text)
    assert asset is not None and api.client.get(asset.group(1)).status_code == 200
    mounted = scrape(api.client, api.read_token)
    assert delta(later, mounted, got, method="GET", route="/docs/assets/{path}", status="200") == 1
    later = mounted
    # methods outside HTTP's own are one series, whatever a client invents
    for invented in ("BREW", "WHEN"):
        assert api.client.request(invented, "/health").status_code == 405
    last = scrape(api.client, api.read_token)
    assert delta(later, last, got, method="OTHER", route="/health", status="405") == 2
    assert not any(dict(labels).get("method") == "BREW" for _, labels in last)
    assert not any("ops-1" in str(labels) for _, labels in later)
    assert value(later, "leadscore_active_model_version") == 1
    assert value(later, "leadscore_build_info", version=leadscore.__version__) == 1
    # the process itself, from the client library's standard collectors
    assert value(later, "process_resident_memory_bytes") > 0 or not Path("/proc").exists()


def test_metrics_count_activation_mqls_sla_breaches_and_read_the_outbox(
    service_db_url: str,
) -> None:
    with handoff_api(service_db_url) as api:  # a webhook on every event, never delivered here
        before = scrape(api.client, api.read_token)
        assert value(before, "leadscore_outbox_read_ok") == 1
        assert value(before, "leadscore_outbox_pending") == 0
        api.mql("acme-vp")  # demo requested: the 5-minute SLA starts
        api.clock.advance(minutes=2)
        queued = scrape(api.client, api.read_token)
        pending = api.count(
            t.outbox, t.outbox.c.delivered_at_us.is_(None), t.outbox.c.failed_at_us.is_(None)
        )
        assert pending >= 2  # lead.mql and lead.assigned
        assert value(queued, "leadscore_outbox_pending") == pending
        assert value(queued, "leadscore_outbox_oldest_pending_age_seconds") == pytest.approx(120)
        assert delta(before, queued, "leadscore_mqls_total", via="ingest") == 1

        api.clock.advance(minutes=10)  # past the deadline, untouched
        assert api.service.check_sla() == 1
        breached = scrape(api.client, api.read_token)
        assert delta(queued, breached, "leadscore_sla_breaches_total") == 1
        now_pending = api.count(
            t.outbox, t.outbox.c.delivered_at_us.is_(None), t.outbox.c.failed_at_us.is_(None)
        )
        assert now_pending > pending  # lead.sla_breached (and the escalation's)
        assert value(breached, "leadscore_outbox_pending") == now_pending

        # notifications that used up their tries are not pending: they are failed
        with api.engine.begin() as conn:
            conn.execute(sa.update(t.outbox).values(failed_at_us=api.clock.now_us()))
        ended = scrape(api.client, api.read_token)
        assert value(ended, "leadscore_outbox_pending") == 0
        assert value(ended, "leadscore_outbox_failed") == now_pending
        assert value(ended, "leadscore_outbox_oldest_pending_age_seconds") == 0

        # a model activated later qualifies leads by re-scoring them
        api.send(
            identify("later", {"title": "VP Sales", "company": {"employees": 300}}),
            page("later", "/pricing"),
        )
        lower = MODEL.replace("threshold: 50", "threshold: 10")
        activated = api.service.add_model(lower, "test")
        assert activated["new_mqls"] >= 1
        last = scrape(api.client, api.read_token)
        got = delta(ended, last, "leadscore_mqls_total", via="activation")
        assert got == activated["new_mqls"]


def test_metrics_count_webhook_deliveries_by_outcome(api: Api) -> None:
    with Receiver(statuses=[500, 200]) as receiver:
        add_webhook(api.engine, receiver.url, ["lead.mql"])
        api.ok(
            identify("hooked", {"title": "VP Sales", "company": {"employees": 300}}),
            track("hooked", "Demo Requested"),
        )
        deliverer = Deliverer(api.engine, clock=api.clock, poll_s=0.05)
        try:
            before = scrape(api.client, api.read_token)
            assert deliverer.deliver_due() == 1  # the receiver answers 500: tried again later
            mid_ = scrape(api.client, api.read_token)
            name = "leadscore_webhook_deliveries_total"
            assert delta(before, mid_, name, outcome="retrying") == 1
            assert delta(before, mid_, name, outcome="delivered") == 0
            assert value(mid_, "leadscore_outbox_pending") == 1  # waiting for its retry
            api.clock.advance(seconds=11)
            assert deliverer.deliver_due() == 1
            done = scrape(api.client, api.read_token)
            assert delta(mid_, done, name, outcome="delivered") == 1
            assert value(done, "leadscore_outbox_pending") == 0
            assert len(receiver.delivered()) == 1

            # the last try fails: failed for good
            api.ok(
                identify("hooked-2", {"title": "VP Sales", "company": {"employees": 300}}),
                track("hooked-2", "Demo Requested"),
            )
            with api.engine.begin() as conn:
                conn.execute(
                    sa.update(t.outbox)
                    .where(t.outbox.c.delivered_at_us.is_(None))
                    .values(attempts=MAX_ATTEMPTS - 1)
                )
            receiver.statuses.append(503)
            assert deliverer.deliver_due() == 1
            end = scrape(api.client, api.read_token)
            assert delta(done, end, name, outcome="failed") == 1
            assert value(end, "leadscore_outbox_failed") == 1
        finally:
            deliverer.stop()


@contextmanager
def app_with(api: Api, **kw: Any) -> Iterator[TestClient]:
    app = create_app(api.engine, deliver=False, watch_sla=False, **kw)
    with TestClient(app) as client:
        yield client


def test_who_may_read_metrics(api: Api) -> None:
    # the default: an API token of scope read or admin
    assert_error(api.client.get("/metrics"), 401, "unauthorized")
    assert_error(api.client.get("/metrics", headers=bearer("lsr_not-a-token")), 401)
    assert_error(api.client.get("/metrics", headers=bearer(api.write_key)), 403, "forbidden")
    assert api.client.get("/metrics", headers=bearer(api.read_token)).status_code == 200
    assert api.client.get("/metrics", headers=bearer(api.admin_token)).status_code == 200
    with app_with(api, metrics_access="open") as client:
        assert client.get("/metrics").status_code == 200
        # a token presented is checked all the same
        assert_error(client.get("/metrics", headers=bearer("lsr_wrong")), 401)
    with app_with(api, metrics_access="off") as client:
        assert_error(client.get("/metrics", headers=bearer(api.admin_token)), 404, "not_found")
    with app_with(api, metrics_access="loopback") as client:
        # the test client is not on the loopback address: a token is needed
        assert_error(client.get("/metrics"), 401, "unauthorized")
        assert client.get("/metrics", headers=bearer(api.read_token)).status_code == 200
    with pytest.raises(ValueError, match="metrics_access"):
        create_app(api.engine, metrics_access="everyone")


def test_metrics_is_in_the_openapi_schema_as_text(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"]["/metrics"]["get"]
    assert "text/plain" in op["responses"]["200"]["content"]
    assert {"401", "403", "404"} <= set(op["responses"])


# ---------------------------------------------------------------------- /health


# the threads are made to die of an error their loops do not catch, which pytest reports
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_names_a_dead_sla_scheduler_or_webhook_deliverer(api: Api) -> None:
    app = create_app(api.engine, clock=api.clock)  # both threads, as `leadscore serve` runs
    with TestClient(app) as client:
        body = client.get("/health").json()
        assert body["status"] == "ok", body
        assert body["sla_scheduler"] == "ok" and body["webhook_deliverer"] == "ok"
        assert body["writes"] == "ok" and body["model"] == "service-test"

        watch = app.state.sla_watch

        def die() -> int:
            raise SystemExit  # escapes the loop's error handling: the thread ends

        watch.check = die
        watch.wake()
        wait_for(lambda: not watch._thread.is_alive(), "the SLA thread to die")
        err = assert_error(client.get("/health"), 503, "unavailable")
        assert err["details"] == [
            {
                "check": "sla_scheduler",
                "problem": "the SLA scheduler thread has died: breaches are not being marked",
            }
        ]
        assert "SLA scheduler" in err["message"]

        deliverer = app.state.deliverer
        deliverer.deliver_due = lambda **_kw: die()
        deliverer.wake()
        wait_for(lambda: not deliverer._thread.is_alive(), "the webhook thread to die")
        err = assert_error(client.get("/health"), 503, "unavailable")
        assert [d["check"] for d in err["details"]] == ["sla_scheduler", "webhook_deliverer"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_names_a_dead_event_retention_thread(api: Api) -> None:
    app = create_app(api.engine, deliver=False, watch_sla=False, retain_events_days=3650)
    with TestClient(app) as client:
        body = client.get("/health").json()
        assert body["event_retention"] == "ok" and body["sla_scheduler"] == "off", body
    dying = create_app(api.engine, deliver=False, watch_sla=False, retain_events_days=3650)

    def die() -> int:
        raise SystemExit

    dying.state.retention.purge = die  # its first turn, at start-up, ends the thread
    with TestClient(dying) as client:
        wait_for(lambda: not dying.state.retention._thread.is_alive(), "the thread to die")
        err = assert_error(client.get("/health"), 503, "unavailable")
        assert [d["check"] for d in err["details"]] == ["event_retention"]


def test_health_says_which_threads_this_app_does_not_run(api: Api) -> None:
    body = api.client.get("/health").json()  # no lifespan: threads not started; no deliverer
    assert body["status"] == "ok"
    assert body["sla_scheduler"] == "not started" and body["webhook_deliverer"] == "off"
    assert body["event_retention"] == "off"
    app = create_app(api.engine, deliver=False, watch_sla=True)
    client = TestClient(app)
    with client:
        pass  # started and stopped again
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["sla_scheduler"] == "stopped", body


# ---------------------------------------------------------------------- request ids and logs


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("abc-123", True),
        ("7f9c2ba4-e88f-11ee-a506-0242ac120002", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", False),  # ';'
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),
        ("req:42/retry+1=ok_.", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long
        ("has space", False),
        ('quote"d', False),
        ("", False),
    ],
)
def test_request_ids_are_taken_when_safe_and_made_otherwise(
    api: Api, sent: str, echoed: bool
) -> None:
    resp = api.client.get("/health", headers={"X-Request-Id": sent})
    got = resp.headers["x-request-id"]
    if echoed:
        assert got == sent
    else:
        assert got != sent and re.fullmatch(r"[0-9a-f]{32}", got)


def test_every_answer_has_a_request_id_errors_and_500s_included(api: Api) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    api.app.add_api_route("/boom", boom)
    client = TestClient(api.app, raise_server_exceptions=False)
    answers = [
        client.get("/boom"),
        client.get("/no/such/path"),
        client.delete("/health"),  # 405
        client.get("/api/leads"),  # 401
        api.send({"type": "track"}),  # 400
        client.get("/api/leads?limit=-5", headers=bearer(api.read_token)),  # 422
    ]
    assert [a.status_code for a in answers] == [500, 404, 405, 401, 400, 422]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == len(ids)
    given = client.get("/boom", headers={"X-Request-Id": "trace-me"})
    assert given.status_code == 500 and given.headers["x-request-id"] == "trace-me"
    # one header, not the client's beside ours
    assert given.headers.get_list("x-request-id") == ["trace-me"]


@contextmanager
def captured(fmt: logging.Formatter) -> Iterator[io.StringIO]:
    """leadscore's log records at INFO, formatted as `leadscore serve` would."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(fmt)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("leadscore")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def test_json_log_lines_carry_the_request_id_also_from_the_threadpool(api: Api) -> None:
    def boom() -> None:  # a sync route: it runs in the threadpool, as ingest does
        logging.getLogger("leadscore.test").warning("about to fail", extra={"lead": "x-1"})
        raise RuntimeError("a bug")

    api.app.add_api_route("/boom", boom)
    client = TestClient(api.app, raise_server_exceptions=False)
    with captured(JsonFormatter()) as out:
        resp = client.get("/boom", headers={"X-Request-Id": "req-500"})
        ok = api.send(page("logged", "/pricing"))
        person = client.get("/api/leads/ann@example.com", headers=bearer(api.read_token))
        forged = client.get("/nope%0A%7B%22level%22%3A%22error%22%7D?q=ann@example.com")
    assert resp.status_code == 500 and ok.status_code == 200
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines, "nothing was logged"
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(line["request_id"], []).append(line)
    failed = by_id["req-500"]
    assert [x["logger"] for x in failed] == [
        "leadscore.test",
        "leadscore.service",
        "leadscore.access",
    ]
    assert failed[0]["lead"] == "x-1" and failed[0]["level"] == "warning"
    assert "RuntimeError: a bug" in failed[1]["exception"]
    access = failed[2]
    assert access["status"] == 500 and access["route"] == "/boom" and access["method"] == "GET"
    stored = by_id[ok.headers["x-request-id"]]
    assert stored[-1]["message"].startswith("POST /v1/batch 200")
    assert stored[-1]["route"] == "/v1/batch"
    # a lead id in a path is personal data: the access line names the route instead
    (read,) = by_id[person.headers["x-request-id"]]
    assert read["message"].startswith("GET /api/leads/{lead_id} 404")
    assert "ann@example.com" not in out.getvalue()
    # a path no route has, as sent: percent-encoded, so it cannot forge a line; no query
    (unmatched,) = by_id[forged.headers["x-request-id"]]
    assert unmatched["message"].startswith("GET /nope%0A%7B%22level%22%3A%22error%22%7D 404")
    assert unmatched["route"] == "unmatched"


def test_secrets_are_scrubbed_from_any_line() -> None:
    key = "lsw_" + "A1b2_C3-d4" * 4
    record = logging.makeLogRecord(
        {
            "name": "leadscore.test",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "bad message id %s, secret whsec_abcdefgh123, token lsa_QWERTYUIOPasdf",
            "args": (key,),
        }
    )
    record.request_id = None
    for fmt in (JsonFormatter(), TextFormatter()):
        line = fmt.format(record)
        assert key not in line and "whsec_abcdefgh123" not in line
        assert "lsa_QWERTY" not in line and "lsw_[redacted]" in line
    assert scrub("lsw_short") == "lsw_short"  # too short to be a key


# ---------------------------------------------------------------------- a real server


def test_a_real_server_logs_json_with_request_ids_and_no_secret(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    log = tmp_path / "server.log"
    key = cli("keys", "create", "--name", "web", "--database-url", db).strip()
    admin = cli("keys", "create", "--name", "ops", "--scope", "admin", "--database-url", db)
    admin = admin.strip()
    server = Server(
        db, model, log, "--log-format", "json", "--log-level", "debug", "--metrics", "loopback"
    ).start()
    try:
        base = server.base
        seen: dict[str, int] = {}

        def call(method: str, path: str, **kw: Any) -> httpx.Response:
            resp = httpx.request(method, base + path, timeout=10, **kw)
            seen[resp.headers["x-request-id"]] = resp.status_code
            return resp

        lead = {"title": "VP Sales", "company": {"employees": 300}}
        batch = {"batch": [identify("srv-1", lead), track("srv-1", "Demo Requested")]}
        assert call("POST", "/v1/batch", json=batch, headers=basic(key)).status_code == 200
        # the key in the body of a single call, and in a batch's body
        single = {**page("srv-1", "/pricing"), "writeKey": key}
        assert call("POST", "/v1/page", json=single).status_code == 200
        body = {"batch": [page("srv-2", "/")], "writeKey": key}
        assert (
            call("POST", "/v1/batch", json=body, headers={"X-Request-Id": "mine-1"}).status_code
            == 200
        )
        assert seen["mine-1"] == 200
        # admin calls, a refused token, a refused key, a bad body, a 404
        assert call("GET", "/api/leads/srv-1", headers=bearer(admin)).status_code == 200
        assert call("GET", "/api/models", headers=bearer(admin)).status_code == 200
        assert call("GET", "/api/leads", headers=bearer(admin + "x")).status_code == 401
        assert call("POST", "/v1/batch", json=batch, headers=basic(key + "x")).status_code == 401
        bad = call("POST", "/v1/batch", content=b"{not json", headers=basic(key))
        assert bad.status_code == 400
        assert call("GET", f"/api/leads/{key}", headers=bearer(admin)).status_code == 404

        # a request HTTP cannot read gets an id too
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert re.search(rb"\r\nx-request-id: [0-9a-f]{32}\r\n", answer), answer

        # /metrics from this machine without a token (--metrics loopback): this process's
        # counters alone, so exact
        metrics = call("GET", "/metrics")
        assert metrics.status_code == 200
        samples = parse(metrics.text)
        assert value(samples, "leadscore_ingest_messages_total", outcome="accepted") == 4
        assert value(samples, "leadscore_mqls_total", via="ingest") == 1
        assert value(samples, "leadscore_ingest_batch_duration_seconds_count") == 3
        http = "leadscore_http_requests_total"
        assert value(samples, http, method="POST", route="/v1/batch", status="200") == 2
        assert value(samples, http, method="POST", route="/v1/batch", status="401") == 1
        assert value(samples, http, method="POST", route="/v1/page", status="200") == 1

        def lines() -> list[dict[str, Any]]:
            whole = log.read_text().split("\n")[:-1]  # a line being written is not read yet
            return [json.loads(x) for x in whole]  # every line a JSON object

        def access() -> dict[str, dict[str, Any]] | None:
            got = {x["request_id"]: x for x in lines() if x["logger"] == "leadscore.access"}
            return got if set(seen) <= set(got) else None

        by_id = wait_for(access, "an access line for every request")
    finally:
        server.stop()
    everything = lines()
    for entry in everything:
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry), entry
    for rid, status in seen.items():
        assert by_id[rid]["status"] == status, by_id[rid]
    assert by_id["mine-1"]["route"] == "/v1/batch"
    assert any(x["logger"].startswith("uvicorn") for x in everything)  # uvicorn's own, as JSON
    assert any("Listening on" in x["message"] for x in everything)
    # no key or token, whole or in part past its prefix, anywhere in the log
    text = log.read_text()
    for secret in (key, admin):
        assert secret not in text
        assert secret[4:20] not in text


def test_serve_refuses_an_unknown_log_format_or_metrics_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    for args in (["--log-format", "xml"], ["--metrics", "public"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "leadscore",
                "serve",
                "--database-url",
                f"sqlite:///{tmp_path / 'x.db'}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert "Error:" in proc.stderr and args[0] in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_batch_that_rolls_back_counts_no_message(tmp_path: Path) -> None:
    """A full disk (SQLite's page limit, as the database sees it): the 503 is counted as a
    request, but no message as accepted."""
    with api_on(f"sqlite:///{tmp_path / 'leadscore.db'}") as api:
        api.ok(identify("u0", {"email": "a@b.io"}))
        with api.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()

        def full(dbapi_conn: Any, _rec: object) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

        before = scrape(api.client, api.read_token)
        sa.event.listen(api.engine, "connect", full)
        api.engine.dispose()
        try:
            msgs = [page(f"u{i}", "/", properties={"pad": "x" * 2000}) for i in range(100)]
            assert_error(api.send(*msgs), 503, "unavailable")
        finally:
            sa.event.remove(api.engine, "connect", full)
            api.engine.dispose()
        after = scrape(api.client, api.read_token)
    name = "leadscore_ingest_messages_total"
    for outcome in ("accepted", "duplicate", "rejected"):
        assert delta(before, after, name, outcome=outcome) == 0
    assert delta(before, after, "leadscore_ingest_batch_duration_seconds_count") == 0
    http = "leadscore_http_requests_total"
    assert delta(before, after, http, method="POST", route="/v1/batch", status="503") == 1


def test_a_database_password_in_the_url_query_is_never_printed(tmp_path: Path) -> None:
    """`serve` names the database it cannot open (and, once open, the one it listens on) with
    the password hidden: in the user part, and as a query parameter (``?password=``,
    ``sslpassword``) too."""
    import os
    import subprocess

    from leadscore.store.db import shown_url
    from tests.service_helpers import LEADSCORE

    url = "postgresql://ann:PW-USER@127.0.0.1:1/db?sslpassword=PW-QUERY&connect_timeout=5"
    proc = subprocess.run(
        [*LEADSCORE, "serve", "--port", "1", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: cannot open the database postgresql"), proc.stderr
    assert "PW-" not in proc.stderr + proc.stdout, proc.stderr
    assert "connect_timeout=5" in proc.stderr  # what is not a secret stays, to be checked
    shown = shown_url("postgresql://u@h/db?password=PW-1&application_name=x")
    assert "PW-1" not in shown and "application_name=x" in shown
