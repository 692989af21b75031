"""The sales handoff over HTTP: routing versions, reps, reassignment, touches, stage moves and
CRM statuses coming back. Reads take a read or admin token; changes take an admin token."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..service.facade import Service
from .errors import ApiError, ErrorBody
from .security import require

__all__ = ["router"]

Reader = Annotated[Any, Depends(require("read", "admin"))]
Admin = Annotated[Any, Depends(require("admin"))]

router = APIRouter(
    tags=["handoff"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime | None) -> int | None:
    """Microseconds UTC; a time without an offset is UTC."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // _ONE_US


_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TouchBody(_Body):
    kind: str = Field(description="call, email or meeting")
    by: str = Field(description="who made it, e.g. ann@acme.io")
    at: datetime | None = Field(None, description="when it happened (default: now)")


class StageBody(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    stage: str = Field(description="the stage to move to")
    by: str = Field(description="who moves the lead")
    reason: str | None = Field(None, description="why; for disqualified, a rejection reason")
    bant: dict[str, Any] | None = Field(
        None, description="on a move to sql: budget, authority, need, timeline as confirmed"
    )
    come_back_at: datetime | None = Field(None, description="recycled: when to work it again")
    expected: str | None = Field(
        None,
        alias="from",
        description="the stage the caller saw: a lead moved since is a 409 conflict",
    )


class AssignBody(_Body):
    owner: str = Field(description="the new owner's email")
    by: str = Field(description="who reassigns")
    reason: str | None = None


class RepBody(_Body):
    away: bool


class CrmBody(_Body):
    lead_id: str
    status: str = Field(description="the CRM's status name, mapped by crm_stages")
    at: datetime | None = Field(None, description="when it was set in the CRM (default: now)")
    by: str | None = Field(None, description="who set it (default: crm)")
    reason: str | None = None


def _svc(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


# ---------------------------------------------------------------------- routing


@router.get("/api/routing", summary="The active routing and every version")
def get_routing(request: Request, _key: Reader) -> dict[str, Any]:
    versions = _svc(request).routing_versions()
    active = next((v for v in versions if v["active"]), None)
    return {"active": active, "versions": versions}


@router.put(
    "/api/routing",
    summary="Validate a routing file, store it as a new version, activate it",
    status_code=201,
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def put_routing(request: Request, key: Admin) -> JSONResponse:
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "the routing file is not UTF-8") from None
    if ctype == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {e.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("source"), str):
            raise ApiError(
                400,
                "invalid_request",
                'send the routing file as YAML, or JSON {"source": "<yaml>"}',
            )
        text = data["source"]
    if not text.strip():
        raise ApiError(400, "invalid_request", "the routing file is empty")
    result = await run_in_threadpool(_svc(request).add_routing, text, f"key:{key.name}", "routing")
    return JSONResponse(result, status_code=201)


@router.post(
    "/api/routing/{version}/activate",
    summary="Activate a stored routing version",
    responses={404: {"model": ErrorBody}},
)
def activate_routing(request: Request, version: int, _key: Admin) -> dict[str, Any]:
    return _svc(request).activate_routing(version)


# ---------------------------------------------------------------------- reps


@router.get("/api/reps", summary="Reps: teams, time away, open MQLs")
def get_reps(request: Request, _key: Reader) -> dict[str, Any]:
    return {"reps": _svc(request).reps()}


@router.put(
    "/api/reps/{email}",
    summary="Mark a rep away (round robin skips them) or back",
    responses={404: {"model": ErrorBody}},
)
def put_rep(request: Request, email: str, body: RepBody, _key: Admin) -> dict[str, Any]:
    return _svc(request).set_away(email, body.away)


# ---------------------------------------------------------------------- one lead


@router.post(
    "/api/leads/{lead_id}/assign",
    summary="Reassign a lead (kept in its assignment history)",
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def assign(request: Request, lead_id: str, body: AssignBody, _key: Admin) -> dict[str, Any]:
    return _svc(request).reassign(lead_id, body.owner, body.by, body.reason)


@router.post(
    "/api/leads/{lead_id}/touches",
    summary="Log a call, email or meeting (stops the SLA clock)",
    status_code=201,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def touches(request: Request, lead_id: str, body: TouchBody, _key: Admin) -> dict[str, Any]:
    return _svc(request).touch(lead_id, body.kind, body.by, _us(body.at))


@router.post(
    "/api/leads/{lead_id}/stage",
    summary="Move a lead to another stage",
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def stage(request: Request, lead_id: str, body: StageBody, _key: Admin) -> dict[str, Any]:
    return _svc(request).move(
        lead_id,
        body.stage,
        body.by,
        reason=body.reason,
        bant=body.bant,
        come_back_at_us=_us(body.come_back_at),
        expected=body.expected,
    )


@router.post(
    "/api/crm/stages",
    summary="A status set in the CRM, mapped to a stage by the routing file's crm_stages",
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def crm_stage(request: Request, body: CrmBody, _key: Admin) -> dict[str, Any]:
    return _svc(request).crm_stage(
        body.lead_id, body.status, at_us=_us(body.at), by=body.by, reason=body.reason
    )
