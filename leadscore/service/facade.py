"""The live service's one entry point: the CLI, the HTTP API and the tests call ``Service`` and
nothing behind it. One database transaction per write, so an acknowledged call is stored whole
and a failed one leaves nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..engine import LeadScore
from . import reads
from .clock import SYSTEM, Clock
from .common import Tx
from .imports import ImportResult, import_history
from .ingest import IngestResult, ingest
from .messages import Message
from .models import ModelVersions
from .reports import funnel_report
from .scoring import ActiveModel

__all__ = ["IngestResult", "Service"]


class Service:
    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SYSTEM
        self.dialect = engine.dialect.name
        # one writer at a time, as SQLite has it anyway: an activation re-scoring every lead
        # must not interleave with an ingest updating some of them
        self._write_lock = threading.Lock()
        self._models = ModelVersions(engine, self._tx, self.now_us)

    def now_us(self) -> int:
        """The service's time (its clock's): what ingest, scores and reads are as of."""
        return self.clock.now_us()

    def _tx(self) -> Tx:
        return Tx(self.engine, self._write_lock)

    # ------------------------------------------------------------------ models

    @property
    def active(self) -> ActiveModel:
        """The active model; raises NoModelError when there is none."""
        return self._models.active

    @property
    def active_or_none(self) -> ActiveModel | None:
        return self._models.current

    def add_model(
        self, source: str, by: str, file: str = "<request>", activate: bool = True
    ) -> dict[str, Any]:
        """Validate (raises ModelError with every problem), store as a new version, activate."""
        return self._models.add(source, by, file, activate)

    def ensure_model(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --model: activate this model unless the active one has the same text."""
        return self._models.ensure(source, file, by)

    def activate(self, version: int, by: str) -> dict[str, Any]:
        """Make a version active and re-score every lead (NotFoundError for no such version)."""
        return self._models.activate(version, by)

    def models(self) -> list[dict[str, Any]]:
        return self._models.list()

    # ------------------------------------------------------------------ ingest

    def ingest(
        self, messages: list[tuple[int, Message]], received_us: int | None = None
    ) -> IngestResult:
        """Store valid messages (each with its index in the request) and update every lead they touch."""
        self._models.active  # noqa: B018 - NoModelError before any work
        at = received_us or self.now_us()
        if not messages:
            return IngestResult()
        with self._tx() as conn:
            active = (
                self._models.active
            )  # under the write lock: an activation may just have committed
            return ingest(conn, active, [m for _, m in messages], at, self.now_us())

    # ------------------------------------------------------------------ reads

    def health(self) -> dict[str, Any]:
        """Checks the database answers; the active model's version and name."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        active = self._models.current
        return {
            "database": self.dialect,
            "model_version": active.version if active else None,
            "model": active.model.name if active else None,
        }

    def current(self, row: Any, at: int) -> LeadScore | None:
        """The lead's score now: its stored parts decayed to ``at`` (no write needed)."""
        return reads.current(self.engine, self._models.current, row, at)

    def lead_view(self, row: Any, at: int, *, full: bool = False) -> dict[str, Any]:
        return reads.lead_view(self.engine, self._models.current, row, at, full=full)

    def lead(self, lead_id: str, *, events: int = 50, at: int | None = None) -> dict[str, Any]:
        """One lead with its stage history and recent events (NotFoundError when unknown)."""
        at = self.now_us() if at is None else at
        return reads.get_lead(self.engine, self._models.current, lead_id, at, events)

    def leads(self, *, at: int | None = None, **filters: Any) -> dict[str, Any]:
        """Leads filtered, sorted and paged (see ``reads.list_leads``)."""
        at = self.now_us() if at is None else at
        return reads.list_leads(self.engine, self._models.current, at, **filters)

    # ------------------------------------------------------------------ the funnel

    def import_history(
        self, *, leads: Path | None, stages: Path | None, skip_bad_rows: bool = False
    ) -> ImportResult:
        """Existing leads and their stage history, with their MQL episodes (``leadscore import``)."""
        return import_history(
            self.engine,
            self._tx,
            self.now_us(),
            leads=leads,
            stages=stages,
            skip_bad_rows=skip_bad_rows,
        )

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
