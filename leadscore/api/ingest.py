"""Segment-compatible ingest: ``/v1/batch`` and the single-call endpoints. A key in the headers
is checked before the body is read: on the event loop when the process remembers it, else on a
thread (``threads.hand_off``); the body is read on the event loop (body.py); checking the
messages and the database work run on a thread, in one hand-off.

The routes are ``IngestRoute``s: their one dependency, the key in the headers, is read
directly rather than by FastAPI's dependency solving, which cost more on the event loop than
the rest of routing (docs/benchmarks.md, 7 December 2026)."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, get_args

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

try:  # FastAPI's OpenTelemetry hooks, in FastAPI 0.160 and later; older ones have none
    from fastapi import telemetry as _telemetry
except ImportError:  # pragma: no cover - exercised by the lowest allowed versions' tests
    _telemetry = None  # type: ignore[assignment]

from ..service import metrics
from ..service.facade import Service
from ..service.messages import MAX_BATCH_BYTES, MessageError, check_message
from .body import read_body
from .errors import ApiError, IngestErrorBody, error_response, responses
from .schemas import BATCH_BODY, IngestAnswer, single_body
from .security import (
    KeySecret,
    WriteSecret,
    check_write_key,
    remembered_write_key,
    write_secret,
)
from .threads import hand_off

__all__ = ["IngestRoute", "router"]


class IngestRoute(APIRoute):
    """A route whose endpoint is ``async def endpoint(request, key: WriteSecret)``: the key is
    read by ``security.write_secret``, the same reading as the ``WriteSecret`` dependency's,
    without FastAPI's dependency solving. The endpoint's signature still declares the
    dependency, so the OpenAPI schema shows the write key's security schemes as before."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        params = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params)
        calls = [sub.call for sub in d.dependencies]
        if any(params) or d.request_param_name is None or calls != [_WRITE_SECRET]:
            raise TypeError(f"{path}: an ingest endpoint takes (request, key: WriteSecret) alone")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            key = write_secret(request)
            # what FastAPI's own handler gives OpenTelemetry hooks (None when tracing is off)
            telemetry = _telemetry.get_telemetry_data() if _telemetry is not None else None
            if telemetry is not None:
                telemetry.request, telemetry.values = request, {"key": key}
            response: Response = await endpoint(request, key)
            return response

        return handler


#: the dependency ``WriteSecret`` declares (what ``IngestRoute`` reads without solving it)
_WRITE_SECRET = get_args(WriteSecret)[1].dependency

router = APIRouter(tags=["ingest"], route_class=IngestRoute)

# every error the app answers on /v1/* carries code and message at the top (client_errors.py);
# a 408 comes from the HTTP layer, before the app, in the plain shape (COMMON)
_RESPONSES = responses(400, 401, 403, 413, 415, 422, 429, 500, 503, model=IngestErrorBody)


def _printable(message_id: Any) -> Any:
    """A rejected message's id as it can be answered: text with any unpaired surrogate
    escaped, a number, or nothing."""
    if isinstance(message_id, str):
        return message_id.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        return message_id
    return None


async def _body(request: Request, key: KeySecret) -> tuple[Any, Any]:
    """The key row (when the key is in the headers) and the body. A key in the headers is
    checked before the body is read; with none there, a body too long to read cannot show
    one either: 401."""
    service: Service = request.app.state.service
    row: Any = None
    if key.secret:
        # a key the process remembers is checked here, on the event loop; one it must look up
        # (a database read) on a thread
        row = remembered_write_key(service, key.secret)
        if row is None:
            row = await hand_off(check_write_key, service, key.secret)
        request.app.state.limits.ingest_ready(row.id)  # a key over its limit: no body read
    try:
        return row, await read_body(request, MAX_BATCH_BYTES)
    except ApiError as e:
        if row is None and e.status == 413:
            raise ApiError(
                401,
                "unauthorized",
                "no key: send the write key as the Basic auth user name "
                f"(the body, where a writeKey could be, is over the limit: {e.message})",
            ) from None
        raise


def _ingest(
    request: Request, row: Any, body: Any, batch: list[Any], default_type: str | None
) -> JSONResponse:
    """Runs on a thread (``hand_off``): key check, message checks, storing and scoring."""
    service: Service = request.app.state.service
    if row is None:
        row = check_write_key(service, body.get("writeKey") if isinstance(body, dict) else None)
    request.app.state.limits.charge_events(row.id, len(batch))
    started = time.perf_counter()
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
            rejected.append(
                {"index": i, "messageId": _printable(mid), "reason": _printable(str(e))}
            )
    if not good:
        metrics.ingested(0, 0, len(rejected))
        return error_response(
            400,
            "invalid_messages",
            f"no message could be accepted ({len(rejected)} rejected)",
            rejected,
        )
    res = service.ingest(good, received)
    metrics.ingested(
        res.accepted, res.duplicates, len(rejected), time.perf_counter() - started, res.new_mqls
    )
    deliverer = request.app.state.deliverer
    # something to deliver: lead.mql notifications, or lead.assigned ones (routing only)
    if deliverer is not None and (res.notified or (res.new_mqls and service.routing is not None)):
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
    openapi_extra=BATCH_BODY,
)
async def batch(request: Request, key: WriteSecret) -> JSONResponse:
    row, body = await _body(request, key)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise ApiError(400, "invalid_batch", "the body must be a JSON object with a 'batch' list")
    return await hand_off(_ingest, request, row, body, body["batch"], None)


def _single(kind: str) -> Any:
    async def endpoint(request: Request, key: WriteSecret) -> JSONResponse:
        row, body = await _body(request, key)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_message", "the body must be a JSON object")
        given = body.get("type")
        if given is not None and (not isinstance(given, str) or given.strip().lower() != kind):
            raise ApiError(400, "invalid_message", f"type {body.get('type')!r} sent to /v1/{kind}")
        return await hand_off(_ingest, request, row, body, [{**body, "type": kind}], None)

    endpoint.__name__ = f"ingest_{kind}"
    return endpoint


for _kind in ("identify", "track", "page", "screen", "group", "alias"):
    router.post(
        f"/v1/{_kind}",
        summary=f"One {_kind} call",
        response_model=IngestAnswer,
        responses=_RESPONSES,
        openapi_extra=single_body(_kind),
    )(_single(_kind))
