"""score updates without index writes: the leads' stage index leaves the score out, leads keep
room on their pages (PostgreSQL), and events without an anonymous id are not indexed by it

Every ingest rewrites the score of each lead it touches. With the score in an index
(``ix_leads_stage_score``), PostgreSQL could not update a lead in place on its page (a HOT
update): each score change wrote a new entry into every index of the table, and SQLite moved the
lead's entry in that index. The index is now on the stage alone (what the listings filter by;
docs/service.md, "Storage"), and on PostgreSQL the leads table leaves 15% of each page free
(``fillfactor``) so that the new version of a lead fits beside the old one. Pages written before
keep their rows as they are until they are next rewritten (``VACUUM FULL leads`` rewrites them
all at once, when convenient).

Most events carry a userId and no anonymous id; their NULL went into ``ix_events_anon`` for
nothing. The index is now partial, on the events that have one, which is what every read of it
asks for (``anonymous_id = …``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 19:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: the share of each leads page PostgreSQL fills with new rows (the rest is room for updates)
FILLFACTOR = 85


def upgrade() -> None:
    op.drop_index("ix_leads_stage_score", table_name="leads")
    op.create_index("ix_leads_stage", "leads", ["stage"])
    op.drop_index("ix_events_anon", table_name="events")
    op.execute(
        "CREATE INDEX ix_events_anon ON events (anonymous_id) WHERE anonymous_id IS NOT NULL"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE leads SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads RESET (fillfactor)")
    op.drop_index("ix_events_anon", table_name="events")
    op.create_index("ix_events_anon", "events", ["anonymous_id"])
    op.drop_index("ix_leads_stage", table_name="leads")
    op.create_index("ix_leads_stage_score", "leads", ["stage", "score"])
