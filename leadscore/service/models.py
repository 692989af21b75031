"""Model versions: store a validated model as a new version, activate a version (re-scoring
every lead in the same transaction), list versions with their activation history.

The active version is the store's: on PostgreSQL, where several processes serve one database,
every write transaction reads it under the writes lock (``Tx``) and uses that version, so an
ingest that begins after an activation committed in any process scores with the new model;
reads check it at most once a second (``poll``). A version is parsed once per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..errors import ModelError, NoModelError, NotFoundError, Problem
from ..model import Model, parse_model
from ..store import schema as t
from . import metrics
from .common import POLL_S, iso
from .scoring import ActiveModel, MqlHandler, Qualifier, make_active, rescore_all

__all__ = ["ModelVersions"]


class ModelVersions:
    """The stored versions and the one active in this process."""

    def __init__(
        self,
        engine: Engine,
        tx: Callable[..., Any],
        now: Callable[[], int],
        handoff: Callable[[Connection, int], MqlHandler | None] | None = None,
    ) -> None:
        self.engine = engine
        self._tx = tx
        self._now = now
        #: the handoff of the leads an activation makes MQLs, in its transaction
        self._handoff = handoff
        self.current: ActiveModel | None = None
        self._parsed: dict[int, ActiveModel] = {}
        self._guard = threading.Lock()
        self._synced = 0.0
        self.load()

    def load(self) -> None:
        """Read the active version from the store."""
        with self.engine.connect() as conn:
            version = conn.execute(
                sa.select(t.models.c.version).where(t.models.c.active)
            ).scalar_one_or_none()
            self.sync(version, conn)

    def of(self, version: int | None, conn: Connection | None = None) -> ActiveModel | None:
        """A stored version ready to score (parsed once per process), or None for None;
        read on ``conn`` when given."""
        if version is None:
            return None
        with self._guard:
            got = self._parsed.get(version)
        if got is not None:
            return got
        query = sa.select(t.models.c.source).where(t.models.c.version == version)
        if conn is not None:
            source = conn.execute(query).scalar_one()
        else:
            with self.engine.connect() as own:
                source = own.execute(query).scalar_one()
        got = make_active(version, parse_model(source, f"model v{version}"))
        with self._guard:
            self._parsed[version] = got
        return got

    def sync(self, version: int | None, conn: Connection | None = None) -> None:
        """The store's active version, as read by a write transaction or ``poll``."""
        current = self.current
        if current is None or version is None or current.version != version:
            self.current = self.of(version, conn)
        self._synced = time.monotonic()

    def poll(self) -> ActiveModel | None:
        """The active version for a read: on PostgreSQL read again once ``POLL_S`` has passed
        (another process may have activated one); SQLite has one serving process."""
        if self.engine.dialect.name == "postgresql" and time.monotonic() - self._synced > POLL_S:
            self.load()
        return self.current

    def in_tx(self, versions: tuple[int | None, int | None] | None) -> ActiveModel:
        """The active model of a write transaction: the version it read under the writes lock
        (PostgreSQL), else this process's; NoModelError when there is none."""
        active = self.current if versions is None else self.of(versions[0])
        if active is None:
            raise NoModelError("no model is active; start with --model FILE or PUT /api/models")
        return active

    @property
    def active(self) -> ActiveModel:
        if self.current is None:
            raise NoModelError("no model is active; start with --model FILE or PUT /api/models")
        return self.current

    def add(
        self, source: str, by: str, file: str = "<request>", activate: bool = True
    ) -> dict[str, Any]:
        """Validate (raises ModelError with every problem), store as a new version, activate."""
        model = parse_model(source, file)
        _events_only(model)
        at = self._now()
        with self._tx() as conn:
            version = conn.execute(
                sa.insert(t.models)
                .values(name=model.name, source=source, created_at_us=at, created_by=by)
                .returning(t.models.c.version)
            ).scalar_one()
        result: dict[str, Any] = {"version": version, "name": model.name, "active": False}
        if activate:
            result.update(self.activate(version, by))
        return result

    def ensure(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --model: activate this model unless the active one has the same text."""
        if self.current is not None:
            with self.engine.connect() as conn:
                current = conn.execute(
                    sa.select(t.models.c.source).where(t.models.c.version == self.current.version)
                ).scalar_one()
            if current == source:
                parse_model(source, file)
                return {"version": self.current.version, "unchanged": True}
        return self.add(source, by, file)

    def activate(self, version: int, by: str) -> dict[str, Any]:
        """Make a version active and re-score every lead with the SQL engine, in one transaction."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.models).where(t.models.c.version == version)).first()
        if row is None:
            raise NotFoundError(f"there is no model version {version}")
        model = parse_model(row.source, f"model v{version}")
        active = make_active(version, model)
        previous = self.current
        try:
            with self._tx(exclusive=True) as conn:  # no ingest in any process meanwhile
                at = self._now()
                n, new_mqls = self._switch(conn, active, at, by)
                with self._guard:
                    self._parsed[version] = active
                self.current = active  # before the write lock passes to the next ingest
        except BaseException:
            self.current = previous
            raise
        metrics.mqls(len(new_mqls), via="activation")
        return {"version": version, "active": True, "leads_rescored": n, "new_mqls": len(new_mqls)}

    def _switch(
        self, conn: Connection, active: ActiveModel, at: int, by: str
    ) -> tuple[int, list[str]]:
        version = active.version
        conn.execute(sa.update(t.models).where(t.models.c.active).values(active=False))
        conn.execute(
            sa.update(t.models)
            .where(t.models.c.version == version)
            .values(active=True, activated_at_us=at, activated_by=by)
        )
        now = self._now()
        handoff = self._handoff(conn, now) if self._handoff is not None else None
        q = Qualifier(conn, conn.dialect.name, now, handoff=handoff)
        n, new_mqls = rescore_all(conn, q, active, at)
        conn.execute(
            sa.insert(t.model_activations).values(
                version=version, at_us=at, by=by, leads_rescored=n, new_mqls=len(new_mqls)
            )
        )
        return n, new_mqls

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.models).order_by(t.models.c.version.desc())).all()
            acts = conn.execute(
                sa.select(t.model_activations).order_by(t.model_activations.c.id)
            ).all()
        history: dict[int, list[dict[str, Any]]] = {}
        for a in acts:
            history.setdefault(a.version, []).append(
                {
                    "at": iso(a.at_us),
                    "by": a.by,
                    "leads_rescored": a.leads_rescored,
                    "new_mqls": a.new_mqls,
                }
            )
        return [
            {
                "version": r.version,
                "name": r.name,
                "active": r.active,
                "created_at": iso(r.created_at_us),
                "created_by": r.created_by,
                "activations": history.get(r.version, []),
                "source": r.source,
            }
            for r in rows
        ]


def _events_only(model: Model) -> None:
    """The service scores events as they arrive; trait rules (counts stored on the lead) are for
    batch scoring, where the export is read whole."""
    problems = [
        Problem(
            model.file,
            r.line,
            1,
            f"engagement rule '{r.name}' reads the trait '{r.trait}': the live service scores "
            "events as they arrive and does not take trait rules; score such a model with "
            "`leadscore score`",
        )
        for r in model.engagement_rules
        if r.trait is not None
    ]
    if problems:
        raise ModelError(problems)
