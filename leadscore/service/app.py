"""HTTP front end of the live service (FastAPI): Segment-compatible ingest, the read API, models.

Every error has one shape: ``{"error": {"code": …, "message": …, "details": […]}}``.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from contextlib import asynccontextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InvalidRequestError, LeadscoreError, ModelError, NoModelError, NotFoundError
from .auth import find_key
from .common import now_us
from .facade import Service
from .messages import MAX_BATCH_BYTES, MessageError, check_message
from .webhooks import Deliverer

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("leadscore.service")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: list[Any] | None = None
    ) -> None:
        self.status, self.code, self.message, self.details = status, code, message, details or []


def _error(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or []}},
        status_code=status,
        headers=headers,
    )


def create_app(engine: Engine, *, deliver: bool = True) -> FastAPI:
    service = Service(engine)
    deliverer = Deliverer(engine) if deliver else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        if deliverer is not None:
            deliverer.start()
        yield
        if deliverer is not None:
            deliverer.stop()

    app = FastAPI(
        title="leadscore",
        version=__version__,
        summary="Segment-compatible event ingest, real-time lead scores and the MQL handoff.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.deliverer = deliverer

    # ---------------------------------------------------------------- errors, one shape

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="leadscore"'} if e.status == 401 else None
        return _error(e.status, e.code, e.message, e.details, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, e: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(x) for x in err["loc"]), "problem": err["msg"]}
            for err in e.errors()
        ]
        return _error(422, "invalid_request", "the request's parameters are not valid", details)

    @app.exception_handler(ModelError)
    async def _model_error(_r: Request, e: ModelError) -> JSONResponse:
        details = [
            {"line": p.line, "column": p.column, "message": p.message, "text": str(p)}
            for p in e.problems
        ]
        return _error(422, "invalid_model", str(e).splitlines()[0], details)

    @app.exception_handler(NoModelError)
    async def _no_model(_r: Request, e: NoModelError) -> JSONResponse:
        return _error(503, "no_model", str(e))

    @app.exception_handler(NotFoundError)
    async def _not_found(_r: Request, e: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(e))

    @app.exception_handler(InvalidRequestError)
    async def _invalid(_r: Request, e: InvalidRequestError) -> JSONResponse:
        return _error(422, "invalid_request", str(e))

    @app.exception_handler(LeadscoreError)
    async def _ls_error(_r: Request, e: LeadscoreError) -> JSONResponse:
        return _error(400, "bad_request", str(e))

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(_r: Request, e: Exception) -> JSONResponse:
        log.error("database error: %s", e)
        return _error(
            503,
            "unavailable",
            "the database is unavailable; try again",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _bug(_r: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal", "an unexpected error; it has been logged")

    # ---------------------------------------------------------------- auth

    def _key_from(request: Request, body_key: str | None) -> Any:
        auth = request.headers.get("authorization", "")
        secret = None
        if auth.lower().startswith("basic "):
            try:
                user, _, _pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                secret = user
            except Exception:
                raise ApiError(
                    401, "unauthorized", "the Authorization header is not valid Basic auth"
                ) from None
        elif auth.lower().startswith("bearer "):
            secret = auth[7:].strip()
        secret = secret or body_key
        if not secret:
            raise ApiError(
                401,
                "unauthorized",
                "no key: send the write key as the Basic auth user name, or writeKey in the body",
            )
        row = find_key(engine, secret)
        if row is None:
            raise ApiError(401, "unauthorized", "the key is not valid or was revoked")
        return row

    def _require(request: Request, scopes: tuple[str, ...]) -> Any:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise ApiError(401, "unauthorized", "send an API token: Authorization: Bearer <token>")
        row = find_key(engine, auth[7:].strip())
        if row is None:
            raise ApiError(401, "unauthorized", "the token is not valid or was revoked")
        if row.scope not in scopes:
            raise ApiError(
                403,
                "forbidden",
                f"a {row.scope} key cannot do this; it needs scope {' or '.join(scopes)}",
            )
        return row

    # ---------------------------------------------------------------- ingest

    async def _body(request: Request, limit: int) -> Any:
        ctype = (
            request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        )
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
                    raise ApiError(
                        413, "too_large", f"the body is over {limit:,} bytes uncompressed"
                    )
            except zlib.error:
                raise ApiError(400, "bad_encoding", f"the body is not valid {encoding}") from None
        elif encoding not in ("", "identity"):
            raise ApiError(
                415, "unsupported_encoding", f"content encoding {encoding!r}; use gzip or none"
            )
        else:
            data = raw
        if len(data) > limit:
            raise ApiError(
                413, "too_large", f"the body is {len(data):,} bytes; the limit is {limit:,}"
            )
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
        request: Request, body: Any, batch: list[Any], default_type: str | None
    ) -> JSONResponse:
        key = _key_from(request, body.get("writeKey") if isinstance(body, dict) else None)
        if key.scope not in ("ingest", "admin"):
            raise ApiError(
                403,
                "forbidden",
                f"a {key.scope} key cannot send events; use a write key (scope ingest)",
            )
        received = now_us()
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
            return _error(
                400,
                "invalid_messages",
                f"no message could be accepted ({len(rejected)} rejected)",
                rejected,
            )
        res = service.ingest(good, received)
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

    @app.post(
        "/v1/batch", tags=["ingest"], summary="A batch of Segment messages (the clients' default)"
    )
    async def batch(request: Request) -> JSONResponse:
        body = await _body(request, MAX_BATCH_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise ApiError(
                400, "invalid_batch", "the body must be a JSON object with a 'batch' list"
            )
        return _ingest(request, body, body["batch"], None)

    def _single(kind: str) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            body = await _body(request, MAX_BATCH_BYTES)
            if not isinstance(body, dict):
                raise ApiError(400, "invalid_message", "the body must be a JSON object")
            given = body.get("type")
            if given is not None and (not isinstance(given, str) or given.strip().lower() != kind):
                raise ApiError(
                    400, "invalid_message", f"type {body.get('type')!r} sent to /v1/{kind}"
                )
            return _ingest(request, body, [{**body, "type": kind}], None)

        endpoint.__name__ = f"ingest_{kind}"
        return endpoint

    for kind in ("identify", "track", "page", "screen", "group", "alias"):
        app.post(f"/v1/{kind}", tags=["ingest"], summary=f"One {kind} call")(_single(kind))

    # ---------------------------------------------------------------- read API

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, **service.health()}

    @app.get("/api/leads", tags=["leads"], summary="Leads, filtered, sorted and paged")
    def list_leads(
        request: Request,
        stage: str | None = Query(None, description="lead or mql"),
        grade: str | None = Query(None, description="e.g. A1; a letter (A) matches A1–A4"),
        min_score: float | None = Query(None, description="current score at least this"),
        q: str | None = Query(None, description="text search in the lead id and traits"),
        sort: str = Query(
            "-score", description="score, mql_at, updated_at or lead_id; '-' for descending"
        ),
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        _require(request, ("read", "admin"))
        return service.leads(
            stage=stage,
            grade=grade,
            min_score=min_score,
            q=q,
            sort=sort,
            limit=limit,
            offset=offset,
        )

    @app.get(
        "/api/leads/{lead_id}",
        tags=["leads"],
        summary="One lead: traits, company, scores, history, events",
    )
    def get_lead(
        request: Request, lead_id: str, events: int = Query(50, ge=0, le=1000)
    ) -> dict[str, Any]:
        _require(request, ("read", "admin"))
        return service.lead(lead_id, events=events)

    # ---------------------------------------------------------------- models

    @app.get(
        "/api/models", tags=["models"], summary="Model versions, newest first, with activations"
    )
    def get_models(request: Request) -> dict[str, Any]:
        _require(request, ("read", "admin"))
        return {"models": service.models()}

    @app.put(
        "/api/models",
        tags=["models"],
        summary="Validate a model, store it as a new version, activate it",
    )
    async def put_model(request: Request, activate: bool = Query(True)) -> JSONResponse:
        key = _require(request, ("admin",))
        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "bad_encoding", "the model is not UTF-8") from None
        if ctype == "application/json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ApiError(
                    400, "malformed_json", f"the body is not valid JSON: {e.msg}"
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get("source"), str):
                raise ApiError(
                    400, "invalid_request", 'send the model as YAML, or JSON {"source": "<yaml>"}'
                )
            text = data["source"]
            activate = bool(data.get("activate", activate))
        if not text.strip():
            raise ApiError(400, "invalid_request", "the model is empty")
        result = service.add_model(text, f"key:{key.name}", "model", activate=activate)
        return JSONResponse(result, status_code=201)

    @app.post(
        "/api/models/{version}/activate",
        tags=["models"],
        summary="Activate a stored version and re-score",
    )
    def activate(request: Request, version: int) -> dict[str, Any]:
        key = _require(request, ("admin",))
        return service.activate(version, f"key:{key.name}")

    return app
