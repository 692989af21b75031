"""Terminal views of scores: the explanation of one lead and the summary of a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .engine import Explanation, round2
from .io import Inputs
from .model import EngagementRule, FitRule, Model

__all__ = ["print_explanation", "print_summary"]


def _pts(x: float) -> str:
    return f"{round2(x):+g}" if x else "0"


def print_explanation(out: Console, model: Model, lead_id: str, ex: Explanation) -> None:
    s = ex.score
    out.print(f"[bold]{lead_id}[/bold] at {ex.as_of:%Y-%m-%dT%H:%M:%SZ} with model {model.name!r}")
    verdict = "MQL" if s.mql else "not an MQL"
    why = []
    if s.fast_track:
        why.append("a fast-track event counted")
    if s.score >= model.threshold:
        why.append(f"score {round2(s.score):g} ≥ threshold {model.threshold:g}")
    else:
        why.append(f"score {round2(s.score):g} < threshold {model.threshold:g}")
    if model.min_fit is not None:
        rel = "≥" if s.fit >= model.min_fit else "<"
        why.append(f"fit {round2(s.fit):g} {rel} min_fit {model.min_fit:g}")
    out.print(
        f"fit {round2(s.fit):g} + engagement {round2(s.engagement):g} = score {round2(s.score):g}"
        + (f"   grade {s.grade}" if s.grade else "")
        + f"   → [bold]{verdict}[/bold] ({'; '.join(why)})"
    )
    fit = Table(title="Fit rules", title_justify="left", show_lines=False)
    fit.add_column("rule")
    fit.add_column("holds", justify="center")
    fit.add_column("points", justify="right")
    fit.add_column("traits read")
    eng = Table(title="Engagement rules", title_justify="left")
    eng.add_column("rule")
    eng.add_column("events", justify="right")
    eng.add_column("before cap", justify="right")
    eng.add_column("points", justify="right")
    eng.add_column("latest event")
    for r in ex.rules:
        if isinstance(r.rule, FitRule):
            traits = ", ".join(f"{k}={v!r}" for k, v in r.values) or "-"
            fit.add_row(r.rule.name, "yes" if r.matched else "no", _pts(r.points), traits)
        elif isinstance(r.rule, EngagementRule):
            cap = f" (cap {r.rule.cap:g})" if r.rule.cap is not None and r.raw > r.rule.cap else ""
            last = ""
            if r.events:
                e = max(r.events, key=lambda c: c.event.ts_us)
                last = f"{e.event.timestamp:%Y-%m-%d} ({e.age_days:.1f} days ago, {_pts(e.points)})"
            eng.add_row(
                r.rule.name, str(len(r.events)), f"{round2(r.raw):g}", _pts(r.points) + cap, last
            )
    if model.fit_rules:
        out.print(fit)
    if model.fit_max is not None and ex.fit_raw > model.fit_max:
        out.print(f"Fit {round2(ex.fit_raw):g} is lowered to fit.max {model.fit_max:g}.")
    if model.engagement_rules:
        out.print(eng)
    if model.engagement_max is not None and ex.engagement_raw > model.engagement_max:
        out.print(
            f"Engagement {round2(ex.engagement_raw):g} is lowered to engagement.max {model.engagement_max:g}."
        )
    notes = []
    if ex.ignored_future:
        notes.append(f"{ex.ignored_future} events after as_of were not counted")
    if ex.ignored_old:
        notes.append(f"{ex.ignored_old} events older than window_days were not counted")
    if ex.unmatched_events:
        notes.append(f"{ex.unmatched_events} events matched no rule")
    notes.extend(ex.notes)
    for n in notes:
        out.print(f"· {n}")
    if s.reasons:
        out.print("Reasons: " + ", ".join(f"{r.rule} {_pts(r.points)}" for r in s.reasons))


def print_summary(
    out: Console, model: Model, s: dict[str, Any], inputs: Inputs, as_of: datetime
) -> None:
    out.print(
        f"[bold]{s['leads']:,} leads[/bold], {inputs.events:,} events, scored at "
        f"{as_of:%Y-%m-%d} with model {model.name!r}"
    )
    out.print(
        f"MQLs: [bold]{s['mql']:,}[/bold] ({s['mql_rate']:.1%}), of which fast-tracked "
        f"{s['fast_track']:,}; average score {s['avg_score']:.1f}"
    )
    if model.grades is not None:
        g = Table(title="Grades: fit letter × engagement digit (leads)", title_justify="left")
        g.add_column("fit \\ engagement")
        for d in "1234":
            g.add_column(d, justify="right")
        for letter in "ABCD":
            g.add_row(letter, *(f"{s['grades'].get(letter + d, 0):,}" for d in "1234"))
        out.print(g)
    r = Table(title="Most frequent reasons", title_justify="left")
    r.add_column("rule")
    r.add_column("leads", justify="right")
    r.add_column("average points", justify="right")
    for rule, n, avg in s["reasons"]:
        r.add_row(rule, f"{n:,}", f"{avg:+.1f}")
    out.print(r)
    t = Table(title="Top leads", title_justify="left")
    for col in ("lead", "fit", "engagement", "score", "grade", "MQL"):
        t.add_column(col, justify="left" if col == "lead" else "right")
    for lead_id, fit, eng, sc, grade, mql, fast in s["top"]:
        t.add_row(
            lead_id,
            f"{fit:g}",
            f"{eng:g}",
            f"{sc:g}",
            grade,
            "fast track" if fast and mql else ("yes" if mql else ""),
        )
    out.print(t)
