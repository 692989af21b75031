"""The API's response bodies, as pydantic models (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Activation",
    "Health",
    "IngestAnswer",
    "LeadDetail",
    "LeadList",
    "LeadSummary",
    "ModelList",
    "ModelVersion",
    "Reason",
]


class _Open(BaseModel):
    # model_version is a field here, not pydantic's
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Health(_Open):
    """The service is up and its database answers."""

    status: str
    version: str
    database: str
    model_version: int | None
    model: str | None


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
