"""Re-scoring the leads whose traits ``leadscore import`` changed, inside the import's
transaction, as the live service scores a lead whose traits an identify changed: the active
model's engine on the lead's whole history (``scoring.rescore``), decayed to the import's time,
with the same qualification (``scoring.Qualifier``) and handoff.

What the import decides otherwise than ingest: a lead that crosses the threshold becomes an
MQL with its episode, keeping the owner it has (the CRM's) or else routed, but queues no
notification (``lead.mql``, ``lead.assigned``) and gets no SLA deadline unless the import was
asked to notify (docs/funnel.md#rescore).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection

from ..engine.scorer import Event, window_us
from . import scoring
from .events import events_for
from .handoff import Assigner
from .ingest import write_scores
from .scoring import ActiveModel, MqlHandler, Qualifier

__all__ = ["ImportScoring", "Lead", "Rescorer"]

#: leads whose events one statement reads (SQLite before 3.32 binds at most 999 values)
CHUNK = 500
#: the (model, routing) versions a write transaction read (``Tx.versions``; None on SQLite)
Versions = tuple[int | None, int | None] | None


class Lead(NamedTuple):
    """A lead to re-score, as the import leaves it."""

    traits: dict[str, Any]
    stage: str
    scored: bool  # it has a stored score
    owner: str | None
    team: str | None


@dataclass(frozen=True)
class ImportScoring:
    """How an import re-scores, given the active versions its transaction read (``Tx.versions``):
    the active model (None: none is active, nothing is re-scored) and the handoff of the leads
    it makes MQLs, given the connection, the time and ``notify``: whether the handoff queues
    its notifications and sets SLA deadlines."""

    active: Callable[[Versions], ActiveModel | None]
    handoff: Callable[[Connection, Versions, int, bool], MqlHandler | None] | None = None
    notify: bool = False


@dataclass
class Rescorer:
    """One import transaction's re-scoring, a batch of leads at a time."""

    conn: Connection
    active: ActiveModel
    now_us: int
    qualifier: Qualifier
    rescored: int = 0
    new_mqls: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, conn: Connection, how: ImportScoring, versions: Versions, now_us: int
    ) -> Rescorer | None:
        """None when no model is active."""
        active = how.active(versions)
        if active is None:
            return None
        handoff = None
        if how.handoff is not None:
            handoff = how.handoff(conn, versions, now_us, how.notify)
        q = Qualifier(conn, conn.dialect.name, now_us, handoff=handoff)
        if not how.notify:
            q.hooks = []  # no ``lead.mql`` queued
        return cls(conn, active, now_us, q)

    def batch(self, leads: dict[str, Lead]) -> None:
        """Re-score these leads as of the import: those with a stored score or with events; a
        lead with neither stays unscored, as it was. Their events in one read per 500 leads,
        their scores in one write. One that becomes an MQL with an owner keeps it (the CRM's)
        instead of being routed."""
        if not leads:
            return
        handoff = self.qualifier.handoff
        if isinstance(handoff, Assigner):
            handoff.owners = {x: (v.owner, v.team) for x, v in leads.items() if v.owner}
        active, at = self.active, self.now_us
        ids = sorted(leads)
        events: dict[str, list[Event]] = {}
        for i in range(0, len(ids), CHUNK):  # SQLite before 3.32 binds at most 999 values
            events.update(events_for(self.conn, window_us(active.model), ids[i : i + CHUNK], at))
        q = self.qualifier
        q.traits = {x: leads[x].traits for x in ids}
        q.prepared = False  # the handoff reads this batch's companies' owners at once
        q.stages = {x: leads[x].stage for x in ids}
        updates = []
        for lead in ids:  # in lead order, as ingest routes its MQLs
            one = leads[lead]
            evs = events.get(lead, [])
            if not one.scored and not evs:
                continue
            values, qualified = scoring.rescore(
                q, active, lead, one.traits, one.stage, evs, [at], at
            )
            values["b_id"] = lead
            updates.append(values)
            if qualified:
                self.new_mqls.append(lead)
        write_scores(self.conn, updates)
        q.finish()
        self.rescored += len(updates)
