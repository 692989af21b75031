"""Model versions over HTTP: list, add (and activate), activate a stored version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..service.facade import Service
from .body import parse_json, read_raw
from .errors import MAX_INT, ApiError, responses
from .schemas import MODEL_BODY, Activation, ModelList
from .security import require

__all__ = ["router"]

#: the largest model source taken (a model of thousands of rules is far smaller)
MAX_MODEL_BYTES = 256 * 1024

Reader = Annotated[Any, Depends(require("read", "admin"))]
Admin = Annotated[Any, Depends(require("admin"))]

router = APIRouter(tags=["models"], responses=responses(401, 403, 422))


@router.get(
    "/api/models",
    summary="Model versions, newest first, with activations",
    response_model=ModelList,
)
def get_models(request: Request, _key: Reader) -> dict[str, Any]:
    service: Service = request.app.state.service
    return {"models": service.models()}


@router.put(
    "/api/models",
    summary="Validate a model, store it as a new version, activate it",
    status_code=201,
    response_model=Activation,
    responses=responses(400, 413),
    openapi_extra=MODEL_BODY,
)
async def put_model(
    request: Request,
    key: Admin,
    activate: bool = Query(True),
) -> JSONResponse:
    service: Service = request.app.state.service
    raw = await read_raw(request, MAX_MODEL_BYTES)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "the model is not UTF-8") from None
    if ctype == "application/json":
        data, _ = parse_json(raw)
        if not isinstance(data, dict) or not isinstance(data.get("source"), str):
            raise ApiError(
                400, "invalid_request", 'send the model as YAML, or JSON {"source": "<yaml>"}'
            )
        text = data["source"]
        activate = bool(data.get("activate", activate))
    if not text.strip():
        raise ApiError(400, "invalid_request", "the model is empty")
    # validating, storing and re-scoring every lead is database work: off the event loop
    try:
        result = await run_in_threadpool(
            service.add_model, text, f"key:{key.name}", "model", activate=activate
        )
    except RecursionError:  # the YAML parser recurses per level of nesting
        raise ApiError(422, "invalid_model", "the model is nested too deeply to read") from None
    return JSONResponse(result, status_code=201)


@router.post(
    "/api/models/{version}/activate",
    summary="Activate a stored version and re-score",
    response_model=Activation,
    responses=responses(404),
)
def activate(request: Request, key: Admin, version: int = Path(ge=1, le=MAX_INT)) -> dict[str, Any]:
    service: Service = request.app.state.service
    return service.activate(version, f"key:{key.name}")
