"""Batch commands: init, validate, score, explain, sql, demo."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..errors import ConfigError, LeadscoreError, ModelError
from ..launch import spellings
from ..model import Model

if TYPE_CHECKING:
    from ..batch import BatchRun
    from ..io import Inputs
from . import (
    AsOfOpt,
    EventColumnsOpt,
    EventsOpt,
    IdColumnOpt,
    LeadsOpt,
    ModelArg,
    SegmentOpt,
    SkipOpt,
    _load,
    app,
    err,
    input_columns,
    out,
    parse_as_of,
)


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
def validate(
    models: Annotated[list[Path], typer.Argument(help="Model or routing files to check.")],
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    segment: SegmentOpt = None,
    id_column: IdColumnOpt = None,
    event_columns: EventColumnsOpt = None,
    as_of: AsOfOpt = None,
    skip_bad_rows: SkipOpt = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when there are warnings about the data.")
    ] = False,
) -> None:
    """Check models and routing files; list every problem as FILE:LINE:COLUMN: message. With
    data, also warn about fields no lead has, event names no event has and rules that fire for
    no lead."""
    from ..handoff import load_routing
    from .handoff import is_routing_file, routing_summary

    failed = 0
    warned = 0
    inputs = None
    if leads is not None or segment is not None:
        from ..io import open_inputs

        inputs = open_inputs(
            leads,
            events,
            segment=segment,
            skip_bad_rows=skip_bad_rows,
            columns=input_columns(id_column, event_columns),
        )
    elif events is not None:
        raise ConfigError("--events needs --leads: the leads the events belong to")
    for path in models:
        try:
            if is_routing_file(path):
                print(routing_summary(path, load_routing(path)))
                continue
            m = _load(path)
        except ModelError as e:
            failed += 1
            for p in e.problems:
                print(str(p), file=sys.stderr)
            continue
        except LeadscoreError as e:  # a missing or unreadable file: say so, check the others
            failed += 1
            print(f"Error: {e}", file=sys.stderr)
            continue
        print(
            f"{path}: ok — model {m.name!r}: {_n(len(m.fit_rules), 'fit rule')}, "
            f"{_n(len(m.engagement_rules), 'engagement rule')}, threshold {m.threshold:g}"
        )
        if inputs is not None:
            warnings = _data_warnings(m, inputs, parse_as_of(as_of))
            warned += len(warnings)
            for w in warnings:
                print(f"Warning: {w}", file=sys.stderr)
    if failed or (strict and warned):
        raise typer.Exit(1)


def _n(count: int, word: str) -> str:
    """``1 fit rule``, ``2 fit rules``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _data_warnings(
    m: Model,
    inputs: Inputs,
    when: datetime,
    table: str | None = None,
    batch: BatchRun | None = None,
) -> list[str]:
    from ..batch import data_warnings

    return data_warnings(m, inputs, when, table, batch)


@app.command()
def score(
    model: ModelArg = Path("leadscore.yaml"),
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    segment: SegmentOpt = None,
    id_column: IdColumnOpt = None,
    event_columns: EventColumnsOpt = None,
    as_of: AsOfOpt = None,
    fmt: Annotated[str, typer.Option(*spellings("fmt"), help="jsonl, csv or table.")] = "jsonl",
    output: Annotated[
        Path | None,
        typer.Option(*spellings("output"), help="Write here instead of standard output."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Rows shown by --format table (0: all).")
    ] = 25,
    include: Annotated[
        str | None,
        typer.Option(
            *spellings("include"),
            help="Lead columns copied into each record after the scores, e.g. email,owner.",
        ),
    ] = None,
    skip_bad_rows: SkipOpt = False,
    quiet: Annotated[
        bool, typer.Option(*spellings("quiet"), help="No summary on standard error.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            *spellings("engine"),
            help="duckdb (here, the default) or spark (a local Spark session, or a cluster "
            "with --spark-remote).",
        ),
    ] = "duckdb",
    spark_remote: Annotated[
        str | None,
        typer.Option("--spark-remote", help="Spark Connect URL, like sc://HOST:15002."),
    ] = None,
    leads_table: Annotated[
        str | None,
        typer.Option(
            "--leads-table", help="Spark: a table of leads (lead_id, traits JSON) to score."
        ),
    ] = None,
    events_table: Annotated[
        str | None,
        typer.Option(
            "--events-table",
            help="Spark: a table of events (lead_id, event, ts TIMESTAMP, properties JSON).",
        ),
    ] = None,
) -> None:
    """Score every lead: one record per lead with fit, engagement, score, grade, mql, reasons."""
    from ..batch import OUTPUT_FORMATS, parse_include, run_engine, summary

    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "table" and output is not None:
        raise ConfigError("--format table is for the terminal; write files as jsonl or csv")
    m = _load(model)
    when = parse_as_of(as_of)
    columns = input_columns(id_column, event_columns)
    included = parse_include(include)
    if included and fmt == "table":
        raise ConfigError(
            "--include adds columns to jsonl and csv records; use --format jsonl or csv"
        )
    started = time.perf_counter()
    with _Progress("Reading the leads and events…") as progress:
        batch = run_engine(
            engine,
            m,
            leads,
            events,
            when,
            segment=segment,
            skip_bad_rows=skip_bad_rows,
            spark_remote=spark_remote,
            leads_table=leads_table,
            events_table=events_table,
            columns=columns,
        )
        batch.include = included
        progress.update(
            f"Read {plural(batch.inputs.leads, 'lead')} and {plural(batch.inputs.events, 'event')}; "
            "scoring…"
        )
        table: str | None = None
        if fmt == "table" or not quiet or batch.plan is None:
            # one run of the query serves the records, the summary and the checks
            table = batch.materialise()
            progress.update(f"Scored {plural(batch.inputs.leads, 'lead')}; checking and writing…")
        # else no summary: the records go straight from the query to the output, and the check
        # for rules that fired for no lead looks at the points alone
        warnings = _data_warnings(m, batch.inputs, when, table, batch)
        if fmt == "table":
            assert table is not None
            _print_table(batch.con, table, limit)
            n = batch.inputs.leads
        else:
            n = batch.write(fmt, None, output)
    for w in warnings:
        err.print(f"Warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if not quiet:
        from ..render import print_run_summary

        _report(batch.inputs, n, when, time.perf_counter() - started, output)
        assert table is not None
        print_run_summary(err, m, summary(batch.con, table))


class _Progress:
    """What a long run is doing, with counts, on a terminal (a spinner and a line that changes);
    nothing in a pipe or a file."""

    def __init__(self, text: str) -> None:
        self._status = err.status(text, spinner="dots") if err.is_terminal else None

    def __enter__(self) -> _Progress:
        if self._status is not None:
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)


def plural(n: int, word: str) -> str:
    from ..render import plural as p

    return p(n, word)


def _report(inputs: object, n: int, when: datetime, secs: float, output: Path | None) -> None:
    from ..io import Inputs

    assert isinstance(inputs, Inputs)
    where = f" to {output}" if output else ""
    err.print(
        f"Scored {plural(n, 'lead')} ({plural(inputs.events, 'event')}) at {when:%Y-%m-%dT%H:%M:%SZ}{where} "
        f"in {secs:.1f} s."
    )
    for file, count in inputs.skipped.items():
        err.print(f"Skipped {count:,} bad row{'s' if count != 1 else ''} in {file}.")
    if inputs.orphan_events:
        err.print(
            f"{plural(inputs.orphan_events, 'event')} for {plural(inputs.orphan_lead_ids, 'lead id')} that are not "
            "in the leads file were not scored."
        )
    if inputs.anonymous_events:
        err.print(
            f"{plural(inputs.anonymous_events, 'anonymous event')} (no userId) "
            f"{'was' if inputs.anonymous_events == 1 else 'were'} not scored."
        )


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
    t = Table(
        title=f"{plural(total, 'lead')}, {plural(mqls, 'MQL')} — highest scores first",
        title_justify="left",
    )
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
    lead: Annotated[str, typer.Option("--lead", help="The lead_id to explain (required).")] = "",
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    segment: SegmentOpt = None,
    id_column: IdColumnOpt = None,
    event_columns: EventColumnsOpt = None,
    as_of: AsOfOpt = None,
    skip_bad_rows: SkipOpt = False,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table (for a terminal) or json.")
    ] = "table",
) -> None:
    """Show how one lead's score is made: every rule, every event that counted, the decision."""
    from ..batch import explain_lead
    from ..io import open_inputs
    from ..render import explanation_dict, print_explanation

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not one of table, json")
    if not lead:
        raise ConfigError("say which lead with --lead LEAD_ID")
    m = _load(model)
    when = parse_as_of(as_of)
    inputs = open_inputs(
        leads,
        events,
        segment=segment,
        skip_bad_rows=skip_bad_rows,
        columns=input_columns(id_column, event_columns),
    )
    ex = explain_lead(m, inputs, lead, when)
    if fmt == "json":
        import json

        print(json.dumps(explanation_dict(m, lead, ex), ensure_ascii=False, default=str))
        return
    print_explanation(out, m, lead, ex)


def _sql_as_of(text: str | None) -> object:
    """``leadscore sql --as-of``: now (the warehouse's clock), param (a named parameter) or ISO."""
    from ..sql import AsOf

    word = (text or "now").strip().lower()
    if word == "now":
        return AsOf.now()
    if word == "param":
        return AsOf.parameter("as_of")
    try:
        return AsOf.fixed(parse_as_of(text))
    except ConfigError:
        raise ConfigError(
            f"--as-of {text!r} is not now, param or a date or timestamp; write now (the "
            "warehouse's current time, the default), param (a named parameter as_of) or an "
            "instant like 2026-06-01T09:30:00Z"
        ) from None


@app.command()
def sql(
    model: ModelArg = Path("leadscore.yaml"),
    dialect: Annotated[
        str,
        typer.Option(
            "--dialect", "-d", help="duckdb, postgres, sqlite, snowflake, bigquery or spark."
        ),
    ] = "duckdb",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="now: the warehouse's current time when the query runs (default); param: a "
            "named parameter as_of; or a fixed ISO 8601 instant.",
        ),
    ] = None,
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
    semicolon: Annotated[
        bool,
        typer.Option(
            "--semicolon/--no-semicolon", help="End with ';' (leave it out for a dbt model)."
        ),
    ] = True,
    jsonb: Annotated[
        bool, typer.Option("--jsonb", help="PostgreSQL: traits and properties are jsonb, not json.")
    ] = False,
) -> None:
    """Print the model as one SQL query for a warehouse or a dbt model."""
    from ..sql import DIALECTS, AsOf, JsonTables
    from ..sql import score_sql as render

    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect {dialect!r} is not one of {', '.join(DIALECTS)}")
    when = _sql_as_of(as_of)
    assert isinstance(when, AsOf)
    m = _load(model)
    source = JsonTables(
        leads=leads_table, events=events_table, ts="ts", ts_aware=False, jsonb=jsonb
    )
    text = render(m, source, when, dialect, pretty=pretty)
    if when.at is not None:
        at = f"scored at {when.at:%Y-%m-%dT%H:%M:%S.%fZ}"
    elif when.param is not None:
        at = f"scored at the parameter {when.param} (a UTC timestamp)"
    else:
        at = "scored at the current time when it runs"
    print(
        f"-- leadscore model {m.name!r} as {dialect} SQL, {at}; tables: {leads_table}(lead_id, "
        f"traits JSON), {events_table}(lead_id, event, ts TIMESTAMP in UTC, properties JSON)"
    )
    print(text.rstrip() + (";" if semicolon else ""))


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

    from ..batch import run, summary
    from ..demo import DEMO_AS_OF, generate
    from ..render import print_summary

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
        f"\nFiles in {d}/: leadscore.yaml (the model), leads.csv, events.parquet, scores.jsonl,\n"
        "outcomes.csv (what became of each lead after 2026-06-01: sql, won, disqualified).\n"
        "Try next:\n"
        f"  leadscore explain {d}/leadscore.yaml --leads {d}/leads.csv --events {d}/events.parquet --as-of 2026-06-01 --lead {lead}\n"
        f"  leadscore score {d}/leadscore.yaml --leads {d}/leads.csv --events {d}/events.parquet --as-of 2026-06-01 --format table\n"
        f"  leadscore backtest {d}/leadscore.yaml --leads {d}/leads.csv --events {d}/events.parquet --outcomes {d}/outcomes.csv --as-of 2026-06-01\n"
        f"  leadscore sql {d}/leadscore.yaml --dialect snowflake",
        soft_wrap=True,
    )
