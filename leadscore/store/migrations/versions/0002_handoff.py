"""the handoff: owners, routing versions, reps, round robin, assignments, touches, MQL episodes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.Text().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("leads", sa.Column("owner", sa.String(length=255), nullable=True))
    op.add_column("leads", sa.Column("team", sa.String(length=64), nullable=True))
    op.add_column("leads", sa.Column("assigned_at_us", sa.BigInteger(), nullable=True))
    op.add_column("leads", sa.Column("email_domain", sa.String(length=255), nullable=True))
    op.create_index("ix_leads_owner", "leads", ["owner"])
    op.create_index("ix_leads_email_domain", "leads", ["email_domain"])

    op.add_column("stage_history", sa.Column("by", sa.String(length=255), nullable=True))
    op.add_column("stage_history", sa.Column("bant", _JSON, nullable=True))
    op.add_column("stage_history", sa.Column("come_back_at_us", sa.BigInteger(), nullable=True))
    op.add_column("stage_history", sa.Column("received_at_us", sa.BigInteger(), nullable=True))

    op.create_table(
        "routing_versions",
        sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("activated_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "reps",
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("away", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("away_since_us", sa.BigInteger(), nullable=True),
        sa.Column("back_at_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "round_robin",
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("last_member", sa.String(length=255), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=255), nullable=False),
        sa.Column("episode_id", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("routing_version", sa.Integer(), nullable=True),
        sa.Column("decision", _JSON, nullable=True),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_assignments_lead_id", "assignments", ["lead_id"])
    op.create_table(
        "touches",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=255), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("received_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_touches_lead_id", "touches", ["lead_id"])
    op.create_table(
        "mql_episodes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=255), nullable=False),
        sa.Column("mql_at_us", sa.BigInteger(), nullable=False),
        sa.Column("track", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.String(length=4), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("campaign", sa.String(length=255), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("team", sa.String(length=64), nullable=True),
        sa.Column("assigned_at_us", sa.BigInteger(), nullable=True),
        sa.Column("first_touch_at_us", sa.BigInteger(), nullable=True),
        sa.Column("sla_name", sa.String(length=255), nullable=True),
        sa.Column("sla_due_at_us", sa.BigInteger(), nullable=True),
        sa.Column("sla_breached_at_us", sa.BigInteger(), nullable=True),
        sa.Column("sla_notified_at_us", sa.BigInteger(), nullable=True),
        sa.Column("escalated_to", sa.String(length=255), nullable=True),
        sa.Column("sal_at_us", sa.BigInteger(), nullable=True),
        sa.Column("sql_at_us", sa.BigInteger(), nullable=True),
        sa.Column("opportunity_at_us", sa.BigInteger(), nullable=True),
        sa.Column("customer_at_us", sa.BigInteger(), nullable=True),
        sa.Column("closed_stage", sa.String(length=16), nullable=True),
        sa.Column("closed_reason", sa.Text(), nullable=True),
        sa.Column("closed_at_us", sa.BigInteger(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mql_episodes_lead_id", "mql_episodes", ["lead_id"])
    op.create_index("ix_mql_episodes_mql_at", "mql_episodes", ["mql_at_us"])
    op.create_index(
        "ix_mql_episodes_sla_due",
        "mql_episodes",
        ["first_touch_at_us", "sla_breached_at_us", "sla_due_at_us"],
    )


def downgrade() -> None:
    for index, table in (
        ("ix_mql_episodes_sla_due", "mql_episodes"),
        ("ix_mql_episodes_mql_at", "mql_episodes"),
        ("ix_mql_episodes_lead_id", "mql_episodes"),
        ("ix_touches_lead_id", "touches"),
        ("ix_assignments_lead_id", "assignments"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "mql_episodes",
        "touches",
        "assignments",
        "round_robin",
        "reps",
        "routing_versions",
    ):
        op.drop_table(table)
    with op.batch_alter_table("stage_history") as batch:
        for column in ("received_at_us", "come_back_at_us", "bant", "by"):
            batch.drop_column(column)
    op.drop_index("ix_leads_email_domain", table_name="leads")
    op.drop_index("ix_leads_owner", table_name="leads")
    with op.batch_alter_table("leads") as batch:
        for column in ("email_domain", "assigned_at_us", "team", "owner"):
            batch.drop_column(column)
