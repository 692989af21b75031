"""Batch scoring on DuckDB: files in, one SQL query, records out. The CLI is a thin layer on this."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb

from .engine import Event, Explanation, Scorer
from .errors import ConfigError, InputError
from .io import Columns, Inputs, open_inputs
from .model import Model, nest
from .sql.plan import ScorePlan, compile_plan, rule_columns
from .sql.text import TRAITS_COLUMN

if TYPE_CHECKING:
    from .sql.cache import PlanCache

__all__ = [
    "ENGINES",
    "OUTPUT_FORMATS",
    "BatchRun",
    "data_warnings",
    "explain_lead",
    "load_lead",
    "parse_include",
    "run",
    "run_engine",
    "summary",
]

OUTPUT_FORMATS = ("jsonl", "csv", "table")
KEYS = ("lead_id", "fit", "engagement", "score", "grade", "mql", "fast_track", "reasons")


@dataclass
class BatchRun:
    """A scoring query ready to run over the inputs it was built for.

    ``include`` names lead columns (traits, as ``email`` or ``company.name``) copied into every
    record after the scores, as text, for a CRM upload."""

    model: Model
    inputs: Inputs
    as_of: datetime
    query: str
    include: tuple[str, ...] = ()
    _table: str | None = None
    #: the compiled statements (DuckDB runs only), for questions about the points alone
    plan: ScorePlan | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.inputs.con

    def materialise(self) -> str:
        """Run the query once into a temp table (for several reads: table, summary, demo)."""
        if self._table is None:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE scores AS {self.query}")
            self._table = "scores"
        return self._table

    def fired_rules(self, sample: int = 10_000) -> set[str] | None:
        """The names of the rules (with points) that give points to at least one lead, from the
        points alone, without building any lead's reasons: first over a sample of leads, then,
        for the rules the sample did not show firing, over every lead — so only a rule that
        fires rarely or never costs a whole pass. None when there is no plan (Spark)."""
        if self.plan is None:
            return None
        columns = {
            name: col
            for name, col in rule_columns(self.model)
            if any(r.name == name and r.points != 0 for r in self.model.rules)
        }
        fired: set[str] = set()
        for limit in (sample, None):
            todo = [name for name in columns if name not in fired]
            if not todo:
                break
            fired |= self._fired(todo, columns, limit)
        return fired

    def _fired(self, todo: list[str], columns: dict[str, str], limit: int | None) -> set[str]:
        assert self.plan is not None
        sql = self.plan.fired_sql(self.as_of, [columns[n] for n in todo], limit)
        row = self.con.execute(sql).fetchone()
        return {n for n, hit in zip(todo, row or (), strict=False) if hit}

    def _scores(self) -> str:
        return self._table or f"({self.query})"

    def records_sql(self) -> str:
        """Every record, unordered: the spec's keys, then the included lead columns."""
        cols = ", ".join(f"s.{k}" for k in KEYS)
        extra = _include_columns(self.inputs, self.include)
        if not extra:
            return f"SELECT {cols} FROM {self._scores()} s"
        more = ", ".join(f"{sql} AS {_quote(name)}" for name, sql in extra)
        return (
            f"SELECT {cols}, {more} FROM {self._scores()} s "
            f"LEFT JOIN {self.inputs.leads_view} l ON l.lead_id = s.lead_id"
        )

    def jsonl_lines(self, table: str | None = None, order: str = "lead_id") -> Iterator[str]:
        if table is not None and self._table is None:
            self._table = table
        cur = self.con.execute(
            f"SELECT to_json(r) FROM ({self.records_sql()}) r ORDER BY r.{order}"
        )
        while rows := cur.fetchmany(10_000):
            for (line,) in rows:
                yield line

    def write(self, fmt: str, out: IO[str] | None, path: Path | None) -> int:
        """Write every record as jsonl or csv to ``path`` (DuckDB writes it) or to ``out``."""
        if fmt not in ("jsonl", "csv"):
            raise ConfigError(f"unknown output format {fmt!r}; use jsonl, csv or table")
        extra = [name for name, _ in _include_columns(self.inputs, self.include)]
        tail = "".join(f", {_quote(n)}" for n in extra)
        select = (
            "SELECT lead_id, fit, engagement, score, grade, mql, fast_track, "
            + ("reasons" if fmt == "jsonl" else "CAST(to_json(reasons) AS VARCHAR) AS reasons")
            + f"{tail} FROM ({self.records_sql()}) ORDER BY lead_id"
        )
        if path is not None:
            opts = "FORMAT JSON" if fmt == "jsonl" else "FORMAT CSV, HEADER"
            target = str(path).replace("'", "''")
            try:
                self.con.execute(f"COPY ({select}) TO '{target}' ({opts})")
            except duckdb.IOException as e:
                raise InputError(
                    f"cannot write the output: {str(e).splitlines()[0]}", file=str(path)
                ) from None
            return self.inputs.leads
        stream = out or sys.stdout
        n = 0
        if fmt == "jsonl":
            for line in self.jsonl_lines():
                stream.write(line + "\n")
                n += 1
            return n
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([*KEYS, *extra])
        cur = self.con.execute(select)
        while rows := cur.fetchmany(10_000):
            for r in rows:
                writer.writerow(
                    [
                        r[0],
                        *(_num(x) for x in r[1:4]),
                        r[4],
                        _bool(r[5]),
                        _bool(r[6]),
                        r[7],
                        *("" if x is None else x for x in r[8:]),
                    ]
                )
                n += 1
        return n


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse_include(text: str | None) -> tuple[str, ...]:
    """``--include email,owner``: lead columns to copy into each record."""
    names = tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    clash = [n for n in names if n in KEYS]
    if clash:
        raise ConfigError(
            f"--include {clash[0]!r} is already a key of every record; include other lead columns"
        )
    return names


def _include_columns(inputs: Inputs, include: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, SQL of its text form) for every included lead column; an unknown one is an error
    naming the closest column."""
    if not include:
        return []
    if not inputs.leads_view:
        raise ConfigError("--include copies columns of a leads file; give --leads")
    rel = inputs.con.sql(f"SELECT * FROM {inputs.leads_view} LIMIT 0")
    cols = dict(zip(rel.columns, rel.types, strict=True))
    from .sql.duckdb import resolve_field

    out = []
    for name in include:
        path = tuple(name.split("."))
        e = resolve_field("l", cols, path)
        if e is None and TRAITS_COLUMN in cols:
            e = resolve_field("l", cols, (TRAITS_COLUMN, *path))
        if e is None and TRAITS_COLUMN not in cols:
            import difflib

            names = [c for c in cols if c != "lead_id"]
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--include {name!r}: the leads have no such column{hint}")
        out.append((name, e.sql(dialect="duckdb") if e is not None else "CAST(NULL AS VARCHAR)"))
    return out


def _num(x: float) -> str:
    return json.dumps(x)


def _bool(x: bool) -> str:
    return "true" if x else "false"


def run(
    model: Model,
    leads: Path | None,
    events: Path | None,
    as_of: datetime,
    *,
    segment: Path | None = None,
    skip_bad_rows: bool = False,
    leads_format: str | None = None,
    events_format: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    columns: Columns | None = None,
    count_orphans: bool = True,
    cache: PlanCache | None = None,
) -> BatchRun:
    """The scoring query over these files, ready to write. ``count_orphans=False`` leaves out
    the count of events for lead ids not in the leads file (a scan of the leads), which only
    the run's summary reports. ``cache`` keeps the compiled query between runs
    (leadscore.sql.cache)."""
    inputs = open_inputs(
        leads,
        events,
        segment=segment,
        skip_bad_rows=skip_bad_rows,
        leads_format=leads_format,
        events_format=events_format,
        con=con,
        defer_events_check=True,
        columns=columns,
    )
    plan = _plan(inputs, model, cache)
    _aggregate(inputs, plan, as_of, count_orphans)
    return BatchRun(model, inputs, as_of, plan.query(as_of), plan=plan)


ENGINES = ("duckdb", "spark")


def run_engine(
    engine: str,
    model: Model,
    leads: Path | None,
    events: Path | None,
    as_of: datetime,
    *,
    segment: Path | None = None,
    skip_bad_rows: bool = False,
    spark_remote: str | None = None,
    leads_table: str | None = None,
    events_table: str | None = None,
    columns: Columns | None = None,
) -> BatchRun:
    """Score on the chosen engine: DuckDB here, or Spark (a local session or Spark Connect)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    tables = leads_table is not None or events_table is not None
    if engine == "duckdb":
        if spark_remote is not None:
            raise ConfigError("--spark-remote is for --engine spark")
        if tables:
            raise ConfigError(
                "--leads-table/--events-table name Spark tables: add --engine spark, or give "
                "files with --leads/--events"
            )
        return run(
            model,
            leads,
            events,
            as_of,
            segment=segment,
            skip_bad_rows=skip_bad_rows,
            columns=columns,
        )
    if tables and (leads is not None or events is not None or segment is not None):
        raise ConfigError("give either tables (--leads-table/--events-table) or files, not both")
    if tables and leads_table is None:
        raise ConfigError("--events-table needs --leads-table: the leads to score")
    return _run_spark(
        model,
        leads,
        events,
        as_of,
        segment=segment,
        skip_bad_rows=skip_bad_rows,
        remote=spark_remote,
        leads_table=leads_table,
        events_table=events_table,
        columns=columns,
    )


def _run_spark(
    model: Model,
    leads: Path | None,
    events: Path | None,
    as_of: datetime,
    *,
    segment: Path | None,
    skip_bad_rows: bool,
    remote: str | None,
    leads_table: str | None,
    events_table: str | None,
    columns: Columns | None = None,
) -> BatchRun:
    from .sql import JsonTables
    from .sql import spark as on_spark

    if leads_table is None:  # files: read and checked here, scored there
        inputs = open_inputs(
            leads, events, segment=segment, skip_bad_rows=skip_bad_rows, columns=columns
        )
        session = on_spark.session(remote)
        source = on_spark.inputs_to_spark(session, inputs)
    else:
        session = on_spark.session(remote)
        if events_table is None:
            events_table = on_spark.EVENTS_VIEW
            on_spark.no_events(session)
        source = JsonTables(leads=leads_table, events=events_table, ts="ts")
        inputs = Inputs(con=duckdb.connect(), leads_view="", events_view=None)
        inputs.events = on_spark.count(session, source.events_table())
    scores = on_spark.score_on_spark(session, model, source, as_of)
    inputs.con.register("leadscore_spark_scores", scores)
    inputs.leads = scores.num_rows
    return BatchRun(model, inputs, as_of, "SELECT * FROM leadscore_spark_scores")


def _prepare(inputs: Inputs, model: Model, as_of: datetime) -> str:
    """The scoring query as DuckDB SQL, its per-lead aggregate run (see _aggregate)."""
    plan = _plan(inputs, model, None)
    _aggregate(inputs, plan, as_of)
    return plan.query(as_of)


def _plan(inputs: Inputs, model: Model, cache: PlanCache | None) -> ScorePlan:
    """The compiled statements for these inputs: from ``cache`` when it holds them, else
    compiled (and then kept there)."""
    checks = inputs.events_check is not None
    if cache is None:
        return compile_plan(
            model, inputs.con, inputs.leads_view, inputs.events_view, checks_events=checks
        )
    views = [inputs.leads_view, inputs.events_view]
    shapes = [_shape(inputs.con, v) if v else "no events" for v in views]
    key = cache.key(repr(model), shapes, checks)
    plan = cache.load(key) if key is not None else None
    if plan is None:
        plan = compile_plan(
            model, inputs.con, inputs.leads_view, inputs.events_view, checks_events=checks
        )
        if key is not None:
            cache.store(key, plan)
    elif inputs.events_view is None:  # the plan reads an empty view of events
        from .sql.text import EMPTY_EVENTS

        inputs.con.execute(f'CREATE OR REPLACE TEMP VIEW "leadscore_no_events" AS {EMPTY_EVENTS}')
    return plan


def _shape(con: duckdb.DuckDBPyConnection, view: str) -> str:
    """A view's column names and types, as the compiled query depends on them."""
    rel = con.sql(f'SELECT * FROM "{view}" LIMIT 0')
    return json.dumps([[c, str(t)] for c, t in zip(rel.columns, rel.types, strict=True)])


def _aggregate(
    inputs: Inputs, plan: ScorePlan, as_of: datetime, count_orphans: bool = True
) -> None:
    """Run the plan's per-lead event aggregate into the temp table ``leadscore_g``: the scoring
    query then reads the events file once, and events for lead ids that are not in the leads
    file are counted from that small table instead of by another pass over the events. That
    same pass checks the events file when its check waits (``Inputs.events_check``): it counts
    every row and the bad ones, which it does not score."""
    con = inputs.con
    check = inputs.events_check
    agg = plan.aggregate_sql(as_of)
    if agg is None:
        if check is not None:
            check.run()
        return
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE leadscore_g AS {agg}")
    except duckdb.Error as e:
        if check is None:
            raise
        raise check.error(e) from None
    if check is not None:
        assert plan.checks_events
        counts = con.execute(
            "SELECT coalesce(sum(__rows), 0), coalesce(sum(__bad), 0) FROM leadscore_g"
        ).fetchone()
        assert counts is not None
        check.finish(int(counts[0]), int(counts[1]))
    if not count_orphans:
        return
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE __n > 0), coalesce(sum(__n), 0) FROM leadscore_g g "
        f"ANTI JOIN {inputs.leads_view} l ON g.lead_id = l.lead_id"
    ).fetchone()
    if row is not None:
        inputs.orphan_lead_ids, inputs.orphan_events = int(row[0]), int(row[1])
        inputs.events -= inputs.orphan_events


def data_warnings(
    model: Model,
    inputs: Inputs,
    as_of: datetime,
    table: str | None = None,
    batch: BatchRun | None = None,
) -> list[str]:
    """What the model reads that the data lacks, and the rules that fired for no lead (from the
    scores in ``table``, or else from ``batch``'s points alone, or else from a run of its own),
    in the order of the rules in the model file."""
    from .coverage import by_line, check_inputs, silent_rules

    fields = batch.plan.field_sql() if batch is not None and batch.plan is not None else None
    fired = batch.fired_rules() if table is None and batch is not None else None
    warnings = check_inputs(model, inputs, fields, fired) if inputs.leads_view else []
    if table is None and fired is None:
        table = f"({_prepare(inputs, model, as_of)})"
    return by_line(warnings + silent_rules(model, inputs, table, warnings, fired=fired))


def summary(con: duckdb.DuckDBPyConnection, table: str, top: int = 10) -> dict[str, Any]:
    """MQL count and rate, the grade matrix, the most frequent reasons and the top leads."""
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE mql), count(*) FILTER (WHERE fast_track), "
        f"avg(score) FROM {table}"
    ).fetchone()
    assert row is not None
    n, mql, fast, avg = int(row[0]), int(row[1]), int(row[2]), float(row[3] or 0)
    grades = dict(
        con.execute(
            f"SELECT grade, count(*) FROM {table} WHERE grade <> '' GROUP BY grade"
        ).fetchall()
    )
    reasons = con.execute(
        f"SELECT r.rule, count(*) AS n, sum(r.points) / count(*) AS avg FROM "
        f"(SELECT unnest(reasons) AS r FROM {table}) GROUP BY r.rule ORDER BY n DESC, r.rule LIMIT 10"
    ).fetchall()
    top_rows = con.execute(
        f"SELECT lead_id, fit, engagement, score, grade, mql, fast_track FROM {table} "
        f"ORDER BY score DESC, lead_id LIMIT {int(top)}"
    ).fetchall()
    return {
        "leads": n,
        "mql": mql,
        "mql_rate": mql / n if n else 0.0,
        "fast_track": fast,
        "avg_score": avg,
        "grades": grades,
        "reasons": reasons,
        "top": top_rows,
    }


def _traits_of(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.pop(TRAITS_COLUMN, None)
    if raw is not None:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(data, dict):
            row = {**data, **{k: v for k, v in row.items() if k not in data}}
    return nest(row)


def load_lead(inputs: Inputs, lead_id: str) -> tuple[dict[str, Any], list[Event]]:
    """One lead's traits and events, as the Python engine takes them."""
    con = inputs.con
    cur = con.execute(f"SELECT * FROM {inputs.leads_view} WHERE lead_id = ?", [lead_id])
    cols = [d[0] for d in cur.description or ()]
    found = cur.fetchone()
    if found is None:
        close = con.execute(
            f"SELECT lead_id FROM {inputs.leads_view} ORDER BY jaro_winkler_similarity(lead_id, ?) DESC LIMIT 1",
            [lead_id],
        ).fetchone()
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"no lead with lead_id {lead_id!r}{hint}")
    traits = _traits_of(dict(zip(cols, found, strict=True)))
    events: list[Event] = []
    if inputs.events_view:
        rows = con.execute(
            f"SELECT event, ts, properties FROM {inputs.events_view} WHERE lead_id = ? ORDER BY ts",
            [lead_id],
        ).fetchall()
        for name, ts, props in rows:
            if isinstance(props, str):
                props = json.loads(props)
            events.append(Event(name, ts, props if isinstance(props, dict) else {}))
    return traits, events


def explain_lead(model: Model, inputs: Inputs, lead_id: str, as_of: datetime) -> Explanation:
    traits, events = load_lead(inputs, lead_id)
    return Scorer(model).explain(traits, events, as_of)
