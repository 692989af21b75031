"""the SLA deadlines still pending in an index of their own, in the order they fall due

``ix_mql_episodes_sla_due`` began with the first touch, and every read of SLA deadlines (the
SLA watch's next deadline and the breaches due) asks for episodes not touched *or* touched after
the deadline: SQLite read every episode and sorted them, PostgreSQL every entry of the index
(one per episode) and sorted them. Every new MQL episode wrote an entry into it all the same, in
the ingest's commit, with or without an SLA. The index is now on the
deadline (then the id, the order the breaches are marked in), of the episodes whose deadline is
set and not yet marked or sent: those reads take the first entries, and an episode with no SLA
writes nothing into it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: the episodes in the index: what every read of it asks for (service/sla_watch.py)
PENDING = "sla_due_at_us IS NOT NULL AND sla_breached_at_us IS NULL AND sla_notified_at_us IS NULL"


def upgrade() -> None:
    op.drop_index("ix_mql_episodes_sla_due", table_name="mql_episodes")
    op.execute(
        "CREATE INDEX ix_mql_episodes_sla_pending ON mql_episodes (sla_due_at_us, id) "
        f"WHERE {PENDING}"
    )


def downgrade() -> None:
    op.drop_index("ix_mql_episodes_sla_pending", table_name="mql_episodes")
    op.create_index(
        "ix_mql_episodes_sla_due",
        "mql_episodes",
        ["first_touch_at_us", "sla_breached_at_us", "sla_due_at_us"],
    )
