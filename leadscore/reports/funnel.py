"""What the funnel report's figures mean, as plain functions (docs/funnel.md defines each).

The report counts MQL *episodes* whose ``mql_at`` falls in ``[from, to)``: a cohort by MQL date,
so an episode still being worked is shown as open, never as a failure. ``tally`` is the
reference: it counts rows of ``mql_episodes`` one by one. The service computes the same
``Tally`` with one aggregate query (leadscore/service/reports.py); tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .episodes import LADDER

__all__ = [
    "BAND_EDGES",
    "DURATIONS",
    "GROUPS",
    "NONE",
    "SQL_BAND",
    "Tally",
    "band_of",
    "group_key",
    "percentile",
    "rate",
    "reached",
    "report",
    "sla_outcome",
    "summarise",
    "tally",
]

#: what ``--by`` can group by: episode columns, and ``band`` (the score in bands of 10)
GROUPS = ("source", "campaign", "grade", "band", "owner", "team", "track")
#: the usual B2B MQL→SQL range; below its low end the report says so
SQL_BAND = (0.20, 0.60)
#: score bands, highest first: a score at or above the edge is in that band
BAND_EDGES = (90, 80, 70, 60, 50, 40, 30, 20, 10, 0)
#: the label of an episode with no value for the group (no source, no owner…)
NONE = "(none)"
#: each time the report gives median and p90 of: (from column, to column)
DURATIONS: dict[str, tuple[str, str]] = {
    "first_touch": ("mql_at_us", "first_touch_at_us"),  # speed to lead, all of it
    "routing": ("mql_at_us", "assigned_at_us"),  # MQL to assignment: owned by ops
    "rep": ("assigned_at_us", "first_touch_at_us"),  # assignment to first touch: owned by sales
    "close": ("mql_at_us", "customer_at_us"),  # MQL to customer: time to close
}


def band_of(score: float | None) -> str | None:
    """``90+``, ``80–89``, … ``0–9``; ``<0`` below zero; None without a score."""
    if score is None:
        return None
    for edge in BAND_EDGES:
        if score >= edge:
            return f"{edge}+" if edge == BAND_EDGES[0] else f"{edge}–{edge + 9}"
    return "<0"


def group_key(row: Mapping[str, Any], by: str | None) -> str:
    if by is None:
        return "all"
    v = band_of(row.get("score")) if by == "band" else row.get(by)
    return NONE if v is None or v == "" else str(v)


def reached(row: Mapping[str, Any], stage: str) -> bool:
    """An episode reached ``stage`` when it, or any later stage of the ladder, has a time: a lead
    moved from mql straight to sql has passed sal too."""
    later = LADDER[LADDER.index(stage) :]
    return any(row.get(f"{s}_at_us") is not None for s in later)


def sla_outcome(due_us: int | None, first_touch_us: int | None, now_us: int) -> str | None:
    """``met`` (first touch at or before the due time), ``breached`` (none by the due time, and
    the due time has passed), ``pending`` (not yet due, not yet touched); None without an SLA.
    Read from the times, not the breach flag: a late-arriving touch dated in time is met."""
    if due_us is None:
        return None
    if first_touch_us is not None and first_touch_us <= due_us:
        return "met"
    if due_us < now_us:
        return "breached"
    return "pending"


def duration(row: Mapping[str, Any], name: str) -> int | None:
    """One of ``DURATIONS`` for an episode, in microseconds; None when either end is missing.
    The rep's delay is never negative (a touch before a reassignment counts as at once)."""
    a, b = (row.get(c) for c in DURATIONS[name])
    if a is None or b is None:
        return None
    d = int(b) - int(a)
    return max(0, d) if name == "rep" else d


def rate(n: int, d: int) -> float | None:
    """n / d, or None when there is nothing to divide by."""
    return n / d if d else None


def percentile(sorted_values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation between the closest ranks, as
    PostgreSQL's ``percentile_cont`` and numpy's default: the median of 1, 2, 3, 4 is 2.5."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = (n - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    low, high = float(sorted_values[lo]), float(sorted_values[hi])
    return low + (high - low) * (pos - lo)


@dataclass
class Tally:
    """The counts of one group's episodes; tallies of parts add up to the whole's."""

    mqls: int = 0
    reached: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LADDER, 0))
    disqualified: int = 0
    recycled: int = 0
    open: int = 0
    sla: dict[str, int] = field(default_factory=lambda: {"met": 0, "breached": 0, "pending": 0})
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    recycled_reasons: dict[str, int] = field(default_factory=dict)
    #: microseconds, in chunks (lists or integer arrays), per name in ``DURATIONS``
    durations: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in DURATIONS})

    def add(self, other: Tally) -> None:
        self.mqls += other.mqls
        for s in LADDER:
            self.reached[s] += other.reached[s]
        self.disqualified += other.disqualified
        self.recycled += other.recycled
        self.open += other.open
        for k in self.sla:
            self.sla[k] += other.sla[k]
        for mine, theirs in (
            (self.rejection_reasons, other.rejection_reasons),
            (self.recycled_reasons, other.recycled_reasons),
        ):
            for reason, n in theirs.items():
                mine[reason] = mine.get(reason, 0) + n
        for k in DURATIONS:
            self.durations[k].extend(other.durations[k])


def tally(rows: Iterable[Mapping[str, Any]], by: str | None, now_us: int) -> dict[str, Tally]:
    """The reference count: episodes (``mql_episodes`` rows as mappings) one by one, per group."""
    out: dict[str, Tally] = {}
    for row in rows:
        t = out.setdefault(group_key(row, by), Tally())
        t.mqls += 1
        for s in LADDER:
            t.reached[s] += reached(row, s)
        closed = row.get("closed_stage")
        reason = row.get("closed_reason") or ""
        if closed == "disqualified":
            t.disqualified += 1
            t.rejection_reasons[reason] = t.rejection_reasons.get(reason, 0) + 1
        elif closed == "recycled":
            t.recycled += 1
            t.recycled_reasons[reason] = t.recycled_reasons.get(reason, 0) + 1
        elif row.get("customer_at_us") is None:
            t.open += 1
        outcome = sla_outcome(row.get("sla_due_at_us"), row.get("first_touch_at_us"), now_us)
        if outcome is not None:
            t.sla[outcome] += 1
        for k in DURATIONS:
            d = duration(row, k)
            if d is not None:
                t.durations[k].append([d])
    return out


def _times(chunks: list[Any]) -> dict[str, Any]:
    parts = [np.asarray(c, dtype=np.int64) for c in chunks if len(c)]
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    n = len(values)
    if n:
        # only the ranks the percentiles read need to be in place: a partition, not a sort
        ranks = {min(int((n - 1) * q / 100) + k, n - 1) for q in (50, 90) for k in (0, 1)}
        values = np.partition(values, sorted(ranks))
    med, p90 = percentile(values, 50), percentile(values, 90)
    return {
        "n": n,
        "median_s": None if med is None else round(med / 1e6, 3),
        "p90_s": None if p90 is None else round(p90 / 1e6, 3),
    }


def _reasons(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    return [
        {"reason": r or NONE, "count": n}
        for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def summarise(key: str, t: Tally) -> dict[str, Any]:
    """One group's figures, as the API and ``--format json`` give them."""
    sql_rate = rate(t.reached["sql"], t.mqls)
    note = None
    if sql_rate is not None and sql_rate < SQL_BAND[0]:
        note = f"below the usual {SQL_BAND[0]:.0%}–{SQL_BAND[1]:.0%} band"
        if t.open:
            note += f" ({t.open} still open)"
    decided = t.sla["met"] + t.sla["breached"]
    return {
        "key": key,
        "mqls": t.mqls,
        "reached": dict(t.reached),
        "conversion": {
            "mql_to_sal": rate(t.reached["sal"], t.mqls),
            "mql_to_sql": sql_rate,
            "sql_to_customer": rate(t.reached["customer"], t.reached["sql"]),
        },
        "mql_to_sql_note": note,
        "outcome": {
            "customer": t.reached["customer"],
            "disqualified": t.disqualified,
            "recycled": t.recycled,
            "open": t.open,
        },
        "sla": {**t.sla, "compliance": rate(t.sla["met"], decided)},
        "times": {k: _times(t.durations[k]) for k in DURATIONS},
        "rejection_reasons": _reasons(t.rejection_reasons),
        "recycled_reasons": _reasons(t.recycled_reasons),
    }


def report(
    groups: Mapping[str, Tally],
    *,
    by: str | None,
    start: str | None,
    end: str | None,
    as_of: str | None,
) -> dict[str, Any]:
    """The whole report: the total, then each group (most MQLs first)."""
    total = Tally()
    for t in groups.values():
        total.add(t)
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].mqls, kv[0]))
    return {
        "from": start,
        "to": end,
        "as_of": as_of,
        "by": by,
        "sql_band": list(SQL_BAND),
        "total": summarise("all", total),
        "groups": [summarise(k, t) for k, t in ordered] if by is not None else [],
    }


def parse_time(text: str | None, name: str) -> int | None:
    """``from``/``to``: an ISO 8601 date (midnight UTC) or timestamp (no offset means UTC), as
    integer microseconds; None for None or ''."""
    from datetime import UTC, datetime

    from ..errors import InvalidRequestError

    if text is None or not text.strip():
        return None
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise InvalidRequestError(
            f"{name} {text!r} is not a date or timestamp; write it like 2026-06-01 or "
            "2026-06-01T09:30:00Z (no offset means UTC)"
        ) from None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
