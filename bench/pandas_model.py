"""A scoring model computed with plain pandas, the way an analyst would write it by hand.

This is the benchmark's point of comparison (docs/benchmarks.md): read both Parquet files with
pandas, evaluate every fit rule with vectorised string operations, sum decayed engagement per
lead and rule with one groupby, apply the caps and maxima, the fast track, the min_fit gate and
the grades, build the reasons and write one JSON object per lead, as ``leadscore score --format
jsonl`` does. The rules are read from the model file, so it computes exactly the model that
leadscore computes; each operator is a one-line pandas expression.

It reads the benchmark's files: leads with one text column per trait (``company.employees``),
events with ``lead_id``, ``event``, ``timestamp`` (UTC, or with a time zone) and a ``properties``
struct. It is not a second implementation of every input leadscore accepts.

    python bench/pandas_model.py MODEL --leads leads.parquet --events events.parquet \
        --as-of 2026-06-01 --output scores.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.engine.scorer import US_PER_DAY
from leadscore.model import All, Any, Condition, Leaf, Model, Not, load_model
from leadscore.model.values import NUMBER_PATTERN, WHITESPACE

Path_ = tuple[str, ...]


# ------------------------------------------------------------------ values and conditions


def _text(s: pd.Series) -> pd.Series:
    """The text form of a column: text as it is, numbers and booleans spelled as in JSON."""
    if pd.api.types.is_bool_dtype(s):
        return s.map({True: "true", False: "false"})
    if pd.api.types.is_numeric_dtype(s):
        return s.astype("str").where(s.notna())
    return s


class Column:
    """One field, with its forms computed once: present, normalised text, number."""

    def __init__(self, raw: pd.Series) -> None:
        self.raw = raw
        text = _text(raw)
        stripped = text.str.strip(WHITESPACE)
        self.present: np.ndarray = np.asarray(stripped.notna() & (stripped != ""), dtype=bool)
        self.norm = stripped.str.lower()
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            self.number = raw.astype("float64")
        else:
            is_number = np.asarray(stripped.str.match(NUMBER_PATTERN).fillna(False), dtype=bool)
            self.number = pd.to_numeric(stripped.where(is_number), errors="coerce")


def _mask(x: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(x, pd.Series):
        x = x.fillna(False)
    return np.array(x, dtype=bool)  # a writable copy: Arrow-backed results are read-only


def evaluate(cond: Condition, column: Callable[[Path_], Column]) -> np.ndarray:
    """A boolean array: where ``cond`` holds. ``column(path)`` gives a Column."""
    if isinstance(cond, All):
        out = evaluate(cond.conditions[0], column)
        for c in cond.conditions[1:]:
            out = out & evaluate(c, column)
        return out
    if isinstance(cond, Any):
        out = evaluate(cond.conditions[0], column)
        for c in cond.conditions[1:]:
            out = out | evaluate(c, column)
        return out
    if isinstance(cond, Not):
        return ~evaluate(cond.condition, column)
    assert isinstance(cond, Leaf)
    col = column(cond.path)
    op, v = cond.op, cond.value
    if op == "exists":
        return col.present if v else ~col.present
    n = col.number
    if op == "gt":
        return _mask(n > v)
    if op == "gte":
        return _mask(n >= v)
    if op == "lt":
        return _mask(n < v)
    if op == "lte":
        return _mask(n <= v)
    if op == "between":
        assert isinstance(v, tuple)
        lo, hi = v
        return _mask((n >= lo) & (n <= hi))
    if op in ("equals", "in", "not_in"):
        items = v if isinstance(v, tuple) else (v,)
        hit = _mask(col.norm.isin([i for i in items if isinstance(i, str)]))
        numbers = [i for i in items if isinstance(i, float)]
        if numbers:
            hit |= _mask(n.isin(numbers))
        result: np.ndarray = col.present & (~hit if op == "not_in" else hit)
        return result
    t = col.norm
    if op == "contains":
        hit = _mask(t.str.contains(str(v), regex=False))
    elif op == "starts_with":
        hit = _mask(t.str.startswith(str(v)))
    elif op == "ends_with":
        hit = _mask(t.str.endswith(str(v)))
    elif op == "matches":
        hit = _mask(t.str.contains(str(v), regex=True))
    else:
        raise ValueError(f"unknown operator {op!r}")
    found: np.ndarray = col.present & hit
    return found


def fields(cond: Condition | None) -> set[Path_]:
    if cond is None:
        return set()
    if isinstance(cond, Leaf):
        return {cond.path}
    if isinstance(cond, All | Any):
        return set().union(*(fields(c) for c in cond.conditions))
    if isinstance(cond, Not):
        return fields(cond.condition)
    return set()


def round2(x: np.ndarray | pd.Series) -> np.ndarray:
    """Round to 2 decimals, halves away from zero (as leadscore reports numbers)."""
    a = np.asarray(x, dtype="float64")
    r = np.floor(np.abs(a) * 100.0 + 0.5) / 100.0
    return np.where(r == 0, 0.0, np.copysign(r, a))


# ------------------------------------------------------------------ scoring


def score(model: Model, leads_path: Path, events_path: Path, as_of: datetime) -> pd.DataFrame:
    """One row per lead: lead_id, fit, engagement, score, grade, mql, fast_track, reasons."""
    # ---- fit: one boolean column per rule
    fit_fields = sorted(set().union(*(fields(r.when) for r in model.fit_rules)))
    leads = pd.read_parquet(leads_path, columns=["lead_id", *(".".join(p) for p in fit_fields)])
    lead_cols: dict[Path_, Column] = {}

    def lead_column(path: Path_) -> Column:
        if path not in lead_cols:
            name = ".".join(path)
            raw = leads[name] if name in leads else pd.Series([None] * len(leads), dtype="str")
            lead_cols[path] = Column(raw)
        return lead_cols[path]

    fit_hits = {i: evaluate(r.when, lead_column) for i, r in enumerate(model.fit_rules)}
    fit = np.zeros(len(leads))
    for i, r in enumerate(model.fit_rules):
        fit += np.where(fit_hits[i], r.points, 0.0)
    if model.fit_max is not None:
        fit = np.minimum(fit, model.fit_max)

    # ---- engagement: counted events, decay, one groupby per lead and rule
    prop_fields = sorted(set().union(*(fields(r.when) for r in model.engagement_rules)))
    wanted = ["lead_id", "event", "timestamp", *("properties." + ".".join(p) for p in prop_fields)]
    ev = pd.read_parquet(events_path, columns=wanted)
    ev.columns = ["lead_id", "event", "timestamp", *(".".join(p) for p in prop_fields)]
    key = ev["event"].str.strip(WHITESPACE).str.lower()
    # the file's timestamps are UTC without an offset, or TIMESTAMP WITH TIME ZONE: made UTC
    if getattr(ev["timestamp"].dtype, "tz", None) is not None:
        ev["timestamp"] = ev["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    asof = pd.Timestamp(as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of)
    age_us = (asof - ev["timestamp"]) // pd.Timedelta(microseconds=1)
    counted = key.isin(model.event_keys) & (age_us >= 0)
    if model.window_days is not None:
        counted &= age_us <= round(model.window_days * US_PER_DAY)
    ev, key, age_us = ev[counted], key[counted], age_us[counted]
    if model.half_life_days is not None:
        decay = 0.5 ** ((age_us / 1e6) / (model.half_life_days * 86400.0))
    else:
        decay = pd.Series(1.0, index=ev.index)

    event_cols: dict[Path_, Column] = {}

    def event_column(path: Path_) -> Column:
        if path not in event_cols:
            event_cols[path] = Column(ev[".".join(path)])
        return event_cols[path]

    parts = []
    for i, er in enumerate(model.engagement_rules):
        hit = _mask(key == er.event_key)
        if er.when is not None:
            hit &= evaluate(er.when, event_column)
        parts.append(
            pd.DataFrame({"lead_id": ev["lead_id"][hit], "rule": i, "pts": er.points * decay[hit]})
        )
    hits = pd.concat(parts, ignore_index=True)
    per_rule = hits.groupby(["lead_id", "rule"])["pts"].agg(["sum", "size"])
    sums = per_rule["sum"].unstack(fill_value=0.0)
    n_counted = per_rule["size"].unstack(fill_value=0)
    n_rules = len(model.engagement_rules)
    sums = sums.reindex(index=leads["lead_id"], columns=range(n_rules), fill_value=0.0)
    n_counted = n_counted.reindex(index=leads["lead_id"], columns=range(n_rules), fill_value=0)
    for i, er in enumerate(model.engagement_rules):
        if er.cap is not None:
            sums[i] = sums[i].clip(upper=er.cap)
    engagement = np.zeros(len(leads))
    for i in range(n_rules):
        engagement += sums[i].to_numpy()
    if model.engagement_max is not None:
        engagement = np.minimum(engagement, model.engagement_max)
    fast = np.zeros(len(leads), dtype=bool)
    for i, er in enumerate(model.engagement_rules):
        if er.fast_track:
            fast |= n_counted[i].to_numpy() > 0

    # ---- decisions
    total = fit + engagement
    mql = (total >= model.threshold) | fast
    if model.min_fit is not None:
        mql &= fit >= model.min_fit
    grade = np.full(len(leads), "", dtype=object)
    if model.grades is not None:
        a, b, c = model.grades.fit
        one, two, three = model.grades.engagement
        letter = np.select([fit >= a, fit >= b, fit >= c], ["A", "B", "C"], "D")
        digit = np.select(
            [engagement >= one, engagement >= two, engagement >= three], ["1", "2", "3"], "4"
        )
        grade = np.char.add(letter, digit).astype(object)

    # ---- reasons: every non-zero rule, largest absolute first, ties in file order
    ids = leads["lead_id"].to_numpy()
    contrib = []
    for i, r in enumerate(model.fit_rules):
        if r.points != 0:
            m = fit_hits[i]
            contrib.append(
                pd.DataFrame(
                    {"lead_id": ids[m], "order": r.order, "rule": r.name, "points": r.points}
                )
            )
    for i, er in enumerate(model.engagement_rules):
        s = sums[i].to_numpy()
        m = s != 0
        contrib.append(
            pd.DataFrame({"lead_id": ids[m], "order": er.order, "rule": er.name, "points": s[m]})
        )
    reasons = pd.concat(contrib, ignore_index=True)
    reasons["key"] = -reasons["points"].abs()
    reasons = reasons.sort_values(["lead_id", "key", "order"], kind="stable")
    reasons["item"] = [
        {"rule": name, "points": p}
        for name, p in zip(reasons["rule"], round2(reasons["points"]), strict=True)
    ]
    by_lead = reasons.groupby("lead_id", sort=False)["item"].agg(list)

    out = pd.DataFrame(
        {
            "lead_id": ids,
            "fit": round2(fit),
            "engagement": round2(engagement),
            "score": round2(total),
            "grade": grade,
            "mql": mql,
            "fast_track": fast,
        }
    )
    listed = by_lead.reindex(ids)
    out["reasons"] = [x if isinstance(x, list) else [] for x in listed]
    return out.sort_values("lead_id", ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--leads", type=Path, required=True)
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--as-of", required=True, help="ISO 8601; no offset means UTC")
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    as_of = datetime.fromisoformat(args.as_of)
    result = score(load_model(args.model), args.leads, args.events, as_of)
    result.to_json(args.output, orient="records", lines=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
