"""The live service's one entry point: the CLI, the HTTP API and the tests call ``Service`` and
nothing behind it. One database transaction per write, so an acknowledged call is stored whole
and a failed one leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..engine import LeadScore
from ..errors import NotFoundError
from ..model import parse_model
from ..store import schema as t
from . import locks, metrics, reads, sales
from .clock import SYSTEM, Clock
from .common import Tx
from .erasure import erase_lead
from .group_commit import Call, GroupCommit
from .handoff import Assigner, crm_stage_for, route_unowned
from .health import WriteHealth
from .imports import ImportResult, ImportScoring, import_history
from .ingest import IngestCall, IngestResult
from .ingest_groups import CallFailed, ingest_group
from .locks import deadlocked
from .messages import Message
from .models import ModelVersions
from .notify import Notifier
from .reports import funnel_report
from .retention import DAY_US, check_version, check_window, purge_before
from .routing_versions import ActiveRouting, RoutingVersions
from .scoring import ActiveModel
from .sla_watch import breach_due, next_due

__all__ = ["IngestResult", "Service"]


class Service:
    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SYSTEM
        self.dialect = engine.dialect.name
        # SQLite: one writer at a time, as SQLite has it anyway (an activation re-scoring every
        # lead must not interleave with an ingest updating some of them). PostgreSQL: no process
        # lock; the database's locks do this across processes (``locks.py``)
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self.writes = WriteHealth(engine, self._write_lock, self.now_us)
        self._routing = RoutingVersions(engine, self._tx, self.now_us, self._route_unowned)
        self._models = ModelVersions(engine, self._tx, self.now_us, self._assigner)
        #: requests that wait for this process's writer are written together (one commit);
        #: on PostgreSQL fewer per group, as a group holds its leads until it commits
        self._ingests: GroupCommit[IngestCall, IngestResult] = GroupCommit(
            self._write_ingests, max_calls=16 if self.dialect == "sqlite" else 8
        )
        #: called after a write that may have set an earlier SLA deadline (serve's SLA watch)
        self.on_deadline: Callable[[], None] | None = None
        #: events older than this many days are purged (``set_retention``); None: kept for ever
        self.retain_events_days: float | None = None

    def now_us(self) -> int:
        """The service's time (its clock's): what ingest, scores and reads are as of."""
        return self.clock.now_us()

    def _tx(self, *, exclusive: bool = False, leads: Iterable[str] = ()) -> Tx:
        """A write transaction; on PostgreSQL holding ``leads``' locks (``exclusive``: alone)."""
        return Tx(
            self.engine,
            self._write_lock,
            self.writes.record,
            exclusive=exclusive,
            leads=leads,
            sync=self._sync,
        )

    def _sync(self, conn: Connection, model: int | None, routing: int | None) -> None:
        """The active versions a write transaction read (another process may have changed them)."""
        self._models.sync(model, conn)
        self._routing.sync(routing, conn)

    # ------------------------------------------------------------------ models

    @property
    def active(self) -> ActiveModel:
        """The active model; raises NoModelError when there is none."""
        self._models.poll()
        return self._models.active

    @property
    def active_or_none(self) -> ActiveModel | None:
        return self._models.poll()

    def add_model(
        self, source: str, by: str, file: str = "<request>", activate: bool = True
    ) -> dict[str, Any]:
        """Validate (raises ModelError with every problem), store as a new version, activate."""
        if activate and self.retain_events_days is not None:
            check_window(parse_model(source, file), self.retain_events_days)
        return self._models.add(source, by, file, activate)

    def ensure_model(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --model: activate this model unless the active one has the same text."""
        if self.retain_events_days is not None:
            check_window(parse_model(source, file), self.retain_events_days)
        return self._models.ensure(source, file, by)

    def activate(self, version: int, by: str) -> dict[str, Any]:
        """Make a version active and re-score every lead (NotFoundError for no such version)."""
        if self.retain_events_days is not None:
            check_version(self.engine, version, self.retain_events_days)
        return self._models.activate(version, by)

    def models(self) -> list[dict[str, Any]]:
        return self._models.list()

    # ------------------------------------------------------------------ ingest

    def ingest(
        self, messages: list[tuple[int, Message]], received_us: int | None = None
    ) -> IngestResult:
        """Store valid messages (each with its index in the request) and update every lead they
        touch. Returns once they are committed, together with the requests that arrived
        meanwhile (``group_commit``)."""
        self.active  # noqa: B018 - NoModelError before any work
        at = received_us or self.now_us()
        if not messages:
            return IngestResult()
        work = IngestCall([m for _, m in messages], at)
        result = self._ingests.submit(work)
        # an MQL gets an SLA deadline only from a routing file
        if result.new_mqls and self.on_deadline is not None and self.routing is not None:
            self.on_deadline()
        return result

    def _write_ingests(self, calls: list[Call[IngestCall, IngestResult]]) -> None:
        """A group of requests in one transaction. On PostgreSQL the group is written again
        after a deadlock (every call of it; none was answered), and without a call that failed
        on its own (``ingest_groups.CallFailed``), which gets its error; after a statement of the whole
        group failed, with each call's statements apart, to find the call it was."""
        if self.dialect == "sqlite":
            self._write_sqlite(calls)
            return
        todo, deadlocks, apart = list(calls), 0, False
        while todo:
            for c in todo:
                c.result = c.error = None
            try:
                self._write_group(todo, apart)
            except CallFailed as e:
                if e.call is None:  # a statement of the whole group: each call's apart finds it
                    if apart:
                        raise e.error from e
                    apart = True
                    continue
                e.call.error = e.error
                todo.remove(e.call)
                continue
            except sa.exc.OperationalError as e:
                if not deadlocked(e) or deadlocks == 2:
                    raise
                deadlocks += 1
                continue
            return

    def _write_sqlite(self, group: list[Call[IngestCall, IngestResult]]) -> None:
        """SQLite: ``group`` in one transaction, with the calls that join it before its commit
        (added to ``group``). A call that fails on its own is given its error and the
        transaction rolled back; the rest, joined ones included, are written again without it
        (no savepoints: ``ingest_groups.ingest_group``)."""
        while todo := [c for c in group if c.error is None]:
            for c in todo:
                c.result = None
            try:
                self._write_group(todo, group=group)
                return
            except CallFailed as e:
                if e.call is None:  # (only a PostgreSQL group's own statements)
                    raise e.error from e
                e.call.error = e.error

    def _write_group(
        self,
        calls: list[Call[IngestCall, IngestResult]],
        apart: bool = False,
        group: list[Call[IngestCall, IngestResult]] | None = None,
    ) -> None:
        """``calls`` in one transaction; on SQLite the calls queued meanwhile join it before
        its commit, added to ``group`` (the group commit's, which answers them)."""
        tx = self._tx()
        with tx as conn:
            # the versions read under the write lock: an activation may just have committed
            active = self._models.in_tx(tx.versions)
            now = self.now_us()
            routing = self._routing.in_tx(tx.versions)

            def handoff(now: int) -> Callable[[], Assigner]:
                return lambda: Assigner(conn, routing, now, Notifier(conn, now))

            ingest_group(conn, active, calls, now, handoff(now), apart=apart)
            if self.dialect != "sqlite":
                return
            # SQLite: the requests that queued while these were written join them before the
            # commit and share its flush instead of waiting for it and paying for their own
            # (a PostgreSQL group holds its leads' locks, taken for its requests at once:
            # nothing joins it)
            while joined := self._ingests.join(calls if group is None else group):
                now = self.now_us()
                ingest_group(conn, active, joined, now, handoff(now))

    # ------------------------------------------------------------------ reads

    def health(self) -> dict[str, Any]:
        """Checks the database answers reads and takes writes (see ``WriteHealth``); the active
        model's version and name. ``writes`` is ``ok``, else why writes fail."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        active = self._models.poll()
        return {
            "database": self.dialect,
            "writes": self.writes.check(),
            "model_version": active.version if active else None,
            "model": active.model.name if active else None,
        }

    def current(self, row: Any, at: int) -> LeadScore | None:
        """The lead's score now: its stored parts decayed to ``at`` (no write needed)."""
        return reads.current(self.engine, self._models.poll(), row, at)

    # ------------------------------------------------------------------ the handoff

    def _assigner(self, conn: Connection, now: int) -> Assigner:
        return Assigner(conn, self._routing.current, now, Notifier(conn, now))

    def _route_unowned(self, conn: Connection, routing: ActiveRouting, now: int) -> int:
        return route_unowned(Assigner(conn, routing, now, Notifier(conn, now)))

    @property
    def routing(self) -> ActiveRouting | None:
        """The active routing, if any."""
        return self._routing.poll()

    def add_routing(self, source: str, by: str, file: str = "<request>") -> dict[str, Any]:
        """Validate a routing file (RoutingError), store it as a new version, activate it."""
        return self._routing.add(source, by, file)

    def ensure_routing(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --routing: activate this file unless the active version has its text."""
        return self._routing.ensure(source, file, by)

    def activate_routing(self, version: int) -> dict[str, Any]:
        return self._routing.activate(version)

    def routing_versions(self) -> list[dict[str, Any]]:
        return self._routing.list()

    def touch(self, lead: str, kind: str, by: str, at_us: int | None = None) -> dict[str, Any]:
        """Record a touch (call, email, meeting); it stops the SLA clock or clears a breach."""
        with self._tx(leads=[lead]) as conn:
            now = self.now_us()
            return sales.touch(
                conn, lead=lead, kind=kind, by=by, at_us=now if at_us is None else at_us, now_us=now
            )

    def move(
        self,
        lead: str,
        stage: str,
        by: str,
        *,
        reason: str | None = None,
        bant: dict[str, Any] | None = None,
        come_back_at_us: int | None = None,
        at_us: int | None = None,
        expected: str | None = None,
    ) -> dict[str, Any]:
        """Move a lead to a stage (StageMoveError when not allowed, ConflictError when someone
        moved it first)."""
        tx = self._tx(leads=[lead])
        with tx as conn:
            now = self.now_us()
            return sales.move(
                conn,
                Notifier(conn, now),
                self._routing.in_tx(tx.versions),
                lead=lead,
                to=stage,
                by=by,
                reason=reason,
                bant=bant,
                come_back_at_us=come_back_at_us,
                at_us=now if at_us is None else at_us,
                now_us=now,
                expected=expected,
            )

    def crm_stage(
        self,
        lead: str,
        status: str,
        *,
        at_us: int | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """A status set in the CRM, mapped to a stage by the routing file's ``crm_stages``."""
        stage = crm_stage_for(self.routing, status)
        current = self.lead_stage(lead)
        if current == stage:
            return {"lead_id": lead, "stage": stage, "status": status, "unchanged": True}
        out = self.move(
            lead, stage, by or "crm", reason=reason or f"CRM status {status}", at_us=at_us
        )
        out["status"] = status
        return out

    def lead_stage(self, lead: str) -> str:
        with self.engine.connect() as conn:
            stage = conn.execute(
                sa.select(t.leads.c.stage).where(t.leads.c.lead_id == lead)
            ).scalar_one_or_none()
        if stage is None:
            raise NotFoundError(f"no lead {lead!r}")
        return str(stage)

    def reassign(self, lead: str, owner: str, by: str, reason: str | None = None) -> dict[str, Any]:
        """Give a lead to another owner by hand (NotFoundError for an unknown lead or rep)."""
        tx = self._tx(leads=[lead])
        with tx as conn:
            now = self.now_us()
            locks.lock_handoff(conn)  # it changes a rep's open MQLs, which routing counts
            return sales.reassign(
                conn,
                Notifier(conn, now),
                self._routing.in_tx(tx.versions),
                lead=lead,
                owner=owner,
                by=by,
                reason=reason,
                now_us=now,
            )

    def set_away(self, email: str, away: bool) -> dict[str, Any]:
        """Mark a rep away (round robin skips them) or back."""
        tx = self._tx()
        with tx as conn:
            locks.lock_handoff(conn)  # round robin must not pick a rep going away meanwhile
            return sales.set_away(
                conn, self._routing.in_tx(tx.versions), email, away, self.now_us()
            )

    def reps(self) -> list[dict[str, Any]]:
        """Every rep with time away and open MQLs."""
        with self.engine.connect() as conn:
            return sales.list_reps(conn, self.routing)

    def check_sla(self) -> int:
        """Mark every breach due by now (``sla_watch.breach_due``); how many."""
        due = self.next_sla_due()  # a read first: no write transaction while nothing is due
        if due is None or due > self.now_us():
            return 0
        n = 0
        while True:
            with self._tx() as conn:
                marked = breach_due(conn, self._routing.version, self.now_us())
            metrics.sla_breaches(len(marked))
            n += len(marked)
            if len(marked) < 200:
                return n

    def next_sla_due(self) -> int | None:
        with self.engine.connect() as conn:
            return next_due(conn)

    def lead_view(self, row: Any, at: int, *, full: bool = False) -> dict[str, Any]:
        return reads.lead_view(self.engine, self._models.poll(), row, at, full=full)

    def lead(self, lead_id: str, *, events: int = 50, at: int | None = None) -> dict[str, Any]:
        """One lead with its stage history and recent events (NotFoundError when unknown)."""
        at = self.now_us() if at is None else at
        return reads.get_lead(self.engine, self._models.poll(), lead_id, at, events)

    def leads(self, *, at: int | None = None, **filters: Any) -> dict[str, Any]:
        """Leads filtered, sorted and paged (see ``reads.list_leads``)."""
        at = self.now_us() if at is None else at
        return reads.list_leads(self.engine, self._models.poll(), at, **filters)

    # ------------------------------------------------------------------ personal data

    def erase(self, lead_id: str, by: str) -> dict[str, Any]:
        """Erase a person and everything that holds their id, in one transaction, leaving an
        audit record (``erasure.erase_lead``); NotFoundError for an unknown lead."""
        with self._tx(leads=[lead_id]) as conn:
            return erase_lead(conn, lead_id, by, self.now_us())

    def set_retention(self, days: float | None) -> None:
        """Events older than ``days`` will be purged: InvalidRequestError when the active model
        counts older ones (``retention.check_window``); from now on such a model cannot be
        activated either."""
        active = self._models.poll()
        if days is not None and active is not None:
            check_window(active.model, days)
        self.retain_events_days = days

    def purge_events(self) -> int:
        """Delete the events older than the retention (none without one); how many."""
        if self.retain_events_days is None:
            return 0
        cutoff = self.now_us() - round(self.retain_events_days * DAY_US)
        return purge_before(self._tx, cutoff)

    # ------------------------------------------------------------------ the funnel

    def import_history(
        self,
        *,
        leads: Path | None,
        stages: Path | None,
        skip_bad_rows: bool = False,
        notify: bool = False,
    ) -> ImportResult:
        """Existing leads and their stage history, with their MQL episodes (``leadscore import``);
        the leads whose traits change re-scored by the active model (``notify``: the ones that
        become MQLs are notified and get SLA deadlines, as live MQLs are)."""
        return import_history(
            self.engine,
            lambda: self._tx(exclusive=True),  # it writes many leads: no ingest meanwhile
            self.now_us(),
            leads=leads,
            stages=stages,
            skip_bad_rows=skip_bad_rows,
            scoring=ImportScoring(self._import_model, self._import_handoff, notify),
        )

    def _import_model(self, versions: tuple[int | None, int | None] | None) -> ActiveModel | None:
        return self._models.current if versions is None else self._models.of(versions[0])

    def _import_handoff(
        self,
        conn: Connection,
        versions: tuple[int | None, int | None] | None,
        now: int,
        notify: bool,
    ) -> Assigner:
        notifier = Notifier(conn, now)
        if not notify:
            notifier.preload({})  # as if nobody subscribed: nothing queued
        return Assigner(conn, self._routing.in_tx(versions), now, notifier, sla=notify)

    def funnel(
        self, *, by: str | None = None, start_us: int | None = None, end_us: int | None = None
    ) -> dict[str, Any]:
        """The funnel report of the MQL episodes with mql_at in [start_us, end_us) (end: now)."""
        now = self.now_us()
        return funnel_report(
            self.engine,
            by=by,
            start_us=start_us,
            end_us=now if end_us is None else end_us,
            now_us=now,
        )
