"""The funnel report from ``mql_episodes``: one aggregate query (no replay of stage history),
whose sums and duration lists become ``reports.funnel.Tally`` values; the figures themselves are
defined in leadscore/reports/funnel.py.

The query groups by the ``--by`` key and by how an episode closed (stage and reason), so the
rejection reasons come from the same pass. Percentiles need every duration: each group's
durations come back as one comma-separated text (``group_concat`` on SQLite, ``string_agg`` on
PostgreSQL), which is far cheaper to fetch than a row per episode, and are sorted with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import InvalidRequestError
from ..reports import funnel as f
from ..reports.episodes import LADDER
from ..store import schema as t
from .common import iso

__all__ = ["funnel_report"]

_E = t.mql_episodes.c


def _key(by: str | None) -> sa.ColumnElement[Any]:
    if by is None:
        return sa.literal("all")
    if by == "band":
        return sa.case(
            *[
                (_E.score >= edge, f"{edge}+" if edge == f.BAND_EDGES[0] else f"{edge}–{edge + 9}")
                for edge in f.BAND_EDGES
            ],
            (_E.score.is_not(None), "<0"),
            else_=sa.null(),
        )
    return _E[by]


def _flag(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def _duration(name: str) -> sa.ColumnElement[Any]:
    a, b = (_E[c] for c in f.DURATIONS[name])
    both = sa.and_(a.is_not(None), b.is_not(None))
    if name == "rep":
        return sa.case((sa.and_(both, b >= a), b - a), (both, 0), else_=sa.null())
    return sa.case((both, b - a), else_=sa.null())


def _concat(value: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.string_agg(sa.cast(value, sa.Text), ",")
    return sa.func.group_concat(value, ",")


def _query(by: str | None, start_us: int | None, end_us: int, now_us: int, dialect: str) -> Any:
    key = _key(by).label("key")
    due, touch = _E.sla_due_at_us, _E.first_touch_at_us
    met = sa.and_(due.is_not(None), touch.is_not(None), touch <= due)
    cols: list[Any] = [
        key,
        _E.closed_stage,
        _E.closed_reason,
        sa.func.count().label("mqls"),
        *[
            _flag(sa.or_(*[_E[f"{s}_at_us"].is_not(None) for s in LADDER[i:]])).label(s)
            for i, s in enumerate(LADDER)
        ],
        _flag(sa.and_(_E.closed_stage.is_(None), _E.customer_at_us.is_(None))).label("open"),
        _flag(met).label("sla_met"),
        _flag(sa.and_(due.is_not(None), sa.not_(met), due < now_us)).label("sla_breached"),
        _flag(sa.and_(due.is_not(None), sa.not_(met), due >= now_us)).label("sla_pending"),
        *[_concat(_duration(k), dialect).label(f"d_{k}") for k in f.DURATIONS],
    ]
    where = [_E.mql_at_us < end_us]
    if start_us is not None:
        where.append(_E.mql_at_us >= start_us)
    return sa.select(*cols).where(*where).group_by(key, _E.closed_stage, _E.closed_reason)


def _ints(text: str | None) -> np.ndarray:
    if not text:
        return np.empty(0, dtype=np.int64)
    return np.array(text.split(","), dtype=np.int64)


def tallies(
    engine: Engine, *, by: str | None, start_us: int | None, end_us: int, now_us: int
) -> dict[str, f.Tally]:
    """Each group's ``Tally`` of the episodes with ``mql_at`` in ``[start_us, end_us)``."""
    if by is not None and by not in f.GROUPS:
        raise InvalidRequestError(f"cannot group by {by!r}; use one of {', '.join(f.GROUPS)}")
    if start_us is not None and start_us >= end_us:
        raise InvalidRequestError("the report's 'from' must be before its 'to'")
    out: dict[str, f.Tally] = {}
    with engine.connect() as conn:
        rows = conn.execute(_query(by, start_us, end_us, now_us, engine.dialect.name)).all()
    for r in rows:
        part = f.Tally(
            mqls=r.mqls,
            reached={s: int(getattr(r, s) or 0) for s in LADDER},
            open=int(r.open or 0),
            sla={
                "met": int(r.sla_met or 0),
                "breached": int(r.sla_breached or 0),
                "pending": int(r.sla_pending or 0),
            },
        )
        reason = r.closed_reason or ""
        if r.closed_stage == "disqualified":
            part.disqualified = r.mqls
            part.rejection_reasons[reason] = r.mqls
        elif r.closed_stage == "recycled":
            part.recycled = r.mqls
            part.recycled_reasons[reason] = r.mqls
        for k in f.DURATIONS:
            part.durations[k].append(_ints(getattr(r, f"d_{k}")))
        key = f.NONE if r.key is None or r.key == "" else str(r.key)
        out.setdefault(key, f.Tally()).add(part)
    return out


def funnel_report(
    engine: Engine, *, by: str | None, start_us: int | None, end_us: int, now_us: int
) -> dict[str, Any]:
    """The funnel report (see ``reports.funnel.report``) as of ``now_us``."""
    groups = tallies(engine, by=by, start_us=start_us, end_us=end_us, now_us=now_us)
    return f.report(groups, by=by, start=iso(start_us), end=iso(end_us), as_of=iso(now_us))
