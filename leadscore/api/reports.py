"""Reports: the MQL funnel (docs/funnel.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..reports.funnel import GROUPS, parse_time
from ..service.facade import Service
from .errors import ErrorBody
from .security import require

__all__ = ["router"]

router = APIRouter(
    tags=["reports"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)
Reader = Annotated[Any, Depends(require("read", "admin"))]


class Times(BaseModel):
    n: int
    median_s: float | None
    p90_s: float | None


class Reason(BaseModel):
    reason: str
    count: int


class FunnelGroup(BaseModel):
    key: str
    mqls: int
    reached: dict[str, int]
    conversion: dict[str, float | None]
    mql_to_sql_note: str | None
    outcome: dict[str, int]
    sla: dict[str, float | int | None]
    times: dict[str, Times]
    rejection_reasons: list[Reason]
    recycled_reasons: list[Reason]


class Funnel(BaseModel):
    from_: str | None = Field(None, alias="from")
    to: str | None
    as_of: str | None
    by: str | None
    sql_band: list[float]
    total: FunnelGroup
    groups: list[FunnelGroup]

    model_config = {"populate_by_name": True}


@router.get(
    "/api/reports/funnel",
    summary="The MQL funnel: conversion, speed to lead, SLA compliance, by MQL-date cohort",
    response_model=Funnel,
    responses={422: {"model": ErrorBody}},
)
def funnel(
    request: Request,
    _key: Reader,
    from_: str | None = Query(
        None, alias="from", description="MQLs from this date or time (ISO 8601; UTC)"
    ),
    to: str | None = Query(None, description="…up to, not including, this one (default: now)"),
    by: str | None = Query(None, description=f"group by one of: {', '.join(GROUPS)}"),
) -> dict[str, Any]:
    service: Service = request.app.state.service
    return service.funnel(by=by, start_us=parse_time(from_, "from"), end_us=parse_time(to, "to"))
