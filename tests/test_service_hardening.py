"""What an independent probe of the running service found, each pinned by a test: bodies anyone
holding a (public) write key can send, keys in bodies, limits and misreported failures. The real
app on SQLite and PostgreSQL, and a real `leadscore serve` with the real Segment client."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    MODEL,
    Api,
    Server,
    api_on,
    assert_error,
    basic,
    bearer,
    cli,
    identify,
    mid,
    page,
    table_count,
)


def _batch(*parts: bytes) -> bytes:
    return b'{"batch": [' + b", ".join(parts) + b"]}"


def _msg(user: str, extra: bytes = b"") -> bytes:
    return b'{"type": "page", "messageId": "%s", "userId": "%s", "properties": {"path": "/"%s}}' % (
        mid().encode(),
        user.encode(),
        extra,
    )


BAD_VALUES = {
    "surrogate": (b', "t": "cut \\ud83d emoji"', "surrogate"),
    "huge integer": (b', "n": ' + b"9" * 5000, "5,000 digits"),
    "1,000 deep": (b', "d": ' + b"[" * 1000 + b"]" * 1000, "nested deeper"),
    "10,000 deep": (b', "d": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested deeper"),
}


@pytest.mark.parametrize("kind", list(BAD_VALUES))
def test_one_bad_message_is_refused_by_index_and_the_others_are_stored(api: Api, kind: str) -> None:
    extra, words = BAD_VALUES[kind]
    body = _batch(_msg("u1"), _msg("u2", extra), _msg("u3"))
    resp = api.post("/v1/batch", body, basic(api.write_key))
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["accepted"] == 2
    [rejected] = answer["rejected"]
    assert rejected["index"] == 1 and words in rejected["reason"], rejected
    assert api.count(t.events) == 2
    assert api.count(t.leads, t.leads.c.lead_id == "u2") == 0


def test_a_bad_message_id_is_answered_escaped(api: Api) -> None:
    body = _batch(
        b'{"type": "page", "messageId": "m-\\udc00", "userId": "u1", "t": "\\ud800"}',
        _msg("u2"),
    )
    resp = api.post("/v1/batch", body, basic(api.write_key))
    assert resp.status_code == 200, resp.text
    [rejected] = resp.json()["rejected"]
    assert rejected["messageId"] == "m-\\udc00" and "surrogate" in rejected["reason"]


@pytest.mark.parametrize("key", [12345, 1.5, {"a": 1}, ["lsw_x"], True, "\ud800"], ids=repr)
def test_a_write_key_that_is_not_a_key_is_a_401(api: Api, key: object) -> None:
    body = json.dumps({"writeKey": key, "batch": [json.loads(_msg("u1"))]}).encode()
    err = assert_error(api.post("/v1/batch", body), 401, "unauthorized")
    assert "writeKey" in err["message"] or "not valid" in err["message"]
    single = json.dumps({"writeKey": key, "userId": "u1", "properties": {"path": "/"}})
    assert_error(api.post("/v1/page", single.encode()), 401, "unauthorized")
    assert api.count(t.events) == 0


def test_the_key_is_checked_before_the_body_is_read(api: Api) -> None:
    big = b'{"batch": [' + b" " * (600 * 1024) + b"]}"
    # no key anywhere it could be read: 401, not 413
    err = assert_error(api.post("/v1/batch", big), 401, "unauthorized")
    assert "over the limit" in err["message"]
    # a wrong key in the header: 401 before reading, parsing or decompressing anything
    assert_error(api.post("/v1/batch", big, basic("lsw_wrong")), 401, "unauthorized")
    assert_error(api.post("/v1/batch", b"{not json", basic("lsw_wrong")), 401, "unauthorized")
    bomb = gzip.compress(b"[" * 5_000_000)
    resp = api.client.post(
        "/v1/batch",
        content=bomb,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            **basic("lsw_wrong"),
        },
    )
    assert_error(resp, 401, "unauthorized")
    # the right key: now the body's problems are answered
    assert_error(api.post("/v1/batch", big, basic(api.write_key)), 413, "too_large")


def test_a_write_key_in_the_body_is_never_stored(api: Api) -> None:
    single = {
        "writeKey": api.write_key,
        "userId": "u1",
        "event": "Webinar Attended",
        "messageId": mid(),
    }
    assert api.post("/v1/track", single).status_code == 200
    in_batch = {**json.loads(_msg("u2")), "writeKey": api.write_key}
    resp = api.post("/v1/batch", {"writeKey": api.write_key, "batch": [in_batch]})
    assert resp.status_code == 200, resp.text
    assert api.count(t.events) == 2
    with api.engine.connect() as conn:
        stored = [repr(tuple(r)) for r in conn.execute(sa.select(t.events)).all()]
    assert stored and not any(api.write_key in s or "writeKey" in s for s in stored)


# ---------------------------------------------------------------------- the real client


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db, model, tmp_path / "server.log").start()
    try:
        key = cli("keys", "create", "--name", "web", "--database-url", db).strip()
        yield server, key
    finally:
        server.stop()


def test_the_segment_client_loses_no_valid_message_to_a_bad_one(
    served: tuple[Server, str],
) -> None:
    """8 valid messages and one with a cut emoji in one batch: the 8 are stored."""
    import segment.analytics as analytics

    server, key = served
    errors: list[Exception] = []
    client = analytics.Client(
        write_key=key,
        host=server.base,
        max_retries=1,
        on_error=lambda e, batch: errors.append(e),
        upload_size=100,
    )
    try:
        for i in range(4):
            client.identify(f"seg-{i}", {"email": f"p{i}@acme.io"})
        client.track("seg-bad", "Clicked", {"label": "cut \ud83d"})
        for i in range(4):
            client.page(f"seg-{i}", name="Pricing", properties={"path": "/pricing"})
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    engine = open_engine(server.db_url)
    try:
        assert table_count(engine, t.events) == 8
        assert table_count(engine, t.events, t.events.c.lead_id == "seg-bad") == 0
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- failures as they are


def test_a_search_text_over_the_limit_is_a_4xx_naming_the_limit(api: Api) -> None:
    api.ok(identify("u1", {"email": "ann@acme.io"}))
    err = assert_error(api.get("/api/leads", q="a" * 60_000), 422, "invalid_request")
    assert "1000" in json.dumps(err)
    assert api.leads(q="x" * 1000)["total"] == 0
    assert api.leads(q="acme")["total"] == 1


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    with api_on(f"sqlite:///{tmp_path / 'leadscore.db'}") as a:
        yield a


def test_health_says_the_database_does_not_take_writes_during_a_full_disk(
    sqlite_api: Api,
) -> None:
    """SQLite's page limit is a full disk as the database sees it: SQLITE_FULL on write."""
    api = sqlite_api
    api.ok(identify("u0", {"email": "a@b.io"}))
    with api.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()

    def full(dbapi_conn: object, _rec: object) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

    sa.event.listen(api.engine, "connect", full)
    api.engine.dispose()
    try:
        msgs = [
            page(f"u{i}", "/pricing", properties={"path": "/", "pad": "x" * 2000})
            for i in range(100)
        ]
        assert_error(api.send(*msgs), 503, "unavailable")
        err = assert_error(api.client.get("/health"), 503, "unavailable")
        assert "full" in err["message"] and err["details"][0]["check"] == "writes"
        since = err["details"][0]["problem"]
        api.clock.advance(seconds=2)
        assert_error(api.send(*msgs), 503, "unavailable")  # still full
        err = assert_error(api.client.get("/health"), 503, "unavailable")
        assert err["details"][0]["problem"] == since  # failing since the first failure
    finally:
        sa.event.remove(api.engine, "connect", full)
        api.engine.dispose()
    # space again: no traffic needed for /health to notice
    err = assert_error(api.client.get("/health"), 503, "unavailable")  # not probed yet
    api.clock.advance(seconds=10)
    health = api.client.get("/health")
    assert health.status_code == 200 and health.json()["writes"] == "ok", health.text
    api.ok(page("u1", "/pricing"))


# ---------------------------------------------------------------------- the HTTP layer


def test_a_405_names_the_methods_the_path_takes(api: Api) -> None:
    resp = api.client.delete("/v1/batch")
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"
    resp = api.client.delete("/api/models", headers=bearer(api.admin_token))
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "GET, PUT"


def test_a_gzip_body_is_taken_whole_and_alone(api: Api) -> None:
    key = {"Content-Encoding": "gzip", "Content-Type": "application/json", **basic(api.write_key)}
    body = json.dumps({"batch": [json.loads(_msg("u1"))]}).encode()
    cases = [
        (gzip.compress(body) + b"trailing garbage", "16 bytes follow"),
        (gzip.compress(body)[:-6], "cut short"),
        (b"\x1f\x8b not gzip at all", "not valid gzip"),
    ]
    for data, words in cases:
        err = assert_error(api.client.post("/v1/batch", content=data, headers=key), 400)
        assert err["code"] == "bad_encoding" and words in err["message"], err
    assert api.count(t.events) == 0
    # two members one after the other are one gzip body (RFC 1952), as `cat a.gz b.gz` makes
    half = len(body) // 2
    two = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert api.client.post("/v1/batch", content=two, headers=key).status_code == 200
    assert api.count(t.events) == 1


def test_a_model_body_has_a_size_limit_and_a_depth_limit(api: Api) -> None:
    admin = bearer(api.admin_token)
    err = assert_error(
        api.client.put("/api/models", content=b"#" * (20 * 1024 * 1024), headers=admin),
        413,
        "too_large",
    )
    assert "262,144" in err["message"]
    for deep, ctype in (
        (b"model: " + b"[" * 10_000, "application/yaml"),
        (b"fit: " + b"{a: " * 5_000, "application/yaml"),
        (b'{"source": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "application/json"),
    ):
        resp = api.client.put("/api/models", content=deep, headers={**admin, "Content-Type": ctype})
        assert resp.status_code in (400, 422), resp.text
        assert_error(resp, resp.status_code)
    assert len(api.get("/api/models").json()["models"]) == 1


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A real `leadscore serve` that gives clients one second to send headers and body."""
    tmp = tmp_path_factory.mktemp("strict")
    db = f"sqlite:///{tmp / 'leadscore.db'}"
    model = tmp / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db, model, tmp / "server.log", "--request-timeout", "1").start()
    try:
        key = cli("keys", "create", "--name", "web", "--database-url", db).strip()
        yield server, key
    finally:
        server.stop()


def _exchange(server: Server, data: bytes) -> tuple[int, dict[str, object], bytes]:
    """Send ``data`` on a fresh connection, then read until the server closes it: the status,
    the JSON body and the raw answer. (The socket's own timeout only bounds a hung test.)"""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        if data:
            s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), answer


def test_slow_or_silent_clients_are_answered_408_and_closed(
    strict_server: tuple[Server, str],
) -> None:
    server, key = strict_server
    auth = basic(key)["Authorization"].encode()
    for data, words in (
        (b"", "headers"),  # connects and sends nothing
        (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Ty", "headers"),  # stops mid-header
        (
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"batch": [' % auth,
            "body",
        ),
    ):
        status, body, answer = _exchange(server, data)
        assert status == 408, answer
        assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
        assert words in body["error"]["message"], body  # type: ignore[index]
    health = httpx.get(server.base + "/health", timeout=10)
    assert health.status_code == 200


def test_requests_http_cannot_read_are_answered_in_the_error_shape(
    strict_server: tuple[Server, str],
) -> None:
    server, _ = strict_server
    for data in (
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,  # headers past 16 KB
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        # headers past 16 KB that arrive whole, and a body of two lengths (request smuggling)
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n",
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ):
        status, body, answer = _exchange(server, data)
        assert status == 400, answer
        assert set(body) == {"error"} and body["error"]["code"] == "bad_request", body  # type: ignore[index]
        assert answer.lower().count(b"content-type: application/json") == 1


def test_the_openapi_schema_describes_bodies_security_and_errors(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"WriteKey", "ApiToken"}
    paths = schema["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
            assert {"500", "503"} <= set(errors), (method, path)
            for status, answer in errors.items():
                # ingest errors also carry code and message at the top, for the tracking
                # clients; a 408 is answered by the HTTP layer, before the app, in the plain shape
                ingest = path.startswith("/v1/") and status != "408"
                body = "IngestErrorBody" if ingest else "ErrorBody"
                error_ref = {"$ref": f"#/components/schemas/{body}"}
                assert answer["content"]["application/json"]["schema"] == error_ref, (
                    method,
                    path,
                    status,
                )
            if path != "/health":
                assert op["security"] and {"401", "403"} <= set(errors), (method, path)
    batch = paths["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["required"] == ["batch"] and batch["properties"]["batch"]["type"] == "array"
    track = paths["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert track["properties"]["type"]["enum"] == ["track"] and "writeKey" in track["properties"]
    model = paths["/api/models"]["put"]["requestBody"]["content"]
    assert set(model) == {"application/yaml", "text/plain", "application/json"}


def test_integers_past_what_the_database_holds_are_a_422(api: Api) -> None:
    """Found by the fuzz: a version or offset beyond 64 bits was a 500."""
    admin = bearer(api.admin_token)
    for big in (2**31, 2**63, 10**30):
        resp = api.client.post(f"/api/models/{big}/activate", headers=admin)
        assert_error(resp, 422, "invalid_request")
        assert_error(api.get("/api/leads", offset=big), 422, "invalid_request")
        resp = api.client.post(f"/api/routing/{big}/activate", headers=admin)
        assert_error(resp, 422, "invalid_request")
    assert_error(api.client.post("/api/models/2147483647/activate", headers=admin), 404)


def test_an_error_quoting_an_unpaired_surrogate_is_still_sent(api: Api) -> None:
    """Found by the fuzz: a YAML escape makes an unpaired surrogate, the model's problems quote
    it, and the error could not be encoded (a 500)."""
    admin = {**bearer(api.admin_token), "Content-Type": "text/plain"}
    resp = api.client.put("/api/models", content=b'{"\\ud8e4x": [], "b": 1}', headers=admin)
    err = assert_error(resp, 422, "invalid_model")
    assert "\\ud8e4" in json.dumps(err)
    source = json.dumps({"source": "model: 1\nname: \ud800\n"}).encode()
    resp = api.client.put(
        "/api/models", content=source, headers={**admin, "Content-Type": "application/json"}
    )
    assert resp.status_code in (400, 422), resp.text
    assert_error(resp, resp.status_code)


def test_a_body_fastapi_cannot_parse_is_a_documented_400_in_the_error_shape(api: Api) -> None:
    """Found by the fuzz on the handoff's routes: FastAPI's own 400 was undocumented."""
    resp = api.client.put(
        "/api/reps/ann@acme.io",
        content=b"\xd7\xafB\xff not UTF-8",
        headers={**bearer(api.admin_token), "Content-Type": "application/json"},
    )
    assert_error(resp, 400, "bad_request")
    schema = api.client.get("/openapi.json").json()
    assert "400" in schema["paths"]["/api/reps/{email}"]["put"]["responses"]
