"""The ingest path's batch statements on PostgreSQL, written for it.

Each one takes a whole request's rows as one JSON array (``json_to_recordset``): one
statement, one parameter and one round trip per request where ``executemany`` would bind and
run one statement per row, with SQL text that never changes, so that psycopg prepares it once
per connection. orjson writes the array in one call (JSON already written, like a message's
text, goes in as it is: ``orjson.Fragment``); PostgreSQL reads each column as the type the
statement names, JSON columns as jsonb, so nothing is serialised twice. A JSON ``null`` is SQL
NULL, as the jsonb columns' ``none_as_null`` has it. Errors come out as SQLAlchemy's
(``prepared.run_sql``).

Turning the rows into PostgreSQL arrays (``unnest``) was tried first: psycopg's array dumper
is Python, element by element, and took more than a third of the server's CPU per request.

SQLite keeps its ``Prepared`` statements (``ingest``): it has no such function in every
build, and its driver takes rows as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from .common import dumps
from .prepared import run_sql

__all__ = [
    "IDS",
    "INSERT_LEADS",
    "UPDATE_SCORES",
    "UPDATE_TRAITS",
    "Recordset",
    "identities",
    "insert_events",
    "lead_state",
]

#: ids given as one JSON array, ``%(ids)s`` (a Python list would be written element by element)
IDS = "ARRAY(SELECT json_array_elements_text(%(ids)s::json))"

#: a column of a batch: name and PostgreSQL type (``jsonb``: any JSON value, or a Fragment)
Column = tuple[str, str]


class Recordset:
    """A statement over a batch of rows sent as one JSON array. ``sql`` names the rows ``u``
    with ``{rows}`` (``json_to_recordset(...) AS u(columns)``) and their values, each column
    in order, with ``{values}``. A row may hold more keys than the columns: they are ignored."""

    def __init__(self, sql: str, columns: Sequence[Column], *, returns: bool = False) -> None:
        self.columns = list(columns)
        self.returns = returns
        typed = ", ".join(f"{n} {k}" for n, k in self.columns)
        values = ", ".join(f"u.{n}" for n, _ in self.columns)
        self.sql = sql.format(
            rows=f"json_to_recordset(%(rows)s::json) AS u({typed})", values=values
        )

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> Any:
        """The statement over ``rows`` in the caller's transaction: the rows it returns
        (``returns``), else how many it changed."""
        if not rows:
            return [] if self.returns else 0
        return run_sql(conn, self.sql, {"rows": dumps(rows)}, fetch=self.returns)


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


INSERT_LEADS = Recordset(
    "INSERT INTO leads (lead_id, traits, created_at_us, updated_at_us) SELECT {values} FROM {rows}",
    [
        ("lead_id", "text"),
        ("traits", "jsonb"),
        ("created_at_us", "bigint"),
        ("updated_at_us", "bigint"),
    ],
)
UPDATE_TRAITS = Recordset(
    "UPDATE leads SET traits = u.traits, email_domain = u.email_domain, "
    "updated_at_us = u.updated_at_us FROM {rows} WHERE leads.lead_id = u.b_id",
    [("b_id", "text"), ("traits", "jsonb"), ("email_domain", "text"), ("updated_at_us", "bigint")],
)
_SCORE_COLUMNS: list[Column] = [
    ("fit", "float8"),
    ("engagement", "float8"),
    ("score", "float8"),
    ("grade", "text"),
    ("mql", "boolean"),
    ("fast_track", "boolean"),
    ("rule_sums", "jsonb"),
    ("scored_at_us", "bigint"),
    ("model_version", "integer"),
    ("rescore_at_us", "bigint"),
    ("updated_at_us", "bigint"),
]
UPDATE_SCORES = Recordset(
    "UPDATE leads SET "
    + ", ".join(f"{n} = u.{n}" for n, _ in _SCORE_COLUMNS)
    + " FROM {rows} WHERE leads.lead_id = u.b_id",
    [("b_id", "text"), *_SCORE_COLUMNS],
)
