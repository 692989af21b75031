"""The API's response bodies, as pydantic models (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BATCH_BODY",
    "MODEL_BODY",
    "Activation",
    "Health",
    "IngestAnswer",
    "LeadDetail",
    "LeadList",
    "LeadSummary",
    "ModelList",
    "ModelVersion",
    "Reason",
    "message_body",
    "single_body",
]


class _Open(BaseModel):
    # model_version is a field here, not pydantic's
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Health(_Open):
    """The service is up and its database answers reads and takes writes."""

    status: str
    version: str
    database: str
    writes: str
    model_version: int | None
    model: str | None
    #: ok, off, not started, stopped (see leadscore/api/health.py)
    sla_scheduler: str
    webhook_deliverer: str
    event_retention: str


class Rejected(BaseModel):
    index: int
    messageId: Any = None
    reason: str


class IngestAnswer(BaseModel):
    success: bool
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class Reason(_Open):
    rule: str
    points: float


class _LeadBase(_Open):
    lead_id: str
    stage: str
    mql_at: str | None
    mql_reason: str | None
    fit: float
    engagement: float
    score: float
    grade: str | None
    mql: bool
    fast_track: bool
    reasons: list[Reason]
    scored_at: str | None
    updated_at: str | None
    owner: str | None = None
    team: str | None = None


class LeadSummary(_LeadBase):
    email: Any = None
    name: Any = None
    company: Any = None


class StageChange(_Open):
    stage: str
    at: str | None
    reason: str | None
    by: str | None = None
    bant: dict[str, str] | None = None
    come_back_at: str | None = None


class RoutingDecision(_Open):
    """How the routing placed the lead: the rules tried, the reps skipped and why."""

    routing_version: int | None
    rule: str | None
    kind: str
    owner: str
    team: str | None
    at: str | None
    path: list[dict[str, Any]]


class Sla(_Open):
    name: str
    due_at: str | None
    first_touch_at: str | None
    breached_at: str | None
    notified_at: str | None = None
    escalated_to: str | None = None


class Assignment(_Open):
    owner: str
    team: str | None
    kind: str
    rule: str | None
    at: str | None
    by: str


class Touch(_Open):
    kind: str
    by: str
    at: str | None
    received_at: str | None


class RecentEvent(_Open):
    messageId: str
    type: str
    event: str | None
    timestamp: str | None
    properties: Any


class LeadDetail(_LeadBase):
    traits: dict[str, Any]
    company: Any
    stage_history: list[StageChange]
    recent_events: list[RecentEvent]
    assigned_at: str | None = None
    routing: RoutingDecision | None = None
    sla: Sla | None = None
    mql_episodes: int = 0
    assignments: list[Assignment] = []
    touches: list[Touch] = []


class LeadList(BaseModel):
    total: int
    limit: int
    offset: int
    leads: list[LeadSummary]


class ActivationEntry(_Open):
    at: str | None
    by: str | None
    leads_rescored: int
    new_mqls: int


class ModelVersion(_Open):
    version: int
    name: str
    active: bool
    created_at: str | None
    created_by: str | None
    activations: list[ActivationEntry]
    source: str


class ModelList(BaseModel):
    models: list[ModelVersion]


class Activation(_Open):
    version: int
    active: bool
    leads_rescored: int | None = None
    new_mqls: int | None = None


# ---------------------------------------------------------------------- request bodies
# Ingest and model bodies are read by hand (size limits, gzip, one bad message refused by
# index), so FastAPI cannot derive them; these describe them for the OpenAPI schema.

_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601"}
_ID = {"type": "string", "minLength": 1, "maxLength": 255}
_MESSAGE_FIELDS: dict[str, Any] = {
    "type": {
        "type": "string",
        "enum": ["identify", "track", "page", "screen", "group", "alias"],
    },
    "messageId": {**_ID, "description": "makes a retry idempotent"},
    "userId": {**_ID, "description": "the lead"},
    "anonymousId": _ID,
    "event": {**_ID, "description": "track: the event's name"},
    "name": {"type": "string", "description": "page and screen: the page's name"},
    "groupId": {**_ID, "description": "group: the company"},
    "previousId": {**_ID, "description": "alias: the earlier id"},
    "properties": {"type": "object", "description": "track, page, screen"},
    "traits": {"type": "object", "description": "identify (the lead), group (the company)"},
    "context": {"type": "object"},
    "timestamp": _TIME,
    "originalTimestamp": _TIME,
    "sentAt": _TIME,
    "receivedAt": _TIME,
}
_WRITE_KEY = {
    "type": "string",
    "description": "the write key, when it is not sent as the Basic auth user name",
}


def message_body(kind: str | None = None) -> dict[str, Any]:
    """One Segment message; ``kind``: the call a single-call endpoint takes."""
    fields = dict(_MESSAGE_FIELDS)
    schema: dict[str, Any] = {
        "type": "object",
        "description": "A Segment message (see docs/inputs.md); at most 32 KB, nested at most "
        "32 levels. Unknown fields are kept.",
        "properties": fields,
        "additionalProperties": True,
    }
    required = ["type"] if kind is None else []
    if kind is not None:
        fields["type"] = {"type": "string", "enum": [kind]}
        fields["writeKey"] = _WRITE_KEY
    if kind == "alias":
        required += ["userId", "previousId"]
    else:
        required += _REQUIRED.get(kind or "", [])
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    if required:
        schema["required"] = required
    return schema


#: what a single call of a type needs beyond a userId or anonymousId
_REQUIRED = {"track": ["event"], "group": ["groupId"]}


def _request_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


BATCH_BODY = _request_body(
    {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "items": message_body()},
            "context": {"type": "object", "description": "given to every message without one"},
            "writeKey": _WRITE_KEY,
            "sentAt": _TIME,
        },
        "additionalProperties": True,
    },
    "Segment messages; at most 500 KB uncompressed (Content-Encoding: gzip or deflate taken).",
)


def single_body(kind: str) -> dict[str, Any]:
    return _request_body(message_body(kind), f"One {kind} call; at most 32 KB.")


MODEL_BODY = {
    "requestBody": {
        "required": True,
        "description": "The model as YAML (see docs/model.md), or JSON with it as `source`; "
        "at most 256 KB.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["source"],
                    "properties": {
                        "source": {"type": "string", "description": "the model's YAML"},
                        "activate": {"type": "boolean", "default": True},
                    },
                }
            },
        },
    }
}
