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

from .. import __version__
from ..service.clock import Clock
from ..service.facade import Service
from ..service.sla_watch import SlaWatch
from ..service.webhooks import Deliverer
from . import errors, handoff, ingest, leads, models, reports
from . import health as workers
from . import metrics as metrics_api
from .observe import ObservedApp
from .schemas import Health

__all__ = ["create_app"]


def create_app(
    engine: Engine,
    *,
    deliver: bool = True,
    clock: Clock | None = None,
    watch_sla: bool = True,
    metrics_access: str = metrics_api.ACCESS[0],
) -> FastAPI:
    """The app over one ``Service`` on ``engine``; ``clock`` is the service's time (the
    machine's by default); ``watch_sla``: run the SLA scheduler while the app runs;
    ``metrics_access``: who may read /metrics (``api/metrics.py``)."""
    if metrics_access not in metrics_api.ACCESS:
        raise ValueError(f"metrics_access must be one of {', '.join(metrics_api.ACCESS)}")
    service = Service(engine, clock=clock)
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
        yield
        if watch is not None:
            watch.stop()
        if deliverer is not None:
            deliverer.stop()

    app = ObservedApp(  # every request with an id, logged and counted (observe.py)
        title="leadscore",
        version=__version__,
        summary="Segment-compatible event ingest, real-time lead scores and the MQL handoff.",
        lifespan=lifespan,
        responses=errors.COMMON,
    )
    app.state.service = service
    app.state.deliverer = deliverer
    app.state.sla_watch = watch
    app.state.metrics_access = metrics_access
    errors.install(app)

    @app.get(
        "/health",
        tags=["service"],
        response_model=Health,
    )
    def health(request: Request) -> Any:
        """200 when the database answers reads and takes writes and the SLA scheduler and
        webhook deliverer threads are alive; else 503 saying which fails."""
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
    app.include_router(metrics_api.router)
    return app
