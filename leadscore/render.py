"""Terminal views of scores: the explanation of one lead and the summary of a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .engine import Explanation, round2
from .io import Inputs
from .model import EngagementRule, FitRule, Model

__all__ = ["explanation_dict", "plural", "print_explanation", "print_run_summary", "print_summary"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 lead``, ``2 leads``, ``1,000 events``; ``many`` when the plural is not word + s."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _shown(v: Any) -> str:
    """A trait value for a person: text as written, a missing one as (missing)."""
    return "(missing)" if v is None or (isinstance(v, str) and not v.strip()) else repr(v)


def _pts(x: float) -> str:
    return f"{round2(x):+g}" if x else "0"


def _why(model: Model, ex: Explanation) -> list[str]:
    s = ex.score
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
    return why


def _plain(v: Any) -> Any:
    """A trait value as JSON can hold it."""
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return str(v)


def explanation_dict(model: Model, lead_id: str, ex: Explanation) -> dict[str, Any]:
    """The explanation as plain data (``explain --format json``): the record, the decision and
    why, every rule with what it read or counted, and the events that were not counted."""
    s = ex.score
    fit_rules = []
    engagement_rules = []
    for r in ex.rules:
        if isinstance(r.rule, FitRule):
            fit_rules.append(
                {
                    "rule": r.rule.name,
                    "holds": r.matched,
                    "points": round2(r.points),
                    "traits": {k: _plain(v) for k, v in r.values},
                }
            )
        elif isinstance(r.rule, EngagementRule) and r.rule.trait is not None:
            engagement_rules.append(
                {
                    "rule": r.rule.name,
                    "trait": r.rule.trait,
                    "counts": r.matched,
                    "before_cap": round2(r.raw),
                    "cap": r.rule.cap,
                    "points": round2(r.points),
                    "traits": {k: _plain(v) for k, v in r.values},
                }
            )
        elif isinstance(r.rule, EngagementRule):
            engagement_rules.append(
                {
                    "rule": r.rule.name,
                    "event": r.rule.event,
                    "events": len(r.events),
                    "before_cap": round2(r.raw),
                    "cap": r.rule.cap,
                    "points": round2(r.points),
                    "counted": [
                        {
                            "timestamp": c.event.timestamp.isoformat().replace("+00:00", "Z"),
                            "age_days": round(c.age_days, 4),
                            "points": round2(c.points),
                        }
                        for c in sorted(r.events, key=lambda c: c.event.ts_us)
                    ],
                }
            )
    return {
        **s.record(lead_id),
        "as_of": ex.as_of.isoformat().replace("+00:00", "Z"),
        "model": model.name,
        "decision": {
            "mql": s.mql,
            "threshold": model.threshold,
            "min_fit": model.min_fit,
            "why": _why(model, ex),
        },
        "fit_before_max": round2(ex.fit_raw),
        "engagement_before_max": round2(ex.engagement_raw),
        "fit_rules": fit_rules,
        "engagement_rules": engagement_rules,
        "not_counted": {
            "after_as_of": ex.ignored_future,
            "outside_window": ex.ignored_old,
            "matched_no_rule": ex.unmatched_events,
        },
        "notes": list(ex.notes),
    }


def print_explanation(out: Console, model: Model, lead_id: str, ex: Explanation) -> None:
    s = ex.score
    out.print(f"[bold]{lead_id}[/bold] at {ex.as_of:%Y-%m-%dT%H:%M:%SZ} with model {model.name!r}")
    verdict = "MQL" if s.mql else "not an MQL"
    why = _why(model, ex)
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
    eng.add_column("latest event (or the trait read)")
    for r in ex.rules:
        if isinstance(r.rule, FitRule):
            traits = ", ".join(f"{k}={_shown(v)}" for k, v in r.values) or "-"
            fit.add_row(r.rule.name, "yes" if r.matched else "no", _pts(r.points), traits)
        elif isinstance(r.rule, EngagementRule):
            cap = f" (cap {r.rule.cap:g})" if r.rule.cap is not None and r.raw > r.rule.cap else ""
            last = ""
            if r.rule.trait is not None:
                last = ", ".join(f"{k}={_shown(v)}" for k, v in r.values)
            elif r.events:
                e = max(r.events, key=lambda c: c.event.ts_us)
                last = f"{e.event.timestamp:%Y-%m-%d} ({e.age_days:.1f} days ago, {_pts(e.points)})"
            eng.add_row(
                r.rule.name,
                str(len(r.events)) if r.rule.trait is None else "-",
                f"{round2(r.raw):g}",
                _pts(r.points) + cap,
                last,
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
        notes.append(
            f"{plural(ex.ignored_future, 'event')} after as_of "
            f"{'was' if ex.ignored_future == 1 else 'were'} not counted"
        )
    if ex.ignored_old:
        notes.append(
            f"{plural(ex.ignored_old, 'event')} older than window_days "
            f"{'was' if ex.ignored_old == 1 else 'were'} not counted"
        )
    if ex.unmatched_events:
        notes.append(f"{plural(ex.unmatched_events, 'event')} matched no rule")
    notes.extend(ex.notes)
    for n in notes:
        out.print(f"· {n}")
    if s.reasons:
        out.print("Reasons: " + ", ".join(f"{r.rule} {_pts(r.points)}" for r in s.reasons))


def _mql_line(out: Console, s: dict[str, Any]) -> None:
    out.print(
        f"MQLs: [bold]{s['mql']:,}[/bold] ({s['mql_rate']:.1%}), of which fast-tracked "
        f"{s['fast_track']:,}; average score {s['avg_score']:.1f}"
    )


def _grade_matrix(out: Console, model: Model, s: dict[str, Any]) -> None:
    if model.grades is None:
        return
    # the title as a line of its own: a table's title wraps to the table's width
    out.print("Grades (leads): fit letter × engagement digit")
    g = Table()
    g.add_column("fit \\ engagement")
    for d in "1234":
        g.add_column(d, justify="right")
    for letter in "ABCD":
        g.add_row(letter, *(f"{s['grades'].get(letter + d, 0):,}" for d in "1234"))
    out.print(g)


def print_run_summary(out: Console, model: Model, s: dict[str, Any]) -> None:
    """What ``score`` adds to its one-line report: the MQL count and rate, the grade matrix."""
    _mql_line(out, s)
    _grade_matrix(out, model, s)


def print_summary(
    out: Console, model: Model, s: dict[str, Any], inputs: Inputs, as_of: datetime
) -> None:
    out.print(
        f"[bold]{plural(s['leads'], 'lead')}[/bold], {plural(inputs.events, 'event')}, scored at "
        f"{as_of:%Y-%m-%d} with model {model.name!r}"
    )
    _mql_line(out, s)
    _grade_matrix(out, model, s)
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
