"""Segment-spec messages (identify / group / track / page / screen / alias as JSON Lines) as
leads and events, by the rules of :mod:`leadscore.engine.segment` (the live service takes the
same messages by the same rules).

Every message is checked in Python; messages are taken by their time, then their line, for
identity links and traits. Scored events are then handed to DuckDB as one table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import orjson

from ..engine.segment import Call, Identities, SegmentError, merge_traits, read_call
from ..errors import InputError
from .files import Inputs, _Bad, _leads_source, _lit

__all__ = ["open_segment", "read_segment"]


def read_segment(path: Path, bad: _Bad) -> list[tuple[int, Call]]:
    """Every good message of the file with its line number; bad lines go to ``bad``."""
    calls: list[tuple[int, Call]] = []
    rows: list[tuple[int, str]] = []
    try:
        f = path.open("rb")
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror}", file=str(path)) from None
    with f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                msg = orjson.loads(text)
            except orjson.JSONDecodeError:
                try:  # orjson refuses NaN and big integers that json takes
                    msg = json.loads(text)
                except ValueError:
                    rows.append((line, "not valid JSON"))
                    continue
            try:
                calls.append((line, read_call(msg)))
            except SegmentError as e:
                rows.append((line, str(e)))
    bad.add(rows, len(rows))
    return calls


def open_segment(
    con: duckdb.DuckDBPyConnection, path: Path, inputs: Inputs, skip_bad_rows: bool
) -> None:
    bad = _Bad(path)
    calls = read_segment(path, bad)
    bad.settle(inputs, skip_bad_rows)

    # identity links and traits, message by message in time order
    ids = Identities()
    leads: dict[str, dict[str, Any]] = {}
    for _, call in sorted(calls, key=lambda c: (c[1].ts_us, c[0])):
        lead = ids.take(call)
        if lead is None:
            continue
        traits = leads.setdefault(lead, {})
        merge_traits(traits, call)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as tmp:
        for lead, traits in leads.items():
            tmp.write(json.dumps({**traits, "lead_id": lead}, ensure_ascii=False, default=str))
            tmp.write("\n")
        tmp_path = Path(tmp.name)
    try:
        _leads_source(con, tmp_path, "jsonl", _Bad(tmp_path))
    finally:
        tmp_path.unlink(missing_ok=True)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW leads_view AS SELECT * EXCLUDE (__bad, __line, __text) FROM leads_src"
    )
    inputs.leads = len(leads)

    # scored events: an anonymous id's events join the lead it is linked to at any time
    scored = anonymous = 0
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as tmp:
        for _, call in calls:
            if call.event is None:
                continue
            lead = call.user_id or (ids.links.get(call.anonymous_id) if call.anonymous_id else None)
            if lead is None:
                anonymous += 1
                continue
            scored += 1
            props = call.properties
            tmp.write(
                orjson.dumps(
                    {
                        "lead_id": lead,
                        "event": call.event,
                        "ts_us": call.ts_us,
                        "properties": _encode(props) if props is not None else None,
                    }
                )
                + b"\n"
            )
        ev_path = Path(tmp.name)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE segment_events AS SELECT lead_id, event, "
            "make_timestamp(ts_us) AS ts, CAST(properties AS JSON) AS properties FROM read_json("
            f"{_lit(str(ev_path))}, format='newline_delimited', columns={{'lead_id': 'VARCHAR', "
            "'event': 'VARCHAR', 'ts_us': 'BIGINT', 'properties': 'VARCHAR'})"
        )
    finally:
        ev_path.unlink(missing_ok=True)
    con.execute("CREATE OR REPLACE TEMP VIEW events_view AS SELECT * FROM segment_events")
    inputs.events, inputs.anonymous_events = scored, anonymous
    inputs.events_view = "events_view"


def _encode(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(v, ensure_ascii=False, default=str)
