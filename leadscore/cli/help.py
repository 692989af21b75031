"""How ``--help`` reads: choices and placeholders instead of Python types, an example per
command, and no wrapping when the help goes to a pipe or a file (docs/cli.md is made from it)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["EXAMPLES", "polish"]

#: the placeholder shown after an option, by its long name; choices are written a|b|c
METAVARS = {
    "--leads": "FILE",
    "--events": "FILE",
    "--segment": "FILE",
    "--outcomes": "FILE",
    "--output": "FILE",
    "--model": "FILE",
    "--against": "FILE",
    "--base": "FILE",
    "--dir": "DIR",
    "--id-column": "COLUMN",
    "--event-columns": "NAME=COLUMN,…",
    "--outcome-column": "COLUMN",
    "--include": "COLUMN,…",
    "--as-of": "WHEN",
    "--lead": "LEAD_ID",
    "--limit": "N",
    "--seed": "N",
    "--horizon-days": "DAYS",
    "--target-rate": "RATE",
    "--capacity": "N[/day|/week|/month]",
    "--positive": "STAGE,…",
    "--stage-map": "THEIRS=OURS,…",
    "--exclude": "TRAIT,…",
    "--name": "NAME",
    "--engine": "duckdb|spark",
    "--dialect": "duckdb|postgres|sqlite|snowflake|bigquery|spark",
    "--decision-point": "as-of|created",
    "--log-level": "debug|info|warning|error",
    "--log-format": "text|json",
    "--metrics": "token|loopback|open|off",
    "--database-url": "URL",
    "--spark-remote": "URL",
    "--leads-table": "TABLE",
    "--events-table": "TABLE",
    "--host": "HOST",
    "--port": "PORT",
    "--request-timeout": "SECONDS",
    "--ingest-rate": "EVENTS/S",
    "--ingest-burst": "EVENTS",
    "--api-rate": "REQUESTS/S",
    "--api-burst": "REQUESTS",
    "--ingest-inflight": "N",
    "--api-inflight": "N",
    "--secret": "SECRET",
    "--webhook": "ID",
    "--scope": "ingest|read|admin",
    "--database": "URL",
    "--stages": "FILE",
    "--at": "WHEN",
    "--from": "WHEN",
    "--to": "WHEN",
    "--away": "EMAIL",
    "--open": "EMAIL=N",
    "--last": "TEAM=EMAIL",
    "--account-owner": "EMAIL",
    "--by": "source|campaign|grade|band|owner|team|track",
}
#: --format's choices per command
FORMATS = {
    "score": "jsonl|csv|table",
    "explain": "table|json",
    "backtest": "table|json|html",
    "route": "table|json",
    "funnel": "table|csv|json",
}
#: one example per command, as it is typed
EXAMPLES = {
    "init": "leadscore init leadscore.yaml",
    "validate": "leadscore validate leadscore.yaml --leads leads.csv --events events.parquet",
    "score": "leadscore score leadscore.yaml --leads leads.csv --events events.parquet "
    "--as-of 2026-06-01 -o scores.jsonl",
    "explain": "leadscore explain leadscore.yaml --leads leads.csv --events events.parquet "
    "--lead L-000042",
    "sql": "leadscore sql leadscore.yaml --dialect snowflake --no-semicolon > models/scores.sql",
    "demo": "leadscore demo --dir leadscore-demo --leads 5000",
    "backtest": "leadscore backtest leadscore.yaml --leads leads.csv --events events.parquet "
    "--outcomes outcomes.csv --as-of 2026-03-01",
    "learn": "leadscore learn --leads leads.csv --outcome-column Converted -o learned.yaml",
    "serve": "leadscore serve --model leadscore.yaml --port 8000",
    "keys create": "leadscore keys create --name website --scope ingest",
    "keys list": "leadscore keys list",
    "keys revoke": "leadscore keys revoke 3",
    "webhooks add": "leadscore webhooks add https://crm.example/hooks/mql",
    "webhooks list": "leadscore webhooks list",
    "webhooks deliveries": "leadscore webhooks deliveries --webhook 1",
    "webhooks remove": "leadscore webhooks remove 1",
    "webhooks retry": "leadscore webhooks retry 1",
    "route": "leadscore route routing.yaml --explain --lead lead.json --model leadscore.yaml",
    "import": "leadscore import --leads crm-leads.csv --stages stages.csv",
    "report funnel": "leadscore report funnel --from 2026-01-01 --by source",
    "touch": "leadscore touch L-000042 --kind call --by ana@acme.io",
    "stage": "leadscore stage L-000042 sal --by ana@acme.io",
    "assign": "leadscore assign L-000042 --owner ben@acme.io --reason 'territory change'",
    "reps": "leadscore reps --away ana@acme.io",
}


def _type_name(param: Any) -> str:
    t = getattr(param, "type_descriptor", None)
    ann = getattr(t, "annotation", None)
    return str(ann)


def _metavar(command: str, param: Any) -> str | None:
    longs: list[str] = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if not longs:
        return None
    name = longs[0]
    if name == "--format":
        return FORMATS.get(command.split()[-1])
    if name == "--leads" and "int" in _type_name(param):
        return "N"
    if name == "--events" and command.startswith("webhooks"):
        return "EVENT,…"
    if name == "--lead" and command == "route":
        return "FILE"
    if name == "--by" and command.split()[-1] != "funnel":  # who did it: touch, stage, assign
        return "EMAIL"
    # an option not named above: its own name, never a Python type
    return METAVARS.get(name, name.lstrip("-").replace("-", "_").upper())


def _no_type(ctx: Any = None) -> str:
    return ""


def _walk(cmd: Any, path: str = "") -> None:
    import typer.core

    for param in getattr(cmd, "params", []):
        if getattr(param, "is_flag", False) or getattr(param, "hidden", False):
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = (param.name or "").upper() + ("..." if param.nargs == -1 else "")
            # the argument's placeholder says what it is; its Python type says nothing more
            param.display_type_rich = _no_type  # type: ignore[method-assign]
            continue
        mv = _metavar(path, param)
        if mv is not None:
            param.metavar = mv
    example = EXAMPLES.get(path)
    if example is not None and not getattr(cmd, "epilog", None):
        cmd.epilog = "\b\nExample:\n  " + example
    for name, sub in getattr(cmd, "commands", {}).items():
        _walk(sub, f"{path} {name}".strip())


def wide() -> bool:
    """Help and messages are not wrapped: the output is not a terminal and no width is set."""
    return not sys.stdout.isatty() and not os.environ.get("COLUMNS")


def polish(cmd: Any) -> Any:
    """The click command tree of the app, with the placeholders, choices and examples above;
    help written to a pipe or a file is not wrapped."""
    _walk(cmd)
    if wide():
        cmd.context_settings = {
            **(cmd.context_settings or {}),
            "terminal_width": 100_000,
            "max_content_width": 100_000,
        }
    return cmd
