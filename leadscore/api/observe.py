"""Every request seen from outside: its id, one access-log line, and the HTTP metrics.

The id is the client's ``X-Request-Id`` when it is a safe token (1–128 characters of letters,
digits and ``._:+=/-``; a load balancer's or a client library's id passes), else a new one (32
hex digits); a header that is not safe is not used and not logged. It is set for the request's
whole life (``logs.REQUEST_ID``), so every line logged while it is answered carries it, and it
is echoed in the answer's ``X-Request-Id`` header — on every answer, errors and 500s included:
this middleware wraps the whole app, outside Starlette's error handling (``api.App``).

The access line (logger ``leadscore.access``, INFO) names the method, the route template
(``/api/leads/{lead_id}``: not the path, whose lead id is personal data that an erasure could
not reach in a log file; a path no route has is shown as sent, percent-encoded, at most 200
characters, without its query), the status and the time taken; never headers, so never a key or
a token.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI

from ..service import metrics
from .logs import REQUEST_ID

__all__ = ["HEADER", "Observe", "Templates", "request_id_from"]

HEADER = "X-Request-Id"
_HEADER = HEADER.lower().encode()
_SAFE = re.compile(rb"[A-Za-z0-9._:+=/\-]{1,128}")

log = logging.getLogger("leadscore.access")

#: methods counted by name; any other (HTTP allows any token) is counted as OTHER, so a client
#: cannot make a new metric series per request
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's request id when it is safe to log and echo, else a new one."""
    for name, value in headers:
        if name.lower() == _HEADER:
            if _SAFE.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _shown(scope: dict[str, Any], route: str) -> str:
    """What the access line names: the route template, or an unmatched path as sent."""
    if route != "unmatched":
        return route
    raw = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "backslashreplace")
    return bytes(raw).decode("ascii", "backslashreplace")[:200]


def _route(scope: dict[str, Any], templates: Templates | None = None) -> str:
    """The matched route's path template: bounded, whatever paths clients send. A request
    answered before routing (shed by the cap in flight) is matched against the app's
    ``templates`` here, so it is counted under its route too."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    if "endpoint" in scope:  # a mounted app (the docs' static files): its prefix
        return f"{scope.get('root_path', '')}/{{path}}"
    if templates is not None:
        return templates.match(str(scope.get("path", ""))) or "unmatched"
    return "unmatched"


class Templates:
    """The app's path templates (``/api/leads/{lead_id}``) from its OpenAPI schema, read at the
    first request that needs them (every route is added by then)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str | None:
        if self._compiled is None:
            try:
                paths = list(self.app.openapi().get("paths", {}))
            except Exception:  # never fail an answer for a metric's label
                paths = []
            self._compiled = [
                (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"), t)
                for t in paths
            ]
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template
        return None


class Observe:
    """ASGI middleware: the request id, the access line and the HTTP metrics. The app puts it
    outside every middleware that ``add_middleware`` adds, Starlette's error handling included,
    so 500 answers carry the request id and are counted (``api.App``)."""

    def __init__(self, app: Any, templates: Templates | None = None) -> None:
        """``templates``: the app's, to name the route of a request answered before routing."""
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope.get("headers") or [])
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status = 500  # until an answer starts: the app failed before sending one

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                headers.append((_HEADER, rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope, self.templates)
            method = str(scope.get("method", ""))
            metrics.http_request(method if method in _METHODS else "OTHER", route, status, seconds)
            log.info(
                "%s %s %s %.1f ms",
                method,
                _shown(scope, route),
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
            # after a failure the id stays set: the server logs the error next, in this
            # request's own task, and that line carries it too
            if not failed:
                REQUEST_ID.reset(token)
