"""A backtest's result as a terminal report, JSON, or a self-contained HTML page."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_report", "to_json"]


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def to_json(result: dict[str, Any]) -> str:
    def clean(o: Any) -> Any:
        if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(result), indent=2, default=str)


def print_report(con: Console, result: dict[str, Any]) -> None:
    models = result["models"]
    head = Table(title="How well each model separates converted leads", title_justify="left")
    head.add_column("")
    for m in models:
        head.add_column(f"{m['model']} ({m['file']})", justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("leads judged", lambda m: f"{m['leads']:,}"),
        ("converted", lambda m: f"{m['converted']:,} ({_pct(m['base_rate'])})"),
        ("ROC AUC", lambda m: _num(m["roc_auc"])),
        ("PR AUC", lambda m: _num(m["pr_auc"])),
        (
            "Brier (calibrated)",
            lambda m: f"{_num(m['brier'], '.4f')} (base {_num(m['brier_base'], '.4f')})",
        ),
        ("threshold", lambda m: f"{m['threshold']:g}"),
        ("MQLs", lambda m: _mqls(m["model_threshold"])),
        ("MQL→conversion", lambda m: _pct((m["model_threshold"] or {}).get("precision"))),
        ("conversions captured", lambda m: _pct((m["model_threshold"] or {}).get("recall"))),
        (
            "top segment share of leads (aim 15–35%)",
            lambda m: _pct(m["segments"]["top_share_of_leads"]),
        ),
        ("…of conversions (aim ≥ 60%)", lambda m: _pct(m["segments"]["top_share_of_conversions"])),
        (
            "top vs bottom half (aim ≥ 10×)",
            lambda m: f"{_num(m['segments']['top_vs_bottom'], '.1f')}×",
        ),
    ]
    for name, f in rows:
        head.add_row(name, *(f(m) for m in models))
    con.print(head)
    for m in models:
        _model_detail(con, m, len(models) > 1)
    for note in result["notes"]:
        con.print(f"Note: {note}", soft_wrap=True)


def _mqls(row: dict[str, Any] | None) -> str:
    return "—" if row is None else f"{row['mqls']:,} ({_pct(row['share'])})"


def _model_detail(con: Console, m: dict[str, Any], name: bool) -> None:
    tag = f" — {m['model']}" if name else ""
    t = Table(title=f"Conversion by score decile{tag}", title_justify="left")
    for c in ("band", "scores", "leads", "converted", "rate", "lift"):
        t.add_column(c, justify="left" if c == "band" else "right")
    for b in m["deciles"]:
        t.add_row(
            b["label"],
            f"{b['low']:g}–{b['high']:g}",
            f"{b['leads']:,}",
            f"{b['converted']:,}",
            _pct(b["rate"]),
            f"{b.get('lift', 0):.2f}×",
        )
    con.print(t)
    if m["grades"]:
        g = Table(title=f"Conversion by grade{tag}", title_justify="left")
        for c in ("grade", "leads", "converted", "rate"):
            g.add_column(c, justify="left" if c == "grade" else "right")
        for b in m["grades"]:
            g.add_row(b["label"], f"{b['leads']:,}", f"{b['converted']:,}", _pct(b["rate"]))
        con.print(g)
    tt = Table(title=f"Threshold trade-off{tag} (◀ the model's threshold)", title_justify="left")
    for c in ("threshold", "MQLs", "share", "MQL→conversion", "captured", "lift"):
        tt.add_column(c, justify="right")
    rows = m["thresholds"]
    step = max(1, len(rows) // 15)
    shown = {id(r) for r in rows[::step]}
    recs = {r["row"]["threshold"] for r in m["recommendations"].values() if r["row"]}
    for r in rows:
        marked = r["threshold"] == m["threshold"]
        if id(r) not in shown and not marked and r["threshold"] not in recs:
            continue
        mark = " ◀" if marked else (" ★" if r["threshold"] in recs else "")
        tt.add_row(
            f"{r['threshold']:g}{mark}",
            f"{r['mqls']:,}",
            _pct(r["share"]),
            _pct(r["precision"]),
            _pct(r["recall"]),
            f"{r['lift']:.2f}×",
        )
    con.print(tt)
    for kind, rec in m["recommendations"].items():
        row = rec["row"]
        if kind == "target_rate":
            what = f"MQLs converting at {_pct(rec['target'])} or better"
        else:
            per = "in total" if rec["per"] == "total" else f"per {rec['per']}"
            what = (
                f"a capacity of {rec['amount']:g} MQLs {per} ({rec['mqls']:,.0f} over these leads)"
            )
        if row is None:
            con.print(f"★ No threshold gives {what}.")
        else:
            con.print(
                f"★ For {what}: threshold {row['threshold']:g} — {row['mqls']:,} MQLs, "
                f"{_pct(row['precision'])} convert, {_pct(row['recall'])} of conversions captured.",
                soft_wrap=True,
            )
    gr = Table(title=f"How each kind of lead converts{tag}", title_justify="left")
    for c in ("", "leads", "converted", "rate"):
        gr.add_column(c, justify="left" if not c else "right")
    for b in m["groups"].values():
        gr.add_row(b["label"], f"{b['leads']:,}", f"{b['converted']:,}", _pct(b["rate"]))
    con.print(gr)
    rules = m["rules"]
    if rules["best"] or rules["worst"]:
        rt = Table(title=f"Rules whose leads convert best and worst{tag}", title_justify="left")
        for c in ("", "rule", "leads", "rate", "lift", "avg points"):
            rt.add_column(c, justify="left" if c in ("", "rule") else "right")
        for which, lst in (("best", rules["best"]), ("worst", rules["worst"])):
            for r in lst:
                rt.add_row(
                    which,
                    r["rule"],
                    f"{r['leads']:,}",
                    _pct(r["rate"]),
                    f"{r['lift']:.2f}×",
                    f"{r['avg_points']:+.1f}",
                )
        con.print(rt)
    for r in rules["called_out"]:
        con.print(
            f"! Rule {r['rule']!r} gives {r['avg_points']:+.1f} points to {r['leads']:,} leads that "
            f"convert at {_pct(r['rate'])} ({r['lift']:.2f}× the base rate): review its points.",
            soft_wrap=True,
        )
    rp = m.get("replay")
    if rp:
        con.print(
            f"Replay{tag}: {rp['mqls']:,} leads would have become MQLs by the decision point "
            f"(median {_num(rp['median_days_to_mql'], '.1f')} days after their first event); "
            f"{rp['converted_after_mql']:,} converted after becoming an MQL "
            f"({_pct(rp['rate_after_mql'])}), {rp['converted_before_mql']:,} converted before the "
            f"model would have flagged them, {rp['not_converted']:,} did not convert.",
            soft_wrap=True,
        )
    if m["false_negatives"]:
        fn = Table(
            title=f"Converted leads the model scored lowest (review these){tag}",
            title_justify="left",
        )
        for c in ("lead", "score", "fit", "engagement", "reasons"):
            fn.add_column(c, justify="left" if c in ("lead", "reasons") else "right")
        for r in m["false_negatives"][:10]:
            fn.add_row(
                str(r["lead_id"]),
                f"{r['score']:g}",
                f"{r['fit']:g}",
                f"{r['engagement']:g}",
                ", ".join(r["reasons"][:3]),
            )
        con.print(fn)
