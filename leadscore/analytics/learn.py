"""Learning a readable points model from outcomes (pure: columns and labels in, a model text out).

The recipe, all in the existing model language so a person can read, edit and review it:

1. every trait becomes a few yes/no **bins**: numbers into ranges (``between`` / ``gte`` / ``lt``)
   cut at quantiles and rounded to readable values; text into its frequent values, the rare
   ones grouped as "other", and the not-answered values (empty, ``Select``, ``n/a``…) together
   with missing values as their own bin;
2. a few **pairs** of bins whose combination matters (found as the leaves of depth-2 boosted
   trees) become ``all:`` rules, so an interaction a gradient-boosted model would see is
   written down as a rule instead of hidden;
3. event counts per event kind (and page family), decayed, become engagement rules;
4. an L1-regularised logistic regression (scikit-learn; its strength picked by stratified
   cross-validation with a fixed seed) weighs them; weights are scaled so scores spread over
   about 100 points and rounded to integers; rules rounded to 0 are dropped;
5. the threshold is chosen on out-of-fold scores for a target conversion rate or a capacity.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from . import metrics as mx

__all__ = [
    "MIN_CONVERTED",
    "MIN_LEADS",
    "PLACEHOLDERS",
    "Feature",
    "Learned",
    "bin_column",
    "check_enough",
    "fit",
    "leak_score",
    "render_yaml",
]

#: Fewer outcomes than this and learned points are noise (Einstein asks for 1,000 and 120).
MIN_LEADS = 300
MIN_CONVERTED = 50
#: The regularisation strengths tried; stronger ones keep fewer rules and generalise better.
GRID = (0.03, 0.1, 0.3)
#: Leads the cross-validation uses at most (a stratified sample beyond that).
CV_LEADS = 20_000
#: A text trait's most frequent values that get a bin each; the rest are one "other" bin.
MAX_VALUES = 30
#: The strongest bins the pair search looks at, and the leads it fits on at most.
PAIR_FEATURES = 150
PAIR_LEADS = 20_000
#: Values that mean "not answered": treated as missing.
PLACEHOLDERS = frozenset(
    {
        "",
        "select",
        "n/a",
        "na",
        "none",
        "null",
        "nan",
        "-",
        "--",
        "unknown",
        "not provided",
        "not specified",
    }
)


def check_enough(y: NDArray[np.bool_]) -> None:
    n, pos = len(y), int(np.sum(y))
    neg = n - pos
    if n < MIN_LEADS or pos < MIN_CONVERTED or neg < MIN_CONVERTED:
        raise InputError(
            f"too few outcomes to learn from: {n:,} leads with an outcome, {pos:,} converted, "
            f"{neg:,} not. Learning needs at least {MIN_LEADS:,} leads and {MIN_CONVERTED} of each "
            "(more is better: 1,000 leads and 120 conversions give steadier points). Add history, "
            "lengthen --horizon-days, or write the points by hand and check them with backtest."
        )


@dataclass
class Feature:
    """One yes/no (or count) input: what it means in the model language and its values."""

    name: str  # the rule name
    column: str
    when: dict[str, Any]  # the condition, as the YAML will hold it
    x: NDArray[np.float64]
    kind: str = "fit"  # fit | engagement
    event: str | None = None
    cap_units: float | None = None  # engagement: the count at which the rule is capped


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _nice(x: float) -> float:
    """A readable cut point: 2 significant digits (1234.5 -> 1200, 0.377 -> 0.38)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    mag = 10 ** (math.floor(math.log10(abs(x))) - 1)
    return float(round(x / mag) * mag)


def _fmt(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 6)


def bin_column(
    name: str,
    values: Sequence[str | None],
    train: NDArray[np.intp],
    *,
    bins: int = 10,
    min_count: int = 20,
) -> list[Feature]:
    """The yes/no bins of one trait, chosen on the training rows."""
    raw = [None if v is None else str(v).strip() for v in values]
    low = [None if v is None or v.lower() in PLACEHOLDERS else v.lower() for v in raw]
    present_train = [low[i] for i in train if low[i] is not None]
    if not present_train:
        return []
    numeric = sum(_is_number(v) for v in present_train) >= 0.95 * len(present_train)
    distinct = set(present_train)
    feats: list[Feature] = []
    placeholders_seen = sorted({v.lower() for v in raw if v and v.lower() in PLACEHOLDERS})
    missing_when: dict[str, Any] = {"field": name, "exists": False}
    if placeholders_seen:
        orig = sorted({v for v in raw if v and v.lower() in PLACEHOLDERS})
        missing_when = {"any": [missing_when, {"field": name, "in": orig}]}
    miss = np.array([v is None for v in low], np.float64)
    if miss[train].sum() >= min_count and miss[train].sum() < len(train) - min_count:
        label = "not answered" if placeholders_seen else "missing"
        feats.append(Feature(f"{name}: {label}", name, missing_when, miss))
    if numeric and len(distinct) >= 8:
        num = np.array(
            [float(v) if v is not None and _is_number(v) else np.nan for v in low], np.float64
        )
        t = num[train]
        t = t[~np.isnan(t)]
        integer = bool(np.all(np.mod(t, 1) == 0))
        qs = np.quantile(t, np.linspace(0, 1, bins + 1)[1:-1])
        edges = sorted({_nice(q) for q in qs if q > t.min()})
        if integer:
            edges = sorted({math.ceil(e) for e in edges})
        lo_edges = [-math.inf, *edges]
        hi_edges = [*edges, math.inf]
        for lo, hi in zip(lo_edges, hi_edges, strict=True):
            if lo == -math.inf:
                cond: dict[str, Any] = {"field": name, "lt": _fmt(hi)}
                mask = num < hi
                label = f"below {_fmt(hi)}"
            elif hi == math.inf:
                cond = {"field": name, "gte": _fmt(lo)}
                mask = num >= lo
                label = f"{_fmt(lo)} or more"
            elif integer:
                cond = {"field": name, "between": [_fmt(lo), _fmt(hi - 1)]}
                mask = (num >= lo) & (num <= hi - 1)
                label = f"{_fmt(lo)} to {_fmt(hi - 1)}" if hi - 1 > lo else f"{_fmt(lo)}"
            else:
                cond = {"all": [{"field": name, "gte": _fmt(lo)}, {"field": name, "lt": _fmt(hi)}]}
                mask = (num >= lo) & (num < hi)
                label = f"{_fmt(lo)} to under {_fmt(hi)}"
            m = np.where(np.isnan(num), 0.0, mask.astype(np.float64))
            if m[train].sum() >= min_count:
                feats.append(Feature(f"{name}: {label}", name, cond, m))
        return feats
    counts = Counter(present_train)
    if len(counts) > 0.9 * len(train) and len(train) > 50:
        return []  # an id: every lead has its own value
    shown: dict[str, str] = {}
    for v in raw:
        if v and v.lower() in counts and v.lower() not in shown:
            shown[v.lower()] = v
    frequent = [k for k, c in counts.most_common(MAX_VALUES) if c >= min_count]
    arr = np.array(low, dtype=object)
    for k in frequent:
        m = (arr == k).astype(np.float64)
        feats.append(Feature(f"{name} is {shown[k]}", name, {"field": name, "in": [shown[k]]}, m))
    rare = [k for k in counts if k not in frequent]
    if rare and frequent:
        keep = set(frequent)
        m = np.array([v is not None and v not in keep for v in low], np.float64)
        if m[train].sum() >= min_count:
            excluded = [shown[k] for k in frequent] + sorted(
                {v for v in raw if v and v.lower() in PLACEHOLDERS}
            )
            feats.append(Feature(f"{name}: other", name, {"field": name, "not_in": excluded}, m))
    return feats


def leak_score(f_list: list[Feature], y: NDArray[np.bool_], train: NDArray[np.intp]) -> float:
    """How well one trait alone predicts the outcome: the ROC AUC of its bins' conversion rates."""
    if not f_list:
        return 0.5
    s = np.zeros(len(y))
    for f in f_list:
        m = f.x[train] > 0
        rate = float(y[train][m].mean()) if m.any() else 0.0
        s = np.where(f.x > 0, rate, s)
    auc = mx.roc_auc(y[train], s[train])
    return max(auc, 1 - auc) if not math.isnan(auc) else 0.5


def _negate(cond: dict[str, Any]) -> dict[str, Any]:
    inner = cond.get("not")
    return inner if isinstance(inner, dict) and len(cond) == 1 else {"not": cond}


def _leaf_rules(
    feats: list[Feature], y: NDArray[np.bool_], train: NDArray[np.intp], seed: int, trees: int
) -> list[Feature]:
    """Pairs of bins that matter together: the leaves of depth-2 boosted trees as ``all:`` rules."""
    from sklearn.ensemble import GradientBoostingClassifier

    fit_feats = [f for f in feats if f.kind == "fit"]
    if len(fit_feats) < 2 or trees <= 0:
        return []
    if len(fit_feats) > PAIR_FEATURES:
        # the bins whose leads' conversion differs most from the base rate (a z-score)
        base = float(y[train].mean())
        z = []
        for f in fit_feats:
            k = float(f.x[train].sum())
            rate = float(y[train][f.x[train] > 0].mean()) if k else base
            z.append(abs(rate - base) * math.sqrt(k))
        order = np.argsort(-np.asarray(z), kind="mergesort")[:PAIR_FEATURES]
        fit_feats = [fit_feats[i] for i in sorted(order)]
    X = np.column_stack([f.x for f in fit_feats])
    rng = np.random.default_rng(seed)
    sample = train if len(train) <= PAIR_LEADS else rng.choice(train, PAIR_LEADS, replace=False)
    gb = GradientBoostingClassifier(
        n_estimators=trees, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=seed
    ).fit(X[sample], y[sample])
    out: dict[str, Feature] = {}
    for est in gb.estimators_[:, 0]:
        tree = est.tree_
        # each leaf's path: (feature index, holds?) pairs
        stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            left, right = tree.children_left[node], tree.children_right[node]
            if left == -1:
                if len(path) == 2 and path[0][0] != path[1][0]:
                    parts = sorted(path)
                    key = repr(parts)
                    if key in out:
                        continue
                    mask = np.ones(len(y))
                    conds: list[dict[str, Any]] = []
                    words = []
                    for j, holds in parts:
                        f = fit_feats[j]
                        mask = mask * (f.x if holds else 1 - f.x)
                        conds.append(f.when if holds else {"not": f.when})
                        words.append(f.name if holds else f"not ({f.name})")
                    k = mask[train].sum()
                    if k < 20 or k > len(train) - 20:
                        continue
                    if k > len(train) / 2:
                        # most leads: write the rarer side, "A or B" (De Morgan), whose points
                        # differ only by a constant the threshold absorbs; sparser, faster
                        alt = [
                            _negate(f.when if holds else {"not": f.when})
                            for f, holds in ((fit_feats[j], h) for j, h in parts)
                        ]
                        alt_words = [
                            f"not ({fit_feats[j].name})" if h else fit_feats[j].name
                            for j, h in parts
                        ]
                        out[key] = Feature(" or ".join(alt_words), "", {"any": alt}, 1 - mask)
                    else:
                        out[key] = Feature(" and ".join(words), "", {"all": conds}, mask)
                continue
            j = int(tree.feature[node])
            stack.append((int(left), [*path, (j, False)]))  # x <= 0.5: the bin does not hold
            stack.append((int(right), [*path, (j, True)]))
    return list(out.values())


@dataclass
class Learned:
    """The learned rules with their points and evidence, and the cross-validated figures."""

    rules: list[tuple[Feature, int, float]]  # feature, points, weight
    threshold: float
    threshold_note: str
    leads: int
    converted: int
    auc_weights: float  # cross-validated ROC AUC before rounding
    auc_points: float  # ... and with integer points
    scale: float
    c: float
    folds: int
    seed: int
    notes: list[str] = field(default_factory=list)
    y: NDArray[np.bool_] | None = None


def _pick_threshold(
    s: NDArray[np.float64], y: NDArray[np.bool_], target_rate: float | None, capacity: float | None
) -> tuple[float, str]:
    rows = mx.thresholds(y, s, np.ones(len(s), bool), np.zeros(len(s), bool), points=200)
    if target_rate is not None:
        r = mx.recommend_rate(rows, target_rate)
        if r is not None:
            return r.threshold, (
                f"the lowest score whose leads converted at {target_rate:.0%} or better "
                f"(cross-validated: {r.precision:.1%} of {r.mqls:,} MQLs, {r.recall:.1%} of conversions)"
            )
    if capacity is not None:
        r = mx.recommend_capacity(rows, capacity)
        if r is not None:
            return r.threshold, (
                f"the lowest score that keeps MQLs within a capacity of {capacity:,.0f} "
                f"(cross-validated: {r.mqls:,} MQLs converting at {r.precision:.1%})"
            )
    q = float(np.quantile(s, 0.75))
    r = next((t for t in rows if t.threshold <= q), rows[-1])
    return r.threshold, (
        "the score of the top quarter of leads (no --target-rate or --capacity given; "
        f"cross-validated: {r.mqls:,} MQLs converting at {r.precision:.1%}, "
        f"{r.recall:.1%} of conversions)"
    )


def _sparse(feats: list[Feature], n: int) -> Any:
    """The features as a sparse matrix (most are yes/no and rarely yes)."""
    from scipy import sparse

    rows, cols, data = [], [], []
    for j, f in enumerate(feats):
        nz = np.flatnonzero(f.x)
        rows.append(nz)
        cols.append(np.full(len(nz), j))
        data.append(f.x[nz])
    return sparse.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, len(feats)),
    )


def fit(
    feats: list[Feature],
    y: NDArray[np.bool_],
    *,
    seed: int = 42,
    folds: int = 5,
    interactions: int = 200,
    target_rate: float | None = None,
    capacity: float | None = None,
    spread: float = 100.0,
    base_rules: bool = False,
) -> Learned:
    """Weigh the features with a cross-validated L1 logistic regression and round to points."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    check_enough(y)
    n = len(y)
    allrows = np.arange(n)
    if not base_rules:
        feats = feats + _leaf_rules(feats, y, allrows, seed, interactions)
    if not feats:
        raise InputError("no trait or event has enough leads to learn a rule from")
    X = _sparse(feats, n)
    # the strength is chosen on at most CV_LEADS leads (all of them up to that): the same
    # choice, much faster on 100k leads; the final weights use every lead
    cv = allrows
    if n > CV_LEADS:
        from sklearn.model_selection import train_test_split

        cv, _ = train_test_split(allrows, train_size=CV_LEADS, stratify=y, random_state=seed)
        cv = np.sort(cv)
    Xc, yc = X[cv], y[cv]
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(skf.split(np.zeros(len(yc)), yc))

    def model(c: float) -> Any:
        return LogisticRegression(
            C=c, l1_ratio=1.0, solver="liblinear", max_iter=5000, random_state=seed, tol=1e-3
        )

    best_c, best_auc = GRID[0], -1.0
    coefs: dict[float, list[NDArray[np.float64]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in GRID:
            oof = np.zeros(len(yc))
            coefs[c] = []
            for tr, te in splits:
                m = model(c).fit(Xc[tr], yc[tr])
                oof[te] = m.decision_function(Xc[te])
                coefs[c].append(m.coef_[0])
            auc = mx.roc_auc(yc, oof)
            if auc > best_auc + 1e-4:
                best_c, best_auc = c, auc
        final = model(best_c).fit(X, y)
    w = final.coef_[0]
    lin = X @ w
    lo, hi = np.quantile(lin, [0.01, 0.99])
    scale = spread / (hi - lo) if hi > lo else 10.0
    pts = np.round(w * scale).astype(int)
    # the AUC with integer points, out of fold: each fold's weights rounded with the same scale
    oof_pts = np.zeros(len(yc))
    for (_, te), coef in zip(splits, coefs[best_c], strict=True):
        oof_pts[te] = Xc[te] @ np.round(coef * scale)
    auc_points = mx.roc_auc(yc, oof_pts)
    threshold, note = _pick_threshold(oof_pts, yc, target_rate, capacity)
    threshold = math.floor(threshold * 100) / 100  # scores are shown to two decimals
    rules = [(f, int(p), float(wt)) for f, p, wt in zip(feats, pts, w, strict=True) if p != 0]
    return Learned(
        rules=rules,
        threshold=float(threshold),
        threshold_note=note,
        leads=n,
        converted=int(y.sum()),
        auc_weights=best_auc,
        auc_points=auc_points,
        scale=float(scale),
        c=best_c,
        folds=folds,
        seed=seed,
        y=y,
    )


def _y(v: Any) -> str:
    """A value as YAML: JSON scalars are valid YAML; text is always quoted."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_y(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_y(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def _unique(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def render_yaml(learned: Learned, name: str, header: list[str], half_life: float | None) -> str:
    """The learned model as commented YAML in the model language."""
    y = learned.y
    assert y is not None
    base = learned.converted / learned.leads
    lines = [f"# {h}" for h in header]
    lines += [
        f"# Learned from {learned.leads:,} leads, {learned.converted:,} converted ({base:.1%}).",
        f"# {learned.folds}-fold cross-validation (seed {learned.seed}): ROC AUC "
        f"{learned.auc_weights:.3f} with the fitted weights, {learned.auc_points:.3f} with these "
        "integer points.",
        f"# Points: L1-regularised logistic regression (C={learned.c:g}), weight × "
        f"{learned.scale:.2f}, rounded; about {math.log(2) / (1 / learned.scale):.1f} points double "
        "the odds of converting.",
        "# Each rule's comment: the leads it holds for, how they converted, and its weight.",
        "model: 1",
        f"name: {_y(name)}",
    ]
    fit_rules = [r for r in learned.rules if r[0].kind == "fit"]
    eng_rules = [r for r in learned.rules if r[0].kind == "engagement"]
    names = _unique([f.name for f, _, _ in learned.rules])
    named = dict(zip([id(r[0]) for r in learned.rules], names, strict=True))

    def evidence(f: Feature, w: float) -> str:
        held = f.x > 0
        k = int(held.sum())
        rate = float(y[held].mean()) if k else 0.0
        return f"    # {k:,} leads, {rate:.1%} converted, weight {w:+.3f}"

    if fit_rules:
        lines += ["fit:", "  rules:"]
        for f, p, w in sorted(fit_rules, key=lambda r: (-abs(r[1]), r[0].name)):
            lines += [
                evidence(f, w),
                f"    - name: {_y(named[id(f)])}",
                f"      when: {_y(f.when)}",
                f"      points: {p}",
            ]
    if eng_rules:
        lines += ["engagement:"]
        if half_life:
            lines += [f"  half_life_days: {half_life:g}"]
        lines += ["  rules:"]
        for f, p, w in sorted(eng_rules, key=lambda r: (-abs(r[1]), r[0].name)):
            lines += [
                evidence(f, w),
                f"    - name: {_y(named[id(f)])}",
                f"      event: {_y(f.event)}",
            ]
            if f.when:
                lines += [f"      when: {_y(f.when)}"]
            lines += [f"      points: {p}"]
            if f.cap_units:
                lines += [f"      cap: {round(p * f.cap_units)}"]
    lines += [
        "mql:",
        f"  # {learned.threshold_note}",
        f"  threshold: {_fmt(learned.threshold)}",
        "",
    ]
    return "\n".join(lines)
