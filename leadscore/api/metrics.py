"""``GET /metrics``: the service's counters in the Prometheus text format
(``leadscore.service.metrics``), and who may read them.

``leadscore serve --metrics`` decides:
- ``token`` (the default): an API token, scope read or admin, as ``Authorization: Bearer``
  (Prometheus sends one with ``authorization: {credentials_file: …}``). Counts of events, MQLs
  and webhooks say how a business is doing; they are not for anyone who finds the port.
- ``loopback``: also without a token from 127.0.0.0/8 or ::1 (an agent on the same machine).
  A reverse proxy on the same machine makes every request look local unless it sends
  ``X-Forwarded-For``: choose ``token`` there, or block ``/metrics`` at the proxy.
- ``open``: anyone (a private network only).
- ``off``: ``404``.
A token that is presented is always checked, whatever the setting.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials

from ..service import metrics
from ..service.auth import find_key
from ..service.facade import Service
from .errors import ApiError, responses
from .security import _bearer

__all__ = ["ACCESS", "router"]

#: who may read /metrics; the first is the default
ACCESS = ("token", "loopback", "open", "off")

router = APIRouter(tags=["service"])


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@router.get(
    "/metrics",
    summary="The service's metrics in the Prometheus text format",
    response_class=Response,
    responses={
        200: {
            "description": "Counters, histograms and gauges (Prometheus text format).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(401, 403, 404),
    },
)
async def get_metrics(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    """Ingest, MQLs, webhooks, SLA breaches, HTTP requests, the outbox's depth (read now),
    the process. Who may read it: `leadscore serve --metrics` (default: a read or admin
    token)."""
    access = getattr(request.app.state, "metrics_access", ACCESS[0])
    if access == "off":
        raise ApiError(404, "not_found", "metrics are off (leadscore serve --metrics off)")
    service: Service = request.app.state.service
    if bearer is not None:
        row = await run_in_threadpool(find_key, service.engine, bearer.credentials.strip())
        if row is None:
            raise ApiError(401, "unauthorized", "the token is not valid or was revoked")
        if row.scope not in ("read", "admin"):
            raise ApiError(
                403,
                "forbidden",
                f"a key of scope {row.scope} cannot read metrics; use a read or admin token",
            )
    elif not (access == "open" or (access == "loopback" and _loopback(request))):
        raise ApiError(
            401, "unauthorized", "send an API token (scope read): Authorization: Bearer <token>"
        )
    outbox = metrics.OutboxDepth(service.engine, service.now_us)
    model = metrics.ActiveModel(
        lambda: None if service.active_or_none is None else service.active_or_none.version
    )
    body = await run_in_threadpool(metrics.render, outbox, model)
    return Response(body, media_type=metrics.CONTENT_TYPE)
