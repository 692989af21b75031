"""Reading leads and events for batch scoring (see docs/inputs.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import ConfigError
from .columns import Columns, parse_event_columns
from .files import FORMATS, Inputs, connect, detect_format, open_files

__all__ = [
    "FORMATS",
    "Columns",
    "Inputs",
    "connect",
    "detect_format",
    "open_inputs",
    "parse_event_columns",
]


def open_inputs(
    leads: Path | None,
    events: Path | None = None,
    *,
    segment: Path | None = None,
    skip_bad_rows: bool = False,
    leads_format: str | None = None,
    events_format: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    defer_events_check: bool = False,
    columns: Columns | None = None,
) -> Inputs:
    """Leads and events from files, or from one file of Segment messages. With
    ``defer_events_check`` an events file is checked by the caller's scan (``Inputs.events_check``)."""
    con = con or connect()
    if segment is not None:
        if leads is not None or events is not None:
            raise ConfigError("give either --segment or --leads/--events, not both")
        if columns is not None and not columns.is_default:
            raise ConfigError(
                "--id-column and --event-columns name the columns of --leads/--events files; "
                "Segment messages always use userId"
            )
        from .files import _check_file, check_content
        from .segment import open_segment  # orjson and the Segment reader only for Segment files

        _check_file(segment)
        check_content(segment, "jsonl")
        inputs = Inputs(con)
        open_segment(con, segment, inputs, skip_bad_rows)
        return inputs
    if leads is None:
        raise ConfigError("give the leads file with --leads (and the events with --events)")
    return open_files(
        con,
        leads,
        events,
        leads_format=leads_format,
        events_format=events_format,
        skip_bad_rows=skip_bad_rows,
        defer_events_check=defer_events_check,
        columns=columns,
    )
