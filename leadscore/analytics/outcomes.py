"""Reading outcomes into DuckDB: a file (CSV, JSON Lines, Parquet), a yes/no column of the leads
file, or the live service's stage history. The file is streamed by DuckDB, never loaded into
Python; what is kept is one row per lead and stage (``leadscore_outcomes``)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ..errors import InputError, MissingExtraError
from ..io.files import _check_file, _duck_error, _lit, _q, detect_format
from .stages import _ALIASES, CONVERTED, NOT_CONVERTED, STAGES

__all__ = ["OUTCOMES_TABLE", "OutcomeCounts", "from_column", "from_database", "from_file"]

OUTCOMES_TABLE = "leadscore_outcomes"

_ID_NAMES = ("lead_id", "leadid", "id", "user_id", "userid")
_OUTCOME_NAMES = ("outcome", "stage", "status", "to_stage")
_AT_NAMES = ("at", "timestamp", "ts", "date", "time", "occurred_at", "changed_at")


@dataclass
class OutcomeCounts:
    """What reading the outcomes found, for the report."""

    source: str
    rows: int = 0
    kept: int = 0
    duplicates: int = 0
    unknown_leads: int = 0  # outcome rows whose lead_id is not in the leads file
    unknown_lead_ids: int = 0
    bad_rows: int = 0  # no lead_id / no outcome / a time that is not ISO 8601
    ignored_stages: dict[str, int] = field(default_factory=dict)
    timed: bool = True  # outcomes carry times (a yes/no column does not)

    def notes(self) -> list[str]:
        out: list[str] = []
        if self.duplicates:
            out.append(
                f"{self.duplicates:,} duplicate outcome row{'s' if self.duplicates != 1 else ''} "
                "(same lead and stage) were merged: the earliest time wins, when the lead first "
                "reached that stage."
            )
        if self.unknown_leads:
            out.append(
                f"{self.unknown_leads:,} outcome rows for {self.unknown_lead_ids:,} lead ids that "
                "are not in the leads file were not used."
            )
        if self.bad_rows:
            out.append(
                f"{self.bad_rows:,} outcome rows without a lead_id, an outcome, or with a time "
                "that is not ISO 8601 were skipped."
            )
        for name, n in self.ignored_stages.items():
            out.append(
                f"{n:,} outcome rows with stage {name!r} (not a conversion stage) were ignored."
            )
        return out


def _pick(cols: list[str], names: tuple[str, ...], what: str, path: Path, need: bool) -> str | None:
    low = {c.lower().strip(): c for c in cols}
    for n in names:
        if n in low:
            return low[n]
    if not need:
        return None
    close = difflib.get_close_matches(names[0], list(low), n=1, cutoff=0.6)
    hint = f"; did you mean {low[close[0]]!r}?" if close else ""
    raise InputError(
        f"no {names[0]!r} column ({what}); outcome files have lead_id, outcome and at columns "
        f"(found: {', '.join(cols[:12])}){hint}",
        file=str(path),
    )


def _stage_case(expr: str, mapping: dict[str, str]) -> str:
    names: dict[str, str] = {s: s for s in STAGES}
    names.update({CONVERTED: CONVERTED, NOT_CONVERTED: NOT_CONVERTED})
    names.update(_ALIASES)
    names.update(mapping)
    whens = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in names.items())
    return f"CASE lower(trim({expr})) {whens} END"


def from_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    leads_view: str,
    mapping: dict[str, str],
    fmt: str | None = None,
) -> OutcomeCounts:
    """Outcomes from a file with ``lead_id, outcome, at`` (``at`` optional: no time)."""
    _check_file(path)
    fmt = fmt or detect_format(path)
    p = _lit(str(path))
    if fmt == "csv":
        scan = f"read_csv({p}, all_varchar=true, header=true)"
    elif fmt == "jsonl":
        scan = f"read_json({p}, format='newline_delimited', records=true)"
    else:
        scan = f"read_parquet({p})"
    try:
        cols = con.sql(f"SELECT * FROM {scan} LIMIT 0").columns
    except duckdb.Error as e:
        raise _duck_error(path, e) from None
    lid = _pick(cols, _ID_NAMES, "which lead", path, True)
    oc = _pick(cols, _OUTCOME_NAMES, "the stage reached", path, True)
    at = _pick(cols, _AT_NAMES, "when", path, False)
    assert lid is not None and oc is not None
    at_text = f"CAST({_q(at)} AS VARCHAR)" if at else "NULL"
    at_expr = (
        f"try_cast(try_cast(nullif(trim({at_text}), '') AS TIMESTAMPTZ) AS TIMESTAMP)"
        if at
        else "CAST(NULL AS TIMESTAMP)"
    )
    src = (
        f"SELECT nullif(trim(CAST({_q(lid)} AS VARCHAR)), '') AS lead_id, "
        f'CAST({_q(oc)} AS VARCHAR) AS raw, {at_text} AS at_text, {at_expr} AS "at" FROM {scan}'
    )
    return _load(con, src, str(path), leads_view, mapping, timed=at is not None)


def _load(
    con: duckdb.DuckDBPyConnection,
    src: str,
    source: str,
    leads_view: str,
    mapping: dict[str, str],
    *,
    timed: bool,
    strict: bool = True,
) -> OutcomeCounts:
    """One streaming pass over the outcomes, grouped by lead and stage as written: only that
    (small) grouping is kept, never the rows. A lead reaching a stage twice keeps the earliest
    time: the first time it got there."""
    stage = _stage_case("raw", mapping)
    counts = OutcomeCounts(source, timed=timed)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE leadscore_outcomes_raw AS SELECT lead_id, "
            'lower(trim(raw)) AS raw, bad, min("at") AS "at", count(*) AS n FROM ('
            "SELECT lead_id, raw, \"at\", (lead_id IS NULL OR nullif(trim(raw), '') IS NULL OR "
            "(nullif(trim(at_text), '') IS NOT NULL AND \"at\" IS NULL)) AS bad "
            f"FROM ({src})) GROUP BY ALL"
        )
        con.execute(
            f"ALTER TABLE leadscore_outcomes_raw ADD COLUMN outcome VARCHAR; "
            f"UPDATE leadscore_outcomes_raw SET outcome = {stage}"
        )
    except duckdb.Error as e:
        raise InputError(f"cannot be read: {str(e).splitlines()[0]}", file=source) from None
    r = con.execute(
        "SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE bad), 0) FROM leadscore_outcomes_raw"
    ).fetchone()
    assert r is not None
    counts.rows, counts.bad_rows = int(r[0]), int(r[1])
    unknown = con.execute(
        "SELECT raw, sum(n) FROM leadscore_outcomes_raw WHERE NOT bad AND outcome IS NULL "
        "GROUP BY raw ORDER BY sum(n) DESC, raw"
    ).fetchall()
    if unknown and not strict:
        counts.ignored_stages = {str(name): int(n) for name, n in unknown}
        con.execute("DELETE FROM leadscore_outcomes_raw WHERE outcome IS NULL")
    elif unknown:
        names = ", ".join(f"{name!r} ({n:,} rows)" for name, n in unknown[:8])
        close = difflib.get_close_matches(str(unknown[0][0]).lower(), STAGES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"outcomes name stages leadscore does not know: {names}. Map them with "
            f"--stage-map 'NAME=STAGE' (stages: {', '.join(STAGES)}).{hint}",
            file=source,
        )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {OUTCOMES_TABLE} AS SELECT lead_id, outcome, "
        'min("at") AS "at", sum(n) AS n FROM leadscore_outcomes_raw o '
        f"WHERE NOT bad AND EXISTS (SELECT 1 FROM {leads_view} l WHERE l.lead_id = o.lead_id) "
        "GROUP BY lead_id, outcome"
    )
    r = con.execute(
        "SELECT coalesce(sum(n), 0), count(DISTINCT lead_id) FROM leadscore_outcomes_raw o "
        f"WHERE NOT bad AND NOT EXISTS (SELECT 1 FROM {leads_view} l WHERE l.lead_id = o.lead_id)"
    ).fetchone()
    assert r is not None
    counts.unknown_leads, counts.unknown_lead_ids = int(r[0]), int(r[1])
    r = con.execute(f"SELECT count(*), coalesce(sum(n), 0) FROM {OUTCOMES_TABLE}").fetchone()
    assert r is not None
    counts.kept = int(r[0])
    counts.duplicates = int(r[1]) - int(r[0])
    con.execute("DROP TABLE leadscore_outcomes_raw")
    return counts


def from_column(
    con: duckdb.DuckDBPyConnection, leads_view: str, column: str, source: str
) -> OutcomeCounts:
    """``--outcome-column Converted``: a 0/1, yes/no or true/false column of the leads file."""
    cols = [d[0] for d in con.execute(f"SELECT * FROM {leads_view} LIMIT 0").description or ()]
    if column not in cols:
        close = difflib.get_close_matches(column, cols, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"the leads have no column {column!r}{hint}", file=source)
    c = f"lower(trim(CAST({_q(column)} AS VARCHAR)))"
    yes = "('1','1.0','yes','y','true','t','converted','won')"
    no = "('0','0.0','no','n','false','f','not converted','lost')"
    other = con.execute(
        f"SELECT {c}, count(*) FROM {leads_view} WHERE nullif({c}, '') IS NOT NULL "
        f"AND {c} NOT IN {yes} AND {c} NOT IN {no} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"
    ).fetchall()
    if other:
        shown = ", ".join(f"{v!r} ({n:,} lead{'s' if n != 1 else ''})" for v, n in other)
        raise InputError(
            f"the column {column!r} must hold 0/1, yes/no or true/false for each lead; "
            f"it also holds {shown}. Fix those values, or give the outcomes as a file with "
            "--outcomes",
            file=source,
        )
    src = (
        f"SELECT lead_id, CASE WHEN {c} IN {yes} THEN "
        f"'{CONVERTED}' WHEN {c} IN {no} THEN '{NOT_CONVERTED}' END AS raw, "
        f'NULL AS at_text, CAST(NULL AS TIMESTAMP) AS "at" FROM {leads_view}'
    )
    return _load(con, src, f"{source} column {column!r}", leads_view, {}, timed=False)


def from_database(
    con: duckdb.DuckDBPyConnection, url: str, leads_view: str, mapping: dict[str, str]
) -> OutcomeCounts:
    """The live service's stage history (``stage_history``: lead_id, stage, at_us)."""
    try:
        import sqlalchemy as sa
    except ImportError:
        raise MissingExtraError(
            "reading outcomes from the service's database needs its parts, which are not "
            "installed: pip install 'leadscore[serve]' (and 'leadscore[postgres]' for PostgreSQL)"
        ) from None

    from ..store.db import database_url
    from ..store.schema import stage_history

    try:
        engine = sa.create_engine(database_url(url))
        with engine.connect() as c:
            rows: list[Any] = list(
                c.execute(
                    sa.select(
                        stage_history.c.lead_id, stage_history.c.stage, stage_history.c.at_us
                    ).order_by(stage_history.c.id)
                )
            )
    except sa.exc.SQLAlchemyError as e:
        raise InputError(
            f"cannot read the stage history: {str(e).splitlines()[0]}", file=url
        ) from None
    finally:
        if "engine" in locals():
            engine.dispose()
    con.execute(
        'CREATE OR REPLACE TEMP TABLE leadscore_stage_rows (lead_id VARCHAR, raw VARCHAR, "at" TIMESTAMP)'
    )
    data = [
        (lid, stage, datetime.fromtimestamp(us / 1e6, UTC).replace(tzinfo=None))
        for lid, stage, us in rows
    ]
    if data:
        con.executemany("INSERT INTO leadscore_stage_rows VALUES (?, ?, ?)", data)
    # the service's own stages before a sale (lead, mql, …) are not outcomes: counted, ignored
    src = 'SELECT lead_id, raw, CAST("at" AS VARCHAR) AS at_text, "at" FROM leadscore_stage_rows'
    return _load(con, src, "stage history", leads_view, mapping, timed=True, strict=False)
