"""Personal data and backups: erase a person, list erasures, back up and restore the database.
They work on the same database as `leadscore serve` (--database-url, else
LEADSCORE_DATABASE_URL, else ./leadscore.db)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import InvalidRequestError
from . import DbOpt, app, err, out
from .service import _need_service

leads_app = typer.Typer(
    help="A person's data: erase it, and the record of erasures.", no_args_is_help=True
)
app.add_typer(leads_app, name="leads")


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"


@leads_app.command("erase")
def leads_erase(
    lead: Annotated[str, typer.Argument(help="The lead's id (its userId).")],
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who asks, for the audit record (default: your user name)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    database_url: DbOpt = None,
) -> None:
    """Erase a person: traits, events, linked anonymous ids, stage history, assignments,
    touches, MQL episodes and their webhook notifications, in one transaction; an audit record
    keeps when and by whom (not what)."""
    _need_service("leads erase")
    from ..service.facade import Service
    from ..store import open_engine

    if not yes:
        try:
            sure = typer.confirm(f"Erase every record of {lead!r}? This cannot be undone")
        except typer.Abort:  # no answer: the end of the input (a script without --yes)
            err.print()
            sure = False
        if not sure:
            raise InvalidRequestError(
                f"{lead!r} was not erased (not confirmed); answer y, or pass --yes to erase "
                "without asking"
            )
    engine = open_engine(database_url)
    try:
        got = Service(engine).erase(lead, f"cli {by or _operator()}")
    finally:
        engine.dispose()
    removed = ", ".join(f"{table} {n}" for table, n in got["removed"].items())
    rows = f"rows removed by table: {removed}" if removed else "nothing else was stored"
    err.print(f"Lead {lead} erased (audit record {got['erasure_id']}); {rows}.")


@leads_app.command("erasures")
def leads_erasures(
    check: Annotated[
        str | None,
        typer.Option(
            "--check", metavar="ID", help="Only the erasures of this id (was it erased?)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many, newest first.")
    ] = 100,
    database_url: DbOpt = None,
) -> None:
    """The audit record of erasures: when and by whom (ids are kept only as salted hashes)."""
    _need_service("leads erasures")
    from ..service.erasure import check_erased, list_erasures
    from ..store import open_engine

    engine = open_engine(database_url)
    try:
        rows = check_erased(engine, check) if check is not None else list_erasures(engine, limit)
    finally:
        engine.dispose()
    if not rows:
        err.print(f"{check!r} was never erased." if check is not None else "No erasures.")
        return
    table = Table("id", "at", "by")
    for r in rows:
        table.add_row(str(r["id"]), r["at"], r["by"])
    out.print(table)


@app.command("backup")
def backup_cmd(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (a SQLite file).")],
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    database_url: DbOpt = None,
) -> None:
    """Back up the SQLite database while `serve` runs: one consistent copy of every committed
    event (PostgreSQL: use pg_dump, see docs/operations.md)."""
    _need_service("backup")
    from ..store.backup import backup
    from ..store.db import database_url as resolve

    got = backup(resolve(database_url), file, force=force)
    err.print(f"Backed up to {got['file']} ({got['bytes']:,} bytes, migration {got['revision']}).")


@app.command("restore")
def restore_cmd(
    file: Annotated[Path, typer.Argument(help="A backup written by `leadscore backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the database if it exists (never one in use).")
    ] = False,
    database_url: DbOpt = None,
) -> None:
    """Restore the SQLite database from a backup (checked first); refuses a database in use."""
    _need_service("restore")
    from ..store.backup import restore
    from ..store.db import database_url as resolve

    got = restore(file, resolve(database_url), force=force)
    err.print(f"Restored {file} into {got['file']} (migration {got['revision']}).")
