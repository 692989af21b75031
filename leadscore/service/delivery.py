"""Webhook delivery: at-least-once from the durable outbox.

The deliverer posts due rows, signs each body with the webhook's secret
(``X-Leadscore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``), logs every
attempt in ``deliveries`` and retries failures with exponential backoff (10 s, 20 s, 40 s …
capped at one hour) up to ``MAX_ATTEMPTS``. A receiver must accept the same delivery twice
(``X-Leadscore-Delivery`` is stable across retries).

Several processes may deliver from one outbox (several ``leadscore serve`` on one PostgreSQL).
A deliverer claims the rows it will post before posting them, in one short transaction:
on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` (rows another deliverer is claiming are skipped,
not waited for), and the claim is a lease — the row's next attempt is moved ``lease_s`` ahead.
So each notification is posted by one process, and one whose process dies before recording
the outcome becomes due again when the lease ends and is sent then (at least once, never
lost). Rows a turn had no time for are given back at once. Whatever goes wrong with one delivery (a
receiver that is down, slow or redirecting, a URL that cannot be sent to) is recorded and
logged for that delivery alone: it never stops the others.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from ..store.db import WRITES
from . import metrics
from .clock import SYSTEM, Clock
from .webhook_urls import check_url, redact_url

__all__ = ["MAX_ATTEMPTS", "REMOVED", "Deliverer", "end_pending", "end_removed", "sign"]

log = logging.getLogger("leadscore.webhooks")

MAX_ATTEMPTS = 12
BASE_DELAY_S = 10.0
MAX_DELAY_S = 3600.0
#: how long a claimed row waits before another deliverer may take it, beyond the turn's budget
LEASE_MARGIN_S = 60.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


#: why a notification of a removed webhook is not sent
REMOVED = "the webhook was removed"


def end_pending(at_us: int, *where: Any) -> sa.Update:
    return (
        sa.update(t.outbox)
        .where(t.outbox.c.delivered_at_us.is_(None), t.outbox.c.failed_at_us.is_(None), *where)
        .values(failed_at_us=at_us, last_error=REMOVED)
    )


def end_removed(engine: Engine, at_us: int) -> int:
    """Notifications still pending for a removed webhook (one written by an ingest that
    committed just after the removal) end as failed; how many."""
    inactive = sa.select(t.webhooks.c.id).where(sa.not_(t.webhooks.c.active))
    with engine.begin() as conn:
        return int(conn.execute(end_pending(at_us, t.outbox.c.webhook_id.in_(inactive))).rowcount)


def _delay_s(attempts: int) -> float:
    return float(min(BASE_DELAY_S * 2.0 ** max(attempts - 1, 0), MAX_DELAY_S))


class Deliverer:
    """Posts due outbox rows until stopped, each webhook on its own worker (``receivers`` at
    once), up to ``per_receiver`` requests at once to one receiver: a dead or slow receiver
    holds up only its own notifications. Each request has ``timeout_s`` per network step, and
    none beyond the end of its turn; each turn of one receiver has ``budget_s`` in all, after
    which its remaining rows wait for the next turn. A turn's outcomes are stored in one
    transaction (one commit, not one per delivery); a crash before it means those are sent
    again, which at-least-once allows. Every failure is logged with its delivery and webhook."""

    def __init__(
        self,
        engine: Engine,
        *,
        poll_s: float = 0.5,
        timeout_s: float = 10.0,
        budget_s: float = 30.0,
        receivers: int = 8,
        per_receiver: int = 4,
        clock: Clock | None = None,
        lease_s: float | None = None,
    ) -> None:
        self.engine = engine
        #: a claim's length: a turn ends within its budget, so only a dead or stuck process's
        #: claims outlive it
        self.lease_s = budget_s + LEASE_MARGIN_S if lease_s is None else lease_s
        self.clock: Clock = clock or SYSTEM
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.budget_s = budget_s
        self.per_receiver = per_receiver
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=receivers * per_receiver),
        )
        self._pool = ThreadPoolExecutor(max_workers=receivers, thread_name_prefix="leadscore-hook")
        self._busy: set[int] = set()  # webhooks with a turn in flight
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            end_removed(self.engine, self.clock.now_us())
        except sa.exc.OperationalError as e:
            log.error("webhooks: cannot end the notifications of removed webhooks (%s)", e.orig)
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
        with self._busy_lock:
            busy = set(self._busy)
        due = self.claim(limit, busy)
        turns: dict[int, list[Any]] = {}
        for row in due:
            turns.setdefault(row.webhook_id, []).append(row)
        futures: list[Future[None]] = []
        with self._busy_lock:
            for hook_id, rows in turns.items():
                self._busy.add(hook_id)
                futures.append(self._pool.submit(self._turn, hook_id, rows))
        if wait:
            for f in futures:
                f.result()
        return len(due)

    def claim(self, limit: int = 50, busy: set[int] | None = None) -> list[Any]:
        """Claim up to ``limit`` due rows (none of the ``busy`` webhooks, which have a turn in
        flight here) for ``lease_s``: their next attempt moves to the lease's end, in one
        transaction. The rows as they were, with ``claimed_until`` (the lease's end)."""
        now = self.clock.now_us()
        until = now + int(self.lease_s * 1_000_000)
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
        with self.engine.connect() as conn:  # a read first: no write while nothing is due
            if conn.execute(query.with_only_columns(t.outbox.c.id).limit(1)).first() is None:
                return []
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(of=t.outbox, skip_locked=True)
        # SQLite: BEGIN IMMEDIATE, as it reads before it writes
        with self.engine.execution_options(**{WRITES: True}).begin() as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    sa.update(t.outbox)
                    .where(t.outbox.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_us=until)
                )
        return [_Claimed(r, until) for r in rows]

    def _turn(self, hook_id: int, rows: list[Any]) -> None:
        """One receiver's due notifications, up to ``per_receiver`` at once, within the time
        budget; their outcomes stored in one transaction at the end of the turn."""
        deadline = time.monotonic() + self.budget_s
        try:
            workers = max(1, min(self.per_receiver, len(rows)))
            with ThreadPoolExecutor(
                workers, thread_name_prefix=f"leadscore-hook-{hook_id}"
            ) as pool:
                sent = [(row, pool.submit(self._send, row, deadline)) for row in rows]
                outcomes = [(row, f.result()) for row, f in sent]
            self._record(
                [(row, o) for row, o in outcomes if o is not None],
                [row for row, o in outcomes if o is None],
            )
        except sa.exc.OperationalError as e:  # the outcomes could not be stored: sent again later
            log.error(
                "webhook %s (%s): cannot store the outcome of %s deliveries (%s)",
                hook_id,
                redact_url(rows[0].url),
                len(rows),
                e.orig,
            )
        except Exception:
            log.exception(
                "webhook %s (%s): a turn failed unexpectedly", hook_id, redact_url(rows[0].url)
            )
        finally:
            with self._busy_lock:
                self._busy.discard(hook_id)
            self._wake.set()  # its next rows may be due already

    def _send(self, row: Any, deadline: float) -> tuple[int | None, str | None, bool, float] | None:
        """One attempt: (status, error, give up, milliseconds); None when the turn is over
        before it starts (it waits for the next turn)."""
        if self._stop.is_set() or time.monotonic() > deadline:
            return None
        started = time.perf_counter()
        status, error, give_up = self._post(row, deadline)
        if error is not None:  # logged and stored: no query string or password of the URL
            error = _scrub(error, row.url)
        ms = (time.perf_counter() - started) * 1000
        if error is not None:
            log.warning(
                "webhook delivery %s to webhook %s (%s), attempt %s: %s",
                row.id,
                row.webhook_id,
                redact_url(row.url),
                row.attempts + 1,
                error,
            )
        return status, error, give_up, ms

    def _record(
        self,
        outcomes: list[tuple[Any, tuple[int | None, str | None, bool, float]]],
        untried: list[Any] | None = None,
    ) -> None:
        """Every attempt in ``deliveries`` and each row's new state, in one transaction; rows
        the turn had no time for are given back (due as before). A row whose lease ended and
        that another deliverer claimed since is left to that one."""
        if not outcomes and not untried:
            return
        at = self.clock.now_us()
        # SQLite: BEGIN IMMEDIATE, as it reads (which rows an erasure left) before it writes
        with self.engine.execution_options(**{WRITES: True}).begin() as conn:
            for row in untried or []:
                conn.execute(
                    sa.update(t.outbox)
                    .where(t.outbox.c.id == row.id, t.outbox.c.next_attempt_us == row.claimed_until)
                    .values(next_attempt_us=row.next_attempt_us)
                )
            if not outcomes:
                return
            # a row an erasure deleted meanwhile (its person is gone) has no outcome to keep;
            # the rows still there are locked against such a delete until this commits
            present = sa.select(t.outbox.c.id).where(t.outbox.c.id.in_([r.id for r, _ in outcomes]))
            if conn.dialect.name == "postgresql":
                present = present.with_for_update(read=True)
            kept = set(conn.execute(present).scalars())
            outcomes = [(row, o) for row, o in outcomes if row.id in kept]
            if not outcomes:
                return
            conn.execute(
                sa.insert(t.deliveries),
                [
                    {
                        "outbox_id": row.id,
                        "at_us": at,
                        "status_code": status,
                        "error": error,
                        "duration_ms": ms,
                    }
                    for row, (status, error, _, ms) in outcomes
                ],
            )
            for row, (_status, error, give_up, _ms) in outcomes:
                attempts = row.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": error}
                if error is None:
                    values["delivered_at_us"] = at
                elif attempts >= MAX_ATTEMPTS or give_up:
                    values["failed_at_us"] = at
                else:
                    values["next_attempt_us"] = at + int(_delay_s(attempts) * 1_000_000)
                conn.execute(
                    sa.update(t.outbox)
                    .where(t.outbox.c.id == row.id, t.outbox.c.next_attempt_us == row.claimed_until)
                    .values(**values)
                )
        metrics.attempts_stored(outcomes, MAX_ATTEMPTS)  # counted once committed

    def _post(self, row: Any, deadline: float) -> tuple[int | None, str | None, bool]:
        """One POST: (status, error or None, whether to give up at once). Never raises:
        whatever goes wrong is this delivery's error."""
        try:
            url = check_url(row.url)  # one stored before URLs were checked may be unusable
        except ConfigError as e:
            return None, f"the URL cannot be sent to: {e}", True
        body = row.payload.encode()
        ts = int(time.time())
        # each network step may take timeout_s, but none beyond the receiver's turn
        timeout = max(min(self.timeout_s, deadline - time.monotonic()), 0.5)
        try:
            # the status line and headers decide; the answer's body is never read, so a
            # receiver that trickles one holds nothing
            with self.client.stream(
                "POST",
                url,
                content=body,
                timeout=timeout,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "leadscore-webhooks",
                    "X-Leadscore-Event": row.event,
                    "X-Leadscore-Delivery": str(row.id),
                    "X-Leadscore-Signature": sign(row.secret, ts, body),
                },
            ) as resp:
                status = resp.status_code
                where = resp.headers.get("location", "")
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}", False
        except Exception as e:  # e.g. a URL httpx cannot send to: this delivery's failure only
            return None, f"{type(e).__name__}: {e}", True
        if 300 <= status < 400:
            where = redact_url(where)[:200]
            return status, f"HTTP {status} (redirects are not followed: {where})", False
        if not 200 <= status < 300:
            return status, f"HTTP {status}", False
        return status, None, False


def _scrub(error: str, url: str) -> str:
    """``error`` with the webhook's URL, as written or quoted, shown redacted."""
    shown = redact_url(url)
    for form in (repr(url)[1:-1], url):
        if form:
            error = error.replace(form, shown)
    return error


class _Claimed:
    """A claimed outbox row: the row's columns as read, and ``claimed_until``."""

    __slots__ = ("_row", "claimed_until")

    def __init__(self, row: Any, until: int) -> None:
        self._row = row
        self.claimed_until = until

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)
