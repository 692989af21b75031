"""Retention of raw events: ``leadscore serve --retain-events-days N`` deletes events whose
timestamp is more than N days old, in the background, and never changes a stored score.

Why no score changes: a stored score is the lead's parts (fit from traits, engagement sums)
as of when it was scored, decayed at read time; an event counts only while it is inside the
active model's ``engagement.window_days``. With N at least that window, every event deleted is
one no score can count any more, now or later, so the stored parts, a re-score from the
remaining events and a read all give what they gave before. Hence the rule: retention is
refused when N is shorter than the active model's window, or when the model has no window
(every event counts forever); and a model with a longer window, or none, cannot be activated
while retention runs (``check_window``). Traits live on the lead and are never purged.

What a model activated later sees: the traits of every lead, and the events of the last N
days only. Its activation re-scores every lead from those; a model whose window fits in N days
scores exactly as if nothing had been deleted, which is why one with a longer window is refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import InvalidRequestError
from ..model import Model, parse_model
from ..store import schema as t
from .common import US

__all__ = ["DAY_US", "Retention", "check_version", "check_window", "purge_before"]

log = logging.getLogger("leadscore.retention")

DAY_US = 86_400 * US
#: events deleted per transaction: short transactions, so ingest never waits long
CHUNK = 5_000


def check_window(model: Model, days: float) -> None:
    """InvalidRequestError unless every event ``model`` can count is younger than ``days``."""
    window = model.window_days
    if window is None:
        raise InvalidRequestError(
            f"model {model.name!r} has no engagement.window_days, so every event counts for "
            f"ever, but events older than {days:g} days are deleted (--retain-events-days): "
            f"give the model a window_days of at most {days:g}"
        )
    if window > days:
        raise InvalidRequestError(
            f"model {model.name!r} counts events for {window:g} days (engagement.window_days), "
            f"but events older than {days:g} days are deleted (--retain-events-days): use a "
            f"window_days of at most {days:g}, or run serve with --retain-events-days {window:g} "
            "or more"
        )


def check_version(engine: Engine, version: int, days: float) -> None:
    """``check_window`` for a stored model version (nothing when there is no such version)."""
    with engine.connect() as conn:
        source = conn.execute(
            sa.select(t.models.c.source).where(t.models.c.version == version)
        ).scalar_one_or_none()
    if source is not None:
        check_window(parse_model(source, f"model v{version}"), days)


def purge_before(tx: Callable[[], Any], cutoff_us: int, chunk: int = CHUNK) -> int:
    """Delete every event with a timestamp before ``cutoff_us``, ``chunk`` rows per write
    transaction (``tx()``); how many."""
    total = 0
    while True:
        with tx() as conn:
            ids = (
                conn.execute(
                    sa.select(t.events.c.id).where(t.events.c.ts_us < cutoff_us).limit(chunk)
                )
                .scalars()
                .all()
            )
            if ids:
                conn.execute(sa.delete(t.events).where(t.events.c.id.in_(ids)))
        total += len(ids)
        if len(ids) < chunk:
            return total


class Retention:
    """The thread inside ``leadscore serve`` that purges old events (``purge``, e.g.
    ``Service.purge_events``): at start, then every ``interval_s``."""

    def __init__(self, purge: Callable[[], int], *, interval_s: float = 3600.0) -> None:
        self.purge = purge
        self.interval_s = interval_s
        self.purged = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Purge now; how many events were deleted."""
        n = self.purge()
        self.purged += n
        if n:
            log.info("retention: deleted %d old events", n)
        return n

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadscore-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except sa.exc.OperationalError as e:  # the database may be briefly unavailable
                log.error("retention: cannot delete old events (%s); trying again", e.orig)
            except Exception:
                log.exception("retention: cannot delete old events; trying again")
            self._stop.wait(self.interval_s)
