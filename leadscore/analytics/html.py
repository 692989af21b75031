"""The backtest as one self-contained HTML page: tables and SVG charts inline, no script, no
network, readable offline in any browser."""

from __future__ import annotations

import io
import math
from importlib import resources
from typing import Any

__all__ = ["render_html"]

COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _charts(result: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"svg.fonttype": "none", "svg.hashsalt": "leadscore", "font.size": 10, "figure.dpi": 72}
    )
    models = result["models"]
    out: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    width = 0.8 / len(models)
    for k, m in enumerate(models):
        xs = [i + k * width for i in range(len(m["deciles"]))]
        ax.bar(
            xs, [b["rate"] * 100 for b in m["deciles"]], width, label=m["model"], color=COLOURS[k]
        )
    ax.axhline(
        models[0]["base_rate"] * 100,
        color="#57606a",
        linestyle="--",
        linewidth=1,
        label="base rate",
    )
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(models[0]["deciles"]))])
    ax.set_xticklabels([b["label"] for b in models[0]["deciles"]])
    ax.set_xlabel("score decile (D1 = highest scores)")
    ax.set_ylabel("converted (%)")
    ax.set_title("Conversion by score band")
    ax.legend(frameon=False)
    out["bands"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.plot([0, 1], [0, 1], color="#8c959f", linestyle=":", linewidth=1, label="perfect")
    for k, m in enumerate(models):
        c = m["calibration"]
        ax.plot(
            [p["predicted"] for p in c],
            [p["observed"] for p in c],
            marker="o",
            color=COLOURS[k],
            label=m["model"],
        )
    ax.set_xlabel("predicted probability of converting")
    ax.set_ylabel("observed conversion rate")
    ax.set_title("Calibration")
    ax.legend(frameon=False)
    out["calibration"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for k, m in enumerate(models):
        rows = m["thresholds"]
        ts = [r["threshold"] for r in rows]
        ax.plot(
            ts,
            [r["precision"] * 100 for r in rows],
            color=COLOURS[k],
            label=f"{m['model']}: MQL→conversion",
        )
        ax.plot(
            ts,
            [r["recall"] * 100 for r in rows],
            color=COLOURS[k],
            linestyle="--",
            label=f"{m['model']}: conversions captured",
        )
        ax.plot(
            ts,
            [r["share"] * 100 for r in rows],
            color=COLOURS[k],
            linestyle=":",
            label=f"{m['model']}: share of leads",
        )
        ax.axvline(m["threshold"], color=COLOURS[k], linewidth=0.8, alpha=0.6)
    ax.set_xlabel("MQL threshold (vertical line: the model's)")
    ax.set_ylabel("%")
    ax.set_title("Threshold trade-off")
    ax.legend(frameon=False, fontsize=8)
    out["tradeoff"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    for k, m in enumerate(models):
        cum_leads, cum_conv, lifts = 0, 0, []
        for b in m["deciles"]:
            cum_leads += b["leads"]
            cum_conv += b["converted"]
            lifts.append((cum_leads / m["leads"] * 100, (cum_conv / cum_leads) / m["base_rate"]))
        ax.plot(
            [a for a, _ in lifts],
            [b for _, b in lifts],
            marker="o",
            color=COLOURS[k],
            label=m["model"],
        )
    ax.axhline(1, color="#8c959f", linestyle=":", linewidth=1)
    ax.set_xlabel("top % of leads by score")
    ax.set_ylabel("lift over the base rate (×)")
    ax.set_title("Lift")
    ax.legend(frameon=False)
    out["lift"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.plot([0, 1], [0, 1], color="#8c959f", linestyle=":", linewidth=1)
    for k, m in enumerate(models):
        ax.plot(
            m["roc"]["fpr"],
            m["roc"]["tpr"],
            color=COLOURS[k],
            label=f"{m['model']} (AUC {m['roc_auc']:.3f})",
        )
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC curve")
    ax.legend(frameon=False)
    out["roc"] = _svg(fig)
    plt.close(fig)
    return out


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    return f"{x:.1%}"


def _num(x: Any, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    return format(x, fmt)


def render_html(result: dict[str, Any]) -> str:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    text = (
        resources.files("leadscore.analytics")
        .joinpath("templates/report.html.j2")
        .read_text(encoding="utf-8")
    )
    charts = _charts(result)
    return env.from_string(text).render(r=result, charts={k: Markup(v) for k, v in charts.items()})
