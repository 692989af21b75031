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
from ..errors import LeadscoreError, ModelError
from ..store import schema as t
from .auth import find_key
from .core import NoModelError, Service, iso, now_us
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
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        active = service._active
        return {
            "status": "ok",
            "version": __version__,
            "database": engine.dialect.name,
            "model_version": active.version if active else None,
            "model": active.model.name if active else None,
        }

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
        keys = {"score", "mql_at", "updated_at", "lead_id", "fit", "engagement"}
        if sort.lstrip("-") not in keys:
            raise ApiError(
                422,
                "invalid_request",
                f"sort {sort!r}: use one of {', '.join(sorted(keys))}, '-' for descending",
            )
        query = sa.select(t.leads)
        if stage:
            if stage not in ("lead", "mql"):
                raise ApiError(422, "invalid_request", f"stage {stage!r}: use lead or mql")
            query = query.where(t.leads.c.stage == stage)
        active = service._active
        if (
            min_score is not None
            and active
            and all(r.points > 0 for r in active.model.engagement_rules)
        ):
            # decay only lowers a stored score, so it bounds the score now, except for a lead
            # with an event come due since (rescore_at_us); a negative rule decays upwards
            query = query.where(
                sa.or_(t.leads.c.score >= min_score, t.leads.c.rescore_at_us.is_not(None))
            )
        if q:
            if "\x00" in q:  # PostgreSQL cannot even compare it
                raise ApiError(422, "invalid_request", "q contains a NUL character")
            # the text as typed: % and _ are not wildcards
            text = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{text}%"
            traits_text = sa.cast(t.leads.c.traits, sa.Text)
            query = query.where(
                sa.or_(
                    sa.func.lower(t.leads.c.lead_id).like(like, escape="\\"),
                    sa.func.lower(traits_text).like(like, escape="\\"),
                )
            )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        at = now_us()
        views = [service.lead_view(r, at) for r in rows]
        if min_score is not None:
            views = [v for v in views if v["score"] >= min_score]
        if grade:
            g = grade.upper()
            views = [
                v for v in views if v["grade"] == g or (len(g) == 1 and v["grade"].startswith(g))
            ]
        field = sort.lstrip("-")
        reverse = sort.startswith("-")
        present = [v for v in views if v.get(field) is not None]
        missing = [v for v in views if v.get(field) is None]
        # times sort by their exact value: their text drops zero microseconds
        exact = {r.lead_id: r for r in rows}
        column = {"mql_at": "mql_at_us", "updated_at": "updated_at_us"}.get(field)
        present.sort(
            key=lambda v: (
                getattr(exact[v["lead_id"]], column) if column else v[field],
                v["lead_id"],
            ),
            reverse=reverse,
        )
        ordered = present + missing
        return {
            "total": len(ordered),
            "limit": limit,
            "offset": offset,
            "leads": ordered[offset : offset + limit],
        }

    @app.get(
        "/api/leads/{lead_id}",
        tags=["leads"],
        summary="One lead: traits, company, scores, history, events",
    )
    def get_lead(
        request: Request, lead_id: str, events: int = Query(50, ge=0, le=1000)
    ) -> dict[str, Any]:
        _require(request, ("read", "admin"))
        if "\x00" in lead_id:  # no lead has one; PostgreSQL cannot even compare it
            raise ApiError(404, "not_found", f"no lead {lead_id!r}")
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == lead_id)).first()
            if row is None:
                raise ApiError(404, "not_found", f"no lead {lead_id!r}")
            history = conn.execute(
                sa.select(t.stage_history)
                .where(t.stage_history.c.lead_id == lead_id)
                .order_by(t.stage_history.c.at_us)
            ).all()
            recent = conn.execute(
                sa.select(
                    t.events.c.message_id,
                    t.events.c.type,
                    t.events.c.event,
                    t.events.c.ts_us,
                    t.events.c.properties,
                )
                .where(t.events.c.lead_id == lead_id)
                .order_by(t.events.c.ts_us.desc(), t.events.c.id.desc())
                .limit(events)
            ).all()
        view = service.lead_view(row, now_us(), full=True)
        view["stage_history"] = [
            {"stage": "lead", "at": iso(row.created_at_us), "reason": "first seen"},
            *(
                {
                    "stage": h.stage,
                    "at": iso(h.at_us),
                    "reason": h.reason,
                    "model_version": h.model_version,
                }
                for h in history
            ),
        ]
        view["recent_events"] = [
            {
                "messageId": e.message_id,
                "type": e.type,
                "event": e.event,
                "timestamp": iso(e.ts_us),
                "properties": json.loads(e.properties)
                if isinstance(e.properties, str)
                else e.properties,
            }
            for e in recent
        ]
        return view

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
