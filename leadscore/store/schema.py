"""The service's tables (SQLAlchemy Core). Times are integer microseconds since the epoch, UTC:
exact, comparable and the same on SQLite and PostgreSQL. JSON is stored as text on SQLite and as
jsonb on PostgreSQL (``JSONText``), so the SQL engine can read traits and properties in place;
the service's own scoring state, which nothing reads in SQL, as json on PostgreSQL (``JSONState``).
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
    and_,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

metadata = MetaData()

# On PostgreSQL every column that holds a lead's id, an anonymous id or a messageId compares
# byte by byte (COLLATE "C", as SQLite's BINARY does), which migration 0008 sets: the types here
# leave it out, as the service casts parameters to them (a CAST names no collation).

#: JSON as jsonb on PostgreSQL and as text elsewhere; the service serialises it itself.
JSONText = Text().with_variant(JSONB(none_as_null=True), "postgresql")
#: JSON that only the service reads back, whole: json (its text, checked and kept as written) on
#: PostgreSQL, where jsonb would turn every number into a decimal on the way in and back into
#: text on the way out (migration 0007); text elsewhere.
JSONState = Text().with_variant(JSON(none_as_null=True), "postgresql")

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
    Column("rule_sums", JSONState),  # engagement rules' decayed sums before caps, in model order
    Column("scored_at_us", BigInteger),
    Column("rescore_at_us", BigInteger),  # when an event leaves the window or a future one lands
    Column("model_version", Integer),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # the handoff: who owns the lead now, and the domain of its email (lead-to-account matching)
    Column("owner", String(255)),
    Column("team", String(64)),
    Column("assigned_at_us", BigInteger),
    Column("email_domain", String(255)),
)
# the score is in no index: an ingest rewrites the scores of the leads it touches, and a row whose
# indexed columns are unchanged is updated in place on its page (PostgreSQL's HOT update; the
# table keeps 15% of each page free for it, migration 0005). Listings by score read
# the stage's leads in order (service/reads.py); docs/service.md, "Storage", has the measurements.
Index("ix_leads_stage", leads.c.stage)
Index("ix_leads_owner", leads.c.owner)
Index("ix_leads_email_domain", leads.c.email_domain)

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
# on the events that have an anonymous id (most carry a userId alone): every read of it asks
# for one anonymous id
Index(
    "ix_events_anon",
    events.c.anonymous_id,
    postgresql_where=events.c.anonymous_id.is_not(None),
    sqlite_where=events.c.anonymous_id.is_not(None),
)

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
    # who moved it: 'model' for the scoring, a rep's email, 'crm', 'import'
    Column("by", String(255)),
    Column("bant", JSONText),  # on a move to sql: budget, authority, need, timeline as confirmed
    Column("come_back_at_us", BigInteger),  # recycled: when the lead may be worked again
    Column("received_at_us", BigInteger),  # when the service learnt of it; at_us: when it happened
)

# ------------------------------------------------------------------ the handoff

routing_versions = Table(
    "routing_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("active", Boolean, nullable=False, server_default=false()),
    Column("activated_at_us", BigInteger),
)

reps = Table(
    "reps",
    metadata,
    Column("email", String(255), primary_key=True),
    Column("away", Boolean, nullable=False, server_default=false()),
    Column("away_since_us", BigInteger),
    Column("back_at_us", BigInteger),  # back from time away: no catch-up flood from before
    Column("updated_at_us", BigInteger, nullable=False),
)

round_robin = Table(
    "round_robin",
    metadata,
    Column("team", String(64), primary_key=True),
    Column("last_member", String(255)),  # the member who got the team's last lead
    Column("updated_at_us", BigInteger, nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("lead_id", String(255), nullable=False, index=True),
    Column("episode_id", BigInteger),
    Column("owner", String(255), nullable=False),
    Column("team", String(64)),
    Column("rule", String(255)),  # the routing rule that matched; null for a manual reassignment
    Column("kind", String(16), nullable=False),  # route | account | fallback | reassign | escalate
    Column("routing_version", Integer),
    Column("decision", JSONText),  # the path: rules tried, reps skipped and why, fallback used
    Column("at_us", BigInteger, nullable=False),
    Column("by", String(255), nullable=False),  # 'routing' or the person who reassigned
)

touches = Table(
    "touches",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("lead_id", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # call | email | meeting
    Column("by", String(255), nullable=False),
    Column("at_us", BigInteger, nullable=False),  # when it happened (may be before it arrived)
    Column("received_at_us", BigInteger, nullable=False),
)

# One row per MQL episode (a lead recycled and qualified again has two): what the funnel report
# and the SLA scheduler read, kept up to date by every handoff write so that neither replays the
# stage history.
mql_episodes = Table(
    "mql_episodes",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("lead_id", String(255), nullable=False, index=True),
    Column("mql_at_us", BigInteger, nullable=False),
    Column("track", String(16), nullable=False),  # fast_track | threshold | import
    Column("grade", String(4)),
    Column("score", Float),
    Column("source", String(255)),  # the lead's source / utm_source trait, for --by source
    Column("campaign", String(255)),
    Column("owner", String(255)),
    Column("team", String(64)),
    Column("assigned_at_us", BigInteger),
    Column("first_touch_at_us", BigInteger),
    Column("sla_name", String(255)),
    Column("sla_due_at_us", BigInteger),
    Column("sla_breached_at_us", BigInteger),
    Column("sla_notified_at_us", BigInteger),  # the breach was sent (lead.sla_breached)
    Column("escalated_to", String(255)),
    Column("sal_at_us", BigInteger),
    Column("sql_at_us", BigInteger),
    Column("opportunity_at_us", BigInteger),
    Column("customer_at_us", BigInteger),
    Column("closed_stage", String(16)),  # disqualified | recycled, when the episode ended so
    Column("closed_reason", Text),
    Column("closed_at_us", BigInteger),
    Column("stage", String(16), nullable=False),  # the episode's latest stage
)
Index("ix_mql_episodes_mql_at", mql_episodes.c.mql_at_us)
# the SLA deadlines not yet marked or sent, in the order they fall due: what the SLA watch reads
# (service/sla_watch.py); an episode without an SLA is not in it (migration 0006)
_SLA_PENDING = and_(
    mql_episodes.c.sla_due_at_us.is_not(None),
    mql_episodes.c.sla_breached_at_us.is_(None),
    mql_episodes.c.sla_notified_at_us.is_(None),
)
Index(
    "ix_mql_episodes_sla_pending",
    mql_episodes.c.sla_due_at_us,
    mql_episodes.c.id,
    postgresql_where=_SLA_PENDING,
    sqlite_where=_SLA_PENDING,
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
    # ids are never given out again, even after the newest rows are erased: receivers drop
    # repeats by the delivery id
    sqlite_autoincrement=True,
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

# One row per person erased (leadscore.service.erasure): when, by which key or operator, and a
# salted, slow hash of the id that answers "was this id erased?" for someone who already knows
# the id, and nothing else. What was erased is not kept.
erasures = Table(
    "erasures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("by", String(255), nullable=False),
    Column("subject_hash", String(160)),
)
