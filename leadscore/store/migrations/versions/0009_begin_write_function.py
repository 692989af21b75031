"""a write transaction's first statement as a function on PostgreSQL, its plans kept

Every write transaction on PostgreSQL begins by taking the writes lock and then reading the
active model and routing versions (``service.locks.begin_write``). Sent as plain SQL, PostgreSQL
parsed and planned the two ``MAX`` reads anew each time: that first query and its COMMIT cost
110–260 µs of its CPU per transaction, 55–76 µs as the function (one backend, measured alone),
on every ingest request. A PL/pgSQL function
keeps the plans of its statements for the life of the connection, and each statement in it
still reads with a snapshot of its own (the function is volatile), so the versions are read
after the lock is granted, as before.

Only a function is created: no table is read or rewritten. SQLite is unchanged.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CREATE = """
CREATE OR REPLACE FUNCTION leadscore_begin_write(
    exclusive boolean, OUT model_version integer, OUT routing_version integer
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF exclusive THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('leadscore:writes', 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('leadscore:writes', 0));
    END IF;
    -- each statement reads with a snapshot taken now, after the lock is granted
    SELECT MAX(version) INTO model_version FROM models WHERE active;
    SELECT MAX(version) INTO routing_version FROM routing_versions WHERE active;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS leadscore_begin_write(boolean)")
