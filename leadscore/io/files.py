"""Leads and events files as DuckDB views of one canonical shape.

``leads_view``: ``lead_id`` (text) and one column per trait — a dotted column name
(``company.employees``) or a STRUCT column is a nested trait; JSON Lines leads keep their
traits in one JSON column ``__traits``.

``events_view``: ``lead_id`` (text), ``event`` (text), ``ts`` (TIMESTAMP, UTC) and
``properties`` (JSON, JSON text, or a STRUCT from Parquet).

Files are never loaded into Python: DuckDB reads them in a streaming fashion. Leads are
materialised once (they are checked for duplicates and missing ids); events stay a view over
the file, checked in one aggregate pass — for batch scoring, the scoring query's own pass.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ..errors import BadRowsError, InputError
from ..sql.text import json_path, type_name
from .columns import Columns

__all__ = [
    "FORMATS",
    "EventsCheck",
    "Inputs",
    "check_content",
    "connect",
    "detect_format",
    "open_files",
]

FORMATS = ("csv", "jsonl", "parquet")
SHOW_BAD_ROWS = 10

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def connect(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up the way every leadscore query expects (UTC, no progress bar)."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar=false")
    return con


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".zst", ".gzip"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    hint = ""
    if suffixes and suffixes[-1] in (".xlsx", ".xls", ".xlsm", ".ods", ".numbers"):
        hint = "; a spreadsheet must be saved as CSV first (File > Save As > CSV UTF-8)"
    raise InputError(
        "cannot tell the format from the file name; leadscore reads CSV, JSON Lines and "
        f"Parquet: name the file .csv, .jsonl or .parquet{hint}",
        file=str(path),
    )


def _kind_of_content(path: Path) -> str:
    """What the first bytes say the file is: parquet, zip, xls, gzip, utf16, binary or text."""
    with path.open("rb") as f:
        head = f.read(8192)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf16"
    if b"\x00" in head:
        return "binary"
    return "text"


def check_content(path: Path, fmt: str) -> None:
    """The file's bytes are of the format its name says; else say what it looks like and what
    to do, instead of the reader's "Error when sniffing file"."""
    kind = _kind_of_content(path)
    compressed = path.suffix.lower() in (".gz", ".gzip", ".zst")
    named = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}[fmt]
    if fmt == "parquet":
        if kind == "text":
            raise InputError(
                "is named .parquet but looks like text (CSV or JSON Lines); name it .csv or .jsonl",
                file=str(path),
            )
        return
    problem = {
        "parquet": "looks like a Parquet file, not "
        + named
        + "; name it .parquet (leadscore reads Parquet as it is)",
        "zip": "looks like an Excel workbook (or a zip archive), not "
        + named
        + "; save the sheet as CSV (File > Save As > CSV UTF-8) and pass that file",
        "xls": "looks like an old Excel workbook (.xls), not "
        + named
        + "; save the sheet as CSV (File > Save As > CSV UTF-8) and pass that file",
        "gzip": "is gzip-compressed; name it with .gz at the end (leads.csv.gz) so it is "
        "read as compressed",
        "utf16": "is UTF-16 text; save it as UTF-8 (Excel: CSV UTF-8) and pass that file",
        "binary": "looks like a binary file, not "
        + named
        + " text; pass the CSV, JSON Lines or Parquet export itself",
    }.get(kind)
    if kind == "gzip" and compressed:
        return
    if problem is not None:
        raise InputError(problem, file=str(path))


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Inputs:
    """What was read: view names for the scoring query and counts for the summary."""

    con: duckdb.DuckDBPyConnection
    leads_view: str = "leads_view"
    events_view: str | None = None
    leads: int = 0
    events: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    orphan_events: int = 0
    orphan_lead_ids: int = 0
    anonymous_events: int = 0
    #: the events' check while it waits for the scoring scan (open_files' defer_events_check)
    events_check: EventsCheck | None = None
    #: event names seen (stripped and lower-cased -> the most frequent spelling), when known
    event_names: dict[str, str] | None = None
    #: how to count them from the events file (and the file, for its errors), until they are
    _names_from: tuple[str, Path] | None = None

    def spellings(self) -> dict[str, str] | None:
        """The event names seen, counted from the events file on first use (a scan of its
        name column that a run whose rules all fired never needs); None: not counted here."""
        if self.event_names is None and self._names_from is not None:
            sql, path = self._names_from
            try:
                rows = self.con.execute(sql).fetchall()
            except duckdb.Error as e:
                raise _duck_error(path, e) from None
            self.event_names = {str(k): str(name).strip() for k, name in rows if k is not None}
            self._names_from = None
        return self.event_names


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", file=str(path))
    if path.is_dir():
        raise InputError("is a directory, not a file", file=str(path))
    if path.stat().st_size == 0:
        raise InputError("the file is empty", file=str(path))


def _columns(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> dict[str, Any]:
    """The columns and types of a file's source query; a file DuckDB cannot read is an InputError."""
    try:
        rel = con.sql(f"SELECT * FROM ({sql}) LIMIT 0")
    except duckdb.Error as e:
        raise _duck_error(path, e) from None
    return dict(zip(rel.columns, rel.types, strict=True))


def _parquet_sql(path: Path) -> str:
    """A Parquet file with ``__line``: the row's position, counted from 2 like a CSV's lines."""
    return (
        "SELECT file_row_number + 1 AS __line, * FROM "
        f"read_parquet({_lit(str(path))}, file_row_number=true)"
    )


#: words in a column's name that make it the likely column for a leadscore name
_LIKELY = {
    "lead_id": ("lead", "id"),
    "event": ("activity", "event", "action", "type"),
    "timestamp": ("time", "date", "created", "when"),
    "properties": ("propert", "detail", "attribute"),
}


def _require(cols: dict[str, Any], name: str, path: Path, what: str, key: str = "") -> None:
    """``name`` is a column of the file; else an error naming the closest column and the option
    that maps it (``key``: the events column's leadscore name; empty for the leads' id)."""
    if name in cols:
        return
    hint = ""
    names = [c for c in cols if not c.startswith("__") and c != "file_row_number"]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower().replace(" ", "_"): c for c in names}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if not close:
        words = _LIKELY.get(key or name, ())
        close = [c for c in names if any(w in c.lower() for w in words)][:1]
    if close:
        option = (
            f"--event-columns {key}={_shell(close[0])}"
            if key
            else f"--id-column {_shell(close[0])}"
        )
        hint = f"; did you mean '{close[0]}'? Pass {option}"
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    raise InputError(f"{what} need a '{name}' column (found: {shown}){hint}", file=str(path))


def _shell(name: str) -> str:
    """A column name as it is typed in a shell."""
    return name if name.replace("_", "").replace(".", "").isalnum() else "'" + name + "'"


def _duck_error(path: Path, err: Exception) -> InputError:
    msg = str(err).split("\n")[0]
    for prefix in ("Invalid Input Error: ", "IO Error: ", "Conversion Error: ", "Binder Error: "):
        msg = msg.removeprefix(prefix)
    return InputError(f"cannot be read: {msg}", file=str(path))


def _lines_sql(path: Path) -> str:
    """Each line of a text file as ``__line`` (1-based) and ``j`` (the line's text)."""
    return (
        "SELECT row_number() OVER () AS __line, j FROM read_csv("
        f"{_lit(str(path))}, columns={{'j': 'VARCHAR'}}, delim=chr(30), quote='', escape='', "
        "header=false, auto_detect=false, max_line_size=33554432)"
    )


def _csv_sql(path: Path, rejects: str) -> str:
    return (
        f"SELECT row_number() OVER () + 1 AS __line, * FROM read_csv({_lit(str(path))}, "
        f"all_varchar=true, header=true, store_rejects=true, rejects_table={_lit(rejects)}, "
        f"rejects_scan={_lit(rejects + '_scan')})"
    )


def _rejects(con: duckdb.DuckDBPyConnection, rejects: str) -> list[tuple[int, str]]:
    """The CSV rows DuckDB could not read, one per line (a row with three extra fields is one
    bad row, not three), with what is wrong; entries past the shown ones are (0, "")."""
    per_line = (
        f"SELECT line, max(column_idx) AS found, arg_max(error_message, column_idx) AS msg, "
        f"any_value(error_type) AS kind FROM {rejects} GROUP BY line"
    )
    try:
        rows = con.execute(
            f"SELECT line, found, msg, kind FROM ({per_line}) ORDER BY line LIMIT {SHOW_BAD_ROWS}"
        ).fetchall()
        total = con.execute(f"SELECT count(DISTINCT line) FROM {rejects}").fetchone()
    except duckdb.Error:
        return []
    n = total[0] if total else 0
    out = [(int(line), _reject_message(str(msg), str(kind))) for line, _, msg, kind in rows]
    return out + [(0, "")] * max(0, n - len(out))


def _reject_message(msg: str, kind: str) -> str:
    import re

    m = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", msg)
    if m and kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        want, found = int(m.group(1)), int(m.group(2))
        if kind == "TOO MANY COLUMNS":
            return (
                f"malformed CSV row: more fields than the header's {want} (a comma inside a "
                'value must be quoted: "Smith, Jones")'
            )
        return f"malformed CSV row: {found} fields, the header has {want}"
    return f"malformed CSV row ({msg.splitlines()[0]})"


def _renumber(con: duckdb.DuckDBPyConnection, table: str, rejects: str) -> None:
    """Give the rows after a rejected CSV row their line in the file: DuckDB leaves rejected
    rows out, so a row's position among the rows read is its line only before the first one."""
    try:
        con.execute(
            f"UPDATE {table} SET __line = __line + (SELECT count(*) FROM (SELECT line, "
            f"row_number() OVER (ORDER BY line) AS j FROM (SELECT DISTINCT line FROM {rejects})) r "
            f"WHERE r.line - r.j <= {table}.__line - 1)"
        )
    except duckdb.Error:
        return


class _Bad:
    """Bad rows of one file: the first few with their messages, and the total."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[tuple[int, str]] = []
        self.total = 0

    def add(self, rows: list[tuple[int, str]], total: int) -> None:
        self.rows.extend(r for r in rows if r[0])
        self.total += total

    def settle(self, inputs: Inputs, skip: bool) -> None:
        if not self.total:
            return
        shown = sorted(self.rows)[:SHOW_BAD_ROWS]
        if not skip:
            raise BadRowsError(str(self.path), shown, self.total)
        inputs.skipped[str(self.path)] = inputs.skipped.get(str(self.path), 0) + self.total


# ---------------------------------------------------------------- leads


def _renamed(cols: dict[str, Any], id_col: str, cast: bool) -> str:
    """The file's columns with ``id_col`` as ``lead_id`` (a column already named lead_id is
    dropped: the mapped one is the id)."""
    drop = [id_col] + (["lead_id"] if "lead_id" in cols and id_col != "lead_id" else [])
    idv = f"CAST({_q(id_col)} AS VARCHAR)" if cast else _q(id_col)
    return f"SELECT {idv} AS lead_id, * EXCLUDE ({', '.join(_q(c) for c in drop)})"


def _leads_source(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, bad: _Bad, id_col: str = "lead_id"
) -> int | None:
    """Materialise ``leads_src``: ``__line``, ``__bad`` (a reason or NULL), lead_id, traits.
    Returns the number of good leads when the check counted them (no repeated lead ids)."""
    good: int | None = None
    if fmt == "csv":
        src = _csv_sql(path, "leadscore_rej_leads")
        cols = _columns(con, src, path)
        _require(cols, id_col, path, "leads")
        body = f"SELECT * FROM ({src})"
        if id_col != "lead_id":
            body = f"{_renamed(cols, id_col, cast=False)} FROM ({src})"
        bad_expr = f"CASE WHEN nullif(trim(lead_id), '') IS NULL THEN {_lit('no ' + id_col)} END"
    elif fmt == "jsonl":
        id_path = _lit(json_path((id_col,)))
        bad_expr = (
            "CASE WHEN NOT json_valid(__text) THEN 'not valid JSON' "
            "WHEN json_type(CAST(__text AS JSON)) <> 'OBJECT' THEN 'not a JSON object' "
            f"WHEN nullif(trim(json_extract_string(CAST(__text AS JSON), {id_path})), '') IS NULL "
            f"THEN {_lit('no ' + id_col)} END"
        )
        body = (
            "SELECT __line, CASE WHEN json_valid(__text) THEN "
            f"json_extract_string(CAST(__text AS JSON), {id_path}) END AS lead_id, "
            "CASE WHEN json_valid(__text) THEN CAST(__text AS JSON) END AS __traits, __text FROM ("
            "SELECT __line, j AS __text FROM (" + _lines_sql(path) + ") "
            "WHERE nullif(trim(j), '') IS NOT NULL)"
        )
    else:
        src = _parquet_sql(path)
        cols = _columns(con, src, path)
        _require(cols, id_col, path, "leads")
        body = (
            f"SELECT * EXCLUDE (file_row_number) REPLACE (CAST(lead_id AS VARCHAR) AS lead_id) "
            f"FROM ({src})"
        )
        if id_col != "lead_id":
            body = (
                f"SELECT * EXCLUDE (file_row_number) FROM ({_renamed(cols, id_col, cast=True)} "
                f"FROM ({src}))"
            )
        bad_expr = f"CASE WHEN nullif(trim(lead_id), '') IS NULL THEN {_lit('no ' + id_col)} END"
    try:
        if fmt == "parquet":
            # typed and columnar: check in place and keep reading the file, unless it has bad rows
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW leads_src AS SELECT {bad_expr} AS __bad, * FROM ({body})"
            )
            row = con.execute(
                "SELECT count(*) FILTER (WHERE __bad IS NOT NULL), "
                "count(*) FILTER (WHERE __bad IS NULL) - count(DISTINCT lead_id) FILTER (WHERE __bad IS NULL), "
                "count(*) FILTER (WHERE __bad IS NULL) "
                "FROM leads_src"
            ).fetchone()
            if row is not None and (row[0] or row[1]):
                con.execute("CREATE OR REPLACE TEMP TABLE leads_tab AS SELECT * FROM leads_src")
                con.execute("CREATE OR REPLACE TEMP VIEW leads_src AS SELECT * FROM leads_tab")
                if row[1]:
                    _mark_duplicates(con, "leads_tab")
        else:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE leads_tab AS SELECT {bad_expr} AS __bad, * FROM ({body})"
            )
            if fmt == "csv":
                _renumber(con, "leads_tab", "leadscore_rej_leads")
            con.execute("CREATE OR REPLACE TEMP VIEW leads_src AS SELECT * FROM leads_tab")
            dup = con.execute(
                "SELECT count(*) - count(DISTINCT lead_id), count(*) FROM leads_tab "
                "WHERE __bad IS NULL"
            ).fetchone()
            if dup and dup[0]:
                _mark_duplicates(con, "leads_tab")
            elif dup:
                good = int(dup[1])
    except duckdb.Error as e:
        raise _duck_error(path, e) from None
    if fmt == "csv":
        rej = _rejects(con, "leadscore_rej_leads")
        bad.add(rej, len(rej))
    if fmt == "parquet" and row is not None and not (row[0] or row[1]):
        return int(row[2])  # counted above: no bad rows to list, no need to read the file again
    rows = con.execute(
        f"SELECT __line, __bad FROM leads_src WHERE __bad IS NOT NULL ORDER BY __line LIMIT {SHOW_BAD_ROWS}"
    ).fetchall()
    total = con.execute("SELECT count(*) FROM leads_src WHERE __bad IS NOT NULL").fetchone()
    bad.add([(int(a), str(b)) for a, b in rows], total[0] if total else 0)
    return good


def _mark_duplicates(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """A repeated lead_id is a bad row too: the first one wins."""
    con.execute(
        f"UPDATE {table} SET __bad = 'lead_id ' || lead_id || ' appears again (first on line ' "
        f"|| d.first || ')' FROM (SELECT lead_id AS id, min(__line) AS first FROM {table} "
        "WHERE __bad IS NULL GROUP BY lead_id HAVING count(*) > 1) d "
        f"WHERE {table}.lead_id = d.id AND {table}.__line > d.first AND __bad IS NULL"
    )


# ---------------------------------------------------------------- events

_TS_TEXT = "try_cast(try_cast(nullif(trim({c}), '') AS TIMESTAMPTZ) AS TIMESTAMP)"


def _utc_timestamp(c: str) -> str:
    """A TIMESTAMPTZ as the UTC TIMESTAMP of the same instant, from its microseconds: the same
    values as a cast, without the time zone library's per-row cost (ten times less on 4M rows).
    Infinite values, which have no microseconds, are cast."""
    return (
        f"CASE WHEN isfinite({c}) THEN make_timestamp(epoch_us({c})) "
        f"ELSE CAST({c} AS TIMESTAMP) END"
    )


def _ts_expr(col: str, dtype: Any, path: Path) -> str:
    tid = type_name(dtype)
    c = _q(col)
    if tid in ("timestamp", "timestamp_ns", "timestamp_ms", "timestamp_s", "date"):
        return f"CAST({c} AS TIMESTAMP)"
    if tid == "timestamp with time zone":
        return _utc_timestamp(c)
    if tid == "varchar":
        return _TS_TEXT.format(c=c)
    raise InputError(
        f"the timestamp column has type {dtype}; give ISO 8601 text "
        "(2026-05-01T10:00:00Z; no offset means UTC) or a timestamp",
        file=str(path),
    )


def _events_source(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, columns: Columns | None = None
) -> str:
    """SQL for the events file as ``__line, lead_id, event, ts, __ts_text, properties``."""
    c = columns or Columns()
    lid, name, stamp, prop = (c.event(k) for k in ("lead_id", "event", "timestamp", "properties"))
    if fmt == "jsonl":
        lines = (
            "SELECT __line, j, CASE WHEN json_valid(j) THEN CAST(j AS JSON) END AS d FROM ("
            + _lines_sql(path)
            + ") WHERE nullif(trim(j), '') IS NOT NULL"
        )

        def jp(key: str) -> str:
            return _lit(json_path((key,)))

        ts_text = f"json_extract_string(d, {jp(stamp)})"
        if stamp == "timestamp":
            ts_text = f"coalesce({ts_text}, json_extract_string(d, '$.ts'))"
        return (
            f"SELECT __line, json_extract_string(d, {jp(lid)}) AS lead_id, "
            f"json_extract_string(d, {jp(name)}) AS event, "
            + _TS_TEXT.format(c=ts_text)
            + f" AS ts, {ts_text} AS __ts_text, "
            f"CASE WHEN json_type(d, {jp(prop)}) = 'VARCHAR' "
            f"THEN CAST(json_extract_string(d, {jp(prop)}) AS JSON) "
            f"ELSE json_extract(d, {jp(prop)}) END AS properties, "
            "CASE WHEN d IS NULL THEN 'not valid JSON' "
            "WHEN json_type(d) <> 'OBJECT' THEN 'not a JSON object' END AS __bad0 "
            f"FROM ({lines})"
        )
    src = _csv_sql(path, "leadscore_rej_events") if fmt == "csv" else _parquet_sql(path)
    cols = _columns(con, src, path)
    for key, col in (("lead_id", lid), ("event", name), ("timestamp", stamp)):
        _require(cols, col, path, "events", key)
    if prop != "properties":
        _require(cols, prop, path, "events", "properties")
    ts = _ts_expr(stamp, cols[stamp], path)
    # the text only words the message of a bad time; a typed time is NULL only where the column
    # is (worded "no timestamp"), so no row's time is cast to text
    ts_text = _q(stamp) if type_name(cols[stamp]) == "varchar" else "CAST(NULL AS VARCHAR)"
    qp = _q(prop)
    if prop in cols:
        tid = type_name(cols[prop])
        props = qp
        if tid == "varchar":
            props = f"CASE WHEN json_valid({qp}) THEN CAST({qp} AS JSON) END"
    else:
        props = "CAST(NULL AS JSON)"
    bad0 = "NULL"
    if prop in cols and props.startswith("CASE"):
        bad0 = (
            f"CASE WHEN nullif(trim({qp}), '') IS NOT NULL AND NOT json_valid({qp}) "
            f"THEN {_lit(prop + ' is not valid JSON')} END"
        )
    return (
        f"SELECT __line, CAST({_q(lid)} AS VARCHAR) AS lead_id, CAST({_q(name)} AS VARCHAR) AS event, "
        f"{ts} AS ts, {ts_text} AS __ts_text, {props} AS properties, {bad0} AS __bad0 FROM ({src})"
    )


_EVENT_BAD = (
    "coalesce(__bad0, "
    "CASE WHEN nullif(trim(lead_id), '') IS NULL THEN 'no lead_id' "
    "WHEN nullif(trim(event), '') IS NULL THEN 'no event name' "
    "WHEN ts IS NULL AND nullif(trim(__ts_text), '') IS NULL THEN 'no timestamp' "
    "WHEN ts IS NULL THEN 'timestamp ' || to_json(__ts_text) || ' is not an ISO 8601 timestamp "
    "(write it like 2026-05-01T10:00:00Z; no offset means UTC)' END)"
)


def _open_events(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    inputs: Inputs,
    columns: Columns | None = None,
) -> None:
    """``events_src`` (every row with its ``__bad`` reason) and, until the check is done, an
    ``events_view`` over every row in which a bad row has no time (so no scoring counts it).
    The event names are counted from the name column alone when the checks of what a model
    reads ask for them (``Inputs.spellings``)."""
    src = _events_source(con, path, fmt, columns)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW events_src AS SELECT {_EVENT_BAD} AS __bad, * FROM ({src})"
    )
    # each spelling counted first (a hash of the file's few distinct names), then the most
    # frequent spelling of each normalised name: a fifth of the work of mode() over every row;
    # counted only when asked (Inputs.spellings)
    inputs._names_from = (
        "SELECT lower(trim(event)) AS k, arg_max(event, n) FROM "
        f"(SELECT event, count(*) AS n FROM ({src}) GROUP BY event) GROUP BY k",
        path,
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW events_view AS SELECT lead_id, event, "
        "CASE WHEN __bad IS NULL THEN ts END AS ts, properties, __bad FROM events_src"
    )
    inputs.events_view = "events_view"


class EventsCheck:
    """The check of an events file: every row counted, the bad ones listed by line.

    ``run()`` does it in a scan of its own. Batch scoring instead counts ``count(*)`` and
    ``count(__bad)`` in the same scan that scores the events (``events_view`` has both) and
    hands the two numbers to ``finish``: the file is read once."""

    def __init__(self, inputs: Inputs, path: Path, fmt: str, bad: _Bad, skip: bool) -> None:
        self.inputs, self.path, self.fmt, self.bad, self.skip = inputs, path, fmt, bad, skip

    def error(self, err: Exception) -> InputError:
        """A DuckDB error met while reading the events, worded for the file."""
        return _duck_error(self.path, err)

    def run(self) -> None:
        try:
            # fetchall: a CSV's rejected rows are stored when its scan is finished, which a
            # fetchone leaves pending
            (row,) = self.inputs.con.execute(
                "SELECT count(*), count(*) FILTER (WHERE __bad IS NOT NULL) FROM events_src"
            ).fetchall()
        except duckdb.Error as e:
            raise self.error(e) from None
        self.finish(int(row[0] or 0), int(row[1] or 0))

    def finish(self, total: int, n_bad: int) -> None:
        """Raise BadRowsError for bad rows (or count them as skipped); ``events_view`` is then
        the good rows alone."""
        con, inputs, bad = self.inputs.con, self.inputs, self.bad
        inputs.events_check = None
        line = "__line"
        if self.fmt == "csv":
            rej = _rejects(con, "leadscore_rej_events")
            bad.add(rej, len(rej))
            if rej:  # the file's line of a row after a rejected one (see _renumber)
                line = (
                    "__line + (SELECT count(*) FROM (SELECT line, row_number() OVER (ORDER BY line) "
                    "AS j FROM (SELECT DISTINCT line FROM leadscore_rej_events)) r "
                    "WHERE r.line - r.j <= events_src.__line - 1)"
                )
        if n_bad:
            rows = con.execute(
                f"SELECT {line} AS l, __bad FROM events_src WHERE __bad IS NOT NULL ORDER BY l "
                f"LIMIT {SHOW_BAD_ROWS}"
            ).fetchall()
            bad.add([(int(a), str(b)) for a, b in rows], n_bad)
        inputs.events = total - n_bad
        where = "WHERE __bad IS NULL" if n_bad else ""
        con.execute(
            "CREATE OR REPLACE TEMP VIEW events_view AS "
            f"SELECT lead_id, event, ts, properties FROM events_src {where}"
        )
        bad.settle(inputs, self.skip)


def open_files(
    con: duckdb.DuckDBPyConnection,
    leads: Path,
    events: Path | None = None,
    *,
    leads_format: str | None = None,
    events_format: str | None = None,
    skip_bad_rows: bool = False,
    defer_events_check: bool = False,
    columns: Columns | None = None,
) -> Inputs:
    """Read a leads file and (optionally) an events file into ``leads_view`` / ``events_view``.

    Raises InputError for a file that cannot be read at all, and BadRowsError listing file:line
    for rows that cannot be read unless ``skip_bad_rows`` (then they are counted in
    ``Inputs.skipped``). With ``defer_events_check`` the events are checked by the caller's own
    scan of them: ``Inputs.events_check`` (see EventsCheck) until it is done.
    """
    inputs = Inputs(con)
    _check_file(leads)
    lf = leads_format or detect_format(leads)
    check_content(leads, lf)
    lbad = _Bad(leads)
    good = _leads_source(con, leads, lf, lbad, (columns or Columns()).lead_id)
    lbad.settle(inputs, skip_bad_rows)
    drop = "__bad, __line" + (", __text" if lf == "jsonl" else "")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW leads_view AS SELECT * EXCLUDE ({drop}) FROM leads_src "
        "WHERE __bad IS NULL"
    )
    if good is None:
        n = con.execute("SELECT count(*) FROM leads_view").fetchone()
        good = int(n[0]) if n else 0
    inputs.leads = good
    if inputs.leads == 0 and not inputs.skipped:
        raise InputError("has no leads (only a header?)", file=str(leads))
    if events is not None:
        _check_file(events)
        ef = events_format or detect_format(events)
        check_content(events, ef)
        _open_events(con, events, ef, inputs, columns)
        inputs.events_check = EventsCheck(inputs, events, ef, _Bad(events), skip_bad_rows)
        if not defer_events_check:
            inputs.events_check.run()
    return inputs
