"""an event's message as received, as json on PostgreSQL, not jsonb

``events.message`` keeps each message as it was received, for audit and replay; nothing reads it
in SQL (scoring and the SQL engine read ``properties``, which stays jsonb). As jsonb, PostgreSQL
built each message's tree, with its keys sorted and its numbers turned into decimals, for every
event stored: on the benchmark's traffic about a quarter of the events INSERT's time. As json
it is checked and kept as written (orjson's text), and it takes a little less room.

The upgrade rewrites the events table, with its indexes, while it holds it locked: about 11 s
per million events on a small shared machine (2 cores), so a few minutes per ten million, in
which ingest waits. Upgrade at a quiet time. SQLite keeps it as text, as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN message TYPE json USING message::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN message TYPE jsonb USING message::jsonb")
