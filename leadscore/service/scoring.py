"""Incremental scoring and qualification: how the service keeps each lead's stored score exact
as events arrive and models change, and when a lead becomes an MQL.

Every function here works inside the caller's transaction; the math is the engine's
(``Scorer``), the glue (carrying stored parts forward, re-scoring from history, deciding the
instant a lead qualified, queueing its notification) is here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..engine import Event, LeadScore, Scorer, round2
from ..model import Model
from ..store import schema as t
from .common import US, dumps, iso, json_param, loads
from .events import event_from_row
from .messages import Message

__all__ = [
    "ActiveModel",
    "Parts",
    "Qualifier",
    "advance",
    "can_advance",
    "current_score",
    "make_active",
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


@dataclass
class Qualifier:
    """Makes leads MQLs within one transaction: stage, history and one ``lead.mql``
    notification per subscribed webhook. Reads the subscribed webhooks once per transaction."""

    conn: Connection
    dialect: str
    now_us: int
    #: traits of the leads the transaction holds already (read from the store otherwise)
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: list[int] | None = None

    def qualify(self, lead: str, at_us: int, reason: str, version: int, score: LeadScore) -> None:
        """Stage mql (sticky), history, and a lead.mql notification per subscribed webhook."""
        conn = self.conn
        conn.execute(
            sa.update(t.leads)
            .where(t.leads.c.lead_id == lead)
            .values(stage="mql", mql_at_us=at_us, mql_reason=reason)
        )
        conn.execute(
            sa.insert(t.stage_history).values(
                lead_id=lead, stage="mql", at_us=at_us, reason=reason, model_version=version
            )
        )
        if self.hooks is None:
            hooks = conn.execute(
                sa.select(t.webhooks.c.id, t.webhooks.c.events).where(t.webhooks.c.active)
            ).all()
            self.hooks = [h.id for h in hooks if "lead.mql" in h.events.split(",")]
        if not self.hooks:
            return
        traits = self.traits.get(lead)
        if traits is None:
            traits = loads(
                conn.execute(
                    sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)
                ).scalar_one()
            )
        payload = dumps(
            {
                "type": "lead.mql",
                "lead_id": lead,
                "mql_at": iso(at_us),
                "reason": reason,
                "model_version": version,
                "score": score.record(lead),
                "traits": traits,
            }
        )
        created = self.now_us
        conn.execute(
            sa.insert(t.outbox),
            [
                {
                    "webhook_id": h,
                    "event": "lead.mql",
                    "payload": payload,
                    "created_at_us": created,
                    "next_attempt_us": created,
                }
                for h in self.hooks
            ],
        )


def score_values(
    score: LeadScore,
    held: list[int],
    sums: list[float],
    counted: list[bool],
    version: int,
    at: int,
    dialect: str,
) -> dict[str, Any]:
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
    for r in rows:
        held = [i for i in range(n_fit) if r[f"f{i}"] != 0]
        sums = [float(r[f"s{i}"]) for i in range(n_eng)]
        counted = _counted_from_sql(model, r, n_eng)
        score = active.scorer.finish(held, sums, counted)
        values = score_values(score, held, sums, counted, active.version, at, dialect_name)
        values["rescore_at_us"] = due.get(r["lead_id"])
        if stages.get(r["lead_id"]) != "mql" and score.mql:
            reason = mql_reason(model, score) + f" (model v{active.version} activated)"
            q.qualify(r["lead_id"], at, reason, active.version, score)
            new_mqls.append(r["lead_id"])
        conn.execute(sa.update(t.leads).where(t.leads.c.lead_id == r["lead_id"]).values(**values))
    return len(rows), new_mqls


# ---------------------------------------------------------------------- one lead, as events arrive


def can_advance(active: ActiveModel, parts: Parts | None, new: list[Message], at: int) -> bool:
    """True when the lead's stored parts are exact and none of its new events is in the
    future. Events older than the parts (late ones) are added decayed to the parts' time."""
    if parts is None:
        return False
    stored, _scored_at, rescore_at = parts
    if stored.get("v") != active.version or (rescore_at is not None and at >= rescore_at):
        return False
    return all(m.ts_us <= at for m in new)


def advance(
    q: Qualifier,
    active: ActiveModel,
    lead: str,
    traits: dict[str, Any],
    stage: str,
    stored_parts: Parts,
    fit_changed: bool,
    new: list[Message],
    times: list[int],
    at: int,
) -> tuple[dict[str, Any], bool] | None:
    """Carry the stored parts forward: decay them to each new event's time, add its points,
    and decide MQL at that instant. Exact up to floating-point rounding. None when a late
    event may have made the lead an MQL at an earlier instant: only its whole history can
    tell when, so the caller re-scores it from its events."""
    parts, scored_at, rescore_at = stored_parts
    scorer = active.scorer
    model = active.model
    held = parts["h"] if not fit_changed else scorer.fit_held(traits)
    sums = [float(x) for x in parts["s"]]
    counted = [bool(x) for x in parts["c"]]
    half_s = model.half_life_days * 86400.0 if model.half_life_days is not None else None
    window_us = round(model.window_days * 86400 * US) if model.window_days is not None else None
    clock = scored_at
    qualified = stage == "mql"
    became = False
    late_events = False

    def decay_to(ts: int) -> None:
        nonlocal clock, sums
        if half_s is not None and ts > clock:
            f = 0.5 ** (((ts - clock) / 1e6) / half_s)
            sums = [x * f for x in sums]
        clock = max(clock, ts)

    # an identify or group call may have changed fit: decide at its time too
    steps: list[tuple[int, list[float], list[bool]]] = []
    for ts, ev in sorted(
        [(m.ts_us, m) for m in new] + [(x, None) for x in times if x >= scored_at],
        key=lambda p: (p[0], p[1] is None),
    ):
        decay_to(ts)
        if ev is not None:
            assert ev.event is not None
            if window_us is not None and ev.ts_us < at - window_us:
                continue  # already outside the window: it never counts
            e = event_from_row(ev.event, ev.ts_us, ev.properties or {})
            hits = scorer.matches(e)
            late = 1.0
            if ev.ts_us < clock:
                late_events = True
                if half_s is not None:
                    late = 0.5 ** (((clock - ev.ts_us) / 1e6) / half_s)
            for i, pts in hits:
                sums[i] += pts * late
                counted[i] = True
            if window_us is not None and hits:
                expiry = ev.ts_us + window_us + 1
                rescore_at = expiry if rescore_at is None else min(rescore_at, expiry)
        if not qualified:
            steps.append((ts, list(sums), list(counted)))
    decay_to(at)
    score = scorer.finish(held, sums, counted)
    if (
        late_events
        and not qualified
        and (score.mql or _may_have_qualified(active, score, min(m.ts_us for m in new), at))
    ):
        return None
    if (
        not qualified
        and steps
        and (score.mql or _may_have_qualified(active, score, steps[0][0], at))
    ):
        # the first step at which it qualified: that event's time is mql_at
        for ts, st_sums, st_counted in steps:
            s = scorer.finish(held, st_sums, st_counted)
            if s.mql:
                q.qualify(lead, ts, mql_reason(model, s), active.version, s)
                qualified = became = True
                break
    if not qualified and score.mql:
        q.qualify(lead, max(times), mql_reason(model, score), active.version, score)
        became = True
    values = score_values(score, held, sums, counted, active.version, at, q.dialect)
    values["rescore_at_us"] = rescore_at
    values["updated_at_us"] = at
    return values, became


def rescore(
    q: Qualifier,
    active: ActiveModel,
    lead: str,
    traits: dict[str, Any],
    stage: str,
    events: list[Event],
    times: list[int],
    at: int,
) -> tuple[dict[str, Any], bool]:
    """A lead's new score from its events; qualify it if it crossed. Returns the row values
    and whether it became an MQL."""
    scorer = active.scorer
    held = scorer.fit_held(traits)
    sums, counted = scorer.engage(events, at)
    score = scorer.finish(held, sums, counted)
    values = score_values(score, held, sums, counted, active.version, at, q.dialect)
    values["rescore_at_us"] = rescore_at(active, events, at)
    values["updated_at_us"] = at
    if stage == "mql":
        return values, False
    # the first of this call's messages, by its own time, at which the lead qualifies;
    # skipped when even undecayed points could not reach the threshold
    if score.mql or _could_qualify(active, traits, events, held):
        for ts in sorted(set(times)):
            s = score if ts >= at else scorer.finish(held, *scorer.engage(events, ts))
            if s.mql:
                q.qualify(lead, ts, mql_reason(active.model, s), active.version, s)
                return values, True
    if score.mql:
        q.qualify(lead, max(times), mql_reason(active.model, score), active.version, score)
        return values, True
    return values, False


# ---------------------------------------------------------------------- reading a score


def current_score(
    active: ActiveModel | None,
    row: Any,
    at: int,
    read_events: Callable[[str, float | None, int], list[Event]],
) -> LeadScore | None:
    """The lead's score at ``at``: its stored parts decayed (no write needed); re-scored from its
    events (``read_events(lead, window_days, at)``) when the parts stopped being exact. None when
    it has no parts of the active model."""
    if active is None or row.rule_sums is None:
        return None
    parts = loads(row.rule_sums)
    if parts.get("v") != active.version:
        return None
    if row.rescore_at_us is not None and at >= row.rescore_at_us:
        traits = loads(row.traits) or {}
        events = read_events(row.lead_id, active.model.window_days, at)
        return active.scorer.finish(*active.scorer.parts(traits, events, at))
    sums = parts["s"]
    half = active.model.half_life_days
    if half is not None and row.scored_at_us is not None and at > row.scored_at_us:
        factor = 0.5 ** (((at - row.scored_at_us) / 1e6) / (half * 86400.0))
        sums = [s * factor for s in sums]
    return active.scorer.finish(parts["h"], sums, parts["c"])


# ---------------------------------------------------------------------- rules of thumb


def _may_have_qualified(active: ActiveModel, now: LeadScore, since: int, at: int) -> bool:
    """Whether a lead that is not an MQL at ``at`` may have been one at some instant since
    ``since``: engagement then was at most engagement now undone by the decay in between
    (with no negative engagement rules, the only thing that lowers a score over time)."""
    m = active.model
    if any(r.points < 0 for r in m.engagement_rules):
        return True
    if m.min_fit is not None and now.fit < m.min_fit:
        return False
    undo = 1.0
    if m.half_life_days is not None:
        undo = 2.0 ** (((at - since) / 1e6) / (m.half_life_days * 86400.0))
    return now.fit + now.engagement * undo >= m.threshold


def _could_qualify(
    active: ActiveModel, traits: dict[str, Any], events: list[Event], held: list[int]
) -> bool:
    """Whether the lead could be an MQL at some earlier instant: decay only lowers points, so
    undecayed, capped points that fall short of the threshold (with no fast-track event) rule
    it out without scoring at every instant."""
    m = active.model
    fit = sum(m.fit_rules[i].points for i in held)
    if m.fit_max is not None:
        fit = min(fit, m.fit_max)
    if m.min_fit is not None and fit < m.min_fit:
        return False
    keys = {ev.key for ev in events}
    if any(r.fast_track and r.event_key in keys for r in m.engagement_rules):
        return True
    best = 0.0
    for r in m.engagement_rules:
        if r.event_key in keys and r.points > 0:
            n = sum(1 for ev in events if ev.key == r.event_key)
            best += min(r.points * n, r.cap) if r.cap is not None else r.points * n
    if m.engagement_max is not None:
        best = min(best, m.engagement_max)
    return fit + best >= m.threshold


def rescore_times(conn: Connection, active: ActiveModel, at: int) -> dict[str, int]:
    """Per lead, when parts scored at ``at`` by this model stop being exact (``rescore_at``)."""
    window = active.model.window_days
    q = sa.select(t.events.c.lead_id, t.events.c.event, t.events.c.ts_us).where(
        t.events.c.lead_id.is_not(None), t.events.c.event.is_not(None)
    )
    if window is None:
        q = q.where(t.events.c.ts_us > at)
    else:
        q = q.where(t.events.c.ts_us >= at - round(window * 86400 * US))
    events: dict[str, list[Event]] = {}
    for lead, name, ts_us in conn.execute(q):
        when = datetime.fromtimestamp(ts_us // US, UTC).replace(microsecond=ts_us % US)
        events.setdefault(lead, []).append(Event(name, when))
    due = {lead: rescore_at(active, evs, at) for lead, evs in events.items()}
    return {lead: when for lead, when in due.items() if when is not None}


def rescore_at(active: ActiveModel, events: Iterable[Event], at: int) -> int | None:
    """When the stored parts stop being exact: an event leaves the window, or a future one lands."""
    window = active.model.window_days
    keys = active.event_keys
    soonest: int | None = None
    for ev in events:
        if ev.key not in keys:
            continue
        if ev.ts_us > at:
            when = ev.ts_us
        elif window is not None:
            when = ev.ts_us + round(window * 86400 * US) + 1
        else:
            continue
        soonest = when if soonest is None else min(soonest, when)
    return soonest


def mql_reason(model: Model, score: LeadScore) -> str:
    fast_rules = {r.name for r in model.engagement_rules if r.fast_track}
    if score.fast_track and score.score < model.threshold:
        for r in score.reasons:
            if r.rule in fast_rules:
                return f"fast track: {r.rule}"
        return "fast track"
    return f"score {round2(score.score):g} reached threshold {model.threshold:g}"


def _counted_from_sql(model: Model, row: Any, n: int) -> list[bool]:
    """A rule counted when its decayed sum is non-zero (points are never zero with a cap)."""
    return [float(row[f"s{i}"]) != 0 for i in range(n)]
