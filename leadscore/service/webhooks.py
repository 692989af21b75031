"""Webhooks: registration, listing, removal, and sending again what failed.

A notification is written to ``outbox`` in the same transaction that changes the lead, so it
exists exactly when the change does; ``delivery.py`` posts it. A URL is checked when the webhook
is added (``webhook_urls.py``), so one that cannot be sent to is never registered.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from .common import iso, now_us
from .delivery import MAX_ATTEMPTS, REMOVED, Deliverer, end_pending, end_removed, sign
from .webhook_urls import check_url

__all__ = [
    "EVENTS",
    "MAX_ATTEMPTS",
    "REMOVED",
    "Deliverer",
    "add_webhook",
    "end_removed",
    "list_deliveries",
    "list_webhooks",
    "remove_webhook",
    "retry_failed",
    "sign",
]

EVENTS = ("lead.mql", "lead.assigned", "lead.sla_breached", "lead.stage_changed")


def add_webhook(
    engine: Engine, url: str, events: list[str], secret: str | None = None
) -> dict[str, Any]:
    url = check_url(url)
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
    """Stop notifying a webhook; its pending notifications end as failed (``REMOVED``), so
    none stays pending for ever. Its delivery log is kept."""
    with engine.begin() as conn:
        found = conn.execute(
            sa.update(t.webhooks).where(t.webhooks.c.id == hook_id).values(active=False)
        ).rowcount
        if found:
            conn.execute(end_pending(now_us(), t.outbox.c.webhook_id == hook_id))
    return bool(found)


def retry_failed(engine: Engine, hook_id: int | None = None, at_us: int | None = None) -> int:
    """Notifications that used up their retries, of active webhooks (or of ``hook_id``), are
    due again now with a fresh set of ``MAX_ATTEMPTS`` tries; how many. The delivery log of
    the earlier attempts is kept."""
    at = now_us() if at_us is None else at_us
    active = sa.select(t.webhooks.c.id).where(t.webhooks.c.active)
    if hook_id is not None:
        with engine.connect() as conn:
            hook = conn.execute(
                sa.select(t.webhooks.c.active).where(t.webhooks.c.id == hook_id)
            ).first()
        if hook is None:
            raise ConfigError(f"there is no webhook {hook_id}")
        if not hook.active:
            raise ConfigError(f"webhook {hook_id} was removed; add it again to notify it")
        active = active.where(t.webhooks.c.id == hook_id)
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.update(t.outbox)
                .where(
                    t.outbox.c.failed_at_us.is_not(None),
                    t.outbox.c.delivered_at_us.is_(None),
                    t.outbox.c.webhook_id.in_(active),
                )
                .values(failed_at_us=None, attempts=0, next_attempt_us=at)
            ).rowcount
        )


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
