"""The HTTP front end of the live service (FastAPI): Segment-compatible ingest, the read API,
models. A thin layer over ``leadscore.service.facade.Service``: routes per area (ingest.py,
leads.py, models.py), auth as security dependencies (security.py), response models
(schemas.py), one error shape and one exception → status table (errors.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.types import ASGIApp

from .. import __version__
from ..service.clock import Clock
from ..service.facade import Service
from ..service.retention import Retention
from ..service.sla_watch import SlaWatch
from ..service.webhooks import Deliverer
from . import erasure, errors, handoff, ingest, leads, models, reports
from . import health as workers
from . import metrics as metrics_api
from .client_errors import ClientErrors
from .docs_pages import DOCS_ASSETS, add_docs
from .limits import Limits, Shed
from .observe import Observe, Templates
from .schemas import Health

__all__ = ["DOCS_ASSETS", "App", "create_app"]


class App(FastAPI):
    """The app, with two pure-ASGI middlewares outside Starlette's error handling, where
    ``add_middleware`` cannot put them (Starlette's ``ServerErrorMiddleware`` is always the
    outermost of those it adds, and answers a 500 itself): ``ClientErrors`` outermost (every
    ingest error, a 500 included, carries ``code`` and ``message`` at the top), then
    ``Observe`` (every answer, a 500 included, carries the request id and is logged and
    counted). Starlette builds the stack on the first request, with this method."""

    def build_middleware_stack(self) -> ASGIApp:
        return ClientErrors(Observe(super().build_middleware_stack(), Templates(self)))


def create_app(
    engine: Engine,
    *,
    deliver: bool = True,
    clock: Clock | None = None,
    watch_sla: bool = True,
    retain_events_days: float | None = None,
    limits: Limits | None = None,
    metrics_access: str = metrics_api.ACCESS[0],
) -> FastAPI:
    """The app over one ``Service`` on ``engine``; ``clock`` is the service's time (the
    machine's by default); ``watch_sla``: run the SLA scheduler while the app runs;
    ``retain_events_days``: purge older events in the background; from then on no model that
    counts older events can be activated (the caller checks the active one with
    ``service.set_retention`` once it has activated the model it starts with);
    ``limits``: rate limits and load shedding (limits.py; the defaults when not given).
    ``metrics_access``: who may read /metrics (``api/metrics.py``)."""
    if metrics_access not in metrics_api.ACCESS:
        raise ValueError(f"metrics_access must be one of {', '.join(metrics_api.ACCESS)}")
    service = Service(engine, clock=clock)
    service.retain_events_days = retain_events_days
    retention = Retention(service.purge_events) if retain_events_days is not None else None
    deliverer = Deliverer(engine, clock=clock) if deliver else None
    watch = SlaWatch(engine, service.check_sla, service.clock) if watch_sla else None
    if watch is not None:
        service.on_deadline = watch.wake

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        if deliverer is not None:
            deliverer.start()
        if watch is not None:
            watch.start()
        if retention is not None:
            retention.start()
        yield
        if retention is not None:
            retention.stop()
        if watch is not None:
            watch.stop()
        if deliverer is not None:
            deliverer.stop()

    app = App(
        docs_url=None,
        redoc_url=None,
        title="leadscore",
        version=__version__,
        summary="Segment-compatible event ingest, real-time lead scores and the MQL handoff.",
        lifespan=lifespan,
        responses=errors.COMMON,
    )
    add_docs(app)  # /docs, its assets served offline
    app.state.service = service
    app.state.deliverer = deliverer
    app.state.sla_watch = watch
    app.state.retention = retention
    app.state.limits = limits or Limits()
    app.add_middleware(Shed, limits=app.state.limits)
    app.state.metrics_access = metrics_access
    errors.install(app)

    @app.get(
        "/health",
        tags=["service"],
        response_model=Health,
    )
    def health(request: Request) -> Any:
        """200 when the database answers reads and takes writes and the background threads
        (SLA scheduler, webhook deliverer, event retention) are alive; else 503 saying which
        fails."""
        svc: Service = request.app.state.service
        state = svc.health()
        threads = workers.thread_states(request.app.state)
        dead = workers.problems(threads)
        if state["writes"] != "ok":
            return errors.error_response(
                503,
                "unavailable",
                f"the database does not take writes: {state['writes']}",
                [{"check": "writes", "problem": state["writes"]}, *dead],
            )
        if dead:
            return errors.error_response(
                503, "unavailable", "; ".join(d["problem"] for d in dead), dead
            )
        return {"status": "ok", "version": __version__, **state, **threads}

    app.include_router(ingest.router)
    app.include_router(leads.router)
    app.include_router(models.router)
    app.include_router(handoff.router)
    app.include_router(reports.router)
    app.include_router(erasure.router)
    app.include_router(metrics_api.router)
    return app
