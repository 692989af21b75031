"""The service's tables (SQLAlchemy Core). Times are integer microseconds since the epoch, UTC:
exact, comparable and the same on SQLite and PostgreSQL. JSON is stored as text on SQLite and as
jsonb on PostgreSQL (``JSONText``), so the SQL engine can read traits and properties in place.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

#: JSON as jsonb on PostgreSQL and as text elsewhere; the service serialises it itself.
JSONText = Text().with_variant(JSONB(none_as_null=True), "postgresql")

leads = Table(
    "leads",
    metadata,
    Column("lead_id", String(255), primary_key=True),
    Column("traits", JSONText, nullable=False),
    Column("stage", String(16), nullable=False, server_default="lead"),
    Column("mql_at_us", BigInteger),
    Column("mql_reason", Text),
    # the score at scored_at_us, unrounded; engagement decays from there at read time
    Column("fit", Float, nullable=False, server_default="0"),
    Column("engagement", Float, nullable=False, server_default="0"),
    Column("score", Float, nullable=False, server_default="0"),
    Column("grade", String(4), nullable=False, server_default=""),
    Column("mql", Boolean, nullable=False, server_default=false()),
    Column("fast_track", Boolean, nullable=False, server_default=false()),
    Column("rule_sums", JSONText),  # engagement rules' decayed sums before caps, in model order
    Column("scored_at_us", BigInteger),
    Column("rescore_at_us", BigInteger),  # when an event leaves the window or a future one lands
    Column("model_version", Integer),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)
Index("ix_leads_stage_score", leads.c.stage, leads.c.score)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("lead_id", String(255)),
    Column("anonymous_id", String(255)),
    Column("event", String(255)),  # track: the event name; page: 'page'; screen: 'screen'
    Column("ts_us", BigInteger, nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
    Column("properties", JSONText),
    Column("message", JSONText, nullable=False),  # the message as received
)
Index("ix_events_lead_ts", events.c.lead_id, events.c.ts_us)
Index("ix_events_anon", events.c.anonymous_id)

identities = Table(
    "identities",
    metadata,
    Column("anonymous_id", String(255), primary_key=True),
    Column("lead_id", String(255), nullable=False),
    Column("linked_at_us", BigInteger, nullable=False),
)

stage_history = Table(
    "stage_history",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("lead_id", String(255), nullable=False, index=True),
    Column("stage", String(16), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("model_version", Integer),
)

models = Table(
    "models",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("active", Boolean, nullable=False, server_default=false()),
    Column("activated_at_us", BigInteger),
    Column("activated_by", String(255)),
)

model_activations = Table(
    "model_activations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", Integer, ForeignKey("models.version"), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("by", String(255), nullable=False),
    Column("leads_rescored", Integer, nullable=False),
    Column("new_mqls", Integer, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("scope", String(16), nullable=False),  # ingest | read | admin
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # comma-separated: lead.mql
    Column("secret", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger),
    Column("failed_at_us", BigInteger),  # gave up after the last retry
    Column("last_error", Text),
)
Index("ix_outbox_due", outbox.c.delivered_at_us, outbox.c.next_attempt_us)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "outbox_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("outbox.id"),
        nullable=False,
        index=True,
    ),
    Column("at_us", BigInteger, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Float, nullable=False),
)
