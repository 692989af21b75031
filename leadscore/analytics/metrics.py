"""How well a score separates leads that convert from leads that do not (pure: arrays in,
frozen values out; no files, no database)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Band",
    "Threshold",
    "brier",
    "calibrate",
    "calibration_curve",
    "deciles",
    "pr_auc",
    "recommend_capacity",
    "recommend_rate",
    "roc_auc",
    "roc_curve",
    "thresholds",
]

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


def roc_auc(y: Bools, s: Floats) -> float:
    """The chance a random converted lead scores above a random other one (ties count half)."""
    y = np.asarray(y, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    ss = np.asarray(s, np.float64)[order]
    # average ranks over ties
    _, first, counts = np.unique(ss, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(y: Bools, s: Floats) -> tuple[Floats, Floats]:
    """False-positive rate and true-positive rate at each distinct score, highest first."""
    y = np.asarray(y, bool)
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    ss, yy = np.asarray(s, np.float64)[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp[last] / neg], np.r_[0.0, tp[last] / pos]


def pr_auc(y: Bools, s: Floats) -> float:
    """Average precision: the precision at each conversion, averaged over conversions."""
    y = np.asarray(y, bool)
    pos = int(y.sum())
    if not pos:
        return math.nan
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    ss, yy = np.asarray(s, np.float64)[order], y[order]
    tp = np.cumsum(yy)
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tp_at = tp[last].astype(np.float64)
    precision = tp_at / (last + 1)
    recall = tp_at / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _platt_fit(s: Floats, y: Bools) -> tuple[float, float]:
    """a, b of p = 1 / (1 + exp(-(a·s + b))), by Newton's method with Platt's smoothed targets."""
    pos, neg = float(y.sum()), float((~y).sum())
    t = np.where(y, (pos + 1) / (pos + 2), 1 / (neg + 2))
    mu, sd = float(s.mean()), float(s.std()) or 1.0
    x = (s - mu) / sd
    a, b = 0.0, math.log((pos + 1) / (neg + 1))
    for _ in range(50):
        z = np.clip(a * x + b, -35, 35)
        p = 1 / (1 + np.exp(-z))
        w = p * (1 - p) + 1e-12
        ga, gb = float(np.dot(p - t, x)), float(np.sum(p - t))
        haa, hab, hbb = float(np.dot(w, x * x)) + 1e-9, float(np.dot(w, x)), float(w.sum()) + 1e-9
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a / sd, b - a * mu / sd


def calibrate(y: Bools, s: Floats, folds: int = 5, seed: int = 0) -> Floats:
    """The probability of converting given the score (Platt scaling), each lead's from a fit on
    the other folds, so the Brier score is not flattered by fitting on the leads it judges."""
    y = np.asarray(y, bool)
    s = np.asarray(s, np.float64)
    n = len(s)
    p = np.full(n, float(y.mean()) if n else 0.0)
    if n < folds * 2 or y.all() or not y.any():
        return p
    fold = np.random.default_rng(seed).permutation(n) % folds
    for k in range(folds):
        train = fold != k
        if y[train].all() or not y[train].any():
            continue
        a, b = _platt_fit(s[train], y[train])
        p[~train] = 1 / (1 + np.exp(-np.clip(a * s[~train] + b, -35, 35)))
    return p


def brier(y: Bools, p: Floats) -> float:
    return float(np.mean((np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2))


def calibration_curve(y: Bools, p: Floats, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, leads) per tenth of leads ordered by probability."""
    order = np.argsort(p, kind="mergesort")
    out = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            out.append((float(p[chunk].mean()), float(np.mean(y[chunk])), len(chunk)))
    return out


@dataclass(frozen=True)
class Band:
    """A group of leads and how they converted."""

    label: str
    leads: int
    converted: int
    low: float = math.nan  # lowest score in the band
    high: float = math.nan

    @property
    def rate(self) -> float:
        return self.converted / self.leads if self.leads else 0.0


def deciles(y: Bools, s: Floats) -> list[Band]:
    """Ten bands of (nearly) equal size, highest scores first; ties stay in one band."""
    n = len(s)
    if not n:
        return []
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    ss, yy = np.asarray(s, np.float64)[order], np.asarray(y, bool)[order]
    bands: list[Band] = []
    start = 0
    for d in range(10):
        end = round(n * (d + 1) / 10)
        if end <= start:
            continue
        # keep ties together: move the cut past leads with the same score
        while end < n and ss[end] == ss[end - 1]:
            end += 1
        bands.append(
            Band(
                f"D{len(bands) + 1}",
                end - start,
                int(yy[start:end].sum()),
                float(ss[end - 1]),
                float(ss[start]),
            )
        )
        start = end
        if start >= n:
            break
    return bands


@dataclass(frozen=True)
class Threshold:
    """What an MQL threshold does: volume, conversion (precision), capture (recall), lift."""

    threshold: float
    mqls: int
    share: float
    converted: int
    precision: float
    recall: float
    lift: float


def thresholds(
    y: Bools,
    s: Floats,
    eligible: Bools,
    always: Bools,
    extra: tuple[float, ...] = (),
    points: int = 60,
) -> list[Threshold]:
    """The trade-off at each candidate threshold: a lead is an MQL when it is ``eligible`` (the
    fit gate) and its score reaches the threshold or it is ``always`` (fast-tracked)."""
    y = np.asarray(y, bool)
    s = np.asarray(s, np.float64)
    n, pos = len(s), int(y.sum())
    if not n:
        return []
    uniq = np.unique(s)
    if len(uniq) > points:
        uniq = np.unique(np.quantile(s, np.linspace(0, 1, points + 1), method="lower"))
    cands = np.unique(np.r_[uniq, np.asarray(extra, np.float64)])
    base = pos / n if n else 0.0
    out = []
    for t in cands[::-1]:
        m = eligible & ((s >= t) | always)
        k = int(m.sum())
        c = int((m & y).sum())
        prec = c / k if k else 0.0
        out.append(
            Threshold(
                float(t),
                k,
                k / n,
                c,
                prec,
                c / pos if pos else 0.0,
                prec / base if base else 0.0,
            )
        )
    return out


def recommend_rate(rows: list[Threshold], target: float) -> Threshold | None:
    """The lowest threshold (the most MQLs) whose MQLs still convert at ``target`` or better."""
    ok = [r for r in rows if r.mqls and r.precision >= target]
    return min(ok, key=lambda r: r.threshold) if ok else None


def recommend_capacity(rows: list[Threshold], capacity: float) -> Threshold | None:
    """The lowest threshold whose MQL volume sales can still work (at most ``capacity``)."""
    ok = [r for r in rows if r.mqls and r.mqls <= capacity]
    return min(ok, key=lambda r: r.threshold) if ok else None
