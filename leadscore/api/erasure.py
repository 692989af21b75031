"""Erasing a person (admin tokens only): ``DELETE /api/leads/{lead_id}``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from ..service.facade import Service
from .errors import responses
from .security import require

__all__ = ["router"]

router = APIRouter(tags=["leads"], responses=responses(401, 403, 422))
Admin = Annotated[Any, Depends(require("admin"))]


class Erasure(BaseModel):
    """The person is erased; ``erasure_id`` is the audit record. ``removed`` counts the rows
    removed by table, for this answer only (the audit record does not keep it)."""

    model_config = ConfigDict(extra="allow")

    lead_id: str
    erased: bool
    erasure_id: int
    at: str
    by: str
    removed: dict[str, int]


@router.delete(
    "/api/leads/{lead_id}",
    summary="Erase a person: traits, events, linked anonymous ids, history, pending webhooks",
    response_model=Erasure,
    responses=responses(404),
)
async def erase_lead(request: Request, key: Admin, lead_id: str) -> dict[str, Any]:
    service: Service = request.app.state.service
    by = f"key {key.id} ({key.name})"
    return await run_in_threadpool(service.erase, lead_id, by)
