"""``backtest --replay``: when would each lead have become an MQL? Each lead's events are
replayed in time order through the Python engine (the same arithmetic as the batch path, proven
by the parity tests), scoring it at every event that counts for a rule; the first moment it
qualifies is its MQL time. A lead's score only rises at an event (fit is fixed, engagement decays
between events), so no moment between events can be the first."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ..batch import _traits_of
from ..engine import Event, Scorer
from ..engine.scorer import us_of
from ..io import Inputs
from ..model import Model
from .outcomes import OUTCOMES_TABLE

__all__ = ["first_mql", "replay"]


def first_mql(
    scorer: Scorer, traits: dict[str, Any], events: list[Event], as_of: datetime
) -> datetime | None:
    """The first instant at or before ``as_of`` at which the lead is an MQL, or None."""
    held = scorer.fit_held(traits)
    counted = [e for e in events if e.timestamp <= as_of and scorer.matches(e)]
    if not counted:
        s = scorer.finish(held, *scorer.engage([], us_of(as_of)))
        return (events[0].timestamp if events else as_of) if s.mql else None
    for i, e in enumerate(counted):
        if i + 1 < len(counted) and counted[i + 1].timestamp == e.timestamp:
            continue  # events at the same instant count together
        s = scorer.finish(held, *scorer.engage(counted[: i + 1], us_of(e.timestamp)))
        if s.mql:
            return e.timestamp
    return None


def _leads(inputs: Inputs) -> Iterator[tuple[str, dict[str, Any], list[Event]]]:
    """Each lead with its events in time order, streamed from one DuckDB query."""
    con = inputs.con
    if inputs.events_view:
        sql = (
            "WITH ev AS (SELECT lead_id, list(struct_pack(n := event, t := ts, "
            "p := CAST(CAST(properties AS JSON) AS VARCHAR)) ORDER BY ts) AS __events "
            f"FROM {inputs.events_view} WHERE lead_id IS NOT NULL GROUP BY lead_id) "
            f"SELECT l.*, ev.__events FROM {inputs.leads_view} l LEFT JOIN ev USING (lead_id)"
        )
    else:
        sql = f"SELECT *, NULL AS __events FROM {inputs.leads_view}"
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description or ()]
    while rows := cur.fetchmany(10_000):
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            raw = rec.pop("__events") or []
            events = []
            for e in raw:
                props = json.loads(e["p"]) if e["p"] else {}
                events.append(Event(e["n"], e["t"], props if isinstance(props, dict) else {}))
            yield str(rec["lead_id"]), _traits_of(rec), events


def replay(
    model: Model, inputs: Inputs, as_of: datetime, positive: tuple[str, ...], horizon: float | None
) -> dict[str, Any]:
    """MQL times and what followed them: converted after the MQL (within the horizon), before it
    (sales got there first), or not at all."""
    scorer = Scorer(model)
    pos = ", ".join(f"'{p}'" for p in positive)
    conv = {
        str(lid): (at if at is None or at.tzinfo else at.replace(tzinfo=UTC))
        for lid, at in inputs.con.execute(
            f'SELECT lead_id, min("at") FROM {OUTCOMES_TABLE} WHERE outcome IN ({pos}) GROUP BY lead_id'
        ).fetchall()
    }
    h = timedelta(days=horizon) if horizon else None
    mqls = after = before = never = 0
    days: list[float] = []
    early: list[dict[str, Any]] = []
    for lid, traits, events in _leads(inputs):
        t = first_mql(scorer, traits, events, as_of)
        if t is None:
            continue
        mqls += 1
        if events:
            days.append((t - events[0].timestamp).total_seconds() / 86400)
        c = conv.get(lid, "none")
        if c == "none":
            never += 1
        elif c is None or (c >= t and (h is None or c <= t + h)):
            after += 1
        elif c < t:
            before += 1
            if len(early) < 20:
                early.append(
                    {"lead_id": lid, "converted_at": c.isoformat(), "mql_at": t.isoformat()}
                )
        else:
            never += 1
    return {
        "mqls": mqls,
        "converted_after_mql": after,
        "converted_before_mql": before,
        "not_converted": never,
        "rate_after_mql": after / mqls if mqls else 0.0,
        "median_days_to_mql": statistics.median(days) if days else None,
        "converted_before_examples": early,
    }


def _created(traits: dict[str, Any]) -> datetime | None:
    raw = traits.get("created_at")
    if raw is None or str(raw).strip() == "":
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    s = str(raw).strip()
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def score_when_created(model: Model, inputs: Inputs, table: str, dp_table: str) -> None:
    """Each lead scored as it stood at its own decision point — its ``created_at`` trait, else
    its first event — by the Python engine, into ``table`` (the batch query's columns) and the
    decision points into ``dp_table``. A lead with neither has no decision point."""
    scorer = Scorer(model)
    con = inputs.con
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table}__raw (lead_id VARCHAR, fit DOUBLE, engagement DOUBLE, "
        "score DOUBLE, grade VARCHAR, mql BOOLEAN, fast_track BOOLEAN, reasons VARCHAR)"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {dp_table} (lead_id VARCHAR, dp TIMESTAMP)")
    rows: list[tuple[Any, ...]] = []
    dps: list[tuple[str, datetime]] = []

    def flush() -> None:
        if rows:
            con.executemany(f"INSERT INTO {table}__raw VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            rows.clear()
        if dps:
            con.executemany(f"INSERT INTO {dp_table} VALUES (?, ?)", dps)
            dps.clear()

    for lid, traits, events in _leads(inputs):
        dp = _created(traits) or (events[0].timestamp if events else None)
        if dp is None:
            continue
        s = scorer.score(traits, events, dp)
        reasons = json.dumps([{"rule": r.rule, "points": r.points} for r in s.reasons])
        rows.append((lid, s.fit, s.engagement, s.score, s.grade, s.mql, s.fast_track, reasons))
        dps.append((lid, dp.astimezone(UTC).replace(tzinfo=None)))
        if len(rows) >= 5000:
            flush()
    flush()
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * REPLACE (from_json(reasons, "
        f"""'[{{"rule": "VARCHAR", "points": "DOUBLE"}}]') AS reasons) FROM {table}__raw"""
    )
    con.execute(f"DROP TABLE {table}__raw")
