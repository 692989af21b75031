"""Load the service sheds instead of queueing: per-caller rate limits (429) and a cap on the
requests being answered at once (503), both answered in the one error shape with
``Retry-After``.

- Ingest (``/v1/*``) is limited in events per write key (service/ratelimit.py decides): a key
  whose bucket is empty is refused before its body is read; a batch is charged its number of
  messages once parsed, before any is checked or stored.
- The read and admin API (``/api/*``) is limited in requests per API token; requests without a
  valid token are counted per client address (so guessing tokens is throttled too).
- ``Shed`` caps the ingest and API requests in flight (from their headers to the end of their
  answer); beyond the cap a request is answered ``503 overloaded`` at once, before its body is
  read, so neither memory nor the database's work queue grows with the load.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Hashable
from typing import Any

from ..service.ratelimit import Limiter, Settings, retry_after_header
from .errors import ApiError

__all__ = ["Limits", "Shed"]


class Limits:
    """The limits of one app: its settings, one limiter for ingest and one for the API, and
    the requests in flight."""

    def __init__(
        self, settings: Settings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or Settings()
        self.ingest = Limiter(self.settings.ingest, clock, self.settings.max_keys)
        self.api = Limiter(self.settings.api, clock, self.settings.max_keys)
        self.inflight = {"ingest": 0, "api": 0}
        self.caps = {
            "ingest": self.settings.ingest_inflight,
            "api": self.settings.api_inflight,
        }

    def ingest_ready(self, key_id: int) -> None:
        """429 when the write key has no token left (before its body is read)."""
        decision = self.ingest.ready(key_id)
        if not decision.admitted:
            raise _too_many(
                decision.retry_after_s,
                "this write key is over its limit of "
                f"{_rate(self.settings.ingest.per_s)} events a second",
            )

    def charge_events(self, key_id: int, events: int) -> None:
        """Charge a batch of ``events`` messages to the write key, or 429."""
        decision = self.ingest.take(key_id, max(events, 1))
        if not decision.admitted:
            raise _too_many(
                decision.retry_after_s,
                f"this write key is over its limit of {_rate(self.settings.ingest.per_s)} "
                f"events a second (burst {_rate(self.settings.ingest.burst)}); "
                f"{events:,} events were sent",
            )

    def charge_request(self, caller: Hashable, what: str) -> None:
        """Charge one API request to ``caller`` (a key id or a client address), or 429."""
        decision = self.api.take(caller)
        if not decision.admitted:
            raise _too_many(
                decision.retry_after_s,
                f"this {what} is over its limit of {_rate(self.settings.api.per_s)} "
                "API requests a second",
            )


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,g}"


def _too_many(seconds: float, message: str) -> ApiError:
    after = retry_after_header(seconds)
    return ApiError(
        429,
        "rate_limited",
        f"{message}; retry after {after} s",
        [{"retry_after_s": int(after)}],
        headers={"Retry-After": after},
    )


def _pool(path: str) -> str | None:
    if path.startswith("/v1/"):
        return "ingest"
    if path.startswith("/api/"):
        return "api"
    return None


_NAMES = {"ingest": "ingest", "api": "API"}


def _overloaded(pool: str, cap: int) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": f"the service is answering {cap:,} {_NAMES[pool]} "
                f"request{'s' if cap != 1 else ''} already (its cap); retry after the seconds "
                "in Retry-After",
                "details": [],
            }
        }
    ).encode()
    # a little spread, so that shed clients do not all come back in the same second
    return body, str(random.randint(1, 3))


class Shed:
    """ASGI middleware: at most ``limits.caps[pool]`` ingest (``/v1/``) and API (``/api/``)
    requests in flight; beyond that, ``503 overloaded`` with ``Retry-After`` at once. Other
    paths (``/health``, the schema and docs) are not counted. Runs on the event loop alone,
    so the counts need no lock."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pool = _pool(scope.get("path", "")) if scope["type"] == "http" else None
        cap = self.limits.caps[pool] if pool is not None else 0
        if pool is None or cap == 0:
            await self.app(scope, receive, send)
            return
        if self.limits.inflight[pool] >= cap:
            body, after = _overloaded(pool, cap)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", after.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.limits.inflight[pool] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.inflight[pool] -= 1
