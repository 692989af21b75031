"""``leadscore learn``: read leads, events and outcomes, build the features, fit, write YAML.

The reading is here; the learning itself is the pure ``leadscore.analytics.learn``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..batch import BatchRun, _prepare
from ..errors import ConfigError
from ..io import Columns, Inputs, open_inputs
from ..model import Model, parse_model
from ..model.schema import EngagementRule, FitRule
from .backtest import (
    _PERIOD_DAYS,
    LABELS_TABLE,
    OutcomeSource,
    _span_days,
    label,
    open_outcomes,
)
from .learn import Feature, Learned, bin_column, fit, leak_score, render_yaml
from .stages import Labeling

__all__ = ["LearnOptions", "learn"]

#: A single trait that predicts the outcome this well was most likely filled in afterwards.
LEAK_AUC = 0.95


@dataclass(frozen=True)
class LearnOptions:
    as_of: datetime
    labeling: Labeling = field(default_factory=Labeling)
    name: str = "learned"
    exclude: tuple[str, ...] = ()
    keep_leaky: bool = False
    target_rate: float | None = None
    capacity: tuple[float, str] | None = None  # (MQLs, per 'day'|'week'|'month'|'total')
    seed: int = 42
    folds: int = 5
    bins: int = 10
    interactions: int = 200
    half_life_days: float = 30.0
    outcome_column: str | None = None


def _lead_rows(inputs: Inputs) -> tuple[list[str], dict[str, list[Any]], np.ndarray]:
    con = inputs.con
    cur = con.execute(
        f"SELECT l.*, b.status = 'converted' AS __y FROM {inputs.leads_view} l JOIN {LABELS_TABLE} b "
        "USING (lead_id) WHERE b.status IN ('converted', 'late', 'not_converted') ORDER BY l.lead_id"
    )
    names = [d[0] for d in cur.description or ()]
    data = cur.fetchnumpy()
    ids = [str(x) for x in data["lead_id"]]
    y = np.asarray(data["__y"], bool)
    cols: dict[str, list[Any]] = {}
    for c in names:
        if c in ("lead_id", "__y"):
            continue
        vals = list(data[c])
        if c == "__traits":
            for i, raw in enumerate(vals):
                obj = json.loads(raw) if isinstance(raw, str) else (raw or {})
                for k, v in _flat(obj).items():
                    cols.setdefault(k, [None] * len(vals))[i] = v
            continue
        cols[c] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in vals]
    return ids, cols, y


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if prefix:
        out[prefix[:-1]] = (
            None if obj is None else (json.dumps(obj) if isinstance(obj, list) else obj)
        )
    return out


def _event_features(
    inputs: Inputs, ids: list[str], as_of: datetime, half_life: float
) -> list[Feature]:
    if not inputs.events_view:
        return []
    con = inputs.con
    idx = {lid: i for i, lid in enumerate(ids)}
    ts = f"TIMESTAMP '{as_of.replace(tzinfo=None).isoformat(sep=' ')}'"
    rows = con.execute(
        f"""WITH e AS (
          SELECT lead_id, trim(event) AS ev, lower(trim(event)) AS key,
            CASE WHEN lower(trim(event)) = 'page' THEN
              nullif(split_part(ltrim(coalesce(json_extract_string(CAST(properties AS JSON), '$.path'), ''), '/'), '/', 1), '')
            END AS fam,
            pow(0.5, (epoch({ts}) - epoch(ts)) / 86400.0 / {half_life}) AS w
          FROM {inputs.events_view} WHERE ts <= {ts})
        SELECT lead_id, key, any_value(ev), NULL AS fam, sum(w) FROM e GROUP BY lead_id, key
        UNION ALL
        SELECT lead_id, 'page', 'page', lower(fam), sum(w) FROM e WHERE fam IS NOT NULL GROUP BY lead_id, lower(fam)"""
    ).fetchall()
    by: dict[tuple[str, str | None], tuple[str, np.ndarray]] = {}
    for lid, key, ev, fam, w in rows:
        i = idx.get(lid)
        if i is None:
            continue
        k = (key, fam)
        if k not in by:
            by[k] = (ev, np.zeros(len(ids)))
        by[k][1][i] = float(w)
    feats = []
    for (_key, fam), (ev, x) in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if (x > 0).sum() < 30:
            continue
        cap = max(1.0, float(np.quantile(x[x > 0], 0.95)))
        when = {"field": "path", "starts_with": f"/{fam}"} if fam else None
        name = f"Page /{fam}" if fam else f"{ev} (each)"
        feats.append(
            Feature(name, "", when or {}, np.minimum(x, cap), "engagement", ev, cap_units=cap)
        )
    return feats


def _base_features(inputs: Inputs, base: Model, ids: list[str], as_of: datetime) -> list[Feature]:
    """The base model's own rules as features, scored by the batch path: every rule at 1 point
    and without caps, so a fit rule reads 1 when it holds and an engagement rule its decayed count."""
    unit = dataclasses.replace(
        base,
        fit_rules=tuple(dataclasses.replace(r, points=1.0) for r in base.fit_rules),
        engagement_rules=tuple(
            dataclasses.replace(r, points=1.0, cap=None) for r in base.engagement_rules
        ),
        fit_max=None,
        engagement_max=None,
        min_fit=None,
        grades=None,
    )
    batch = BatchRun(unit, inputs, as_of, _prepare(inputs, unit, as_of))
    rows = inputs.con.execute(
        f"SELECT lead_id, r.rule, r.points FROM (SELECT lead_id, unnest(reasons) AS r FROM ({batch.query}))"
    ).fetchall()
    idx = {lid: i for i, lid in enumerate(ids)}
    x: dict[str, np.ndarray] = {r.name: np.zeros(len(ids)) for r in base.rules}
    for lid, rule, pts in rows:
        if lid in idx and rule in x:
            x[rule][idx[lid]] = float(pts)
    doc = yaml.safe_load(base.source) or {}
    whens = {
        str(r.get("name")): r.get("when")
        for part in ("fit", "engagement")
        for r in ((doc.get(part) or {}).get("rules") or [])
        if isinstance(r, dict)
    }
    feats = []
    for r in base.rules:
        if isinstance(r, FitRule):
            feats.append(Feature(r.name, "", whens.get(r.name) or {}, x[r.name]))
        else:
            assert isinstance(r, EngagementRule)
            cap_units = (r.cap / r.points) if r.cap is not None and r.points else None
            v = np.minimum(x[r.name], cap_units) if cap_units else x[r.name]
            feats.append(
                Feature(r.name, "", whens.get(r.name) or {}, v, "engagement", r.event, cap_units)
            )
    return feats


def learn(
    leads: Path,
    events: Path | None,
    outcomes: OutcomeSource,
    opts: LearnOptions,
    *,
    base: Model | None = None,
    skip_bad_rows: bool = False,
    columns: Columns | None = None,
) -> tuple[str, Learned, list[str]]:
    """The learned model's YAML text, the learning's figures, and notes for the person."""
    inputs = open_inputs(leads, events, skip_bad_rows=skip_bad_rows, columns=columns)
    counts = open_outcomes(inputs, outcomes, leads)
    label(inputs, counts, opts.labeling, opts.as_of)
    ids, cols, y = _lead_rows(inputs)
    notes = counts.notes()
    from .learn import check_enough

    check_enough(y)
    skip = {"created_at", *(opts.exclude)}
    if opts.outcome_column:
        skip.add(opts.outcome_column)
    unknown = [c for c in opts.exclude if c not in cols]
    if unknown:
        import difflib

        hints = []
        for c in unknown:
            close = difflib.get_close_matches(c, list(cols), n=1)
            hints.append(f"{c!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"--exclude names columns the leads do not have: {', '.join(hints)}")
    train = np.arange(len(y))
    feats: list[Feature] = []
    if base is not None:
        feats = _base_features(inputs, base, ids, opts.as_of)
    else:
        for c in sorted(cols):
            if c in skip:
                continue
            vals = [None if v is None else str(v) for v in cols[c]]
            fs = bin_column(c, vals, train, bins=opts.bins)
            if not fs:
                continue
            leak = leak_score(fs, y, train)
            if leak >= LEAK_AUC and not opts.keep_leaky:
                notes.append(
                    f"Warning: the trait {c!r} alone predicts the outcome almost perfectly (ROC AUC "
                    f"{leak:.3f}): it was most likely filled in after the outcome (it leaks the "
                    "label), so it was left out. Pass --keep-leaky to use it anyway."
                )
                continue
            feats.extend(fs)
        feats.extend(_event_features(inputs, ids, opts.as_of, opts.half_life_days))
    capacity = None
    if opts.capacity is not None:
        amount, per = opts.capacity
        if per == "total":
            capacity = amount
        else:
            days = _span_days(inputs)
            if not days:
                raise ConfigError(
                    f"--capacity {amount:g}/{per} needs to know how many {per}s the leads span: "
                    "give leads a created_at column or events, or give a plain total"
                )
            capacity = amount * days / _PERIOD_DAYS[per]
    learned = fit(
        feats,
        y,
        seed=opts.seed,
        folds=opts.folds,
        interactions=0 if base is not None else opts.interactions,
        target_rate=opts.target_rate,
        capacity=capacity,
        base_rules=base is not None,
    )
    learned.rules = [
        r for r in learned.rules if r[0].kind == "fit" or r[1] > 0
    ]  # engagement rules add points
    half = opts.half_life_days
    if base is not None:
        half = base.half_life_days or 0
    header = [
        f"A scoring model learned by `leadscore learn` on {opts.as_of:%Y-%m-%d} from {counts.source}.",
        "Review it like code: edit rules and points, then check it with `leadscore backtest`.",
    ]
    if base is not None:
        header.append(f"Rules from {base.file}; only their points were learned.")
    text = render_yaml(
        learned,
        opts.name,
        header,
        half if any(f.kind == "engagement" for f, _, _ in learned.rules) else None,
    )
    parse_model(text, "learned")  # a learned model that does not validate is a bug
    return text, learned, notes
