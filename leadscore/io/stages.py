"""A stage-history file (``lead_id, stage, at, by, reason``) as a DuckDB view, checked row by
row with the same messages as the leads and events files (see docs/funnel.md#import).

``stages_view``: ``__line``, ``lead_id``, ``stage`` (lower case), ``at_us`` (integer
microseconds, UTC), ``by`` and ``reason`` (text, '' when absent).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import duckdb

from ..errors import BadRowsError, InputError
from .files import (
    SHOW_BAD_ROWS,
    _check_file,
    _columns,
    _csv_sql,
    _duck_error,
    _lines_sql,
    _lit,
    _parquet_sql,
    _q,
    _rejects,
    _require,
    _ts_expr,
    detect_format,
)

__all__ = ["open_stages"]

_TS_TEXT = "try_cast(try_cast(nullif(trim({c}), '') AS TIMESTAMPTZ) AS TIMESTAMP)"


def _source(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> str:
    """``__line, lead_id, stage, __at, __at_text, by, reason, __bad0`` of the file."""
    if fmt == "jsonl":
        lines = (
            "SELECT __line, CASE WHEN json_valid(j) THEN CAST(j AS JSON) END AS d FROM ("
            + _lines_sql(path)
            + ") WHERE nullif(trim(j), '') IS NOT NULL"
        )
        at_text = "json_extract_string(d, '$.at')"
        return (
            "SELECT __line, json_extract_string(d, '$.lead_id') AS lead_id, "
            "json_extract_string(d, '$.stage') AS stage, "
            + _TS_TEXT.format(c=at_text)
            + f" AS __at, {at_text} AS __at_text, json_extract_string(d, '$.by') AS \"by\", "
            "json_extract_string(d, '$.reason') AS reason, "
            "CASE WHEN d IS NULL THEN 'not valid JSON' "
            "WHEN json_type(d) <> 'OBJECT' THEN 'not a JSON object' END AS __bad0 "
            f"FROM ({lines})"
        )
    src = _csv_sql(path, "leadscore_rej_stages") if fmt == "csv" else _parquet_sql(path)
    cols = _columns(con, src, path)
    for name in ("lead_id", "stage", "at"):
        _require(cols, name, path, "stage rows")
    at = _ts_expr("at", cols["at"], path)
    opt = {
        name: f"CAST({_q(name)} AS VARCHAR)" if name in cols else "CAST(NULL AS VARCHAR)"
        for name in ("by", "reason")
    }
    return (
        'SELECT __line, CAST("lead_id" AS VARCHAR) AS lead_id, CAST("stage" AS VARCHAR) AS stage, '
        f'{at} AS __at, CAST("at" AS VARCHAR) AS __at_text, {opt["by"]} AS "by", '
        f"{opt['reason']} AS reason, CAST(NULL AS VARCHAR) AS __bad0 FROM ({src})"
    )


def _bad_expr(stages: tuple[str, ...]) -> str:
    allowed = ", ".join(_lit(s) for s in stages)
    return (
        "coalesce(__bad0, "
        "CASE WHEN nullif(trim(lead_id), '') IS NULL THEN 'no lead_id' "
        "WHEN nullif(trim(stage), '') IS NULL THEN 'no stage' "
        f"WHEN lower(trim(stage)) NOT IN ({allowed}) THEN 'unknown stage ' || to_json(trim(stage)) "
        "WHEN __at IS NULL AND nullif(trim(__at_text), '') IS NULL THEN 'no time (at)' "
        "WHEN __at IS NULL THEN 'at ' || to_json(__at_text) || ' is not an ISO 8601 timestamp "
        "(write it like 2026-05-01T10:00:00Z; no offset means UTC)' END)"
    )


def _explain(message: str, stage: str | None, stages: tuple[str, ...]) -> str:
    if not message.startswith("unknown stage"):
        return message
    close = difflib.get_close_matches((stage or "").strip().lower(), stages, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{message}: {hint}the stages are {', '.join(stages)}"


def open_stages(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    stages: tuple[str, ...],
    *,
    fmt: str | None = None,
    skip_bad_rows: bool = False,
) -> int:
    """Create ``stages_view`` over the file's good rows; returns how many bad rows were skipped.

    Raises InputError for a file that cannot be read at all, and BadRowsError (FILE:LINE and
    what is wrong) for rows that cannot be read, unless ``skip_bad_rows``."""
    _check_file(path)
    fmt = fmt or detect_format(path)
    src = _source(con, path, fmt)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE stages_src AS "
            f"SELECT {_bad_expr(stages)} AS __bad, * FROM ({src})"
        )
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE __bad IS NOT NULL) FROM stages_src"
        ).fetchone()
    except duckdb.Error as e:
        raise _duck_error(path, e) from None
    assert row is not None
    total, n_bad = int(row[0]), int(row[1])
    shown: list[tuple[int, str]] = []
    if fmt == "csv":
        rej = _rejects(con, "leadscore_rej_stages")
        shown.extend(r for r in rej if r[0])
        n_bad += len(rej)
    if n_bad:
        rows: list[Any] = con.execute(
            "SELECT __line, __bad, stage FROM stages_src WHERE __bad IS NOT NULL "
            f"ORDER BY __line LIMIT {SHOW_BAD_ROWS}"
        ).fetchall()
        shown.extend((int(a), _explain(str(b), c, stages)) for a, b, c in rows)
        if not skip_bad_rows:
            raise BadRowsError(str(path), sorted(shown)[:SHOW_BAD_ROWS], n_bad)
    if total - n_bad <= 0 and not n_bad:
        raise InputError("has no stage rows (only a header?)", file=str(path))
    con.execute(
        "CREATE OR REPLACE TEMP VIEW stages_view AS SELECT __line, lead_id, "
        'lower(trim(stage)) AS stage, epoch_us(__at) AS at_us, nullif(trim("by"), \'\') AS "by", '
        "coalesce(reason, '') AS reason FROM stages_src WHERE __bad IS NULL"
    )
    return n_bad
