"""The ingest routes read the write key from the headers without FastAPI's dependency solving
(``ingest.IngestRoute``, ``security.write_secret``) and hand their work to a pool of their own
(``threads.hand_off``): the key is read as the dependency reads it, and the work runs in the
request's context."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Request

from leadscore.api.ingest import IngestRoute
from leadscore.api.security import WriteSecret
from leadscore.api.threads import hand_off
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import (
    MODEL,
    Api,
    Server,
    assert_error,
    basic,
    cli,
    page,
    wait_for,
)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    a = Api(f"sqlite:///{tmp_path / 'leadscore.db'}")
    yield a
    a.close()


def _auth(value: str) -> dict[str, str]:
    return {"Authorization": value}


def test_the_write_key_is_read_from_basic_auth_or_a_bearer_token(sqlite_api: Api) -> None:
    key = sqlite_api.write_key
    as_basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    for n, value in enumerate([as_basic, f"Bearer {key}", f"bearer   {key}  ", as_basic + "  "]):
        resp = sqlite_api.post("/v1/batch", {"batch": [page(f"u{n}", "/docs")]}, _auth(value))
        assert resp.status_code == 200, (value, resp.text)
    resp = sqlite_api.post("/v1/track", {"userId": "u9", "event": "Docs Read"}, _auth(as_basic))
    assert resp.status_code == 200, resp.text
    assert sqlite_api.count(t.events) == 5


def test_a_key_that_cannot_be_read_is_refused_as_before(sqlite_api: Api) -> None:
    body = {"batch": [page("u1", "/docs")]}
    resp = sqlite_api.post("/v1/batch", body, _auth("Basic not*base64"))
    assert "not valid Basic auth" in assert_error(resp, 401, "unauthorized")["message"]
    assert resp.headers["www-authenticate"] == 'Basic realm="leadscore"'
    # a Basic header with no user name, another scheme, a Bearer without a token: no key
    for value in ["Basic " + base64.b64encode(b":pw").decode(), "Digest abc", "Bearer ", ""]:
        resp = sqlite_api.post("/v1/batch", body, _auth(value))
        assert "no key" in assert_error(resp, 401, "unauthorized")["message"], value
    # the body's writeKey is still read when the headers hold none
    resp = sqlite_api.post("/v1/batch", {**body, "writeKey": sqlite_api.write_key})
    assert resp.status_code == 200, resp.text
    assert sqlite_api.count(t.events) == 1


def test_an_ingest_route_takes_the_request_and_the_key_alone() -> None:
    router = APIRouter(route_class=IngestRoute)

    async def fine(request: Request, key: WriteSecret) -> Any:
        return None

    async def more(request: Request, key: WriteSecret, lead: str) -> Any:
        return None

    async def keyless(request: Request) -> Any:
        return None

    router.post("/v1/fine")(fine)
    for endpoint in (more, keyless):
        with pytest.raises(TypeError, match="takes \\(request, key: WriteSecret\\) alone"):
            router.post("/v1/other")(endpoint)


_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


def test_the_hand_off_runs_on_a_pool_thread_in_the_callers_context() -> None:
    def work(n: int) -> tuple[str, str, int]:
        return _TAG.get(), threading.current_thread().name, n * 2

    def fail() -> None:
        raise ValueError("refused")

    async def main() -> tuple[Any, ...]:
        _TAG.set("request-1")
        got = await hand_off(work, 21)
        with pytest.raises(ValueError, match="refused"):
            await hand_off(fail)
        return got

    tag, thread, value = asyncio.run(main())
    assert (tag, value) == ("request-1", 42)
    assert thread.startswith("leadscore-ingest") and thread != threading.current_thread().name


def test_serve_stopped_under_ingest_load_exits_with_every_acknowledged_event_stored(
    tmp_path: Path,
) -> None:
    """SIGTERM while ingest requests are on the ingest threads (no cap in flight, so more
    requests than threads): the process exits (the pool's threads do not hold it), and every
    message answered 200 is in the database."""
    db_url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db_url, model, tmp_path / "server.log", "--ingest-inflight", "0").start()
    key = cli("keys", "create", "--name", "w", "--scope", "ingest", "--database-url", db_url)
    headers = basic(key.strip())
    acked: list[str] = []
    refused: list[str] = []  # an answer other than 200 before the signal
    signalled = threading.Event()

    def send(n: int) -> None:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            for i in range(10_000):
                ids = [f"stop-{n}-{i}-{j}" for j in range(20)]
                batch = [{**page(f"u{n}", "/pricing"), "messageId": m} for m in ids]
                try:
                    resp = client.post("/v1/batch", json={"batch": batch}, headers=headers)
                except httpx.TransportError:
                    if not signalled.is_set():
                        refused.append("connection failed before the signal")
                    return
                if resp.status_code == 200:
                    acked.extend(ids)
                elif signalled.is_set():
                    return
                else:
                    refused.append(resp.text)
                    return

    senders = [threading.Thread(target=send, args=(n,)) for n in range(48)]
    try:
        for s in senders:
            s.start()
        wait_for(lambda: len(acked) >= 48 * 20 * 3, "ingest under load", timeout=60)
        assert server.proc is not None
        signalled.set()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)  # exits: no thread of the pool holds it
        assert code in (0, -signal.SIGTERM), code
        for s in senders:
            s.join(60)
    finally:
        server.stop()
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.scalars(sa.select(t.events.c.message_id)))
    finally:
        engine.dispose()
    assert refused == []
    assert acked and set(acked) <= stored
