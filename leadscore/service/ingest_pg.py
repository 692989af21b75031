"""The ingest path's batch statements on PostgreSQL, written for it.

Each one takes a whole request's rows as one array per column (``unnest``): one statement and
one round trip per request where ``executemany`` would bind and run one per row, with SQL text
that never changes, so that psycopg prepares it once per connection. The values are adapted
here, as SQLAlchemy would: JSON serialised with orjson (``common.dumps``) and sent as text to a
``::jsonb`` cast, floats as floats, booleans as booleans. Errors come out as SQLAlchemy's
(``prepared.run_sql``).

SQLite keeps its ``Prepared`` statements (``ingest``): it has no arrays, and its driver takes
rows as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from .common import dumps
from .prepared import run_sql

__all__ = [
    "INSERT_LEADS",
    "UPDATE_SCORES",
    "UPDATE_TRAITS",
    "Unnest",
    "identities",
    "insert_events",
    "lead_state",
]

#: a column's kind in a batch: a PostgreSQL type for its array, or ``json`` (a value serialised
#: here) or ``json_text`` (JSON text already), both stored through a ``::jsonb`` cast
Column = tuple[str, str]


class Unnest:
    """A statement over a batch of rows given as arrays. ``sql`` names the rows ``u`` with
    ``{rows}`` (``unnest(...) AS u(columns)``) and their values with ``{values}`` (each
    column in order, cast where it is JSON)."""

    def __init__(self, sql: str, columns: Sequence[Column], *, returns: bool = False) -> None:
        self.columns = list(columns)
        self.returns = returns
        arrays = ", ".join(f"%({n})s::{_array_type(k)}[]" for n, k in self.columns)
        names = ", ".join(n for n, _ in self.columns)
        values = ", ".join(
            f"u.{n}::jsonb" if k.startswith("json") else f"u.{n}" for n, k in columns
        )
        self.sql = sql.format(rows=f"unnest({arrays}) AS u({names})", values=values)

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> Any:
        """The statement over ``rows`` in the caller's transaction: the rows it returns
        (``returns``), else how many it changed."""
        if not rows:
            return [] if self.returns else 0
        params = {n: _array(rows, n, k) for n, k in self.columns}
        return run_sql(conn, self.sql, params, fetch=self.returns)


def _array_type(kind: str) -> str:
    return "text" if kind.startswith("json") else kind


def _array(rows: Sequence[dict[str, Any]], name: str, kind: str) -> list[Any]:
    values = [r[name] for r in rows]
    if kind == "json":  # as the jsonb type with none_as_null: None is SQL NULL
        return [None if v is None else dumps(v) for v in values]
    if kind == "float8":  # an integer score is a float column's value too
        return [None if v is None else float(v) for v in values]
    if kind == "boolean":
        return [None if v is None else bool(v) for v in values]
    return values


_EVENT_COLUMNS: list[Column] = [
    ("message_id", "text"),
    ("type", "text"),
    ("lead_id", "text"),
    ("anonymous_id", "text"),
    ("event", "text"),
    ("ts_us", "bigint"),
    ("received_at_us", "bigint"),
    ("properties", "json_text"),
    ("message", "json_text"),
]
_INSERT_EVENTS = Unnest(
    "INSERT INTO events (" + ", ".join(n for n, _ in _EVENT_COLUMNS) + ") "
    "SELECT {values} FROM {rows} "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
    _EVENT_COLUMNS,
    returns=True,
)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Stores the rows (their JSON as text) whose messageId is new; returns those ids. Two
    processes storing one id at once: the unique index lets one in, the other skips it."""
    return {x for (x,) in _INSERT_EVENTS.run(conn, rows)}


_LEAD_STATE = (
    "SELECT lead_id, traits::text, stage, rule_sums::text, scored_at_us, rescore_at_us "
    "FROM leads WHERE lead_id = ANY(%(ids)s::text[])"
)


def lead_state(conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Lead, traits (JSON text), stage, rule sums (JSON text), scored at, rescore at: of the
    leads of ``ids`` that exist, in one read."""
    return run_sql(conn, _LEAD_STATE, {"ids": list(ids)})  # type: ignore[no-any-return]


_IDENTITIES = (
    "SELECT anonymous_id, lead_id FROM identities WHERE anonymous_id = ANY(%(ids)s::text[])"
)


def identities(conn: Connection, anonymous: Sequence[str]) -> list[tuple[str, str]]:
    """(anonymous id, lead) of the anonymous ids that are linked."""
    return run_sql(conn, _IDENTITIES, {"ids": list(anonymous)})  # type: ignore[no-any-return]


INSERT_LEADS = Unnest(
    "INSERT INTO leads (lead_id, traits, created_at_us, updated_at_us) SELECT {values} FROM {rows}",
    [
        ("lead_id", "text"),
        ("traits", "json"),
        ("created_at_us", "bigint"),
        ("updated_at_us", "bigint"),
    ],
)
UPDATE_TRAITS = Unnest(
    "UPDATE leads SET traits = u.traits::jsonb, email_domain = u.email_domain, "
    "updated_at_us = u.updated_at_us FROM {rows} WHERE leads.lead_id = u.b_id",
    [("b_id", "text"), ("traits", "json"), ("email_domain", "text"), ("updated_at_us", "bigint")],
)
_SCORE_COLUMNS: list[Column] = [
    ("fit", "float8"),
    ("engagement", "float8"),
    ("score", "float8"),
    ("grade", "text"),
    ("mql", "boolean"),
    ("fast_track", "boolean"),
    ("rule_sums", "json"),
    ("scored_at_us", "bigint"),
    ("model_version", "integer"),
    ("rescore_at_us", "bigint"),
    ("updated_at_us", "bigint"),
]
UPDATE_SCORES = Unnest(
    "UPDATE leads SET "
    + ", ".join(f"{n} = u.{n}::jsonb" if k == "json" else f"{n} = u.{n}" for n, k in _SCORE_COLUMNS)
    + " FROM {rows} WHERE leads.lead_id = u.b_id",
    [("b_id", "text"), *_SCORE_COLUMNS],
)
