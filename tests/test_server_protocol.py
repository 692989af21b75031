"""The HTTP protocol `serve` runs (httptools, ``api/server.py: Protocol``) on a real socket, on
each event loop it may run on: what HTTP cannot read is answered in the API's error shape, a
request's head has a size limit however it arrives, a silent client gets a 408, and requests
kept alive or pipelined are each answered. The loop is uvloop where it is installed, else
asyncio's (``event_loop``)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from leadscore.api import server
from leadscore.api.server import MAX_HEAD_BYTES, Protocol, event_loop

#: every loop `serve` may run on here: asyncio's always, uvloop where installed
LOOPS = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with the length of the body it read."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = json.dumps({"path": scope["path"], "read": len(body)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


def _run(loop_kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


def _exchange(
    loop_kind: str, chunks: list[bytes], timeout_s: float = 30.0, pause_s: float = 0.0
) -> bytes:
    """Serve ``_app`` with the protocol on ``loop_kind``, send ``chunks`` on one connection
    (``pause_s`` apart), then read until the server closes it (or 5 s of silence)."""
    protocol = type("Strict", (Protocol,), {"request_timeout_s": timeout_s})
    config = uvicorn.Config(_app, http=protocol, log_level="critical", lifespan="off")
    config.load()
    state = ServerState()

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: protocol(config=config, server_state=state, app_state={}),
            "127.0.0.1",
            0,
        )
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for chunk in chunks:
            if reader.at_eof():  # answered and closed already
                break
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                break
            if pause_s:
                await asyncio.sleep(pause_s)
        answer = b""
        while True:
            try:
                part = await asyncio.wait_for(reader.read(65536), 5.0)
            except TimeoutError:
                break
            if not part:
                break
            answer += part
        writer.close()
        srv.close()
        for transport in list(state.connections):
            transport.shutdown()
        await srv.wait_closed()
        return answer

    return bytes(_run(loop_kind, main))


def _answers(raw: bytes) -> list[tuple[int, dict[bytes, bytes], Any]]:
    """Each answer in ``raw``: status, headers, JSON body."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        size = int(headers[b"content-length"])
        out.append((int(lines[0].split(b" ")[1]), headers, json.loads(rest[:size])))
        raw = rest[size:]
    return out


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_what_http_cannot_read_is_answered_in_the_error_shape(loop_kind: str) -> None:
    for data in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        # two lengths: a request that could be read two ways (smuggling) is refused
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        [(status, headers, body)] = _answers(_exchange(loop_kind, [data]))
        assert status == 400, data
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"connection"] == b"close"
        assert len(headers[b"x-request-id"]) == 32
        assert body["error"]["code"] == "bad_request"
        assert body["error"]["message"].startswith("the request is not valid HTTP/1.1")


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_head_over_the_limit_is_refused_whole_or_dripped(loop_kind: str) -> None:
    start = b"GET / HTTP/1.1\r\nHost: x\r\n"
    many = start + b"X-A: b\r\n" * (MAX_HEAD_BYTES // 8 + 100) + b"\r\n"  # complete, 17 KB
    # never ends, 1 KB at a time, and stops once over the limit (a write after the answer could
    # reset the connection before the answer is read)
    endless = [start] + [b"X-Big: " + b"a" * 1000 + b"\r\n"] * (MAX_HEAD_BYTES // 1000 + 1)
    for chunks, pause in (([many], 0.0), (endless, 0.01), ([start + b"X: " + b"a" * 20_000], 0.0)):
        [(status, _, body)] = _answers(_exchange(loop_kind, chunks, pause_s=pause))
        assert status == 400
        assert body["error"]["message"] == (
            f"the request is not valid HTTP/1.1 (its headers are over {MAX_HEAD_BYTES:,} bytes)"
        )
    # just under the limit: answered
    fits = start + b"X: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\nConnection: close\r\n\r\n"
    [(status, _, body)] = _answers(_exchange(loop_kind, [fits[:5000], fits[5000:]], pause_s=0.01))
    assert (status, body) == (200, {"path": "/", "read": 0})


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_kept_alive_and_pipelined_requests_are_each_answered(loop_kind: str) -> None:
    body = b'{"batch": []}' * 2000  # 26 KB: longer than the head limit, which it is not
    post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    last = b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for chunks, pause in (([post, post, last], 0.05), ([post + post + last], 0.0)):
        answers = _answers(_exchange(loop_kind, chunks, pause_s=pause))
        assert [(s, b) for s, _, b in answers] == [
            (200, {"path": "/a", "read": len(body)}),
            (200, {"path": "/a", "read": len(body)}),
            (200, {"path": "/b", "read": 0}),
        ]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_client_silent_or_dripping_its_head_gets_a_408(loop_kind: str) -> None:
    for chunks in ([], [b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n"]):
        [(status, headers, body)] = _answers(
            _exchange(loop_kind, chunks, timeout_s=0.5, pause_s=0.1)
        )
        assert status == 408 and headers[b"connection"] == b"close"
        assert body["error"]["code"] == "request_timeout"


def test_serve_runs_on_uvloop_where_installed_else_on_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert event_loop() == LOOPS[-1]
    found = importlib.util.find_spec
    monkeypatch.setattr(
        server.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "uvloop" else found(name, *a),
    )
    assert event_loop() == "asyncio"
