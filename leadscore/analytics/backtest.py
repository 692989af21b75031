"""``leadscore backtest``: score leads through the batch path (DuckDB, the product's own
scoring) at the decision point, join what became of them, and measure the model."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import BatchRun, _prepare, run
from ..errors import ConfigError, InputError
from ..io import Columns, Inputs
from ..model import Model
from . import metrics as mx
from .outcomes import OUTCOMES_TABLE, OutcomeCounts, from_column, from_database, from_file
from .stages import CLOSED, NOT_CONVERTED, Labeling

__all__ = [
    "BacktestOptions",
    "OutcomeSource",
    "backtest",
    "evaluate",
    "label",
    "open_outcomes",
    "parse_capacity",
]

LABELS_TABLE = "leadscore_labels"


@dataclass(frozen=True)
class OutcomeSource:
    """Exactly one of: a file, a column of the leads file, a service database."""

    file: Path | None = None
    column: str | None = None
    database_url: str | None = None
    stage_map: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        given = [x for x in (self.file, self.column, self.database_url) if x]
        if len(given) != 1:
            raise ConfigError(
                "say where the outcomes are with exactly one of --outcomes FILE, "
                "--outcome-column COLUMN or --database-url URL"
            )


@dataclass(frozen=True)
class BacktestOptions:
    as_of: datetime
    labeling: Labeling = field(default_factory=Labeling)
    target_rate: float | None = None
    capacity: tuple[float, str] | None = None  # (leads, per 'day'|'week'|'month'|'total')
    top_false_negatives: int = 20
    min_rule_leads: int = 20
    replay: bool = False
    when_created: bool = False  # each lead at its own decision point (created_at / first event)


_PERIOD_DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "total": math.nan}


def parse_capacity(text: str | None) -> tuple[float, str] | None:
    """``--capacity 200/week`` (or /day, /month, or a plain total)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(day|week|month))?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(
            f"--capacity {text!r}: write how many MQLs sales can work, like 200/week, 40/day, "
            "900/month, or a plain total such as 1500"
        )
    return float(m.group(1)), m.group(2) or "total"


def open_outcomes(inputs: Inputs, src: OutcomeSource, leads_path: Path | None) -> OutcomeCounts:
    src.check()
    con = inputs.con
    if src.file is not None:
        return from_file(con, src.file, inputs.leads_view, src.stage_map)
    if src.column is not None:
        return from_column(con, inputs.leads_view, src.column, str(leads_path or "leads"))
    assert src.database_url is not None
    return from_database(con, src.database_url, inputs.leads_view, src.stage_map)


def _lit_ts(t: datetime) -> str:
    return f"TIMESTAMP '{t.replace(tzinfo=None).isoformat(sep=' ')}'"


def label(
    inputs: Inputs,
    counts: OutcomeCounts,
    labeling: Labeling,
    as_of: datetime,
    per_lead: str | None = None,
) -> dict[str, Any]:
    """``leadscore_labels(lead_id, status)``: converted, not converted, or why a lead was left
    out. The decision point is ``as_of``, or each lead's own from the table ``per_lead``
    (``lead_id, dp``)."""
    con = inputs.con
    pos = ", ".join(f"'{p}'" for p in labeling.positive_set)
    closed = ", ".join(f"'{p}'" for p in (*CLOSED, NOT_CONVERTED))
    dp = "dp"
    dp_expr = "d.dp" if per_lead else _lit_ts(as_of)
    dp_join = f"LEFT JOIN {per_lead} d ON d.lead_id = l.lead_id" if per_lead else ""
    cols = [
        d[0] for d in con.execute(f"SELECT * FROM {inputs.leads_view} LIMIT 0").description or ()
    ]
    created = (
        "try_cast(try_cast(nullif(trim(CAST(l.created_at AS VARCHAR)), '') AS TIMESTAMPTZ) AS TIMESTAMP)"
        if "created_at" in cols
        else "CAST(NULL AS TIMESTAMP)"
    )
    end_row = con.execute(f'SELECT max("at") FROM {OUTCOMES_TABLE}').fetchone()
    data_end = end_row[0] if end_row else None
    h = labeling.horizon_days
    horizon_end = f"{dp} + INTERVAL {round(h * 86400)} SECOND" if h is not None else "NULL"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {LABELS_TABLE} AS
        WITH o AS (
          SELECT lead_id,
            min("at") FILTER (WHERE outcome IN ({pos})) AS pos_at,
            bool_or(outcome IN ({pos})) AS has_pos,
            min("at") FILTER (WHERE outcome IN ({closed})) AS closed_at,
            bool_or(outcome IN ({closed})) AS has_closed,
            min("at") AS first_at
          FROM {OUTCOMES_TABLE} GROUP BY lead_id
        ), j AS (
          SELECT l.lead_id, {created} AS created, {dp_expr} AS dp, o.* EXCLUDE (lead_id)
          FROM {inputs.leads_view} l LEFT JOIN o ON o.lead_id = l.lead_id {dp_join}
        )
        SELECT lead_id, CASE
          WHEN dp IS NULL THEN 'no_decision_point'
          WHEN created IS NOT NULL AND first_at IS NOT NULL AND first_at < created THEN 'before_lead'
          WHEN created IS NOT NULL AND created > {dp} THEN 'not_yet'
          WHEN pos_at IS NOT NULL AND pos_at < {dp} THEN 'before_decision'
          WHEN pos_at IS NOT NULL AND ({horizon_end} IS NULL OR pos_at <= {horizon_end}) THEN 'converted'
          WHEN coalesce(has_pos, false) AND pos_at IS NULL THEN 'converted'
          WHEN pos_at IS NOT NULL THEN 'late'
          WHEN {"true" if counts.timed else "false"} AND {horizon_end} IS NOT NULL
               AND NOT (coalesce(has_closed, false) AND (closed_at IS NULL OR closed_at <= {horizon_end}))
               AND {horizon_end} > {_lit_ts(data_end) if data_end else dp} THEN 'open'
          ELSE 'not_converted' END AS status
        FROM j"""
    )
    status = dict(
        con.execute(f"SELECT status, count(*) FROM {LABELS_TABLE} GROUP BY status").fetchall()
    )
    return {k: int(v) for k, v in status.items()}


def _materialise(batch: BatchRun, name: str) -> str:
    batch.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {batch.query}")
    return name


def evaluate(
    batch: BatchRun, table: str, model: Model, opts: BacktestOptions, days: float | None
) -> dict[str, Any]:
    """Every figure for one model's scores in ``table`` against the labels."""
    con = batch.con
    rows = con.execute(
        f"SELECT s.lead_id, s.score, s.fit, s.grade, s.mql, s.fast_track, l.status = 'converted' AS y "
        f"FROM {table} s JOIN {LABELS_TABLE} l USING (lead_id) "
        "WHERE l.status IN ('converted', 'late', 'not_converted') ORDER BY s.lead_id"
    ).fetchnumpy()
    score = np.asarray(rows["score"], np.float64)
    fit = np.asarray(rows["fit"], np.float64)
    y = np.asarray(rows["y"], bool)
    mql = np.asarray(rows["mql"], bool)
    fast = np.asarray(rows["fast_track"], bool)
    grade = np.asarray(rows["grade"], object)
    n, pos = len(score), int(y.sum())
    if n == 0:
        raise InputError("no lead has an outcome to judge the model by")
    if pos == 0:
        raise InputError(
            f"none of the {n:,} leads converted (positive stages: "
            f"{', '.join(opts.labeling.positive)}); check --positive, --horizon-days and the outcomes"
        )
    if pos == n:
        raise InputError(
            f"all {n:,} leads converted: there are no negatives to compare with; "
            "give outcomes for leads that did not convert too (or a longer history)"
        )
    base = pos / n
    prob = mx.calibrate(y, score)
    eligible = fit >= model.min_fit if model.min_fit is not None else np.ones(n, bool)
    trade = mx.thresholds(y, score, eligible, fast, extra=(model.threshold,))
    rec: dict[str, Any] = {}
    if opts.target_rate is not None:
        r = mx.recommend_rate(trade, opts.target_rate)
        rec["target_rate"] = {"target": opts.target_rate, "row": _row(r)}
    if opts.capacity is not None:
        amount, per = opts.capacity
        if per == "total":
            cap = amount
        elif days:
            cap = amount * days / _PERIOD_DAYS[per]
        else:
            raise ConfigError(
                f"--capacity {amount:g}/{per} needs to know how many {per}s the leads span: give "
                "leads a created_at column or events, or give the capacity as a plain total"
            )
        r = mx.recommend_capacity(trade, cap)
        rec["capacity"] = {"per": per, "amount": amount, "mqls": cap, "row": _row(r)}
    model_row = next((t for t in trade if t.threshold == model.threshold), None)
    gated = (~eligible) & ((score >= model.threshold) | fast)
    groups = {
        "fast_track": _band("Fast-track MQLs", y, mql & fast),
        "threshold": _band("Threshold MQLs", y, mql & ~fast),
        "gated": _band("Held back by min_fit", y, gated),
        "not_mql": _band("Not MQL", y, ~mql & ~gated),
    }
    dec = mx.deciles(y, score)
    grades: list[dict[str, Any]] = []
    if model.grades is not None:
        for g in sorted({str(x) for x in grade if x}):
            grades.append(
                _bandd(mx.Band(g, int((grade == g).sum()), int(((grade == g) & y).sum())))
            )
    # the sales view: the MQLs as the top segment, the lowest-scoring half as the bottom
    order = np.argsort(score, kind="mergesort")
    bottom = order[: max(1, n // 2)]
    bottom_rate = float(y[bottom].mean())
    top_rate = float(y[mql].mean()) if mql.any() else 0.0
    segments = {
        "top_share_of_leads": float(mql.mean()),
        "top_share_of_conversions": float((mql & y).sum() / pos),
        "top_rate": top_rate,
        "bottom_rate": bottom_rate,
        "top_vs_bottom": (top_rate / bottom_rate) if bottom_rate else math.inf,
        "aims": {
            "top_share_of_leads": [0.15, 0.35],
            "top_share_of_conversions": 0.6,
            "top_vs_bottom": 10,
        },
    }
    fpr, tpr = mx.roc_curve(y, score)
    rules = _rules(con, table, opts.min_rule_leads, base)
    fn = con.execute(
        f"SELECT s.lead_id, s.score, s.fit, s.engagement, s.grade, "
        f"list_transform(s.reasons, r -> r.rule) FROM {table} s JOIN {LABELS_TABLE} l USING (lead_id) "
        f"WHERE l.status = 'converted' AND NOT s.mql ORDER BY s.score, s.lead_id "
        f"LIMIT {int(opts.top_false_negatives)}"
    ).fetchall()
    step = max(1, len(fpr) // 200)
    return {
        "model": model.name,
        "file": model.file,
        "threshold": model.threshold,
        "min_fit": model.min_fit,
        "leads": n,
        "converted": pos,
        "base_rate": base,
        "roc_auc": mx.roc_auc(y, score),
        "pr_auc": mx.pr_auc(y, score),
        "brier": mx.brier(y, prob),
        "brier_base": mx.brier(y, np.full(n, base)),
        "calibration": [
            {"predicted": a, "observed": b, "leads": c} for a, b, c in mx.calibration_curve(y, prob)
        ],
        "roc": {"fpr": [*fpr[::step].tolist(), 1.0], "tpr": [*tpr[::step].tolist(), 1.0]},
        "deciles": [_bandd(b, base) for b in dec],
        "grades": grades,
        "thresholds": [_row(t) for t in trade],
        "model_threshold": _row(model_row),
        "recommendations": rec,
        "groups": {k: _bandd(v, base) for k, v in groups.items()},
        "segments": segments,
        "rules": rules,
        "false_negatives": [
            {
                "lead_id": r[0],
                "score": r[1],
                "fit": r[2],
                "engagement": r[3],
                "grade": r[4],
                "reasons": list(r[5] or []),
            }
            for r in fn
        ],
    }


def _band(label: str, y: Any, mask: Any) -> mx.Band:
    return mx.Band(label, int(mask.sum()), int((mask & y).sum()))


def _bandd(b: mx.Band, base: float | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "label": b.label,
        "leads": b.leads,
        "converted": b.converted,
        "rate": b.rate,
    }
    if not math.isnan(b.low):
        d["low"], d["high"] = b.low, b.high
    if base:
        d["lift"] = b.rate / base
    return d


def _row(t: mx.Threshold | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "threshold": t.threshold,
        "mqls": t.mqls,
        "share": t.share,
        "converted": t.converted,
        "precision": t.precision,
        "recall": t.recall,
        "lift": t.lift,
    }


def _rules(con: Any, table: str, min_leads: int, base: float) -> dict[str, Any]:
    rows = con.execute(
        f"SELECT r.rule, count(*) AS n, count(*) FILTER (WHERE l.status = 'converted') AS c, "
        f"avg(r.points) AS pts FROM (SELECT lead_id, unnest(reasons) AS r FROM {table}) s "
        f"JOIN {LABELS_TABLE} l USING (lead_id) WHERE l.status IN ('converted', 'late', 'not_converted') "
        "GROUP BY r.rule"
    ).fetchall()
    stats = [
        {
            "rule": rule,
            "leads": int(n),
            "converted": int(c),
            "rate": c / n,
            "lift": (c / n) / base if base else 0.0,
            "avg_points": float(pts),
        }
        for rule, n, c, pts in rows
    ]
    enough = [r for r in stats if r["leads"] >= min_leads]
    best = sorted(enough, key=lambda r: (-r["rate"], r["rule"]))[:5]
    worst = sorted(enough, key=lambda r: (r["rate"], r["rule"]))[:5]
    # many points to leads that convert below the base rate
    called_out = [
        r
        for r in sorted(enough, key=lambda r: -r["avg_points"])
        if r["avg_points"] > 0 and r["lift"] < 0.75
    ][:5]
    return {
        "all": sorted(stats, key=lambda r: r["rule"]),
        "best": best,
        "worst": worst,
        "called_out": called_out,
    }


def _span_days(inputs: Inputs) -> float | None:
    con = inputs.con
    cols = [
        d[0] for d in con.execute(f"SELECT * FROM {inputs.leads_view} LIMIT 0").description or ()
    ]
    if "created_at" in cols:
        r = con.execute(
            "SELECT epoch(max(t)) - epoch(min(t)) FROM (SELECT try_cast(try_cast(nullif(trim("
            f"CAST(created_at AS VARCHAR)), '') AS TIMESTAMPTZ) AS TIMESTAMP) AS t FROM {inputs.leads_view})"
        ).fetchone()
        if r and r[0]:
            return max(float(r[0]) / 86400, 1.0)
    if inputs.events_view:
        r = con.execute(
            f"SELECT epoch(max(f)) - epoch(min(f)) FROM (SELECT min(ts) AS f FROM {inputs.events_view} GROUP BY lead_id)"
        ).fetchone()
        if r and r[0]:
            return max(float(r[0]) / 86400, 1.0)
    return None


def backtest(
    model: Model,
    leads: Path | None,
    events: Path | None,
    outcomes: OutcomeSource,
    opts: BacktestOptions,
    *,
    against: Model | None = None,
    skip_bad_rows: bool = False,
    columns: Columns | None = None,
) -> dict[str, Any]:
    """Score with ``model`` (and ``against``) at ``opts.as_of`` and judge by the outcomes."""
    batch = run(model, leads, events, opts.as_of, skip_bad_rows=skip_bad_rows, columns=columns)
    inputs = batch.inputs
    counts = open_outcomes(inputs, outcomes, leads)
    # the span the leads cover is needed only for a capacity per day/week/month (an events scan)
    days = _span_days(inputs) if opts.capacity and opts.capacity[1] != "total" else None
    models = [model] if against is None else [model, against]
    tables = ["leadscore_bt_a", "leadscore_bt_b"]
    if opts.when_created:
        from .replay import score_when_created

        for m, t in zip(models, tables, strict=False):
            score_when_created(m, inputs, t, "leadscore_dp")
        status = label(inputs, counts, opts.labeling, opts.as_of, per_lead="leadscore_dp")
    else:
        status = label(inputs, counts, opts.labeling, opts.as_of)
        _materialise(batch, tables[0])
        if against is not None:
            other = BatchRun(against, inputs, opts.as_of, _prepare(inputs, against, opts.as_of))
            _materialise(other, tables[1])
    results = [evaluate(batch, t, m, opts, days) for m, t in zip(models, tables, strict=False)]
    if opts.replay:
        from .replay import replay

        for m, res in zip(models, results, strict=True):
            res["replay"] = replay(
                m, inputs, opts.as_of, opts.labeling.positive_set, opts.labeling.horizon_days
            )
    left_out = {
        "open": status.get("open", 0),
        "before_decision": status.get("before_decision", 0),
        "before_lead": status.get("before_lead", 0),
        "not_yet": status.get("not_yet", 0),
        "no_decision_point": status.get("no_decision_point", 0),
    }
    notes = counts.notes()
    if left_out["open"]:
        notes.append(
            f"{left_out['open']:,} leads still open (no conversion yet and their "
            f"{opts.labeling.horizon_days:g}-day horizon ends after the last outcome on record) "
            "were left out, not counted as failures."
        )
    if left_out["before_decision"]:
        notes.append(
            f"{left_out['before_decision']:,} leads converted before the decision point "
            f"({'their creation' if opts.when_created else f'{opts.as_of:%Y-%m-%d %H:%M}'}) "
            "and were left out."
        )
    if left_out["before_lead"]:
        notes.append(
            f"{left_out['before_lead']:,} leads have an outcome dated before the lead was created "
            "(created_at): their data is inconsistent, so they were left out."
        )
    if left_out["not_yet"]:
        notes.append(
            f"{left_out['not_yet']:,} leads created after the decision point were left out."
        )
    if left_out["no_decision_point"]:
        notes.append(
            f"{left_out['no_decision_point']:,} leads have neither a created_at nor an event, so "
            "no decision point: they were left out."
        )
    if status.get("late", 0):
        notes.append(
            f"{status['late']:,} leads converted after the {opts.labeling.horizon_days:g}-day "
            "horizon and count as not converted."
        )
    return {
        "as_of": opts.as_of.isoformat(),
        "decision_point": "created" if opts.when_created else "as_of",
        "positive": list(opts.labeling.positive),
        "horizon_days": opts.labeling.horizon_days,
        "outcomes": {
            "source": counts.source,
            "rows": counts.rows,
            "kept": counts.kept,
            "duplicates": counts.duplicates,
            "unknown_leads": counts.unknown_leads,
            "unknown_lead_ids": counts.unknown_lead_ids,
            "bad_rows": counts.bad_rows,
            "ignored_stages": counts.ignored_stages,
        },
        "left_out": left_out,
        "span_days": days,
        "notes": notes,
        "models": results,
    }
