"""Model versions: store a validated model as a new version, activate a version (re-scoring
every lead in the same transaction), list versions with their activation history. How the
active version is followed across processes: ``versions.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..errors import ModelError, NoModelError, NotFoundError, Problem
from ..model import Model, parse_model
from ..store import schema as t
from . import metrics
from .common import iso
from .scoring import ActiveModel, MqlHandler, Qualifier, make_active, rescore_all
from .versions import StoredVersions

__all__ = ["ModelVersions"]

NO_MODEL = "no model is active; start with --model FILE or PUT /api/models"


class ModelVersions(StoredVersions[ActiveModel]):
    """The stored versions and the one active in this process."""

    table = t.models

    def __init__(
        self,
        engine: Engine,
        tx: Callable[..., Any],
        now: Callable[[], int],
        handoff: Callable[[Connection, int], MqlHandler | None] | None = None,
    ) -> None:
        #: the handoff of the leads an activation makes MQLs, in its transaction
        self._handoff = handoff
        super().__init__(engine, tx, now)

    def make(self, version: int, source: str) -> ActiveModel:
        return make_active(version, parse_model(source, f"model v{version}"))

    def in_tx(self, versions: tuple[int | None, int | None] | None) -> ActiveModel:
        """The active model of a write transaction: the version it read under the writes lock
        (PostgreSQL), else this process's; NoModelError when there is none."""
        active = self.current if versions is None else self.of(versions[0])
        if active is None:
            raise NoModelError(NO_MODEL)
        return active

    @property
    def active(self) -> ActiveModel:
        if self.current is None:
            raise NoModelError(NO_MODEL)
        return self.current

    def add(
        self, source: str, by: str, file: str = "<request>", activate: bool = True
    ) -> dict[str, Any]:
        """Validate (raises ModelError with every problem), store as a new version, activate."""
        model = parse_model(source, file)
        _events_only(model)
        with self._tx() as conn:
            version = self.store(conn, model.name, source, self._now(), by)
        result: dict[str, Any] = {"version": version, "name": model.name, "active": False}
        if activate:
            result.update(self.activate(version, by))
        return result

    def ensure(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --model: activate this model unless the active one has the same text."""
        if self.current is not None and self.active_source() == source:
            parse_model(source, file)
            return {"version": self.current.version, "unchanged": True}
        return self.add(source, by, file)

    def activate(self, version: int, by: str) -> dict[str, Any]:
        """Make a version active and re-score every lead with the SQL engine, in one transaction."""
        active = self.find(version)
        if active is None:
            raise NotFoundError(f"there is no model version {version}")
        n, new_mqls = self.switch(active, lambda conn: self._switch(conn, active, by))
        metrics.mqls(len(new_mqls), via="activation")
        return {"version": version, "active": True, "leads_rescored": n, "new_mqls": len(new_mqls)}

    def _switch(self, conn: Connection, active: ActiveModel, by: str) -> tuple[int, list[str]]:
        at = self._now()
        version = active.version
        self.mark_active(conn, version, activated_at_us=at, activated_by=by)
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
        rows = self.rows()
        with self.engine.connect() as conn:
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
