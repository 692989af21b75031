"""a lead's scoring state as json on PostgreSQL, not jsonb

Every ingest writes ``leads.rule_sums`` (the engagement rules' decayed sums, which rules held,
which counted) of each lead it touches and reads it back for the next one; nothing reads it in
SQL. As jsonb, PostgreSQL turned each of its numbers into a decimal when it was written and back
into text when it was read: on the benchmark's traffic that was about a third of the score
UPDATE's time and a quarter of the leads' read. As json it is checked and kept as written. The
column's values are rewritten once, on upgrade (the leads table, not the events). SQLite keeps it
as text, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads ALTER COLUMN rule_sums TYPE json USING rule_sums::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads ALTER COLUMN rule_sums TYPE jsonb USING rule_sums::jsonb")
