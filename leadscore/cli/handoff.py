"""Handoff commands: ``route --explain`` (where a lead would go, and why), and telling routing
files from models for ``validate``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..engine import us_of
from ..errors import ConfigError, InputError
from ..handoff import (
    COMPUTED,
    Decision,
    RepState,
    Routing,
    SlaClock,
    format_duration,
    lead_document,
    load_routing,
    rep_key,
    route,
    sla_for,
)
from . import _load, app, out, parse_as_of

__all__ = ["is_routing_file", "routing_summary"]


def is_routing_file(path: Path) -> bool:
    """Whether a file is a routing file (top key ``routing:``) rather than a model (``model:``).

    A file that cannot be read as a YAML mapping counts as a model, so its problems are
    reported as before."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if not isinstance(root, yaml.MappingNode):
        return False
    keys = [k.value for k, _v in root.value if isinstance(k, yaml.ScalarNode)]
    return "routing" in keys and "model" not in keys


def routing_summary(path: Path, r: Routing) -> str:
    """The one line ``validate`` prints for a good routing file."""
    n = len(r.teams), len(r.rules), len(r.sla)
    return (
        f"{path}: ok — routing {r.name!r}: {n[0]} team{'s' if n[0] != 1 else ''}, "
        f"{n[1]} rule{'s' if n[1] != 1 else ''}, {n[2]} SLA{'s' if n[2] != 1 else ''}, "
        f"fallback {r.fallback}"
    )


def _pairs(values: list[str], option: str, what: str) -> dict[str, str]:
    out_: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{option} {v!r}: write it as {what}")
        out_[rep_key(key)] = value.strip()
    return out_


def _read_lead(lead: Path | None) -> Any:
    if lead is None or str(lead) == "-":
        if sys.stdin.isatty():
            raise ConfigError("give the lead with --lead lead.json, or its JSON on standard input")
        text, name = sys.stdin.read(), "standard input"
    else:
        try:
            text, name = lead.read_text(encoding="utf-8"), str(lead)
        except FileNotFoundError:
            raise InputError("no such file", file=str(lead)) from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the file: {e}", file=str(lead)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"this is not JSON ({e.msg} at line {e.lineno}, column {e.colno})",
            file=name,
        ) from None


def _iso(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sla_json(clock: SlaClock | None) -> dict[str, Any] | None:
    if clock is None:
        return None
    return {
        "name": clock.name,
        "due_at": _iso(clock.due_at_us),
        "within": format_duration(clock.within_us),
        "working_hours": clock.working_hours.describe() if clock.working_hours else None,
        "escalate_to": clock.escalate_to,
    }


def _step_text(step: dict[str, Any]) -> tuple[str, str, str]:
    kind = step["step"]
    if kind == "rule":
        return "rule", step["rule"], "matched" if step["matched"] else "no match"
    if kind == "fallback":
        note = f" ({step['note']})" if "note" in step else ""
        return "fallback", step["owner"], f"assigned: {step['because']}{note}"
    who = step.get("rep") or step.get("owner") or ""
    if kind == "rep":
        who = f"{who} (team {step['team']})"
    result = step["result"]
    if result == "skipped":
        result = f"skipped: {step['reason']}"
        if "open_mqls" in step:
            result += f" ({step['open_mqls']} open, max {step['max_open_mqls']})"
        if "working_hours" in step:
            result += f" ({step['working_hours']})"
    return kind, who, result


_HOW = {
    "route": "round robin",
    "account": "lead-to-account match",
    "fallback": "fallback owner",
}


def _print_table(routing: Path, d: Decision, lead: dict[str, Any], clock: SlaClock | None) -> None:
    how = _HOW.get(d.kind, d.kind)
    if d.kind == "route" and d.last_member is None:
        how = "the rule's owner"
    where = []
    if d.team:
        where.append(f"team {d.team}")
    if d.rule:
        where.append(f"rule {d.rule!r}")
    where.append(how)
    # names, emails and values are the user's text: never read as markup
    out.print(
        f"{escape(str(routing))} → [bold]{escape(d.owner)}[/bold] ({escape(', '.join(where))})",
        highlight=False,
    )
    shown = {k: lead[k] for k in COMPUTED if lead.get(k) not in (None, "")}
    if shown:
        out.print(
            "lead: " + ", ".join(f"{k} {v}" for k, v in shown.items()),
            markup=False,
            highlight=False,
        )
    t = Table(title="Why", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("step")
    t.add_column("rule, rep or owner")
    t.add_column("result")
    for i, step in enumerate(d.path, 1):
        t.add_row(str(i), *(Text(cell) for cell in _step_text(step)))
    out.print(t)
    if clock is None:
        out.print("SLA: none applies", markup=False, highlight=False)
    else:
        s = _sla_json(clock)
        assert s is not None
        hours = f", counted in working hours {s['working_hours']}" if s["working_hours"] else ""
        esc = f"; then escalated to {s['escalate_to']}" if s["escalate_to"] else ""
        if clock.working_hours is not None:
            due_local = datetime.fromtimestamp(clock.due_at_us / 1e6, tz=clock.working_hours.zone)
            s["due_at"] += f" ({due_local:%a %H:%M} {clock.working_hours.timezone})"
        out.print(
            f"SLA: {s['name']!r}: first touch within {s['within']}{hours}, due {s['due_at']}{esc}",
            markup=False,
            highlight=False,
        )


@app.command("route")
def route_cmd(
    routing: Annotated[Path, typer.Argument(help="The routing file (YAML).")],
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Show where the lead would go and why, assigning nothing."),
    ] = False,
    lead: Annotated[
        Path | None,
        typer.Option(
            "--lead",
            help='The lead as JSON: its traits, or {"traits": {...}, "events": [...]}; '
            "- or absent: standard input.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="Score the lead with this model (score, fit, grade, fast_track…)."
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Route as of this instant (ISO 8601; default: now, UTC)."),
    ] = None,
    away: Annotated[
        list[str] | None, typer.Option("--away", help="A rep who is away (repeatable).")
    ] = None,
    open_mqls: Annotated[
        list[str] | None,
        typer.Option("--open", help="A rep's open MQLs, as EMAIL=N (repeatable)."),
    ] = None,
    last: Annotated[
        list[str] | None,
        typer.Option("--last", help="Who got a team's last lead, as TEAM=EMAIL (repeatable)."),
    ] = None,
    account_owner: Annotated[
        str | None,
        typer.Option("--account-owner", help="The owner of the lead's company, if it has one."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Show where a lead would go and why — the rules tried, the reps skipped, the SLA — without
    assigning it. Reps are taken as present with no open MQLs unless --away/--open say otherwise."""
    if not explain:
        raise ConfigError(
            "`leadscore route` only explains (pass --explain); the live service assigns leads "
            "when they become MQLs"
        )
    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not one of table, json")
    r = load_routing(routing)
    m = _load(model) if model is not None else None
    when = parse_as_of(at)
    at_us = us_of(when)
    counts: dict[str, int] = {}
    for email, n in _pairs(open_mqls or [], "--open", "EMAIL=N, like ann@acme.io=3").items():
        if not n.isdigit():
            raise ConfigError(f"--open {email}={n}: the count must be a whole number")
        counts[email] = int(n)
    lead_map, _score = lead_document(_read_lead(lead), m, when)
    decision = route(
        r,
        lead_map,
        reps={rep_key(e): RepState(away=True) for e in away or []},
        last_member={k: rep_key(v) for k, v in _pairs(last or [], "--last", "TEAM=EMAIL").items()},
        open_mqls=counts,
        at_us=at_us,
        account_owner=rep_key(account_owner) if account_owner else None,
    )
    clock = sla_for(r, lead_map, at_us, decision.team)
    if fmt == "json":
        doc = {
            "at": _iso(at_us),
            **decision.to_dict(),
            "lead": {
                k: lead_map.get(k) for k in ("score", "fit", "engagement", "grade", "fast_track")
            },
            "sla": _sla_json(clock),
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _print_table(routing, decision, lead_map, clock)
    # the last line of the same answer, on the same stream: on a terminal it cannot land before
    # the table or run into its last line, as a note on standard error could
    out.print(f"Nothing was assigned (as of {_iso(at_us)}).", markup=False, highlight=False)
