"""How `leadscore serve` runs the app: uvicorn with the HTTP/1.1 protocol made safe for the
public internet, and a deadline for request bodies.

- HTTP/1.1 is parsed by httptools (llhttp, in C) and the event loop is uvloop where it is
  installed (Linux and macOS; asyncio elsewhere, ``event_loop``): uvicorn's pure-Python h11
  protocol on asyncio's loop costs twice the CPU per request (0.45 ms against 0.20 ms for a
  batch of 100 messages; docs/service.md, "How it is served").
- A client has ``request_timeout`` seconds to send a request's headers, counted from when the
  connection opens or its previous response was sent; one that sends nothing, or drips a
  header a byte at a time, gets a 408 and the connection is closed. (uvicorn alone closes only
  idle keep-alive connections.)
- A request's body must arrive within ``request_timeout`` seconds of its headers
  (``BodyDeadline``), else 408.
- A request the HTTP parser cannot read (a malformed request line or header, headers over
  16 KB) is answered in the API's one error shape, not uvicorn's plain text, with a new
  ``X-Request-Id`` like every other answer.
- Logs in the ``--log-format`` chosen (``logs.py``); each request is logged once by the app
  (``observe.py``), so uvicorn's own access log is off.
- What was made before serving (modules, the app, the model) is set aside from Python's
  cycle collector (``settle_memory``): each full collection would walk it all again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import json
import socket
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import ApiError
from .logs import log_config

__all__ = [
    "GC_YOUNG",
    "MAX_HEAD_BYTES",
    "REQUEST_TIMEOUT_S",
    "BodyDeadline",
    "Protocol",
    "event_loop",
    "run",
    "settle_memory",
]

REQUEST_TIMEOUT_S = 30.0
#: a request line and headers longer than this are refused (400), as most servers do
MAX_HEAD_BYTES = 16 * 1024
#: allocations between two collections of the youngest generation (Python's default is 700)
GC_YOUNG = 10_000
_PHRASES = {400: b"Bad Request", 408: b"Request Timeout"}


def _raw_error(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"x-request-id: %s\r\nconnection: close\r\n\r\n"
        % (status, _PHRASES[status], len(body), uuid.uuid4().hex.encode())
    ) + body


def _no_delay(transport: asyncio.Transport) -> None:
    """Send each write at once (TCP_NODELAY). asyncio sets it only on sockets made with
    ``IPPROTO_TCP``; one accepted from a socket bound with protocol 0 (as ``serve`` binds) would
    hold the response's body back until the client acknowledged its headers: about 40 ms of
    delayed ACK per request. (uvloop sets it on every TCP connection; set again, it is kept.)"""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the connection is already gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def event_loop() -> str:
    """The event loop ``serve`` runs on: uvloop when it is installed (the ``serve`` extra
    installs it on Linux and macOS), else asyncio's own."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request headers, a limit on their
    size and JSON protocol errors.

    llhttp has no limit of its own on the size of a request's head, so the bytes received
    while one is incomplete are counted here: a head still incomplete after more than
    ``MAX_HEAD_BYTES`` is refused. A head that begins in the middle of a received chunk (after
    the body of the previous request, pipelined) is counted from the next chunk on, so such a
    head may grow one chunk longer before it is refused; never without bound."""

    request_timeout_s = REQUEST_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _in_head = True  # between two requests, or in a request's line and headers
    _head_bytes = 0  # of the head being received, as counted (above)
    _heads = 0  # heads complete on this connection
    _refusal: str | None = None  # why the request is refused, when it is not the parser's word

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiting_for_headers():
            self._arm()  # a new request begins on a kept-alive connection
        in_head, heads = self._in_head, self._heads
        super().data_received(data)
        if self.transport.is_closing():  # refused (400) by the parser
            return
        if self._in_head:
            if in_head and heads == self._heads:  # the whole chunk is one head's
                self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.send_400_response(self._too_long)
                return
        if not self._waiting_for_headers():
            self._disarm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._heads += 1
        # a head that arrived whole in one chunk is measured here (name: value CRLF)
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refusal = self._too_long
            raise ValueError(self._refusal)  # the parser stops; answered by send_400_response
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._waiting_for_headers():
            return
        self.transport.write(
            _raw_error(
                408,
                "request_timeout",
                f"the request's headers did not arrive within {self.request_timeout_s:g} s",
            )
        )
        self.transport.close()

    @property
    def _too_long(self) -> str:
        return f"its headers are over {self.max_head_bytes:,} bytes"

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        msg = self._refusal or msg
        self.transport.write(
            _raw_error(400, "bad_request", f"the request is not valid HTTP/1.1 ({msg.rstrip('.')})")
        )
        self.transport.close()


class BodyDeadline:
    """ASGI middleware: a request's body must arrive within ``seconds`` of its headers, else
    ``ApiError(408)`` is raised where the body is read (and answered in the error shape)."""

    def __init__(self, app: Any, seconds: float = REQUEST_TIMEOUT_S) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Any:
            nonlocal complete
            if complete:  # the body is in: what follows is waiting for a disconnect
                return await receive()
            try:
                # a timer, not wait_for's task per message: the body is usually in already
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the request's body did not arrive within {self.seconds:g} s",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)


def settle_memory(young: int = GC_YOUNG) -> None:
    """Before serving: what exists now lives as long as the process (modules, the app, the
    active model), so it is moved out of the cycle collector's reach (``gc.freeze``) — a full
    collection walked all of it again, about 140,000 objects and 150 ms in the middle of a
    request, once every few hundred requests. The youngest generation is collected every
    ``young`` allocations instead of 700: a request of 100 messages makes tens of thousands of
    short-lived objects, nearly all freed at once by their reference counts."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def run(
    app: Any,
    sock: socket.socket,
    *,
    log_level: str,
    request_timeout: float = REQUEST_TIMEOUT_S,
    log_format: str = "text",
) -> bool:
    """Serve ``app`` on the listening ``sock`` until stopped (SIGINT or SIGTERM); whether it
    started."""
    import uvicorn

    protocol = type("LeadscoreProtocol", (Protocol,), {"request_timeout_s": request_timeout})
    config = uvicorn.Config(
        BodyDeadline(app, request_timeout),
        http=protocol,
        loop=event_loop(),
        log_level=log_level,
        log_config=log_config(log_format, log_level),
        access_log=False,
        timeout_keep_alive=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    settle_memory()
    server.run(sockets=[sock])
    return bool(server.started)
