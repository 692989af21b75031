"""Who may call what, as FastAPI security dependencies (so the OpenAPI schema shows them):
write keys as the HTTP Basic user name (Segment's clients), or a bearer token; API tokens as
``Authorization: Bearer``."""

# no postponed annotations here: FastAPI reads the annotations of a security object's
# __call__ at run time, where strings would not resolve

import base64
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from ..service.auth import find_key, remembered_key
from ..service.facade import Service
from .errors import ApiError

__all__ = [
    "KeySecret",
    "WriteSecret",
    "check_write_key",
    "remembered_write_key",
    "require",
    "write_secret",
]

_bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiToken", description="An API token (scope read or admin)."
)


def _basic_user(auth: str) -> str | None:
    """The user name of a Basic ``Authorization`` header's value; None for another scheme."""
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, _pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except Exception:
        raise ApiError(
            401, "unauthorized", "the Authorization header is not valid Basic auth"
        ) from None
    return user or None


def _bearer_token(auth: str) -> str | None:
    """The token of a Bearer ``Authorization`` header's value, as ``HTTPBearer`` reads it
    (``auto_error=False``); None for another scheme or none."""
    scheme, credentials = get_authorization_scheme_param(auth)
    if not (auth and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


class _WriteKeyBasic(HTTPBasic):
    """The write key as the Basic auth user name, the password empty, as Segment's clients send."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return _basic_user(request.headers.get("authorization", ""))


_basic = _WriteKeyBasic(
    auto_error=False,
    scheme_name="WriteKey",
    realm="leadscore",
    description="A write key (scope ingest) as the user name, the password empty.",
)


class KeySecret:
    """The secret a request presents in its headers, if any (the body's writeKey comes later)."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret


async def _write_secret(
    basic: Annotated[str | None, Depends(_basic)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeySecret:
    # async: no work to wait for, and FastAPI runs a plain function in the threadpool, a
    # thread hand-off for every ingest request
    return KeySecret(basic or (bearer.credentials.strip() if bearer else None))


def write_secret(request: Request) -> KeySecret:
    """What the ``WriteSecret`` dependency gives, read from the headers directly (the ingest
    routes call this instead of FastAPI's dependency solving: ``ingest.IngestRoute``): the
    Basic user name, else the Bearer token; a Basic header that is not valid is a 401."""
    auth = request.headers.get("authorization", "")
    basic = _basic_user(auth)
    bearer = _bearer_token(auth)
    return KeySecret(basic or (bearer.strip() if bearer else None))


_JSON_KINDS = {dict: "an object", list: "a list", bool: "true or false", int: "a number"}
_JSON_KINDS[float] = "a number"

WriteSecret = Annotated[KeySecret, Depends(_write_secret)]


def check_write_key(service: Service, secret: Any) -> Any:
    """The key row for an ingest call (runs database work: call it off the event loop).
    ``secret`` may be anything a body holds; only a string can be a key."""
    if secret is not None and not isinstance(secret, str):
        raise ApiError(
            401,
            "unauthorized",
            f"writeKey must be a string, not {_JSON_KINDS.get(type(secret), 'that')}",
        )
    if not secret:
        raise ApiError(
            401,
            "unauthorized",
            "no key: send the write key as the Basic auth user name, or writeKey in the body",
        )
    row = find_key(service.engine, secret)
    if row is None:
        raise ApiError(401, "unauthorized", "the key is not valid or was revoked")
    return _may_send(row)


def remembered_write_key(service: Service, secret: str) -> Any:
    """The key row for an ingest call when the process remembers the key (no database work:
    the event loop calls it, saving the request a hand-off to the threadpool); None when the
    key must be looked up, by ``check_write_key`` in the threadpool."""
    row = remembered_key(service.engine, secret)
    return None if row is None else _may_send(row)


def _may_send(row: Any) -> Any:
    if row.scope not in ("ingest", "admin"):
        raise ApiError(
            403,
            "forbidden",
            f"a key of scope {row.scope} cannot send events; use a write key (scope ingest)",
        )
    return row


def _charge_address(request: Request) -> None:
    """A request without a valid token counts against its client address (429 when over)."""
    address = request.client.host if request.client else "unknown"
    request.app.state.limits.charge_request(("address", address), "client address")


def require(*scopes: str) -> Callable[..., Any]:
    """A dependency: the API token's key row, when its scope is one of ``scopes``."""

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Any:
        limits = request.app.state.limits
        if bearer is None:
            _charge_address(request)
            raise ApiError(401, "unauthorized", "send an API token: Authorization: Bearer <token>")
        service: Service = request.app.state.service
        token = bearer.credentials.strip()
        # a token the process remembers is checked here, on the event loop (no database read)
        row = remembered_key(service.engine, token)
        if row is None:
            row = await run_in_threadpool(find_key, service.engine, token)
        if row is None:
            _charge_address(request)
            raise ApiError(401, "unauthorized", "the token is not valid or was revoked")
        limits.charge_request(("key", row.id), "API token")
        if row.scope not in scopes:
            raise ApiError(
                403,
                "forbidden",
                f"a key of scope {row.scope} cannot do this; it needs scope {' or '.join(scopes)}",
            )
        return row

    return dependency
