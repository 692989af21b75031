"""Queueing notifications in the outbox, in the caller's transaction: one row per webhook
subscribed to the event, so a notification exists exactly when the change it reports does.
The deliverer (``webhooks.py``) posts them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..store import schema as t
from .common import dumps
from .handoff_writes import insert_outbox

__all__ = ["Notifier"]


class Notifier:
    """Reads the subscribed webhooks once per event and transaction."""

    def __init__(self, conn: Connection, now_us: int) -> None:
        self.conn = conn
        self.now_us = now_us
        self._hooks: dict[str, list[int]] | None = None

    def preload(self, hooks: dict[str, list[int]]) -> None:
        """The subscribed webhooks by event, read by the caller with its other reads."""
        if self._hooks is None:
            self._hooks = hooks

    def subscribers(self, event: str) -> list[int]:
        if self._hooks is None:
            self._hooks = {}
            rows = self.conn.execute(
                sa.select(t.webhooks.c.id, t.webhooks.c.events).where(t.webhooks.c.active)
            ).all()
            for hook_id, events in rows:
                for name in events.split(","):
                    self._hooks.setdefault(name, []).append(hook_id)
        return self._hooks.get(event, [])

    def queue(self, event: str, payload: dict[str, Any]) -> int:
        """Queue ``payload`` (its ``type`` is set to ``event``) for every subscriber; how many."""
        return self.queue_many(event, [payload])

    def queue_many(self, event: str, payloads: list[dict[str, Any]]) -> int:
        """Queue several notifications of one event in one statement; how many rows."""
        hooks = self.subscribers(event)
        if not hooks or not payloads:
            return 0
        rows = [
            {
                "webhook_id": h,
                "event": event,
                "payload": body,
                "created_at_us": self.now_us,
                "next_attempt_us": self.now_us,
            }
            for body in (dumps({"type": event, **p}) for p in payloads)
            for h in hooks
        ]
        insert_outbox(self.conn, rows)
        return len(rows)
