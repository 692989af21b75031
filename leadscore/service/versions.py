"""Stored versions of a file the service runs by (a scoring model, a routing file): the one
active in this process, the most recently used versions kept parsed, and the store's active
version followed as several processes on one database need.

The active version is the store's: on PostgreSQL, where several processes serve one database,
every write transaction reads it under the writes lock (``Tx``) and uses that version, so a
write that begins after an activation committed in any process runs by the new version; reads
check it at most once a second (``poll``). SQLite has one serving process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from .common import POLL_S

__all__ = ["StoredVersions"]


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


A = TypeVar("A", bound=_Versioned)


class StoredVersions(Generic[A]):
    """The versions in ``table`` (columns version, source, active) and the active one.
    Subclasses say how a stored source becomes the thing that runs (``make``)."""

    table: sa.Table
    #: parsed versions kept, the most recently used: what a write may read under the writes lock
    #: (another process's activation), the routings the SLA watcher asks for. Keeping every one
    #: kept every model a service ever activated (tens of kilobytes each) for the process's life;
    #: an older version is parsed again from the store when asked for
    KEEP = 8

    def __init__(self, engine: Engine, tx: Callable[..., Any], now: Callable[[], int]) -> None:
        self.engine = engine
        self._tx = tx
        self._now = now
        self.current: A | None = None
        self._parsed: OrderedDict[int, A] = OrderedDict()
        self._guard = threading.Lock()
        self._synced = 0.0
        self.load()

    def make(self, version: int, source: str) -> A:
        """A stored source, parsed, ready to run (raises the file's own error)."""
        raise NotImplementedError

    def load(self) -> None:
        """Read the active version from the store."""
        with self.engine.connect() as conn:
            version = conn.execute(
                sa.select(self.table.c.version).where(self.table.c.active)
            ).scalar_one_or_none()
            self.sync(version, conn)

    def find(self, version: int, conn: Connection | None = None) -> A | None:
        """A stored version (parsed once while it is among the ``KEEP`` most recently used), or
        None when there is no such version; read on ``conn`` when given."""
        with self._guard:
            got = self._parsed.get(version)
            if got is not None:
                self._parsed.move_to_end(version)
        if got is not None:
            return got
        query = sa.select(self.table.c.source).where(self.table.c.version == version)
        if conn is not None:
            source = conn.execute(query).scalar_one_or_none()
        else:
            with self.engine.connect() as own:
                source = own.execute(query).scalar_one_or_none()
        if source is None:
            return None
        return self.keep(self.make(version, source))

    def keep(self, got: A) -> A:
        """Remember a parsed version (one just stored or activated), forgetting the least
        recently used beyond ``KEEP`` (the active one is ``current`` besides)."""
        with self._guard:
            self._parsed[got.version] = got
            self._parsed.move_to_end(got.version)
            while len(self._parsed) > self.KEEP:
                self._parsed.popitem(last=False)
        return got

    def of(self, version: int | None, conn: Connection | None = None) -> A | None:
        """A stored version, or None for None (a version that must exist)."""
        if version is None:
            return None
        current = self.current
        if current is not None and current.version == version:
            return current
        got = self.find(version, conn)
        if got is None:
            raise LookupError(f"{self.table.name}: version {version} is not stored")
        return got

    def sync(self, version: int | None, conn: Connection | None = None) -> None:
        """The store's active version, as read by a write transaction or ``poll``."""
        self.current = self.of(version, conn)
        self._synced = time.monotonic()

    def poll(self) -> A | None:
        """The active version for a read: on PostgreSQL read again once ``POLL_S`` has passed
        (another process may have activated one)."""
        if self.engine.dialect.name == "postgresql" and time.monotonic() - self._synced > POLL_S:
            self.load()
        return self.current

    def store(self, conn: Connection, name: str, source: str, at: int, by: str) -> int:
        """Insert a new version (not active); its number."""
        return int(
            conn.execute(
                sa.insert(self.table)
                .values(name=name, source=source, created_at_us=at, created_by=by)
                .returning(self.table.c.version)
            ).scalar_one()
        )

    def active_source(self) -> str | None:
        """The text of the active version, if any."""
        if self.current is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(self.table.c.source).where(self.table.c.version == self.current.version)
            ).scalar_one()

    def mark_active(self, conn: Connection, version: int, **values: Any) -> None:
        """In an activating transaction: ``version`` becomes the only active one."""
        conn.execute(sa.update(self.table).where(self.table.c.active).values(active=False))
        conn.execute(
            sa.update(self.table)
            .where(self.table.c.version == version)
            .values(active=True, **values)
        )

    def switch(self, active: A, activate: Callable[[Connection], Any]) -> Any:
        """Run ``activate`` in an exclusive write transaction (no ingest in any process
        meanwhile) and make ``active`` this process's before the write lock passes on; as it
        was when the transaction fails."""
        previous = self.current
        try:
            with self._tx(exclusive=True) as conn:
                result = activate(conn)
                self.keep(active)
                self.current = active
        except BaseException:
            self.current = previous
            raise
        return result

    def rows(self) -> list[Any]:
        """Every stored version, newest first."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.select(self.table).order_by(self.table.c.version.desc())).all()
            )
