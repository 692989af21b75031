"""ids compared byte by byte on PostgreSQL (``COLLATE "C"``), as SQLite compares them

A lead's id, an anonymous id and a messageId are names, not words, yet PostgreSQL compared them
in the database's locale: every step down an index on them (the messageId's unique index and
``ix_events_lead_ts`` for each event stored, the leads' key for each lead read and updated) went
through the C library's ``strcoll`` on copies of both strings. Compared byte by byte they order
as SQLite orders them (and as ``C.UTF-8`` does), and equal ids are equal either way: on the
benchmark's traffic the events INSERT and the score UPDATE each cost PostgreSQL about a fifth
less. Every column holding one of these ids takes the collation, so that a join between two of
them compares them alike and may use either side's index.

Only the collation changes: PostgreSQL rebuilds the indexes on these columns and leaves the rows
as they are (no table is rewritten). SQLite is unchanged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: table: its columns that hold a lead's id, an anonymous id or a messageId
IDS = {
    "leads": ("lead_id",),
    "events": ("message_id", "lead_id", "anonymous_id"),
    "identities": ("anonymous_id", "lead_id"),
    "stage_history": ("lead_id",),
    "assignments": ("lead_id",),
    "touches": ("lead_id",),
    "mql_episodes": ("lead_id",),
}


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in IDS.items():
        changes = ", ".join(
            f'ALTER COLUMN {c} TYPE varchar(255) COLLATE "{collation}"' for c in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
