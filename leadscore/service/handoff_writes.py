"""The handoff's writes at MQL time, straight to the driver: episodes, assignments, round robin
and outbox rows for every MQL a call makes. A call that makes one MQL pays for its handoff
mostly in per-statement overhead, which the driver's own cursor keeps to a few microseconds
(the same reason ``events.events_for`` reads events this way)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..store import schema as t
from .prepared import Prepared

__all__ = [
    "EPISODE_COLUMNS",
    "insert_assignments",
    "insert_episodes",
    "insert_outbox",
    "save_round_robin",
]

EPISODE_COLUMNS = (
    "lead_id",
    "mql_at_us",
    "track",
    "grade",
    "score",
    "source",
    "campaign",
    "stage",
    "owner",
    "team",
    "assigned_at_us",
    "sla_name",
    "sla_due_at_us",
)
_ASSIGNMENT_COLUMNS = (
    "lead_id",
    "episode_id",
    "owner",
    "team",
    "rule",
    "kind",
    "routing_version",
    "decision",
    "at_us",
    "by",
)
_OUTBOX_COLUMNS = ("webhook_id", "event", "payload", "created_at_us", "next_attempt_us")


def _cursor(conn: Connection) -> tuple[Any, str]:
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    return conn.connection.driver_connection.cursor(), mark  # type: ignore[union-attr]


def _names(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, the statements sent inside go to the server in one round trip (psycopg's
    pipeline mode); on SQLite, which has no round trips, nothing changes. Inside a pipeline
    opened already (an ingest's last writes, ``prepared.sent_together``) they join it: a
    pipeline opened inside another waits for what was sent before it as it begins, and for its
    own statements as it ends, two round trips more."""
    if conn.dialect.name != "postgresql":
        yield
        return
    driver: Any = conn.connection.driver_connection
    if driver.pgconn.pipeline_status:  # on (1) or aborted (2): one is open
        yield
        return
    with driver.pipeline():
        yield


def insert_episodes(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert MQL episodes (a lead gets at most one in a transaction): on PostgreSQL one
    statement over all the rows (``Prepared``: an ingest making seven MQLs sent seven INSERTs,
    each a message of its own to the server)."""
    _INSERT_EPISODES.run(conn, rows)


_INSERT_EPISODES = Prepared(sa.insert(t.mql_episodes), EPISODE_COLUMNS)


def insert_assignments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert assignment rows (``decision`` as JSON text) of episodes opened in this
    transaction: each row's ``episode_id`` is its lead's latest episode."""
    cur, mark = _cursor(conn)
    columns = [c for c in _ASSIGNMENT_COLUMNS if c != "episode_id"]
    values = [
        f"CAST({mark} AS JSONB)" if c == "decision" and mark == "%s" else mark for c in columns
    ]
    episode = f"(SELECT MAX(id) FROM mql_episodes WHERE lead_id = {mark})"
    try:
        cur.executemany(
            f"INSERT INTO assignments ({_names((*columns, 'episode_id'))}) "
            f"VALUES ({', '.join(values)}, {episode})",
            [(*(r[c] for c in columns), r["lead_id"]) for r in rows],
        )
    finally:
        cur.close()


def insert_outbox(conn: Connection, rows: list[dict[str, Any]]) -> None:
    cur, mark = _cursor(conn)
    try:
        cur.executemany(
            f"INSERT INTO outbox ({_names(_OUTBOX_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_OUTBOX_COLUMNS))})",
            [tuple(r[c] for c in _OUTBOX_COLUMNS) for r in rows],
        )
    finally:
        cur.close()


def save_round_robin(
    conn: Connection, at_us: int, known: dict[str, str | None], new: dict[str, str | None]
) -> None:
    """Teams' new round-robin positions: ``known`` ones have a row, ``new`` ones get one."""
    cur, mark = _cursor(conn)
    try:
        if known:
            cur.executemany(
                f"UPDATE round_robin SET last_member = {mark}, updated_at_us = {mark} "
                f"WHERE team = {mark}",
                [(member, at_us, team) for team, member in known.items()],
            )
        if new:
            cur.executemany(
                "INSERT INTO round_robin (team, last_member, updated_at_us) "
                f"VALUES ({mark}, {mark}, {mark})",
                [(team, member, at_us) for team, member in new.items()],
            )
    finally:
        cur.close()
