"""Segment-compatible ingest: ``/v1/batch`` and the single-call endpoints. The body is read on
the event loop; checking the messages and the database work run in the threadpool."""

from __future__ import annotations

import json
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..service.facade import Service
from ..service.messages import MAX_BATCH_BYTES, MessageError, check_message
from .errors import ApiError, ErrorBody, error_response
from .schemas import IngestAnswer
from .security import KeySecret, WriteSecret, check_write_key

__all__ = ["router"]

router = APIRouter(tags=["ingest"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    413: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


async def read_body(request: Request, limit: int) -> Any:
    """The request's JSON body, decompressed, within ``limit`` bytes."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "text/plain", ""):
        raise ApiError(
            415, "unsupported_media_type", f"content type {ctype!r}; send application/json"
        )
    encoding = request.headers.get("content-encoding", "").lower().strip()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        # compressed or not, a body this long on the wire is over the limit once read
        raise ApiError(
            413, "too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}"
        )
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, "too_large", f"the body is over {limit:,} bytes")
    raw = bytes(buf)
    if encoding in ("gzip", "deflate"):
        try:
            d = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
            data = d.decompress(raw, limit + 1)
            if len(data) > limit or d.unconsumed_tail:
                raise ApiError(413, "too_large", f"the body is over {limit:,} bytes uncompressed")
        except zlib.error:
            raise ApiError(400, "bad_encoding", f"the body is not valid {encoding}") from None
    elif encoding not in ("", "identity"):
        raise ApiError(
            415, "unsupported_encoding", f"content encoding {encoding!r}; use gzip or none"
        )
    else:
        data = raw
    if len(data) > limit:
        raise ApiError(413, "too_large", f"the body is {len(data):,} bytes; the limit is {limit:,}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, "bad_encoding", f"the body is not UTF-8 (byte {e.start})") from None
    try:
        value = orjson.loads(data)
        request.state.strict_json = True
        return value
    except orjson.JSONDecodeError:
        pass  # strict JSON failed: the standard parser also reads NaN and Infinity, which
        # Python clients send, so such messages are refused one by one, not the whole batch
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ApiError(
            400,
            "malformed_json",
            f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
        ) from None
    except RecursionError:
        raise ApiError(400, "too_deep", "the body is nested too deeply") from None


def _ingest(
    request: Request, key: KeySecret, body: Any, batch: list[Any], default_type: str | None
) -> JSONResponse:
    """Runs in the threadpool: key check, message checks, storing and scoring."""
    service: Service = request.app.state.service
    check_write_key(
        service, key.secret or (body.get("writeKey") if isinstance(body, dict) else None)
    )
    received = service.now_us()
    context = (
        body.get("context")
        if isinstance(body, dict) and isinstance(body.get("context"), dict)
        else None
    )
    good, rejected = [], []
    strict = bool(getattr(request.state, "strict_json", False))
    for i, msg in enumerate(batch):
        if default_type is not None and isinstance(msg, dict):
            msg = {**msg, "type": msg.get("type") or default_type}
        if context and isinstance(msg, dict) and "context" not in msg:
            msg = {**msg, "context": context}
        try:
            good.append((i, check_message(msg, received, strict_json=strict)))
        except MessageError as e:
            mid = msg.get("messageId") if isinstance(msg, dict) else None
            rejected.append({"index": i, "messageId": mid, "reason": str(e)})
    if not good:
        return error_response(
            400,
            "invalid_messages",
            f"no message could be accepted ({len(rejected)} rejected)",
            rejected,
        )
    res = service.ingest(good, received)
    deliverer = request.app.state.deliverer
    if res.new_mqls and deliverer is not None:
        deliverer.wake()
    return JSONResponse(
        {
            "success": True,
            "accepted": res.accepted,
            "duplicates": res.duplicates,
            "rejected": rejected,
        }
    )


@router.post(
    "/v1/batch",
    summary="A batch of Segment messages (the clients' default)",
    response_model=IngestAnswer,
    responses=_RESPONSES,
)
async def batch(request: Request, key: WriteSecret) -> JSONResponse:
    body = await read_body(request, MAX_BATCH_BYTES)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise ApiError(400, "invalid_batch", "the body must be a JSON object with a 'batch' list")
    return await run_in_threadpool(_ingest, request, key, body, body["batch"], None)


def _single(kind: str) -> Any:
    async def endpoint(request: Request, key: WriteSecret) -> JSONResponse:
        body = await read_body(request, MAX_BATCH_BYTES)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_message", "the body must be a JSON object")
        given = body.get("type")
        if given is not None and (not isinstance(given, str) or given.strip().lower() != kind):
            raise ApiError(400, "invalid_message", f"type {body.get('type')!r} sent to /v1/{kind}")
        return await run_in_threadpool(_ingest, request, key, body, [{**body, "type": kind}], None)

    endpoint.__name__ = f"ingest_{kind}"
    return endpoint


for _kind in ("identify", "track", "page", "screen", "group", "alias"):
    router.post(
        f"/v1/{_kind}",
        summary=f"One {_kind} call",
        response_model=IngestAnswer,
        responses=_RESPONSES,
    )(_single(_kind))
