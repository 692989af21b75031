"""The ingest path's statements on PostgreSQL that SQLAlchemy's constructs do not say as
cheaply: storing a request's events (new messageIds only, returning them) and the reads of the
leads, links and events it touches.

The events go as one JSON array (``json_to_recordset``): one statement, one parameter and one
round trip per request, with SQL text that never changes, so that psycopg prepares it once per
connection. orjson writes the array in one call, and JSON already written (a message's text)
goes in as it is (``fragment``); PostgreSQL reads each column as the type the statement names,
the JSON ones as jsonb. Lists of ids go as one JSON array too. The plain INSERTs and UPDATEs of
the path take the same form through ``Prepared`` (``prepared.py``). Errors come out as
SQLAlchemy's (``prepared.run_sql``).

Turning the rows into PostgreSQL arrays (``unnest``) was tried first: psycopg writes a Python
list as an array element by element, in Python, which took more than a third of the server's
CPU per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from .common import dumps
from .prepared import Column, json_rows, run_sql

__all__ = [
    "IDS",
    "Column",
    "Recordset",
    "fragment",
    "id_array",
    "identities",
    "insert_events",
    "lead_state",
    "store_lock_read",
]


def id_array(param: str) -> str:
    """A text array of ids given as one JSON array in the parameter ``param`` (a Python list
    would be written element by element)."""
    return f"ARRAY(SELECT json_array_elements_text(%({param})s::json))"


#: ids given as one JSON array, ``%(ids)s``
IDS = id_array("ids")


class Recordset:
    """A statement over a batch of rows sent as one JSON array. ``sql`` names the rows ``u``
    with ``{rows}`` (``json_to_recordset(...) AS u(columns)``) and their values, each column
    in order, with ``{values}``. A row may hold more keys than the columns: they are ignored."""

    def __init__(self, sql: str, columns: Sequence[Column], *, returns: bool = False) -> None:
        self.columns = list(columns)
        self.returns = returns
        values = ", ".join(f"u.{n}" for n, _ in self.columns)
        self.sql = sql.format(rows=json_rows(self.columns), values=values)

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> Any:
        """The statement over ``rows`` in the caller's transaction: the rows it returns
        (``returns``), else how many it changed."""
        if not rows:
            return [] if self.returns else 0
        # orjson alone: its fallback (the standard library's) would not write a Fragment
        batch = orjson.dumps(rows).decode()
        return run_sql(conn, self.sql, {"rows": batch}, fetch=self.returns)


def fragment(text: str | None) -> orjson.Fragment | None:
    """JSON text, to go into a batch as the value it writes."""
    return None if text is None else orjson.Fragment(text)


_EVENT_COLUMNS: list[Column] = [
    ("message_id", "text"),
    ("type", "text"),
    ("lead_id", "text"),
    ("anonymous_id", "text"),
    ("event", "text"),
    ("ts_us", "bigint"),
    ("received_at_us", "bigint"),
    ("properties", "jsonb"),
    ("message", "jsonb"),
]
_INSERT_EVENTS = Recordset(
    "INSERT INTO events (" + ", ".join(n for n, _ in _EVENT_COLUMNS) + ") "
    "SELECT {values} FROM {rows} "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
    _EVENT_COLUMNS,
    returns=True,
)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Stores the rows (JSON as values or ``fragment``s) whose messageId is new; returns those
    ids. Two processes storing one id at once: the unique index lets one in, the other skips
    it."""
    return {x for (x,) in _INSERT_EVENTS.run(conn, rows)}


_LEAD_STATE = (
    "SELECT lead_id, traits::text, stage, rule_sums::text, scored_at_us, rescore_at_us "
    f"FROM leads WHERE lead_id = ANY({IDS})"
)


def lead_state(conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Lead, traits (JSON text), stage, rule sums (JSON text), scored at, rescore at: of the
    leads of ``ids`` that exist, in one read."""
    return run_sql(conn, _LEAD_STATE, {"ids": dumps(list(ids))})  # type: ignore[no-any-return]


_IDENTITIES = f"SELECT anonymous_id, lead_id FROM identities WHERE anonymous_id = ANY({IDS})"


def identities(conn: Connection, anonymous: Sequence[str]) -> list[tuple[str, str]]:
    """(anonymous id, lead) of the anonymous ids that are linked."""
    return run_sql(conn, _IDENTITIES, {"ids": dumps(list(anonymous))})  # type: ignore[no-any-return]


def store_lock_read(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    lock: tuple[str, dict[str, object]] | None,
    ids: Sequence[str],
) -> tuple[set[str], list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Four statements in one round trip (psycopg's pipeline mode), run one after the other:
    store the events ``rows`` (``insert_events``), take the locks (``lock``: a statement and its
    parameters, ``locks.ingest_locks``), read the state of the leads ``ids`` (``lead_state``,
    its snapshot taken once the locks are held) and the active webhooks (id, events), which a
    new MQL notifies: read here, they cost no round trip of their own while the leads are held.
    Returns the new messageIds, the lock statement's rows, the leads' rows and the webhooks'.
    A driver's error comes out as SQLAlchemy's."""
    driver = conn.connection.driver_connection
    dbapi_error = conn.dialect.loaded_dbapi.Error
    sent: list[Any] = []
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            for sql, params in (
                (_INSERT_EVENTS.sql, {"rows": orjson.dumps(rows).decode()} if rows else None),
                lock or (None, None),
                (_LEAD_STATE, {"ids": dumps(list(ids))} if ids else None),
                (_ACTIVE_HOOKS, {}),
            ):
                if params is None:
                    sent.append(None)
                    continue
                cur = driver.cursor()  # type: ignore[union-attr]
                sent.append(cur)
                cur.execute(sql, params)
        stored, locked, leads, hooks = (cur.fetchall() if cur is not None else [] for cur in sent)
    except dbapi_error as e:
        raise DBAPIError.instance(None, None, e, dbapi_error) from e
    finally:
        for cur in sent:
            if cur is not None:
                cur.close()
    return {x for (x,) in stored}, locked, leads, hooks


_ACTIVE_HOOKS = "SELECT id, events FROM webhooks WHERE active"
