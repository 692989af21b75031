"""Incremental scoring and qualification: how the service keeps each lead's stored score exact
as events arrive and models change, and when a lead becomes an MQL.

Every function here works inside the caller's transaction; the math is the engine's
(``Scorer``), the glue (carrying stored parts forward, re-scoring from history, deciding the
instant a lead qualified, queueing its notification) is here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Connection

from ..engine import Event, LeadScore, Scorer
from ..engine import incremental as inc
from ..engine.incremental import mql_reason
from ..engine.scorer import window_us
from ..model import Model
from ..store import schema as t
from .common import US, dumps, iso, json_param, loads
from .events import event_from_row
from .handoff_writes import insert_outbox
from .messages import Message
from .prepared import Prepared

__all__ = [
    "QUALIFIABLE",
    "ActiveModel",
    "MqlHandler",
    "Parts",
    "Qualifier",
    "apply",
    "can_advance",
    "carry",
    "current_score",
    "is_qualified",
    "make_active",
    "mql_hooks",
    "rescore",
    "rescore_all",
]

#: A lead's stored parts: the parts themselves, when they were scored, when they stop being exact.
Parts = tuple[dict[str, Any], int, int | None]


@dataclass
class ActiveModel:
    version: int
    model: Model
    scorer: Scorer
    event_keys: frozenset[str]


def make_active(version: int, model: Model) -> ActiveModel:
    return ActiveModel(
        version, model, Scorer(model), frozenset(r.event_key for r in model.engagement_rules)
    )


class MqlHandler(Protocol):
    """What happens to a new MQL besides its stage: the handoff (``service/handoff.py``)."""

    def admits(self, lead: str, at_us: int, stage: str | None = None) -> bool:
        """Whether the lead may become an MQL at ``at_us`` (a recycled lead: not before it may
        come back); ``stage``: its stage, when the caller knows it."""
        ...

    def flush(self) -> None:
        """Write what the transaction's new MQLs produced; called before it commits."""
        ...

    def prepare(self, traits: Mapping[str, Mapping[str, Any]]) -> None:
        """Before the first new MQL: the traits of every lead the transaction holds, so what
        routing looks up for them can be read at once."""
        ...

    def opened(
        self, lead: str, at_us: int, score: LeadScore, traits: dict[str, Any], version: int
    ) -> dict[str, Any]:
        """The lead became an MQL at ``at_us``: open its episode, route it; the lead's columns
        it sets (its owner), written with its stage."""
        ...


#: stages from which the model can make a lead an MQL: a recycled lead can qualify again
QUALIFIABLE = ("lead", "recycled")


def is_qualified(stage: str) -> bool:
    """Whether the model treats the lead as qualified already (its MQL is sticky)."""
    return stage not in QUALIFIABLE


@dataclass
class Qualifier:
    """Makes leads MQLs within one transaction: stage, history and one ``lead.mql``
    notification per subscribed webhook, then the handoff. Reads the subscribed webhooks once
    per transaction."""

    conn: Connection
    dialect: str
    now_us: int
    #: traits of the leads the transaction holds already (read from the store otherwise)
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: list[int] | None = None
    handoff: MqlHandler | None = None
    #: stages of the leads the transaction holds already (read from the store otherwise)
    stages: dict[str, str] = field(default_factory=dict)
    #: whether the handoff was told the leads' traits (``MqlHandler.prepare``); an import
    #: clears it for each batch
    prepared: bool = False
    #: the new MQLs' stage columns, history rows and ``lead.mql`` outbox rows, written
    #: together by ``finish``
    _stages: list[dict[str, Any]] = field(default_factory=list)
    _history: list[dict[str, Any]] = field(default_factory=list)
    _outbox: list[dict[str, Any]] = field(default_factory=list)
    #: ``lead.mql`` notifications queued
    notified: int = 0

    def finish(self) -> None:
        """Before the transaction commits: the new MQLs' stages, history and notifications,
        then what the handoff decided."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self._stages:  # routed leads set their owner too, the others do not
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        for columns, rows in by_columns.items():
            _stage_update(columns).run(self.conn, rows)
        _INSERT_HISTORY.run(self.conn, self._history)
        if self._outbox:  # before the handoff's own (``lead.assigned``), as they were queued
            insert_outbox(self.conn, self._outbox)
        self._stages, self._history, self._outbox = [], [], []
        if self.handoff is not None:
            self.handoff.flush()

    def lead_traits(self, lead: str) -> dict[str, Any]:
        traits = self.traits.get(lead)
        if traits is None:
            traits = loads(
                self.conn.execute(
                    sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)
                ).scalar_one()
            )
            self.traits[lead] = traits = dict(traits or {})
        return traits

    def qualify(self, lead: str, at_us: int, reason: str, version: int, score: LeadScore) -> bool:
        """Stage mql (sticky), history, a lead.mql notification per subscribed webhook, and
        the handoff. False when the handoff does not admit the lead now (it stays as it is).
        The stage and its history are written by ``finish``, with every other new MQL's."""
        conn = self.conn
        if self.handoff is not None and not self.handoff.admits(lead, at_us, self.stages.get(lead)):
            return False
        handed: dict[str, Any] = {}
        if self.handoff is not None:
            if not self.prepared:
                self.handoff.prepare(self.traits)
                self.prepared = True
            handed = self.handoff.opened(lead, at_us, score, self.lead_traits(lead), version)
        self._stages.append(
            {"b_id": lead, "stage": "mql", "mql_at_us": at_us, "mql_reason": reason, **handed}
        )
        self._history.append(
            {
                "lead_id": lead,
                "stage": "mql",
                "at_us": at_us,
                "reason": reason,
                "model_version": version,
                "by": "model",
                "received_at_us": self.now_us,
            }
        )
        self.stages[lead] = "mql"
        if self.hooks is None:
            self.hooks = mql_hooks(_ACTIVE_HOOKS.fetch(conn, {}))
        if self.hooks:
            self._notify(lead, at_us, reason, version, score, handed)
        return True

    def _notify(
        self,
        lead: str,
        at_us: int,
        reason: str,
        version: int,
        score: LeadScore,
        handed: dict[str, Any],
    ) -> None:
        assert self.hooks
        payload = dumps(
            {
                "type": "lead.mql",
                "lead_id": lead,
                "mql_at": iso(at_us),
                "reason": reason,
                "model_version": version,
                "score": score.record(lead),
                "traits": self.lead_traits(lead),
                **{k: handed[k] for k in ("owner", "team") if k in handed},
            }
        )
        created = self.now_us
        self._outbox += [
            {
                "webhook_id": h,
                "event": "lead.mql",
                "payload": payload,
                "created_at_us": created,
                "next_attempt_us": created,
            }
            for h in self.hooks
        ]
        self.notified += len(self.hooks)


_INSERT_HISTORY = Prepared(
    sa.insert(t.stage_history),
    ("lead_id", "stage", "at_us", "reason", "model_version", "by", "received_at_us"),
)
_STAGE_UPDATES: dict[tuple[str, ...], Prepared] = {}


def mql_hooks(active: Iterable[tuple[int, str]]) -> list[int]:
    """Of the active webhooks (id, events), those subscribed to ``lead.mql``."""
    return [h_id for h_id, events in active if "lead.mql" in events.split(",")]


#: the active webhooks, read by the first new MQL of a transaction
_ACTIVE_HOOKS = Prepared(sa.select(t.webhooks.c.id, t.webhooks.c.events).where(t.webhooks.c.active))


def _stage_update(columns: tuple[str, ...]) -> Prepared:
    """UPDATE leads SET these columns (all but ``b_id``) for one lead, built once per set."""
    got = _STAGE_UPDATES.get(columns)
    if got is None:
        got = _STAGE_UPDATES[columns] = Prepared.update(
            t.leads, "lead_id", [c for c in columns if c != "b_id"]
        )
    return got


def score_values(
    score: LeadScore,
    held: Sequence[int],
    sums: Sequence[float],
    counted: Sequence[bool],
    version: int,
    at: int,
    dialect: str,
) -> dict[str, Any]:
    """A score's columns of the leads row; the parts go in as JSON arrays (tuples serialise as
    lists do)."""
    return {
        "fit": score.fit,
        "engagement": score.engagement,
        "score": score.score,
        "grade": score.grade,
        "mql": score.mql,
        "fast_track": score.fast_track,
        "rule_sums": json_param({"v": version, "h": held, "s": sums, "c": counted}, dialect),
        "scored_at_us": at,
        "model_version": version,
    }


# ---------------------------------------------------------------------- a whole model at once


def rescore_all(
    conn: Connection, q: Qualifier, active: ActiveModel, at: int
) -> tuple[int, list[str]]:
    """Every lead re-scored by the compiled SQL model on this database; returns how many and
    the ones that became MQLs."""
    from ..sql import JsonTables, score_sql

    dialect_name = conn.dialect.name
    model = active.model
    source = JsonTables(
        leads="leads",
        traits="traits",
        events="events",
        properties="properties",
        ts_us="ts_us",
        jsonb=dialect_name == "postgresql",
    )
    dialect = "postgres" if dialect_name == "postgresql" else "sqlite"
    as_of = datetime.fromtimestamp(at / US, UTC)
    query = score_sql(model, source, as_of, dialect, detail=True)
    n_fit, n_eng = len(model.fit_rules), len(model.engagement_rules)
    rows = conn.exec_driver_sql(query).mappings().all()
    new_mqls: list[str] = []
    stages: dict[str, str] = {
        r.lead_id: r.stage for r in conn.execute(sa.select(t.leads.c.lead_id, t.leads.c.stage))
    }
    due = rescore_times(conn, active, at)
    q.stages = stages
    for r in rows:
        held = [i for i in range(n_fit) if r[f"f{i}"] != 0]
        sums = [float(r[f"s{i}"]) for i in range(n_eng)]
        counted = _counted_from_sql(model, r, n_eng)
        score = active.scorer.finish(held, sums, counted)
        values = score_values(score, held, sums, counted, active.version, at, dialect_name)
        values["rescore_at_us"] = due.get(r["lead_id"])
        if not is_qualified(stages.get(r["lead_id"], "lead")) and score.mql:
            reason = mql_reason(model, score) + f" (model v{active.version} activated)"
            if q.qualify(r["lead_id"], at, reason, active.version, score):
                new_mqls.append(r["lead_id"])
        conn.execute(sa.update(t.leads).where(t.leads.c.lead_id == r["lead_id"]).values(**values))
    q.finish()
    return len(rows), new_mqls


# ---------------------------------------------------------------------- one lead, as events arrive


def can_advance(active: ActiveModel, parts: Parts | None, new: list[Message], at: int) -> bool:
    """True when the lead's stored parts are of the active model and the engine can carry them
    forward (``engine.incremental.can_carry``)."""
    if parts is None:
        return False
    stored, _scored_at, due = parts
    return stored.get("v") == active.version and inc.can_carry(due, (m.ts_us for m in new), at)


def _parts(stored: Parts) -> inc.Parts:
    parts, scored_at, _ = stored
    return inc.make_parts(
        tuple(map(int, parts["h"])),
        tuple(map(float, parts["s"])),
        tuple(map(bool, parts["c"])),
        scored_at,
    )


def apply(
    q: Qualifier, active: ActiveModel, lead: str, step: inc.Step, at: int
) -> tuple[dict[str, Any], bool]:
    """The row values of an engine step (from ``carry`` or ``rescore``), its lead as ``b_id``
    (``write_scores``), and the lead qualified
    at the instant it crossed when the step says it did.
    ``step.score`` may hold the numbers alone (``reasons=False``); ``step.mql_score`` has its
    reasons, for the MQL's reason, the handoff and the ``lead.mql`` payload."""
    p = step.parts
    score = step.score
    version = active.version
    # ``score_values``, with the lead (``b_id``) and the times, written out as one dict: it
    # runs for every lead of every request
    values = {
        "b_id": lead,
        "fit": score.fit,
        "engagement": score.engagement,
        "score": score.score,
        "grade": score.grade,
        "mql": score.mql,
        "fast_track": score.fast_track,
        "rule_sums": json_param(
            {"v": version, "h": p.held, "s": p.sums, "c": p.counted}, q.dialect
        ),
        "scored_at_us": p.at_us,
        "model_version": version,
        "rescore_at_us": step.rescore_at,
        "updated_at_us": at,
    }
    if step.mql_at is None or step.mql_score is None:
        return values, False
    reason = mql_reason(active.model, step.mql_score)
    return values, q.qualify(lead, step.mql_at, reason, active.version, step.mql_score)


def carry(
    active: ActiveModel,
    traits: dict[str, Any],
    stage: str,
    stored_parts: Parts,
    fit_changed: bool,
    new: list[Message],
    times: list[int],
    at: int,
) -> inc.Step | None:
    """The stored parts carried forward with the new events (``engine.incremental.advance``).
    None when only the lead's whole history can tell (a late event may have qualified it
    earlier): the caller re-scores it. Writes nothing: ``apply`` does."""
    scorer = active.scorer
    stored, scored_at, due = stored_parts
    held = stored["h"] if not fit_changed else scorer.fit_held(traits)
    events = [event_from_row(m.event, m.ts_us, m.properties or {}) for m in new if m.event]
    # the stored parts as ``_parts`` reads them, given as lists (``advance`` reads the fit from
    # ``held``, not from the parts); the row stores the score's numbers only: no reasons built
    # (an MQL's score has them)
    return inc.advance_from(
        scorer,
        scored_at,
        list(map(float, stored["s"])),
        list(map(bool, stored["c"])),
        held,
        events,
        times,
        at,
        due,
        stage not in QUALIFIABLE,  # ``is_qualified``
        reasons=False,
    )


def rescore(
    q: Qualifier,
    active: ActiveModel,
    lead: str,
    traits: dict[str, Any],
    stage: str,
    events: list[Event],
    times: list[int],
    at: int,
    held: Sequence[int] | None = None,
) -> tuple[dict[str, Any], bool]:
    """A lead's new score from its events (``engine.incremental.rescore``); qualify it if it
    crossed. Returns the row values and whether it became an MQL. ``held``: the fit rules that
    hold for ``traits`` when the caller knows them (``fit_held``), as ``carry`` takes them
    from the stored parts of a lead whose traits did not change."""
    if held is None:
        held = active.scorer.fit_held(traits)
    step = inc.rescore(active.scorer, held, events, times, at, is_qualified(stage), reasons=False)
    return apply(q, active, lead, step, at)


# ---------------------------------------------------------------------- reading a score


def current_score(
    active: ActiveModel | None,
    row: Any,
    at: int,
    read_events: Callable[[str, int | None, int], list[Event]],
) -> LeadScore | None:
    """The lead's score at ``at``: its stored parts decayed (no write needed); re-scored from its
    events (``read_events(lead, window_us, at)``) when the parts stopped being exact. None when
    it has no parts of the active model."""
    if active is None or row.rule_sums is None:
        return None
    parts = loads(row.rule_sums)
    if parts.get("v") != active.version:
        return None
    if row.rescore_at_us is not None and at >= row.rescore_at_us:
        traits = loads(row.traits) or {}
        events = read_events(row.lead_id, window_us(active.model), at)
        return active.scorer.finish(*active.scorer.parts(traits, events, at))
    scored_at = row.scored_at_us if row.scored_at_us is not None else at
    return _parts((parts, scored_at, None)).score(active.scorer, at)


# ---------------------------------------------------------------------- rules of thumb


def rescore_times(conn: Connection, active: ActiveModel, at: int) -> dict[str, int]:
    """Per lead, when parts scored at ``at`` by this model stop being exact (``rescore_at``)."""
    window = window_us(active.model)
    q = sa.select(t.events.c.lead_id, t.events.c.event, t.events.c.ts_us).where(
        t.events.c.lead_id.is_not(None), t.events.c.event.is_not(None)
    )
    if window is None:
        q = q.where(t.events.c.ts_us > at)
    else:
        q = q.where(t.events.c.ts_us >= at - window)
    events: dict[str, list[Event]] = {}
    for lead, name, ts_us in conn.execute(q):
        when = datetime.fromtimestamp(ts_us // US, UTC).replace(microsecond=ts_us % US)
        events.setdefault(lead, []).append(Event(name, when))
    due = {lead: inc.rescore_at(active.scorer, evs, at) for lead, evs in events.items()}
    return {lead: when for lead, when in due.items() if when is not None}


def _counted_from_sql(model: Model, row: Any, n: int) -> list[bool]:
    """A rule counted when its decayed sum is non-zero (points are never zero with a cap)."""
    return [float(row[f"s{i}"]) != 0 for i in range(n)]
