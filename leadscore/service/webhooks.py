"""Webhooks: registration and at-least-once delivery from the durable outbox.

A notification is written to ``outbox`` in the same transaction that changes the lead, so it
exists exactly when the change does. The deliverer posts due rows, signs each body with the
webhook's secret (``X-Leadscore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``),
logs every attempt in ``deliveries`` and retries failures with exponential backoff (10 s, 20 s,
40 s … capped at one hour) up to ``MAX_ATTEMPTS``. A receiver must accept the same delivery
twice (``X-Leadscore-Delivery`` is stable across retries).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from .common import iso, now_us

__all__ = [
    "EVENTS",
    "MAX_ATTEMPTS",
    "Deliverer",
    "add_webhook",
    "list_webhooks",
    "remove_webhook",
    "sign",
]

EVENTS = ("lead.mql",)
MAX_ATTEMPTS = 12
BASE_DELAY_S = 10.0
MAX_DELAY_S = 3600.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def add_webhook(
    engine: Engine, url: str, events: list[str], secret: str | None = None
) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{url!r} is not an http(s) URL")
    bad = [e for e in events if e not in EVENTS]
    if bad or not events:
        raise ConfigError(
            f"unknown webhook event {', '.join(bad) or '(none)'}; use one of {', '.join(EVENTS)}"
        )
    secret = secret or "whsec_" + secrets.token_urlsafe(24)
    with engine.begin() as conn:
        hook_id = conn.execute(
            sa.insert(t.webhooks)
            .values(url=url, events=",".join(events), secret=secret, created_at_us=now_us())
            .returning(t.webhooks.c.id)
        ).scalar_one()
    return {"id": int(hook_id), "url": url, "events": events, "secret": secret}


def list_webhooks(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        hooks = conn.execute(sa.select(t.webhooks).order_by(t.webhooks.c.id)).all()
        stats = {
            r.webhook_id: r
            for r in conn.execute(
                sa.select(
                    t.outbox.c.webhook_id,
                    sa.func.count()
                    .filter(t.outbox.c.delivered_at_us.is_not(None))
                    .label("delivered"),
                    sa.func.count()
                    .filter(t.outbox.c.delivered_at_us.is_(None), t.outbox.c.failed_at_us.is_(None))
                    .label("pending"),
                    sa.func.count().filter(t.outbox.c.failed_at_us.is_not(None)).label("failed"),
                ).group_by(t.outbox.c.webhook_id)
            )
        }
    out = []
    for h in hooks:
        s = stats.get(h.id)
        out.append(
            {
                "id": h.id,
                "url": h.url,
                "events": h.events.split(","),
                "active": h.active,
                "created_at": iso(h.created_at_us),
                "delivered": s.delivered if s else 0,
                "pending": s.pending if s else 0,
                "failed": s.failed if s else 0,
            }
        )
    return out


def remove_webhook(engine: Engine, hook_id: int) -> bool:
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.update(t.webhooks).where(t.webhooks.c.id == hook_id).values(active=False)
            ).rowcount
        )


def _delay_s(attempts: int) -> float:
    return float(min(BASE_DELAY_S * 2.0 ** max(attempts - 1, 0), MAX_DELAY_S))


class Deliverer:
    """Posts due outbox rows on a background thread until stopped."""

    def __init__(self, engine: Engine, *, poll_s: float = 0.5, timeout_s: float = 10.0) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadscore-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:  # the database may be briefly unavailable; try again later
                sent = 0
            if not sent:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def deliver_due(self, limit: int = 50) -> int:
        """Try every due notification once; returns how many were attempted."""
        now = now_us()
        with self.engine.connect() as conn:
            due = conn.execute(
                sa.select(t.outbox, t.webhooks.c.url, t.webhooks.c.secret)
                .join(t.webhooks, t.webhooks.c.id == t.outbox.c.webhook_id)
                .where(
                    t.outbox.c.delivered_at_us.is_(None),
                    t.outbox.c.failed_at_us.is_(None),
                    t.outbox.c.next_attempt_us <= now,
                    t.webhooks.c.active,
                )
                .order_by(t.outbox.c.id)
                .limit(limit)
            ).all()
        for row in due:
            if self._stop.is_set():
                break
            self._attempt(row)
        return len(due)

    def _attempt(self, row: Any) -> None:
        body = row.payload.encode()
        ts = int(time.time())
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            resp = self.client.post(
                row.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "leadscore-webhooks",
                    "X-Leadscore-Event": row.event,
                    "X-Leadscore-Delivery": str(row.id),
                    "X-Leadscore-Signature": sign(row.secret, ts, body),
                },
            )
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        ms = (time.perf_counter() - started) * 1000
        at = now_us()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["delivered_at_us"] = at
        elif attempts >= MAX_ATTEMPTS:
            values["failed_at_us"] = at
        else:
            values["next_attempt_us"] = at + int(_delay_s(attempts) * 1_000_000)
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.deliveries).values(
                    outbox_id=row.id, at_us=at, status_code=status, error=error, duration_ms=ms
                )
            )
            conn.execute(sa.update(t.outbox).where(t.outbox.c.id == row.id).values(**values))
