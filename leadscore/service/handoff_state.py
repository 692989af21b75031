"""What routing needs to know before it decides, read in one round trip: the reps away, each
team's round-robin position, the open MQLs of capped teams' members, the webhooks subscribed to
each event, and the owners of the company domains among the transaction's leads.

A call that makes one MQL pays for its handoff mostly in round trips to the database, so the
reads are one statement (a UNION ALL of small selects), sent straight to the driver."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Connection

from ..handoff import RepState

__all__ = ["HandoffState", "read_state"]


@dataclass
class HandoffState:
    away: dict[str, RepState] = field(default_factory=dict)
    last_member: dict[str, str | None] = field(default_factory=dict)
    open_mqls: dict[str, int] = field(default_factory=dict)
    #: event -> the webhooks subscribed to it
    hooks: dict[str, list[int]] = field(default_factory=dict)
    #: domain -> its two most recently assigned owned leads, as (lead_id, owner)
    accounts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def read_state(
    conn: Connection, members: list[str], domains: list[str], open_stages: tuple[str, ...]
) -> HandoffState:
    """The state, for ``members`` (of teams with a cap) and ``domains`` (company domains)."""
    mark = "%s" if conn.dialect.name == "postgresql" else "?"

    def marks(n: int) -> str:
        return ", ".join([mark] * n)

    text, big = "CAST(NULL AS VARCHAR(255))", "CAST(NULL AS BIGINT)"
    parts = [
        f"SELECT 'away' AS k, email AS a, back_at_us AS n, {text} AS b, {text} AS c "
        "FROM reps WHERE away",
        f"SELECT 'rr', team, {big}, last_member, {text} FROM round_robin",
        f"SELECT 'hook', events, CAST(id AS BIGINT), {text}, {text} FROM webhooks WHERE active",
    ]
    params: list[object] = []
    if members:
        parts.append(
            f"SELECT 'open', owner, CAST(COUNT(*) AS BIGINT), {text}, {text} FROM leads "
            f"WHERE owner IN ({marks(len(members))}) AND stage IN ({marks(len(open_stages))}) "
            "GROUP BY owner"
        )
        params += [*members, *open_stages]
    if domains:
        # an import's batch may hold thousands of domains: on SQLite one JSON parameter, as
        # SQLite before 3.32 binds at most 999 values
        listed = marks(len(domains)) if mark == "%s" else "SELECT value FROM json_each(?)"
        parts.append(
            "SELECT 'acct', email_domain, CAST(n AS BIGINT), owner, lead_id FROM ("
            "SELECT email_domain, lead_id, owner, ROW_NUMBER() OVER ("
            "PARTITION BY email_domain ORDER BY assigned_at_us DESC, lead_id) AS n "
            f"FROM leads WHERE owner IS NOT NULL AND email_domain IN ({listed})"
            ") ranked WHERE n <= 2"
        )
        params += domains if mark == "%s" else [json.dumps(domains)]
    state = HandoffState()
    accounts: list[tuple[str, int, str, str]] = []
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(" UNION ALL ".join(parts), tuple(params))
        rows = cur.fetchall()
    finally:
        cur.close()
    for kind, a, n, b, c in rows:
        if kind == "away":
            state.away[a] = RepState(away=True, back_at_us=n)
        elif kind == "rr":
            state.last_member[a] = b
        elif kind == "hook":
            for event in a.split(","):
                state.hooks.setdefault(event, []).append(int(n))
        elif kind == "open":
            state.open_mqls[a] = int(n)
        else:
            accounts.append((a, int(n), c, b))
    for domain, _n, lead_id, owner in sorted(accounts):
        state.accounts.setdefault(domain, []).append((lead_id, owner))
    return state
