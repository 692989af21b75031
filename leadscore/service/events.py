"""Reading a lead's scored events back from the store, as the engine's Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ..engine import Event
from .common import dumps, loads
from .ingest_pg import IDS, id_array
from .prepared import run_sql

__all__ = ["event_from_row", "events_for", "events_of"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _StoredEvent(Event):
    """An event read back from the store: its properties are parsed only if a rule reads them."""

    __slots__ = ("_raw",)
    _raw: Any

    @property
    def properties(self) -> Any:  # type: ignore[override]
        raw = self._raw
        if not isinstance(raw, dict):
            raw = self._raw = loads(raw) or {}
        return raw

    @property
    def timestamp(self) -> datetime:  # type: ignore[override]
        """Made when read: scoring reads ``ts_us`` alone."""
        return _EPOCH + timedelta(microseconds=self.ts_us)


def event_from_row(name: str, ts_us: int, props: Any) -> Event:
    """An Event from a stored row, without re-parsing its timestamp."""
    ev = _StoredEvent.__new__(_StoredEvent)
    ev.name = name
    ev.key = name.strip(" \t\n\r\f\v").lower()
    ev.ts_us = ts_us
    ev._raw = props
    return ev


def events_for(
    conn: Connection,
    window: int | None,
    ids: list[str],
    at: int,
    hide: frozenset[str] | set[str] = frozenset(),
) -> dict[str, list[Event]]:
    """Every scored event of these leads that can count at ``at`` or later, in one query, in
    the order they were stored: of several messages at one instant, the one that made a lead an
    MQL is the first received, whatever order the database would read them in;
    ``window`` is the model's (``engine.window_us``), and the engine applies it itself.
    ``hide``: messageIds left out (PostgreSQL: a group's later requests', stored already)."""
    if not ids:
        return {}
    since = -(2**62)
    if window is not None:
        since = at - window
    out: dict[str, list[Event]] = {}
    # straight to the driver: this is the hot read of the ingest path
    if conn.dialect.name == "postgresql" and hide:
        rows = run_sql(
            conn, _EVENTS_PG_HIDE, {"ids": dumps(ids), "since": since, "hide": dumps(sorted(hide))}
        )
    elif conn.dialect.name == "postgresql":  # one text, whatever the number of leads: prepared
        rows = run_sql(conn, _EVENTS_PG, {"ids": dumps(ids), "since": since})
    else:
        rows = run_sql(
            conn,
            "SELECT lead_id, event, ts_us, properties FROM events WHERE lead_id IN ("
            + ", ".join(["?"] * len(ids))
            + ") AND event IS NOT NULL AND ts_us >= ? ORDER BY id",
            (*ids, since),
        )
    for lead, name, ts_us, props in rows:
        out.setdefault(lead, []).append(event_from_row(name, ts_us, props))
    return out


_EVENTS_PG_WHERE = (
    "SELECT lead_id, event, ts_us, properties::text FROM events "
    f"WHERE lead_id = ANY({IDS}) AND event IS NOT NULL AND ts_us >= %(since)s"
)
_EVENTS_PG = f"{_EVENTS_PG_WHERE} ORDER BY id"
_EVENTS_PG_HIDE = f"{_EVENTS_PG_WHERE} AND message_id <> ALL({id_array('hide')}) ORDER BY id"


def events_of(conn: Connection, window: int | None, lead: str, at: int) -> list[Event]:
    return events_for(conn, window, [lead], at).get(lead, [])
