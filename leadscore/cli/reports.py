"""Funnel commands: ``import`` (leads and stage history from a CRM) and ``report funnel``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from . import SkipOpt, app, err, out
from .service import _need_service

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "--database-url",
        envvar="LEADSCORE_DATABASE_URL",
        help="The service's database. Default: sqlite:///leadscore.db (./leadscore.db).",
    ),
]


@app.command("import")
def import_(
    leads: Annotated[
        Path | None,
        typer.Option(
            "--leads", help="Leads: CSV, JSON Lines or Parquet; lead_id, traits, owner, team."
        ),
    ] = None,
    stages: Annotated[
        Path | None,
        typer.Option(
            "--stages",
            help="Stage history: CSV, JSON Lines or Parquet; lead_id, stage, at, by, reason.",
        ),
    ] = None,
    database: DatabaseOpt = None,
    skip_bad_rows: SkipOpt = False,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="Leads the re-score makes MQLs are notified (lead.mql, lead.assigned) and get "
            "SLA deadlines, as live MQLs are. Without it they become MQLs and are routed "
            "quietly: no webhook, no SLA clock.",
        ),
    ] = False,
) -> None:
    """Load existing leads and their stage history into the service's database, with their MQL
    episodes. Importing the same rows again adds nothing. With a model active, every lead whose
    traits the import changes (and a new lead with events) is re-scored as of now; a lead that
    crosses the threshold becomes an MQL (keeping its owner, else routed), but is notified only
    with --notify."""
    _need_service("import")
    from ..service.facade import Service
    from ..store import open_engine

    r = Service(open_engine(database)).import_history(
        leads=leads, stages=stages, skip_bad_rows=skip_bad_rows, notify=notify
    )
    parts = [
        f"{r.leads_added} leads added, {r.leads_updated} updated, {r.leads_unchanged} unchanged",
        f"{r.stage_rows_added} stage rows added ({r.stage_rows_present} already stored)",
        f"{r.episodes} MQL episodes written",
    ]
    if r.outside_episodes:
        parts.append(f"{r.outside_episodes} stage rows outside any MQL episode")
    if r.skipped_rows:
        parts.append(f"{r.skipped_rows} bad rows skipped")
    err.print("Imported: " + "; ".join(parts) + ".")
    if r.model_version is not None:
        told = (
            "notified" if r.notified else "not notified: --notify sends lead.mql and lead.assigned"
        )
        from ..render import plural

        became = "1 became an MQL" if r.new_mqls == 1 else f"{r.new_mqls:,} became MQLs"
        err.print(
            f"Re-scored {plural(r.leads_rescored, 'lead')} with model v{r.model_version}; "
            + became
            + (f" ({told})." if r.new_mqls else ".")
        )
    elif leads is not None:
        err.print("No model is active: no lead was re-scored.")


report_app = typer.Typer(help="Reports over the service's database.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _dur(s: float | None) -> str:
    """A duration for people: 42s, 7.5m, 3.2h, 14.7d."""
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [report["total"], *report["groups"]]


def _table(report: dict[str, Any]) -> None:
    # wide enough for every column, also when written to a file or a pipe
    wide = Console(highlight=False, width=max(out.width, 150))
    by = report["by"] or "cohort"
    head = f"MQLs from {report['from'] or 'the first'} to {report['to']} (as of {report['as_of']})"
    wide.print(head)
    conv = Table(
        by,
        "MQLs",
        "→SAL",
        "→SQL",
        "SQL→cust",
        "customers",
        "disq.",
        "recycled",
        "open",
        title="Conversion",
    )
    for g in _rows(report):
        c = g["conversion"]
        o = g["outcome"]
        conv.add_row(
            g["key"],
            str(g["mqls"]),
            _pct(c["mql_to_sal"]),
            _pct(c["mql_to_sql"]),
            _pct(c["sql_to_customer"]),
            str(o["customer"]),
            str(o["disqualified"]),
            str(o["recycled"]),
            str(o["open"]),
        )
    wide.print(conv)
    speed = Table(
        by,
        "first touch",
        "routing",
        "rep",
        "SLA met",
        "breached",
        "pending",
        "compliance",
        "close",
        title="Speed to lead (median / p90)",
    )
    for g in _rows(report):
        tm, s = g["times"], g["sla"]
        speed.add_row(
            g["key"],
            *[
                f"{_dur(tm[k]['median_s'])} / {_dur(tm[k]['p90_s'])}"
                for k in ("first_touch", "routing", "rep")
            ],
            str(s["met"]),
            str(s["breached"]),
            str(s["pending"]),
            _pct(s["compliance"]),
            f"{_dur(tm['close']['median_s'])} / {_dur(tm['close']['p90_s'])}",
        )
    wide.print(speed)
    for g in _rows(report):
        if g["mql_to_sql_note"]:
            wide.print(
                f"MQL→SQL for {g['key']}: {_pct(g['conversion']['mql_to_sql'])}, {g['mql_to_sql_note']}."
            )
    reasons = report["total"]["rejection_reasons"]
    if reasons:
        wide.print(
            "Rejection reasons: " + ", ".join(f"{r['reason']} {r['count']}" for r in reasons)
        )


_CSV = (
    "key",
    "mqls",
    "sal",
    "sql",
    "opportunity",
    "customer",
    "mql_to_sal",
    "mql_to_sql",
    "sql_to_customer",
    "disqualified",
    "recycled",
    "open",
    "sla_met",
    "sla_breached",
    "sla_pending",
    "sla_compliance",
    *[
        f"{k}_{m}"
        for k in ("first_touch", "routing", "rep", "close")
        for m in ("n", "median_s", "p90_s")
    ],
    "mql_to_sql_note",
)


def _csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_CSV)
    for g in _rows(report):
        row = {
            "key": g["key"],
            "mqls": g["mqls"],
            **g["reached"],
            **g["conversion"],
            **{k: v for k, v in g["outcome"].items() if k != "customer"},
            **{f"sla_{k}": v for k, v in g["sla"].items()},
            **{f"{k}_{m}": v for k, t in g["times"].items() for m, v in t.items()},
            "mql_to_sql_note": g["mql_to_sql_note"],
        }
        w.writerow(["" if row[c] is None else row[c] for c in _CSV])
    return buf.getvalue()


@report_app.command("funnel")
def report_funnel(
    from_: Annotated[
        str | None, typer.Option("--from", help="MQLs from this date or time (ISO 8601, UTC).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="…up to, not including, this one (default: now).")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Group by source, campaign, grade, band, owner, team or track."),
    ] = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    database: DatabaseOpt = None,
) -> None:
    """The MQL funnel by MQL-date cohort: conversion, speed to lead, SLA compliance, rejections."""
    _need_service("report")
    from ..reports.funnel import parse_time
    from ..service.facade import Service
    from ..store import open_engine

    if format_ not in ("table", "csv", "json"):
        raise ConfigError(f"--format {format_!r}: use table, csv or json")
    report = Service(open_engine(database)).funnel(
        by=by, start_us=parse_time(from_, "--from"), end_us=parse_time(to, "--to")
    )
    if format_ == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif format_ == "csv":
        print(_csv(report), end="")
    else:
        _table(report)
