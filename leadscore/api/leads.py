"""The read API over leads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..service.facade import Service
from .errors import ErrorBody
from .schemas import LeadDetail, LeadList
from .security import require

__all__ = ["router"]

router = APIRouter(tags=["leads"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
Reader = Annotated[Any, Depends(require("read", "admin"))]


@router.get(
    "/api/leads",
    summary="Leads, filtered, sorted and paged",
    response_model=LeadList,
    responses={422: {"model": ErrorBody}},
)
def list_leads(
    request: Request,
    _key: Reader,
    stage: str | None = Query(
        None, description="lead, mql, sal, sql, opportunity, customer, recycled or disqualified"
    ),
    owner: str | None = Query(None, description="the owner's email: a rep's leads"),
    grade: str | None = Query(None, description="e.g. A1; a letter (A) matches A1–A4"),
    min_score: float | None = Query(None, description="current score at least this"),
    q: str | None = Query(None, description="text search in the lead id and traits"),
    sort: str = Query(
        "-score", description="score, mql_at, updated_at or lead_id; '-' for descending"
    ),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    service: Service = request.app.state.service
    return service.leads(
        stage=stage,
        owner=owner,
        grade=grade,
        min_score=min_score,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/leads/{lead_id}",
    summary="One lead: traits, company, scores, history, events",
    response_model=LeadDetail,
    responses={404: {"model": ErrorBody}},
)
def get_lead(
    request: Request,
    _key: Reader,
    lead_id: str,
    events: int = Query(50, ge=0, le=1000),
) -> dict[str, Any]:
    service: Service = request.app.state.service
    return service.lead(lead_id, events=events)
