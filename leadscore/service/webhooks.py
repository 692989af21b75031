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
import logging
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from .clock import SYSTEM, Clock
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

log = logging.getLogger("leadscore.webhooks")

EVENTS = ("lead.mql", "lead.assigned", "lead.sla_breached", "lead.stage_changed")
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
    """Posts due outbox rows until stopped, each webhook on its own worker: a dead or slow
    receiver holds up only its own notifications. Each request has ``timeout_s`` per network
    step; each turn of one receiver has ``budget_s`` in all, after which its remaining rows
    wait for the next turn. Every failure is logged with its delivery and webhook."""

    def __init__(
        self,
        engine: Engine,
        *,
        poll_s: float = 0.5,
        timeout_s: float = 10.0,
        budget_s: float = 30.0,
        receivers: int = 8,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.clock: Clock = clock or SYSTEM
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.budget_s = budget_s
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=receivers * 2),
        )
        self._pool = ThreadPoolExecutor(max_workers=receivers, thread_name_prefix="leadscore-hook")
        self._busy: set[int] = set()  # webhooks with a turn in flight
        self._busy_lock = threading.Lock()
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
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_due(wait=False)
            except sa.exc.OperationalError as e:  # the database may be briefly unavailable
                log.error("webhooks: cannot read the outbox (%s); trying again", e.orig)
                sent = 0
            except Exception:
                log.exception("webhooks: cannot read the outbox; trying again")
                sent = 0
            if not sent:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def deliver_due(self, limit: int = 50, *, wait: bool = True) -> int:
        """Start a turn for every webhook with due notifications and none in flight; returns
        how many notifications the turns will try. ``wait``: until every turn has ended."""
        now = self.clock.now_us()
        with self._busy_lock:
            busy = set(self._busy)
        query = (
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
        )
        if busy:
            query = query.where(t.outbox.c.webhook_id.not_in(sorted(busy)))
        with self.engine.connect() as conn:
            due = conn.execute(query).all()
        turns: dict[int, list[Any]] = {}
        for row in due:
            turns.setdefault(row.webhook_id, []).append(row)
        futures: list[Future[None]] = []
        with self._busy_lock:
            for hook_id, rows in turns.items():
                if hook_id in self._busy:
                    continue
                self._busy.add(hook_id)
                futures.append(self._pool.submit(self._turn, hook_id, rows))
        if wait:
            for f in futures:
                f.result()
        return len(due)

    def _turn(self, hook_id: int, rows: list[Any]) -> None:
        """One receiver's due notifications, in order, within the time budget."""
        deadline = time.monotonic() + self.budget_s
        try:
            for row in rows:
                if self._stop.is_set() or time.monotonic() > deadline:
                    break  # the rest wait for the next turn
                try:
                    self._attempt(row)
                except sa.exc.OperationalError as e:  # the outcome could not be stored
                    log.error(
                        "webhook delivery %s to webhook %s (%s): cannot store the outcome (%s)",
                        row.id,
                        hook_id,
                        row.url,
                        e.orig,
                    )
                except Exception:
                    log.exception(
                        "webhook delivery %s to webhook %s (%s) failed unexpectedly",
                        row.id,
                        hook_id,
                        row.url,
                    )
        finally:
            with self._busy_lock:
                self._busy.discard(hook_id)
            self._wake.set()  # its next rows may be due already

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
        if error is not None:
            log.warning(
                "webhook delivery %s to webhook %s (%s), attempt %s: %s",
                row.id,
                row.webhook_id,
                row.url,
                row.attempts + 1,
                error,
            )
        at = self.clock.now_us()
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


def list_deliveries(
    engine: Engine, *, hook_id: int | None = None, every: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """Notifications that failed or are waiting for a retry (``every``: delivered ones too),
    newest first: the webhook, the attempts, the last error and when the next attempt is."""
    o = t.outbox
    query = sa.select(o, t.webhooks.c.url).join(t.webhooks, t.webhooks.c.id == o.c.webhook_id)
    if not every:
        query = query.where(
            o.c.delivered_at_us.is_(None),
            sa.or_(o.c.attempts > 0, o.c.failed_at_us.is_not(None)),
        )
    if hook_id is not None:
        query = query.where(o.c.webhook_id == hook_id)
    query = query.order_by(o.c.created_at_us.desc(), o.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        if r.delivered_at_us is not None:
            state, next_at = "delivered", None
        elif r.failed_at_us is not None:
            state, next_at = "failed", None
        else:
            state, next_at = "retrying", iso(r.next_attempt_us)
        out.append(
            {
                "id": r.id,
                "webhook": r.webhook_id,
                "url": r.url,
                "event": r.event,
                "created_at": iso(r.created_at_us),
                "state": state,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "next_attempt": next_at,
            }
        )
    return out
