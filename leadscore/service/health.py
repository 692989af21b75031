"""Whether the database takes writes. A read (``SELECT 1``) succeeds on a full disk, so it
cannot say; this does.

Every write transaction reports how it ended. From the moment one fails with a database error
(a full disk, a read-only file system, a lost server) until one commits, writes are reported
failing. So that a quiet service notices it has recovered, a check made ``PROBE_AFTER_S`` or
more after the last failure tries a small write of its own — the Alembic version row rewritten
with its own value, through the same write path as ingest — instead of waiting for traffic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import Engine

from .common import Tx, iso

__all__ = ["PROBE_AFTER_S", "WriteHealth"]

PROBE_AFTER_S = 5.0


class WriteHealth:
    def __init__(
        self, engine: Engine, lock: threading.Lock | None, now_us: Callable[[], int]
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.now_us = now_us
        # (since, last, why): the first and the latest failed write since the last success
        self._failure: tuple[int, int, str] | None = None
        self._guard = threading.Lock()

    def record(self, error: BaseException | None) -> None:
        """How a write ended: None when it committed."""
        with self._guard:
            if error is None:
                self._failure = None
            else:
                orig = getattr(error, "orig", None) or error
                at = self.now_us()
                since = self._failure[0] if self._failure else at
                self._failure = (since, at, (str(orig).splitlines() or [""])[0][:300])

    def check(self) -> str:
        """``ok``, or why writes fail and since when."""
        with self._guard:
            failure = self._failure
        if failure is None:
            return "ok"
        if self.now_us() - failure[1] >= PROBE_AFTER_S * 1_000_000:
            try:
                with Tx(self.engine, self.lock, self.record) as conn:
                    conn.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            except sa.exc.OperationalError:
                pass  # recorded
            with self._guard:
                failure = self._failure
            if failure is None:
                return "ok"
        return f"failing since {iso(failure[0])}: {failure[2]}"
