"""Speed-to-lead SLAs: marking breaches when they happen, and the thread inside
``leadscore serve`` that does it.

A breach is an open episode whose deadline has passed with no touch at or before it (and no
move on from ``mql`` by then). It is marked with the deadline as its time — when it really
happened, also for deadlines that passed while the server was down — in one transaction with
its ``lead.sla_breached`` notification and, when the SLA names ``escalate_to``, the reassignment
to that owner. The mark is a compare-and-set on ``sla_notified_at_us``, so a breach is marked and
sent once, whatever crashes or restarts come between.

Several processes on one PostgreSQL each run the watch. Each claims the episodes it marks with
``FOR UPDATE SKIP LOCKED`` (an episode another process is marking is skipped, not waited for)
and takes their leads' locks without waiting (a lead being changed right now is left for the
next turn, a moment later); the claim ends with the transaction, so an episode whose process
died while marking it is marked by the next turn of any process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..handoff import Routing
from ..store import schema as t
from . import locks
from .clock import Clock
from .common import US, iso
from .handoff import assign
from .notify import Notifier

__all__ = ["SlaWatch", "breach_due", "due_query", "next_due"]

log = logging.getLogger("leadscore.sla")

_E = t.mql_episodes.c


def _pending() -> list[Any]:
    """Episodes whose deadline is set and not yet met, marked or sent."""
    due = _E.sla_due_at_us
    untouched = sa.or_(_E.first_touch_at_us.is_(None), _E.first_touch_at_us > due)
    moved_on = [
        sa.or_(c.is_(None), c > due)
        for c in (
            _E.sal_at_us,
            _E.sql_at_us,
            _E.opportunity_at_us,
            _E.customer_at_us,
            _E.closed_at_us,
        )
    ]
    return [
        due.is_not(None),
        _E.sla_breached_at_us.is_(None),
        _E.sla_notified_at_us.is_(None),
        untouched,
        *moved_on,
    ]


def next_due(conn: Connection) -> int | None:
    """The earliest deadline not yet met or marked, if any."""
    value = conn.execute(sa.select(sa.func.min(_E.sla_due_at_us)).where(*_pending())).scalar()
    return None if value is None else int(value)


def due_query(dialect: str, now_us: int, limit: int) -> sa.Select[Any]:
    """The episodes whose deadline has passed unmet and unmarked, the earliest first (read in
    the order of ``ix_mql_episodes_sla_pending``); on PostgreSQL, those no other process holds."""
    query = (
        sa.select(t.mql_episodes)
        .where(*_pending(), _E.sla_due_at_us <= now_us)
        .order_by(_E.sla_due_at_us, _E.id)
        .limit(limit)
    )
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def _escalate_to(
    conn: Connection, routing_of: Callable[[int], Routing | None], episode_id: int, sla: str
) -> tuple[str | None, int | None]:
    """Whom the episode's SLA escalates to, by the routing version that assigned it."""
    version = conn.execute(
        sa.select(t.assignments.c.routing_version)
        .where(t.assignments.c.episode_id == episode_id, t.assignments.c.by == "routing")
        .order_by(t.assignments.c.id)
        .limit(1)
    ).scalar()
    if version is None:
        return None, None
    routing = routing_of(int(version))
    if routing is None:
        return None, int(version)
    for rule in routing.sla:
        if rule.name == sla:
            return rule.escalate_to, int(version)
    return None, int(version)


def breach_due(
    conn: Connection,
    routing_of: Callable[[int], Routing | None],
    now_us: int,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Mark the breaches due by ``now_us`` (at most ``limit``), in the caller's transaction:
    the mark, ``lead.sla_breached``, and the escalation. Returns what was marked."""
    rows = conn.execute(due_query(conn.dialect.name, now_us, limit)).all()
    free = locks.try_lock_leads(conn, {ep.lead_id for ep in rows})
    notifier = Notifier(conn, now_us)
    marked = []
    for ep in rows:
        if ep.lead_id not in free:
            continue  # being changed by another writer: the next turn marks it
        due = int(ep.sla_due_at_us)
        won = conn.execute(
            sa.update(t.mql_episodes)
            .where(_E.id == ep.id, _E.sla_notified_at_us.is_(None))
            .values(sla_breached_at_us=due, sla_notified_at_us=now_us)
        ).rowcount
        if won != 1:
            continue
        escalate_to, version = _escalate_to(conn, routing_of, ep.id, ep.sla_name)
        info = {
            "lead_id": ep.lead_id,
            "episode_id": ep.id,
            "sla": ep.sla_name,
            "mql_at": iso(ep.mql_at_us),
            "due_at": iso(due),
            "breached_at": iso(due),
            "owner": ep.owner,
            "team": ep.team,
            "escalate_to": escalate_to,
        }
        notifier.queue("lead.sla_breached", info)
        if escalate_to and escalate_to != ep.owner:
            routing = routing_of(version) if version is not None else None
            assign(
                conn,
                notifier,
                lead=ep.lead_id,
                episode_id=ep.id,
                owner=escalate_to,
                team=routing.team_of(escalate_to) if routing is not None else None,
                rule=None,
                kind="escalate",
                routing_version=version,
                decision={"sla": ep.sla_name, "due_at": iso(due), "from": ep.owner},
                at_us=now_us,
                by="sla",
                previous=ep.owner,
                reason=f"SLA {ep.sla_name!r} breached at {iso(due)}",
            )
        elif escalate_to:
            conn.execute(
                sa.update(t.mql_episodes).where(_E.id == ep.id).values(escalated_to=escalate_to)
            )
        marked.append(info)
    return marked


class SlaWatch:
    """A thread that marks breaches as their deadlines pass: it wakes at the next deadline,
    at least every ``max_wait_s``, and when woken (a new MQL may have an earlier deadline). Its
    first turn, at start, finds the deadlines that passed while the server was down."""

    def __init__(
        self,
        engine: Engine,
        check: Callable[[], int],
        clock: Clock,
        *,
        max_wait_s: float = 2.0,
    ) -> None:
        self.engine = engine
        self.check = check
        self.clock = clock
        self.max_wait_s = max_wait_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadscore-sla", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.max_wait_s
            try:
                self.check()
                with self.engine.connect() as conn:
                    due = next_due(conn)
                if due is not None:
                    # a breach left for a moment (its lead, or another process marking it):
                    # look again soon, not at once
                    wait = min(wait, max(0.05, (due - self.clock.now_us()) / US))
            except sa.exc.OperationalError as e:  # the database may be briefly unavailable
                log.error("SLA: cannot read the deadlines (%s); trying again", e.orig)
            except Exception:
                log.exception("SLA: cannot mark breaches; trying again")
            self._wake.wait(wait)
            self._wake.clear()
