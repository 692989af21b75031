"""What the live service counts for an operator, as Prometheus metrics (``GET /metrics``).

The counters live in this process, in one registry of their own (not the client library's
global one, so nothing else registered there leaks out), and are incremented by the service
after the work they count has committed: a batch that rolled back counts no accepted message
and no MQL. The outbox depth is not counted but read from the database at scrape time
(``OutboxDepth``), so it is right across restarts and for every process sharing the database.

The pure core (``leadscore.engine``, ``leadscore.handoff``) never imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from .. import __version__
from ..store import schema as t

__all__ = [
    "CONTENT_TYPE",
    "DELIVERY_OUTCOMES",
    "REGISTRY",
    "ActiveModel",
    "OutboxDepth",
    "attempts_stored",
    "delivered",
    "http_request",
    "ingested",
    "mqls",
    "render",
    "sla_breaches",
]

log = logging.getLogger("leadscore.metrics")

#: the text format's media type, as the client library writes it
CONTENT_TYPE = CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
# the process's memory, CPU and file descriptors, Python's version and garbage collection
for _c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_c)

Info("leadscore_build", "The leadscore version this process runs.", registry=REGISTRY).info(
    {"version": __version__}
)
INGEST_MESSAGES = Counter(
    "leadscore_ingest_messages",
    "Messages sent to the ingest endpoints, by outcome: accepted (stored), duplicate (its "
    "messageId was stored before), rejected (refused by index, or the whole call refused "
    "because none could be accepted).",
    ["outcome"],
    registry=REGISTRY,
)
INGEST_BATCHES = Histogram(
    "leadscore_ingest_batch_duration_seconds",
    "Time to check, store and score one ingest call's messages (the body already read).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
MQLS = Counter(
    "leadscore_mqls",
    "Leads that became MQLs, by what qualified them: ingest (new events or traits) or "
    "activation (a model activated re-scored every lead).",
    ["via"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "leadscore_webhook_deliveries",
    "Webhook delivery attempts, by outcome: delivered (a 2xx), retrying (failed, tried again "
    "later), failed (failed for good: out of retries, or a URL that cannot be sent to).",
    ["outcome"],
    registry=REGISTRY,
)
SLA_BREACHES = Counter(
    "leadscore_sla_breaches",
    "Speed-to-lead SLA breaches marked (each once, when its deadline passed untouched).",
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "leadscore_http_requests",
    "HTTP requests answered, by method, route (the path template, e.g. /api/leads/{lead_id}; "
    "'unmatched' for paths no route has) and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "leadscore_http_request_duration_seconds",
    "Time from a request's headers to the end of its answer, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

INGEST_OUTCOMES = ("accepted", "duplicate", "rejected")
DELIVERY_OUTCOMES = ("delivered", "retrying", "failed")
for _o in INGEST_OUTCOMES:  # every outcome shown from the start, at 0
    INGEST_MESSAGES.labels(_o)
for _o in DELIVERY_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_o)
for _v in ("ingest", "activation"):
    MQLS.labels(_v)


def ingested(
    accepted: int,
    duplicates: int,
    rejected: int,
    seconds: float | None = None,
    new_mqls: Sequence[str] = (),
) -> None:
    """One ingest call's messages by outcome, how long the call took (when it stored), and the
    leads it made MQLs (once it has committed)."""
    for outcome, n in zip(INGEST_OUTCOMES, (accepted, duplicates, rejected), strict=True):
        if n:
            INGEST_MESSAGES.labels(outcome).inc(n)
    if seconds is not None:
        INGEST_BATCHES.observe(seconds)
    mqls(len(new_mqls))


def mqls(n: int, via: str = "ingest") -> None:
    if n:
        MQLS.labels(via).inc(n)


def delivered(outcome: str, n: int = 1) -> None:
    """Webhook delivery attempts stored with ``outcome`` (one of ``DELIVERY_OUTCOMES``)."""
    if n:
        WEBHOOK_DELIVERIES.labels(outcome).inc(n)


def attempts_stored(outcomes: Sequence[tuple[Any, Any]], max_attempts: int) -> None:
    """A deliverer's turn once its outcomes have committed: each ``(row, (status, error,
    give_up, ms))`` counted by what it made of the row, as ``Deliverer._record`` decides."""
    for row, (_status, error, give_up, _ms) in outcomes:
        if error is None:
            delivered("delivered")
        elif row.attempts + 1 >= max_attempts or give_up:
            delivered("failed")
        else:
            delivered("retrying")


def sla_breaches(n: int) -> None:
    if n:
        SLA_BREACHES.inc(n)


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_SECONDS.labels(method, route).observe(seconds)


_O = t.outbox.c
#: notifications not delivered yet: waiting (pending) or given up (failed); the outbox's
#: index on delivered_at_us finds them without reading the delivered ones
_DEPTH = sa.select(
    sa.func.count().filter(_O.failed_at_us.is_(None)),
    sa.func.count().filter(_O.failed_at_us.is_not(None)),
    sa.func.min(_O.created_at_us).filter(_O.failed_at_us.is_(None)),
).where(_O.delivered_at_us.is_(None))


class OutboxDepth(Collector):
    """The outbox read at scrape time: notifications waiting to be delivered, those that
    failed for good, and the age of the oldest waiting one. When the database cannot be read
    the gauges are left out (``leadscore_outbox_read_ok`` says so) rather than the scrape
    failing."""

    def __init__(self, engine: Engine, now_us: Callable[[], int]) -> None:
        self.engine = engine
        self.now_us = now_us

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "leadscore_outbox_read_ok",
            "1 when the outbox could be read for this scrape, else 0.",
        )
        try:
            with self.engine.connect() as conn:
                pending, failed, oldest = conn.execute(_DEPTH).one()
        except sa.exc.SQLAlchemyError as e:
            log.warning("metrics: cannot read the outbox (%s)", getattr(e, "orig", None) or e)
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield GaugeMetricFamily(
            "leadscore_outbox_pending",
            "Webhook notifications waiting to be delivered (due now or waiting for a retry).",
            value=int(pending or 0),
        )
        yield GaugeMetricFamily(
            "leadscore_outbox_failed",
            "Webhook notifications that failed for good (`leadscore webhooks retry` sends "
            "them again).",
            value=int(failed or 0),
        )
        age = 0.0 if oldest is None else max(0.0, (self.now_us() - int(oldest)) / 1e6)
        yield GaugeMetricFamily(
            "leadscore_outbox_oldest_pending_age_seconds",
            "Age of the oldest notification waiting to be delivered (0 when none waits).",
            value=age,
        )


class _Both(Collector):
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c.collect()


class ActiveModel(Collector):
    """The active model's version, read at scrape time (left out while no model is active):
    every process serving one database should show the same."""

    def __init__(self, version: Callable[[], int | None]) -> None:
        self.version = version

    def collect(self) -> Iterator[Metric]:
        version = self.version()
        if version is not None:
            yield GaugeMetricFamily(
                "leadscore_active_model_version",
                "The version of the scoring model this process scores with.",
                value=version,
            )


def render(*scraped: Collector) -> bytes:
    """The text exposition of every counter, and of the ``scraped`` collectors read now (the
    outbox is database work: call it off the event loop)."""
    if not scraped:
        return bytes(generate_latest(REGISTRY))
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Both(REGISTRY, *scraped))
    return bytes(generate_latest(scrape))
