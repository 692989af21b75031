"""One error shape for the whole API, ``{"error": {"code", "message", "details"}}``, and one
table from exception to HTTP status."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    BadMessageError,
    ConflictError,
    InvalidRequestError,
    LeadscoreError,
    ModelError,
    NoModelError,
    NotFoundError,
    RoutingError,
    StageMoveError,
    UnavailableError,
)

__all__ = [
    "COMMON",
    "MAX_INT",
    "STATUS",
    "ApiError",
    "ErrorBody",
    "error_response",
    "install",
    "responses",
]

log = logging.getLogger("leadscore.service")

#: exception class -> (HTTP status, error code); the most specific class that matches wins
STATUS: dict[type[Exception], tuple[int, str]] = {
    ModelError: (422, "invalid_model"),
    RoutingError: (422, "invalid_routing"),
    StageMoveError: (409, "invalid_move"),
    ConflictError: (409, "conflict"),
    NotFoundError: (404, "not_found"),
    InvalidRequestError: (422, "invalid_request"),
    BadMessageError: (400, "invalid_message"),
    NoModelError: (503, "no_model"),
    UnavailableError: (503, "unavailable"),
    LeadscoreError: (400, "bad_request"),
    sa.exc.OperationalError: (503, "unavailable"),
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any]


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: ErrorDetail


class IngestErrorBody(ErrorBody):
    """An ingest (``/v1/*``) error: the error shape, with ``code`` and ``message`` also at the
    top for the tracking clients that read them there (``client_errors.py``)."""

    code: str
    message: str


def responses(
    *statuses: int, model: type[BaseModel] = ErrorBody
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: each status answered with the error shape."""
    return {status: {"model": model} for status in statuses}


#: the largest integer a parameter may have: what every database's INTEGER holds
MAX_INT = 2**31 - 1

#: what any endpoint may answer: a request that cannot be read (HTTP, or a body FastAPI parses),
#: a request too slow, parameters out of range, a caller over its rate limit, a bug, the
#: database down or the service overloaded (422 here also keeps FastAPI from describing its
#: own validation shape)
COMMON = responses(400, 408, 422, 429, 500, 503)


class ApiError(Exception):
    """An HTTP-level problem with a request (auth, body encoding, size) with its own code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.code, self.message, self.details = status, code, message, details or []
        self.headers = headers or {}


def _printable(value: Any) -> Any:
    """``value`` with every string's unpaired UTF-16 surrogates written as ``\\udXXX`` text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON answer that can always be sent: an error may quote what the client sent, and
    text with an unpaired surrogate (a YAML or JSON escape can make one) is not UTF-8."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(_printable(content))


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return SafeJSONResponse(
        {"error": {"code": code, "message": message, "details": details or []}},
        status_code=status,
        headers=headers,
    )


def _lookup(e: Exception) -> tuple[int, str]:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "internal"


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> str:
    """The methods some route takes on this path (asked of the routes themselves, so routers
    included in others are covered too)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    """The exception handlers: the table above, request validation, HTTP errors, and bugs."""

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="leadscore"'} if e.status == 401 else {}
        headers.update(e.headers)
        return error_response(e.status, e.code, e.message, e.details, headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(r: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            e.status_code, "http_error"
        )
        headers = dict(e.headers or {})
        if e.status_code == 405:  # Allow: every method of every route on this path
            headers["Allow"] = _allowed(r)
        return error_response(e.status_code, code, str(e.detail), headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, e: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(x) for x in err["loc"]), "problem": err["msg"]}
            for err in e.errors()
        ]
        return error_response(
            422, "invalid_request", "the request's parameters are not valid", details
        )

    async def _known(_r: Request, e: Exception) -> JSONResponse:
        status, code = _lookup(e)
        if isinstance(e, ModelError):
            details = [
                {"line": p.line, "column": p.column, "message": p.message, "text": str(p)}
                for p in e.problems
            ]
            return error_response(status, code, str(e).splitlines()[0], details)
        if isinstance(e, StageMoveError):
            return error_response(status, code, str(e), [e.details])
        if isinstance(e, sa.exc.OperationalError):
            log.error("database error: %s", e.orig)  # not the statement: it holds personal data
            return error_response(
                status,
                code,
                "the database is unavailable; try again",
                headers={"Retry-After": "1"},
            )
        return error_response(status, code, str(e))

    for cls in STATUS:
        app.add_exception_handler(cls, _known)

    @app.exception_handler(Exception)
    async def _bug(_r: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal", "an unexpected error; it has been logged")
