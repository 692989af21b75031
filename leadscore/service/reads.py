"""Reads: a lead as the API shows it (its score decayed to the time of reading), one lead with
its history and recent events, and the filtered, sorted, paged list of leads."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..engine import Event, LeadScore, round2
from ..errors import InvalidRequestError, NotFoundError
from ..store import schema as t
from .common import iso, loads
from .events import events_of
from .scoring import ActiveModel, current_score

__all__ = ["SORT_KEYS", "current", "get_lead", "lead_view", "list_leads"]

SORT_KEYS = ("engagement", "fit", "lead_id", "mql_at", "score", "updated_at")


def current(engine: Engine, active: ActiveModel | None, row: Any, at: int) -> LeadScore | None:
    """The lead's score at ``at`` (see ``scoring.current_score``)."""

    def read_events(lead: str, window_days: float | None, since: int) -> list[Event]:
        with engine.connect() as conn:
            return events_of(conn, window_days, lead, since)

    return current_score(active, row, at, read_events)


def lead_view(
    engine: Engine, active: ActiveModel | None, row: Any, at: int, *, full: bool = False
) -> dict[str, Any]:
    score = current(engine, active, row, at)
    traits = loads(row.traits) or {}
    out: dict[str, Any] = {
        "lead_id": row.lead_id,
        "stage": row.stage,
        "mql_at": iso(row.mql_at_us),
        "mql_reason": row.mql_reason,
    }
    if score is not None:
        rec = score.record(row.lead_id)
        rec.pop("lead_id")
        out.update(rec)
    else:
        out.update(
            fit=round2(row.fit),
            engagement=round2(row.engagement),
            score=round2(row.score),
            grade=row.grade,
            mql=bool(row.mql),
            fast_track=bool(row.fast_track),
            reasons=[],
        )
    out["scored_at"] = iso(at)
    out["updated_at"] = iso(row.updated_at_us)
    if full:
        out["traits"] = {k: v for k, v in traits.items() if k != "company"}
        out["company"] = traits.get("company") or {}
    else:
        out["email"] = traits.get("email")
        out["name"] = (
            traits.get("name")
            or " ".join(
                str(x)
                for x in (
                    traits.get("first_name") or traits.get("firstName"),
                    traits.get("last_name") or traits.get("lastName"),
                )
                if x
            )
            or None
        )
        company = traits.get("company")
        out["company"] = company.get("name") if isinstance(company, dict) else company
    return out


def get_lead(
    engine: Engine, active: ActiveModel | None, lead_id: str, at: int, events: int
) -> dict[str, Any]:
    if "\x00" in lead_id:  # no lead has one; PostgreSQL cannot even compare it
        raise NotFoundError(f"no lead {lead_id!r}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == lead_id)).first()
        if row is None:
            raise NotFoundError(f"no lead {lead_id!r}")
        history = conn.execute(
            sa.select(t.stage_history)
            .where(t.stage_history.c.lead_id == lead_id)
            .order_by(t.stage_history.c.at_us)
        ).all()
        recent = conn.execute(
            sa.select(
                t.events.c.message_id,
                t.events.c.type,
                t.events.c.event,
                t.events.c.ts_us,
                t.events.c.properties,
            )
            .where(t.events.c.lead_id == lead_id)
            .order_by(t.events.c.ts_us.desc(), t.events.c.id.desc())
            .limit(events)
        ).all()
    view = lead_view(engine, active, row, at, full=True)
    view["stage_history"] = [
        {"stage": "lead", "at": iso(row.created_at_us), "reason": "first seen"},
        *(
            {
                "stage": h.stage,
                "at": iso(h.at_us),
                "reason": h.reason,
                "model_version": h.model_version,
            }
            for h in history
        ),
    ]
    view["recent_events"] = [
        {
            "messageId": e.message_id,
            "type": e.type,
            "event": e.event,
            "timestamp": iso(e.ts_us),
            "properties": json.loads(e.properties)
            if isinstance(e.properties, str)
            else e.properties,
        }
        for e in recent
    ]
    return view


def list_leads(
    engine: Engine,
    active: ActiveModel | None,
    at: int,
    *,
    stage: str | None = None,
    grade: str | None = None,
    min_score: float | None = None,
    q: str | None = None,
    sort: str = "-score",
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    if sort.lstrip("-") not in SORT_KEYS:
        raise InvalidRequestError(
            f"sort {sort!r}: use one of {', '.join(SORT_KEYS)}, '-' for descending"
        )
    query = sa.select(t.leads)
    if stage:
        if stage not in ("lead", "mql"):
            raise InvalidRequestError(f"stage {stage!r}: use lead or mql")
        query = query.where(t.leads.c.stage == stage)
    if (
        min_score is not None
        and active
        and all(r.points > 0 for r in active.model.engagement_rules)
    ):
        # decay only lowers a stored score, so it bounds the score now, except for a lead
        # with an event come due since (rescore_at_us); a negative rule decays upwards
        query = query.where(
            sa.or_(t.leads.c.score >= min_score, t.leads.c.rescore_at_us.is_not(None))
        )
    if q:
        if "\x00" in q:  # PostgreSQL cannot even compare it
            raise InvalidRequestError("q contains a NUL character")
        # the text as typed: % and _ are not wildcards
        text = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{text}%"
        traits_text = sa.cast(t.leads.c.traits, sa.Text)
        query = query.where(
            sa.or_(
                sa.func.lower(t.leads.c.lead_id).like(like, escape="\\"),
                sa.func.lower(traits_text).like(like, escape="\\"),
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    views = [lead_view(engine, active, r, at) for r in rows]
    if min_score is not None:
        views = [v for v in views if v["score"] >= min_score]
    if grade:
        g = grade.upper()
        views = [v for v in views if v["grade"] == g or (len(g) == 1 and v["grade"].startswith(g))]
    field = sort.lstrip("-")
    reverse = sort.startswith("-")
    present = [v for v in views if v.get(field) is not None]
    missing = [v for v in views if v.get(field) is None]
    # times sort by their exact value: their text drops zero microseconds
    exact = {r.lead_id: r for r in rows}
    column = {"mql_at": "mql_at_us", "updated_at": "updated_at_us"}.get(field)
    present.sort(
        key=lambda v: (
            getattr(exact[v["lead_id"]], column) if column else v[field],
            v["lead_id"],
        ),
        reverse=reverse,
    )
    ordered = present + missing
    return {
        "total": len(ordered),
        "limit": limit,
        "offset": offset,
        "leads": ordered[offset : offset + limit],
    }
