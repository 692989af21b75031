"""The ``leadscore`` command: a thin front end over leadscore.model, leadscore.batch and leadscore.sql.

Every error meant for a user is a LeadscoreError: it is printed as ``Error: …`` on stderr with
exit code 1 (2 for a usage mistake, as Click does). Anything else is a bug; it is reported in one
line, and ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import ConfigError, LeadscoreError, ModelError
from .model import Model, load_model

app = typer.Typer(
    name="leadscore",
    help="Lead scoring and MQL handoff: score leads with a model you can read, test and version.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

_debug = False


def _version(value: bool) -> None:
    if value:
        print(f"leadscore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback for unexpected errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("LEADSCORE_DEBUG"))


def parse_as_of(text: str | None) -> datetime:
    """``--as-of``: an ISO 8601 date or timestamp (no offset means UTC); absent means now."""
    if text is None or text.strip().lower() == "now":
        return datetime.now(UTC)
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is not a date or timestamp; write it like 2026-06-01 or "
            "2026-06-01T09:30:00Z (no offset means UTC)"
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _load(model: Path) -> Model:
    if not model.exists():
        hint = (
            " Run `leadscore init` to write a starter model."
            if model.name == "leadscore.yaml"
            else ""
        )
        raise ConfigError(f"{model}: no such model file.{hint}")
    return load_model(model)


ModelArg = Annotated[Path, typer.Argument(help="The scoring model (YAML).", show_default=True)]
LeadsOpt = Annotated[
    Path | None,
    typer.Option("--leads", help="Leads: CSV, JSON Lines or Parquet; a lead_id column."),
]
EventsOpt = Annotated[
    Path | None,
    typer.Option(
        "--events",
        help="Events: CSV, JSON Lines or Parquet; lead_id, event, timestamp, properties.",
    ),
]
SegmentOpt = Annotated[
    Path | None,
    typer.Option(
        "--segment",
        help="Segment messages (identify/group/track/page) as JSON Lines, instead of --leads/--events.",
    ),
]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Score at this instant (ISO 8601; default: now, UTC).")
]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad-rows",
        help="Skip rows that cannot be read (and count them) instead of stopping.",
    ),
]


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the model.")] = Path(
        "leadscore.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter model for a B2B SaaS company."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    text = (
        resources.files("leadscore").joinpath("templates/starter.yaml").read_text(encoding="utf-8")
    )
    path.write_text(text, encoding="utf-8")
    err.print(f"Wrote {path}. Next: leadscore validate {path}")


@app.command()
def validate(models: Annotated[list[Path], typer.Argument(help="Model files to check.")]) -> None:
    """Check models; list every problem as FILE:LINE:COLUMN: message."""
    failed = 0
    for path in models:
        try:
            m = _load(path)
        except ModelError as e:
            failed += 1
            for p in e.problems:
                print(str(p), file=sys.stderr)
            continue
        print(
            f"{path}: ok — model {m.name!r}: {len(m.fit_rules)} fit rules, "
            f"{len(m.engagement_rules)} engagement rules, threshold {m.threshold:g}"
        )
    if failed:
        raise typer.Exit(1)


@app.command()
def score(
    model: ModelArg = Path("leadscore.yaml"),
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    segment: SegmentOpt = None,
    as_of: AsOfOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, csv or table.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Rows shown by --format table (0: all).")
    ] = 25,
    skip_bad_rows: SkipOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on standard error.")
    ] = False,
) -> None:
    """Score every lead: one record per lead with fit, engagement, score, grade, mql, reasons."""
    from .batch import OUTPUT_FORMATS, run

    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "table" and output is not None:
        raise ConfigError("--format table is for the terminal; write files as jsonl or csv")
    m = _load(model)
    when = parse_as_of(as_of)
    started = time.perf_counter()
    with err.status("Reading and scoring…", spinner="dots") if err.is_terminal else nullcontext():
        batch = run(m, leads, events, when, segment=segment, skip_bad_rows=skip_bad_rows)
        if fmt == "table":
            table = batch.materialise()
            _print_table(batch.con, table, limit)
            n = batch.inputs.leads
        else:
            n = batch.write(fmt, None, output)
    if not quiet:
        _report(batch.inputs, n, when, time.perf_counter() - started, output)


def _report(inputs: object, n: int, when: datetime, secs: float, output: Path | None) -> None:
    from .io import Inputs

    assert isinstance(inputs, Inputs)
    where = f" to {output}" if output else ""
    err.print(
        f"Scored {n:,} lead{'s' if n != 1 else ''} ({inputs.events:,} events) at {when:%Y-%m-%dT%H:%M:%SZ}{where} "
        f"in {secs:.1f} s."
    )
    for file, count in inputs.skipped.items():
        err.print(f"Skipped {count:,} bad row{'s' if count != 1 else ''} in {file}.")
    if inputs.orphan_events:
        err.print(
            f"{inputs.orphan_events:,} events for {inputs.orphan_lead_ids:,} lead ids that are not "
            "in the leads file were not scored."
        )
    if inputs.anonymous_events:
        err.print(f"{inputs.anonymous_events:,} anonymous events (no userId) were not scored.")


def _print_table(con: object, table: str, limit: int) -> None:
    import duckdb

    assert isinstance(con, duckdb.DuckDBPyConnection)
    lim = f"LIMIT {int(limit)}" if limit > 0 else ""
    rows = con.execute(
        f"SELECT lead_id, fit, engagement, score, grade, mql, fast_track, reasons FROM {table} "
        f"ORDER BY score DESC, lead_id {lim}"
    ).fetchall()
    total_row = con.execute(f"SELECT count(*), count(*) FILTER (WHERE mql) FROM {table}").fetchone()
    total, mqls = (int(x) for x in total_row) if total_row else (0, 0)
    t = Table(title=f"{total:,} leads, {mqls:,} MQLs — highest scores first", title_justify="left")
    for col, just in [
        ("lead", "left"),
        ("fit", "right"),
        ("engagement", "right"),
        ("score", "right"),
        ("grade", "center"),
        ("MQL", "center"),
        ("top reasons", "left"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for lead_id, fit, eng, sc, grade, mql, fast, reasons in rows:
        top = ", ".join(f"{r['rule']} {r['points']:+g}" for r in (reasons or [])[:3])
        t.add_row(
            str(lead_id),
            f"{fit:g}",
            f"{eng:g}",
            f"{sc:g}",
            grade or "",
            ("fast track" if fast and mql else "yes") if mql else "",
            top,
        )
    out.print(t)
    if limit > 0 and total > limit:
        out.print(
            f"Showing {limit} of {total:,}; --limit 0 shows all, --format jsonl/csv writes every lead."
        )


@app.command()
def explain(
    model: ModelArg = Path("leadscore.yaml"),
    lead: Annotated[str, typer.Option("--lead", help="The lead_id to explain.")] = "",
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    segment: SegmentOpt = None,
    as_of: AsOfOpt = None,
    skip_bad_rows: SkipOpt = False,
) -> None:
    """Show how one lead's score is made: every rule, every event that counted, the decision."""
    from .batch import explain_lead
    from .io import open_inputs
    from .render import print_explanation

    if not lead:
        raise ConfigError("say which lead with --lead LEAD_ID")
    m = _load(model)
    when = parse_as_of(as_of)
    inputs = open_inputs(leads, events, segment=segment, skip_bad_rows=skip_bad_rows)
    print_explanation(out, m, lead, explain_lead(m, inputs, lead, when))


@app.command()
def sql(
    model: ModelArg = Path("leadscore.yaml"),
    dialect: Annotated[
        str,
        typer.Option(
            "--dialect", "-d", help="duckdb, postgres, sqlite, snowflake, bigquery or spark."
        ),
    ] = "duckdb",
    as_of: AsOfOpt = None,
    leads_table: Annotated[
        str, typer.Option("--leads-table", help="Table of leads: lead_id and a JSON traits column.")
    ] = "leads",
    events_table: Annotated[
        str,
        typer.Option(
            "--events-table", help="Table of events: lead_id, event, ts, JSON properties."
        ),
    ] = "events",
    pretty: Annotated[bool, typer.Option("--pretty/--compact", help="Indent the SQL.")] = True,
    jsonb: Annotated[
        bool, typer.Option("--jsonb", help="PostgreSQL: traits and properties are jsonb, not json.")
    ] = False,
) -> None:
    """Print the model as one SQL query for a warehouse or a dbt model."""
    from .sql import DIALECTS, JsonTables
    from .sql import score_sql as render

    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect {dialect!r} is not one of {', '.join(DIALECTS)}")
    m = _load(model)
    source = JsonTables(
        leads=leads_table, events=events_table, ts="ts", ts_aware=False, jsonb=jsonb
    )
    text = render(m, source, parse_as_of(as_of), dialect, pretty=pretty)
    print(
        f"-- leadscore model {m.name!r} as {dialect} SQL; tables: {leads_table}(lead_id, traits JSON), "
        f"{events_table}(lead_id, event, ts TIMESTAMP in UTC, properties JSON)"
    )
    print(text.rstrip() + ";")


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--dir", help="Where to write the demo data and model.")
    ] = Path("leadscore-demo"),
    leads_n: Annotated[int, typer.Option("--leads", help="How many leads to generate.")] = 5000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed gives the same data.")
    ] = 42,
) -> None:
    """Generate a realistic data set, score it with the starter model and print a summary."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .batch import run, summary
    from .demo import DEMO_AS_OF, generate
    from .render import print_summary

    if leads_n < 1:
        raise ConfigError("--leads must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "leadscore.yaml"
    if not model_path.exists():
        text = (
            resources.files("leadscore")
            .joinpath("templates/starter.yaml")
            .read_text(encoding="utf-8")
        )
        model_path.write_text(text, encoding="utf-8")
    m = _load(model_path)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        step = progress.add_task(f"Generating {leads_n:,} leads and their events", total=3)
        files = generate(out_dir, leads_n, seed=seed)
        progress.update(step, advance=1, description="Scoring")
        batch = run(m, files.leads, files.events, DEMO_AS_OF)
        table = batch.materialise()
        progress.update(step, advance=1, description="Writing scores")
        batch.write("jsonl", None, out_dir / "scores.jsonl")
        progress.update(step, advance=1)
    print_summary(out, m, summary(batch.con, table), batch.inputs, DEMO_AS_OF)
    some = batch.con.execute(
        f"SELECT lead_id FROM {table} WHERE mql ORDER BY score DESC, lead_id LIMIT 1"
    ).fetchone()
    lead = some[0] if some else "L-000001"
    d = out_dir
    out.print(
        f"\nFiles in {d}/: leadscore.yaml (the model), leads.csv, events.parquet, scores.jsonl.\n"
        "Try next:\n"
        f"  leadscore explain {d}/leadscore.yaml --leads {d}/leads.csv --events {d}/events.parquet --as-of 2026-06-01 --lead {lead}\n"
        f"  leadscore score {d}/leadscore.yaml --leads {d}/leads.csv --events {d}/events.parquet --as-of 2026-06-01 --format table\n"
        f"  leadscore sql {d}/leadscore.yaml --dialect snowflake",
        soft_wrap=True,
    )


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="LEADSCORE_DATABASE_URL",
        help="Default: sqlite:///leadscore.db (./leadscore.db).",
    ),
]


@app.command()
def serve(
    model: Annotated[
        Path | None, typer.Option("--model", help="Activate this model at start (validated first).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    database_url: DbOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the live service: Segment-compatible ingest, real-time scores, MQL webhooks, read API."""
    import uvicorn

    from .service.app import create_app
    from .store import open_engine

    engine = open_engine(database_url)
    app_ = create_app(engine)
    if model is not None:
        m = _load(model)  # the same errors as `leadscore validate`
        info = app_.state.service.ensure_model(
            model.read_text(encoding="utf-8"), str(model), f"cli:{model}"
        )
        what = (
            "unchanged"
            if info.get("unchanged")
            else f"activated; {info.get('leads_rescored', 0)} leads re-scored"
        )
        err.print(f"Model {m.name!r} is version {info['version']} ({what}).")
    elif app_.state.service._active is None:
        err.print(
            "No model is active yet: events are refused until you start with --model FILE or PUT /api/models."
        )
    err.print(
        f"Database: {engine.url.render_as_string(hide_password=True)}. Listening on http://{host}:{port} (API docs at /docs)."
    )
    uvicorn.run(app_, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


keys_app = typer.Typer(
    help="Write keys (scope ingest) and API tokens (scopes read, admin).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. website.")],
    scope: Annotated[str, typer.Option("--scope", help="ingest, read or admin.")] = "ingest",
    database_url: DbOpt = None,
) -> None:
    """Create a key; its secret is printed once and stored only as a hash."""
    from .service.auth import create_key
    from .store import open_engine

    key_id, secret = create_key(open_engine(database_url), name, scope)
    err.print(
        f"Key {key_id} ({name}, scope {scope}). Keep the secret now; it cannot be shown again:"
    )
    print(secret)


@keys_app.command("list")
def keys_list(database_url: DbOpt = None) -> None:
    """List keys (never their secrets)."""
    from .service.auth import list_keys
    from .store import open_engine

    table = Table("id", "name", "scope", "starts with", "created", "revoked")
    for k in list_keys(open_engine(database_url)):
        table.add_row(
            str(k["id"]),
            k["name"],
            k["scope"],
            k["prefix"] + "…",
            k["created_at"],
            k["revoked_at"] or "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")],
    database_url: DbOpt = None,
) -> None:
    """Revoke a key: it stops working at once."""
    from .service.auth import revoke_key
    from .store import open_engine

    if not revoke_key(open_engine(database_url), key_id):
        raise ConfigError(f"there is no active key {key_id}")
    err.print(f"Key {key_id} revoked.")


hooks_app = typer.Typer(help="Webhooks notified when a lead becomes an MQL.", no_args_is_help=True)
app.add_typer(hooks_app, name="webhooks")


@hooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where to POST notifications.")],
    events: Annotated[
        list[str], typer.Option("--events", help="Which notifications: lead.mql.")
    ] = ["lead.mql"],  # noqa: B006
    secret: Annotated[
        str | None, typer.Option("--secret", help="Signing secret (default: a new random one).")
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Register a webhook; prints the secret that signs its deliveries."""
    from .service.webhooks import add_webhook
    from .store import open_engine

    names = [e.strip() for x in events for e in x.split(",") if e.strip()]
    hook = add_webhook(open_engine(database_url), url, names, secret)
    err.print(
        f"Webhook {hook['id']} → {url} for {', '.join(names)}. Verify X-Leadscore-Signature with this secret:"
    )
    print(hook["secret"])


@hooks_app.command("list")
def webhooks_list(database_url: DbOpt = None) -> None:
    """List webhooks with their delivery counts."""
    from .service.webhooks import list_webhooks
    from .store import open_engine

    table = Table("id", "url", "events", "active", "delivered", "pending", "failed")
    for h in list_webhooks(open_engine(database_url)):
        table.add_row(
            str(h["id"]),
            h["url"],
            ",".join(h["events"]),
            "yes" if h["active"] else "no",
            str(h["delivered"]),
            str(h["pending"]),
            str(h["failed"]),
        )
    out.print(table)


@hooks_app.command("remove")
def webhooks_remove(
    hook_id: Annotated[int, typer.Argument(help="The webhook's id.")], database_url: DbOpt = None
) -> None:
    """Stop notifying a webhook (its delivery log is kept)."""
    from .service.webhooks import remove_webhook
    from .store import open_engine

    if not remove_webhook(open_engine(database_url), hook_id):
        raise ConfigError(f"there is no webhook {hook_id}")
    err.print(f"Webhook {hook_id} removed.")


def main() -> None:
    """Entry point: run the app and turn every error into a message, never a traceback."""
    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except LeadscoreError as e:
        err.print(f"Error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # a bug: say so plainly, show details only on request
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # Click's usage errors
            e.show()
            sys.exit(e.exit_code)
        if _debug:
            raise
        err.print(
            f"Error: unexpected {type(e).__name__}: {e}\n"
            "This is a bug in leadscore; run again with --debug for details and report it.",
            markup=False,
        )
        sys.exit(70)
