"""Sales commands on the service's database: touch, stage, assign, reps. They work on the same
database as `leadscore serve` (--database-url, else LEADSCORE_DATABASE_URL, else
./leadscore.db), through the same service, so a change made here is checked by the same rules
and announced by the same webhooks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from . import DbOpt, app, err, out, parse_as_of
from .service import _need_service

if TYPE_CHECKING:
    from ..service.facade import Service

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _service(command: str, database_url: str | None) -> Service:
    _need_service(command)
    from ..service.facade import Service
    from ..store import open_engine

    return Service(open_engine(database_url))


def _us(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        at = parse_as_of(text)
    except ConfigError:
        raise ConfigError(
            f"{option} {text!r} is not a date or timestamp; write it like 2026-06-01T09:30:00Z"
        ) from None
    return (at - _EPOCH) // (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH)


ByOpt = Annotated[str, typer.Option("--by", help="Who did it, e.g. ann@acme.io.")]


@app.command()
def touch(
    lead: Annotated[str, typer.Argument(help="The lead's id.")],
    kind: Annotated[str, typer.Option("--kind", help="call, email or meeting.")],
    by: ByOpt,
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened (ISO 8601; default: now).")
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Log a call, email or meeting with a lead: its first touch stops the SLA clock."""
    got = _service("touch", database_url).touch(lead, kind, by, _us(at, "--at"))
    cleared = " (the SLA breach is cleared: it was in time)" if got["breach_cleared"] else ""
    err.print(f"Touch logged: {kind} with {lead} by {got['by']} at {got['at']}.{cleared}")


@app.command()
def stage(
    lead: Annotated[str, typer.Argument(help="The lead's id.")],
    to: Annotated[
        str,
        typer.Argument(
            metavar="STAGE", help="sal, sql, opportunity, customer, recycled, disqualified or mql."
        ),
    ],
    by: ByOpt,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why; disqualified needs one of the rejection reasons."),
    ] = None,
    budget: Annotated[str | None, typer.Option("--bant-budget", help="sql: the budget.")] = None,
    authority: Annotated[
        str | None, typer.Option("--bant-authority", help="sql: who decides.")
    ] = None,
    need: Annotated[str | None, typer.Option("--bant-need", help="sql: the need.")] = None,
    timeline: Annotated[
        str | None, typer.Option("--bant-timeline", help="sql: the timeline.")
    ] = None,
    come_back_at: Annotated[
        str | None,
        typer.Option("--come-back-at", help="recycled: when to work the lead again (ISO 8601)."),
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Move a lead to another stage (checked by the lifecycle rules; kept in its history)."""
    bant: dict[str, Any] | None = None
    given = {"budget": budget, "authority": authority, "need": need, "timeline": timeline}
    if any(v is not None for v in given.values()):
        bant = {k: v for k, v in given.items() if v is not None}
    got = _service("stage", database_url).move(
        lead,
        to,
        by,
        reason=reason,
        bant=bant,
        come_back_at_us=_us(come_back_at, "--come-back-at"),
    )
    err.print(f"Lead {lead} moved from {got['from']} to {got['stage']} by {got['by']}.")


@app.command()
def assign(
    lead: Annotated[str, typer.Argument(help="The lead's id.")],
    owner: Annotated[str, typer.Option("--owner", help="The new owner's email.")],
    by: Annotated[str, typer.Option("--by", help="Who reassigns (default: cli).")] = "cli",
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    database_url: DbOpt = None,
) -> None:
    """Reassign a lead to another owner (kept in its assignment history)."""
    got = _service("assign", database_url).reassign(lead, owner, by, reason)
    if got.get("unchanged"):
        err.print(f"Lead {lead} is already owned by {got['owner']}.")
        return
    was = got["previous_owner"] or "nobody"
    err.print(f"Lead {lead} reassigned from {was} to {got['owner']}.")


@app.command()
def reps(
    away: Annotated[
        str | None, typer.Option("--away", help="Mark this rep away: round robin skips them.")
    ] = None,
    back: Annotated[
        str | None, typer.Option("--back", help="Mark this rep back from time away.")
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """List reps (teams, time away, open MQLs); --away/--back EMAIL marks one first."""
    if away and back:
        raise ConfigError("give --away or --back, not both")
    service = _service("reps", database_url)
    if away or back:
        email = away or back
        assert email is not None
        rep = service.set_away(email, bool(away))
        err.print(f"{rep['email']} is {'away' if away else 'back'}.")
    table = Table("rep", "teams", "away", "since", "back at", "open MQLs")
    for r in service.reps():
        table.add_row(
            r["email"],
            ", ".join(r["teams"]),
            "yes" if r["away"] else "no",
            r["away_since"] or "" if r["away"] else "",
            r["back_at"] or "",
            str(r["open_mqls"]),
        )
    out.print(table)
