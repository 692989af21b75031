"""Reads: a lead as the API shows it (its score decayed to the time of reading), one lead with
its history and recent events, and the filtered, sorted, paged list of leads."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..engine import Event, LeadScore, round2
from ..errors import InvalidRequestError, NotFoundError
from ..handoff import STAGES
from ..store import schema as t
from .common import iso, loads
from .events import events_of
from .handoff_reads import handoff_view, history_entry
from .scoring import ActiveModel, current_score

__all__ = ["SORT_KEYS", "current", "get_lead", "lead_view", "list_leads"]

SORT_KEYS = ("engagement", "fit", "lead_id", "mql_at", "score", "updated_at")


def current(engine: Engine, active: ActiveModel | None, row: Any, at: int) -> LeadScore | None:
    """The lead's score at ``at`` (see ``scoring.current_score``)."""

    def read_events(lead: str, window: int | None, since: int) -> list[Event]:
        with engine.connect() as conn:
            return events_of(conn, window, lead, since)

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
        "owner": row.owner,
        "team": row.team,
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
            .order_by(t.stage_history.c.at_us, t.stage_history.c.id)
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
        handoff = handoff_view(conn, row)
    view = lead_view(engine, active, row, at, full=True)
    view["stage_history"] = [
        {"stage": "lead", "at": iso(row.created_at_us), "reason": "first seen", "by": None},
        *(history_entry(h) for h in history),
    ]
    view.update(handoff)
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


#: sorts the stored column orders exactly: these values do not change as time passes
_EXACT = {"lead_id": "lead_id", "mql_at": "mql_at_us", "updated_at": "updated_at_us", "fit": "fit"}
#: sorts whose stored value bounds the value now from above while decay only lowers points
_BOUNDED = {"score": "score", "engagement": "engagement"}


def list_leads(
    engine: Engine,
    active: ActiveModel | None,
    at: int,
    *,
    stage: str | None = None,
    owner: str | None = None,
    grade: str | None = None,
    min_score: float | None = None,
    q: str | None = None,
    sort: str = "-score",
    limit: int = 50,
    offset: int = 0,
    stats: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Leads filtered, sorted and paged, their scores as of ``at``.

    Stage and text filters, ordering and paging run in SQL. A score decays as time passes, so
    what the store holds is the score when the lead was last written; while every engagement
    rule adds points, that is an upper bound of the score now, except for a lead whose stored
    parts stopped being exact (an event came due: ``rescore_at_us``). Sorting by score or
    engagement, highest first, reads leads in stored order a page at a time and stops once the
    next stored value cannot beat the page; leads come due are read always. Other orders by a
    value that does not change (lead_id, mql_at, updated_at, fit) page in SQL. Filters on the
    score now (min_score, grade) or an ascending score order read every candidate.
    ``stats["rows_read"]`` counts the lead rows read."""
    field = sort.lstrip("-")
    if field not in SORT_KEYS:
        raise InvalidRequestError(
            f"sort {sort!r}: use one of {', '.join(SORT_KEYS)}, '-' for descending"
        )
    reverse = sort.startswith("-")
    stats = {} if stats is None else stats
    stats["rows_read"] = 0
    where: list[Any] = []
    if stage:
        if stage not in STAGES:
            raise InvalidRequestError(f"stage {stage!r}: use one of {', '.join(STAGES)}")
        where.append(t.leads.c.stage == stage)
    if owner:
        if "\x00" in owner:
            raise InvalidRequestError("owner contains a NUL character")
        where.append(t.leads.c.owner == owner)
    bounded = active is None or all(r.points > 0 for r in active.model.engagement_rules)
    if min_score is not None and active and bounded:
        # decay only lowers a stored score, so it bounds the score now, except for a lead
        # with an event come due since (rescore_at_us); a negative rule decays upwards
        where.append(sa.or_(t.leads.c.score >= min_score, t.leads.c.rescore_at_us.is_not(None)))
    if q:
        if "\x00" in q:  # PostgreSQL cannot even compare it
            raise InvalidRequestError("q contains a NUL character")
        # the text as typed: % and _ are not wildcards
        text = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{text}%"
        traits_text = sa.cast(t.leads.c.traits, sa.Text)
        where.append(
            sa.or_(
                sa.func.lower(t.leads.c.lead_id).like(like, escape="\\"),
                sa.func.lower(traits_text).like(like, escape="\\"),
            )
        )
    now_filtered = min_score is not None or bool(grade)

    def keep(v: dict[str, Any]) -> bool:
        if min_score is not None and v["score"] < min_score:
            return False
        if grade:
            g = grade.upper()
            got = v["grade"] or ""
            return got == g or (len(g) == 1 and got.startswith(g))
        return True

    def page(total: int, views: list[dict[str, Any]]) -> dict[str, Any]:
        return {"total": total, "limit": limit, "offset": offset, "leads": views}

    need = offset + limit
    with engine.connect() as conn:

        def read(query: Any) -> list[Any]:
            rows = list(conn.execute(query).all())
            stats["rows_read"] += len(rows)
            return rows

        if field in _EXACT and not now_filtered:
            col = t.leads.c[_EXACT[field]]
            order = [col.is_(None), col.desc() if reverse else col.asc()]
            if field != "lead_id":
                order.append(t.leads.c.lead_id.desc() if reverse else t.leads.c.lead_id.asc())
            total = conn.execute(
                sa.select(sa.func.count()).select_from(t.leads).where(*where)
            ).scalar_one()
            rows = read(
                sa.select(t.leads).where(*where).order_by(*order).limit(limit).offset(offset)
            )
            return page(int(total), [lead_view(engine, active, r, at) for r in rows])

        if field in _BOUNDED and reverse and bounded and not grade:
            total, views = _top(engine, conn, active, at, field, where, min_score, need, read)
            return page(total, views[offset : offset + limit])

        rows = read(sa.select(t.leads).where(*where))
    views = [v for v in (lead_view(engine, active, r, at) for r in rows) if keep(v)]
    ordered = _ordered(views, {r.lead_id: r for r in rows}, field, reverse)
    return page(len(ordered), ordered[offset : offset + limit])


def _ordered(
    views: list[dict[str, Any]], exact: dict[str, Any], field: str, reverse: bool
) -> list[dict[str, Any]]:
    present = [v for v in views if v.get(field) is not None]
    # the ones without a value last, by lead_id in the same direction
    missing = sorted(
        (v for v in views if v.get(field) is None), key=lambda v: v["lead_id"], reverse=reverse
    )
    # times sort by their exact value: their text drops zero microseconds
    column = {"mql_at": "mql_at_us", "updated_at": "updated_at_us"}.get(field)
    present.sort(
        key=lambda v: (
            getattr(exact[v["lead_id"]], column) if column else v[field],
            v["lead_id"],
        ),
        reverse=reverse,
    )
    return present + missing


def _top(
    engine: Engine,
    conn: Any,
    active: ActiveModel | None,
    at: int,
    field: str,
    where: list[Any],
    min_score: float | None,
    need: int,
    read: Any,
) -> tuple[int, list[dict[str, Any]]]:
    """Highest ``field`` first, reading stored values downwards until the first ``need`` are
    known; the total and the leads in order."""
    col = t.leads.c[field]
    # leads whose stored parts stopped being exact (their value now may exceed the stored
    # one), and the few never scored
    due = sa.and_(t.leads.c.rescore_at_us.is_not(None), t.leads.c.rescore_at_us <= at)
    due_rows = read(sa.select(t.leads).where(*where, sa.or_(due, col.is_(None))))
    due_ids = {r.lead_id for r in due_rows}
    views = [lead_view(engine, active, r, at) for r in due_rows]
    exhaustive = min_score is not None  # the total needs every lead at or over min_score
    if exhaustive:
        where = [*where, t.leads.c.score >= min_score]
        total = None
    else:
        total = int(
            conn.execute(sa.select(sa.func.count()).select_from(t.leads).where(*where)).scalar_one()
        )
    not_due = sa.and_(
        sa.or_(t.leads.c.rescore_at_us.is_(None), t.leads.c.rescore_at_us > at),
        col.is_not(None),
    )
    chunk = need + 1
    last: tuple[float, str] | None = None
    while True:
        query = sa.select(t.leads).where(*where, not_due)
        if last is not None:
            # keyset paging on (stored value desc, lead_id desc)
            query = query.where(
                sa.or_(col < last[0], sa.and_(col == last[0], t.leads.c.lead_id < last[1]))
            )
        rows = read(query.order_by(col.desc(), t.leads.c.lead_id.desc()).limit(chunk))
        for r in rows:
            if r.lead_id not in due_ids:
                views.append(lead_view(engine, active, r, at))
        if len(rows) < chunk:
            break
        last = (getattr(rows[-1], field), rows[-1].lead_id)
        if not exhaustive:
            best = sorted(((v[field], v["lead_id"]) for v in views), reverse=True)
            # every lead not read yet has a value now of at most its stored value, at most last
            # (the page shows values rounded; rounding keeps order, so a lead not read yet
            # shows at most round2(last), and a strictly higher one cannot be passed)
            if len(best) >= need and best[need - 1][0] > round2(last[0]):
                break
        chunk *= 2
    if min_score is not None:
        views = [v for v in views if v["score"] >= min_score]
    ordered = _ordered(views, {}, field, True)
    return (len(ordered) if total is None else total), ordered
