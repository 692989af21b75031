"""Whether the service's background threads are alive, for ``/health``: the SLA scheduler
(``SlaWatch``, marks breaches), the webhook deliverer (``Deliverer``) and the event retention
purge (``Retention``, with ``--retain-events-days``).

Each is ``ok`` (running), ``off`` (not run by this app), ``not started`` (the app's start-up
has not run: an app driven without its lifespan, as some tests do), ``stopped`` (asked to
stop: the server is shutting down) or ``dead`` (it ended without being asked: an error its
loop did not catch). Only ``dead`` makes the service unhealthy: breaches would go unmarked, or
notifications unsent, or events kept past their retention, while ingest goes on answering 200.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["FAILING", "WORKERS", "problems", "thread_states"]

#: the app.state attribute of each worker, and its name in /health
WORKERS = {
    "sla_watch": "sla_scheduler",
    "deliverer": "webhook_deliverer",
    "retention": "event_retention",
}

FAILING = "dead"

_PROBLEM = {
    "sla_scheduler": "the SLA scheduler thread has died: breaches are not being marked",
    "webhook_deliverer": "the webhook deliverer thread has died: notifications are not being sent",
    "event_retention": "the event retention thread has died: old events are not being deleted",
}


def _state(worker: Any) -> str:
    if worker is None:
        return "off"
    thread: threading.Thread | None = getattr(worker, "_thread", None)
    if thread is None:
        return "not started"
    if thread.is_alive():
        return "ok"
    stop: threading.Event | None = getattr(worker, "_stop", None)
    return "stopped" if stop is not None and stop.is_set() else FAILING


def thread_states(state: Any) -> dict[str, str]:
    """Each worker's state, by its name in /health."""
    return {name: _state(getattr(state, attr, None)) for attr, name in WORKERS.items()}


def problems(states: dict[str, str]) -> list[dict[str, str]]:
    """The ``details`` of a 503 for the workers that have died."""
    return [
        {"check": name, "problem": _PROBLEM[name]}
        for name, value in states.items()
        if value == FAILING
    ]
