"""The funnel report from ``mql_episodes``: one aggregate query (no replay of stage history),
whose sums and duration lists become ``reports.funnel.Tally`` values; the figures themselves are
defined in leadscore/reports/funnel.py.

The query groups by the ``--by`` key only (without ``--by`` it does not group, so SQLite need
not sort a million rows). Percentiles need every duration, and the rejection reasons every
reason: each group's come back as one delimited text (``group_concat`` on SQLite, ``string_agg``
on PostgreSQL), far cheaper to fetch than a row per episode; numpy reads and sorts the numbers.
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


def _count(cond: sa.ColumnElement[bool] | None = None) -> sa.ColumnElement[Any]:
    return sa.func.count() if cond is None else sa.func.count().filter(cond)


def _duration(name: str, dialect: str) -> sa.ColumnElement[Any]:
    """The duration, NULL when either end is (arithmetic on NULL is NULL: no CASE needed)."""
    a, b = (_E[c] for c in f.DURATIONS[name])
    if name != "rep":
        return b - a
    if dialect == "postgresql":  # greatest() skips NULLs, so keep NULL explicitly
        return sa.case((b >= a, b - a), (b < a, 0), else_=sa.null())
    return sa.func.max(b - a, 0)  # SQLite's two-argument max is NULL when an argument is


def _concat(value: sa.ColumnElement[Any], dialect: str, sep: str = ",") -> Any:
    if dialect == "postgresql":
        return sa.func.string_agg(sa.cast(value, sa.Text), sep)
    return sa.func.group_concat(value, sep)


#: between rejection reasons in one text (a reason may hold a comma, not this)
_SEP = "\x1f"


def _query(by: str | None, start_us: int | None, end_us: int, now_us: int, dialect: str) -> Any:
    due, touch = _E.sla_due_at_us, _E.first_touch_at_us
    missed = sa.or_(touch.is_(None), touch > due)
    reason = sa.func.coalesce(_E.closed_reason, "")
    cols: list[Any] = [
        _count().label("mqls"),
        # reached a stage = it or a later one has a time: coalesce is NULL only when none has
        *[
            sa.func.count(sa.func.coalesce(*[_E[f"{s}_at_us"] for s in LADDER[i:]])).label(s)
            if i < len(LADDER) - 1
            else sa.func.count(_E[f"{s}_at_us"]).label(s)
            for i, s in enumerate(LADDER)
        ],
        _count(_E.closed_stage == "disqualified").label("disqualified"),
        _count(_E.closed_stage == "recycled").label("recycled"),
        _count(sa.and_(_E.closed_stage.is_(None), _E.customer_at_us.is_(None))).label("open"),
        _count(touch <= due).label("sla_met"),
        _count(sa.and_(due < now_us, missed)).label("sla_breached"),
        _count(sa.and_(due >= now_us, missed)).label("sla_pending"),
        _concat(reason, dialect, _SEP)
        .filter(_E.closed_stage == "disqualified")
        .label("rejection_reasons"),
        _concat(reason, dialect, _SEP)
        .filter(_E.closed_stage == "recycled")
        .label("recycled_reasons"),
        *[_concat(_duration(k, dialect), dialect).label(f"d_{k}") for k in f.DURATIONS],
    ]
    at: sa.ColumnElement[Any] = _E.mql_at_us
    if dialect == "sqlite" and start_us is None:
        # everything before `to` is nearly the whole table: a plain scan beats the index
        at = at + 0
    where = [at < end_us]
    if start_us is not None:
        where.append(at >= start_us)
    query = sa.select(*cols).where(*where)
    if by is None:
        return query.add_columns(sa.literal("all").label("key"))
    key = _key(by).label("key")
    return query.add_columns(key).group_by(key)


def _ints(text: str | None) -> np.ndarray:
    if not text:
        return np.empty(0, dtype=np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")


def _reasons(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if text is not None:
        for r in text.split(_SEP):
            out[r] = out.get(r, 0) + 1
    return out


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
        key = f.NONE if r.key is None or r.key == "" else str(r.key)
        part = f.Tally(
            mqls=r.mqls,
            reached={s: int(getattr(r, s) or 0) for s in LADDER},
            disqualified=int(r.disqualified or 0),
            recycled=int(r.recycled or 0),
            open=int(r.open or 0),
            sla={
                "met": int(r.sla_met or 0),
                "breached": int(r.sla_breached or 0),
                "pending": int(r.sla_pending or 0),
            },
            rejection_reasons=_reasons(r.rejection_reasons),
            recycled_reasons=_reasons(r.recycled_reasons),
            durations={k: [_ints(getattr(r, f"d_{k}"))] for k in f.DURATIONS},
        )
        out.setdefault(key, f.Tally()).add(part)  # NULL and '' are both "(none)"
    return out


def funnel_report(
    engine: Engine, *, by: str | None, start_us: int | None, end_us: int, now_us: int
) -> dict[str, Any]:
    """The funnel report (see ``reports.funnel.report``) as of ``now_us``."""
    groups = tallies(engine, by=by, start_us=start_us, end_us=end_us, now_us=now_us)
    return f.report(groups, by=by, start=iso(start_us), end=iso(end_us), as_of=iso(now_us))
