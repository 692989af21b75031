"""outbox ids never reused: on SQLite the outbox becomes an AUTOINCREMENT table

Without AUTOINCREMENT, SQLite gives the next row the highest id + 1, so erasing the newest
notifications let the next one carry an erased one's delivery id. PostgreSQL's ids come from a
sequence and are never reused already.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


COLUMNS = (
    "id, webhook_id, event, payload, created_at_us, attempts, next_attempt_us, "
    "delivered_at_us, failed_at_us, last_error"
)


def _rebuild(autoincrement: bool) -> None:
    """The outbox made again with the same rows. Deliveries refer to it, so foreign keys are
    checked at commit (deferred): dropping the table counts its rows' deliveries as orphans,
    and putting the rows back into the new table counts them found again."""
    key = "INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT" if autoincrement else "INTEGER NOT NULL"
    pk = "" if autoincrement else ",\n    PRIMARY KEY (id)"
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(f"CREATE TABLE _outbox_before AS SELECT {COLUMNS} FROM outbox")
    op.execute("DROP TABLE outbox")
    op.execute(
        f"""CREATE TABLE outbox (
    id {key},
    webhook_id INTEGER NOT NULL,
    event VARCHAR(64) NOT NULL,
    payload TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    next_attempt_us BIGINT NOT NULL,
    delivered_at_us BIGINT,
    failed_at_us BIGINT,
    last_error TEXT{pk},
    FOREIGN KEY(webhook_id) REFERENCES webhooks (id)
)"""
    )
    op.execute(f"INSERT INTO outbox ({COLUMNS}) SELECT {COLUMNS} FROM _outbox_before ORDER BY id")
    op.execute("DROP TABLE _outbox_before")
    op.execute("CREATE INDEX ix_outbox_due ON outbox (delivered_at_us, next_attempt_us)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=False)
