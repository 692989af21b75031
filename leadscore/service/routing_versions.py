"""Routing versions, like model versions: store a validated routing file as a new version,
activate a version, list the versions. The active one decides where new MQLs go; activating a
version routes the open MQLs nobody owns yet (those that arrived while no routing was active).

As with models (``models.py``), the active version is the store's: a write transaction on
PostgreSQL routes with the version it read under the writes lock, reads check at most once a
second."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..errors import NotFoundError
from ..handoff import Routing, parse_routing
from ..store import schema as t
from .common import POLL_S, iso

__all__ = ["ActiveRouting", "RoutingVersions"]


@dataclass(frozen=True)
class ActiveRouting:
    version: int
    routing: Routing


class RoutingVersions:
    """The stored routing versions and the one active in this process."""

    def __init__(
        self,
        engine: Engine,
        tx: Callable[..., Any],
        now: Callable[[], int],
        on_activate: Callable[[Connection, ActiveRouting, int], int] | None = None,
    ) -> None:
        self.engine = engine
        self._tx = tx
        self._now = now
        #: called in the activating transaction: routes the open MQLs without an owner
        self.on_activate = on_activate
        self.current: ActiveRouting | None = None
        self._parsed: dict[int, Routing] = {}
        self._synced = 0.0
        self.load()

    def load(self) -> None:
        """Read the active version from the store."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.routing_versions).where(t.routing_versions.c.active)
            ).first()
        self.current = None if row is None else ActiveRouting(row.version, self._parse(row))
        self._synced = time.monotonic()

    def of(self, version: int | None, conn: Connection | None = None) -> ActiveRouting | None:
        """A stored version as the active one (parsed once per process), or None for None."""
        if version is None:
            return None
        current = self.current
        if current is not None and current.version == version:
            return current
        routing = self._parsed.get(version)
        if routing is None:
            query = sa.select(t.routing_versions).where(t.routing_versions.c.version == version)
            if conn is not None:
                row = conn.execute(query).one()
            else:
                with self.engine.connect() as own:
                    row = own.execute(query).one()
            routing = self._parse(row)
        return ActiveRouting(version, routing)

    def sync(self, version: int | None, conn: Connection | None = None) -> None:
        """The store's active version, as read by a write transaction."""
        self.current = self.of(version, conn)
        self._synced = time.monotonic()

    def poll(self) -> ActiveRouting | None:
        """The active version for a read: on PostgreSQL read again once ``POLL_S`` has passed."""
        if self.engine.dialect.name == "postgresql" and time.monotonic() - self._synced > POLL_S:
            self.load()
        return self.current

    def in_tx(self, versions: tuple[int | None, int | None] | None) -> ActiveRouting | None:
        """The active routing of a write transaction (see ``ModelVersions.in_tx``)."""
        return self.current if versions is None else self.of(versions[1])

    def _parse(self, row: Any) -> Routing:
        routing = self._parsed.get(row.version)
        if routing is None:
            routing = parse_routing(row.source, f"routing v{row.version}")
            self._parsed[row.version] = routing
        return routing

    def version(self, version: int) -> Routing | None:
        """A stored version (parsed once per process), or None."""
        if version in self._parsed:
            return self._parsed[version]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.routing_versions).where(t.routing_versions.c.version == version)
            ).first()
        return None if row is None else self._parse(row)

    def add(self, source: str, by: str, file: str = "<request>") -> dict[str, Any]:
        """Validate (RoutingError with every problem), store as a new version, activate."""
        routing = parse_routing(source, file)
        at = self._now()
        with self._tx() as conn:
            version = conn.execute(
                sa.insert(t.routing_versions)
                .values(name=routing.name, source=source, created_at_us=at, created_by=by)
                .returning(t.routing_versions.c.version)
            ).scalar_one()
        self._parsed[int(version)] = routing
        return self.activate(int(version))

    def ensure(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --routing: activate this file unless the active version has its text."""
        parse_routing(source, file)  # the file's own name in every problem
        if self.current is not None:
            with self.engine.connect() as conn:
                current = conn.execute(
                    sa.select(t.routing_versions.c.source).where(
                        t.routing_versions.c.version == self.current.version
                    )
                ).scalar_one()
            if current == source:
                return {
                    "version": self.current.version,
                    "name": self.current.routing.name,
                    "active": True,
                    "unchanged": True,
                }
        return self.add(source, by, file)

    def activate(self, version: int) -> dict[str, Any]:
        """Make a stored version the active one; routes open MQLs that have no owner."""
        routing = self.version(version)
        if routing is None:
            raise NotFoundError(f"there is no routing version {version}")
        active = ActiveRouting(version, routing)
        previous = self.current
        try:
            with self._tx(exclusive=True) as conn:  # no ingest in any process meanwhile
                at = self._now()
                conn.execute(
                    sa.update(t.routing_versions)
                    .where(t.routing_versions.c.active)
                    .values(active=False)
                )
                conn.execute(
                    sa.update(t.routing_versions)
                    .where(t.routing_versions.c.version == version)
                    .values(active=True, activated_at_us=at)
                )
                routed = self.on_activate(conn, active, at) if self.on_activate else 0
                self.current = active  # before the write lock passes on
        except BaseException:
            self.current = previous
            raise
        return {"version": version, "name": routing.name, "active": True, "routed": routed}

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.routing_versions).order_by(t.routing_versions.c.version.desc())
            ).all()
        return [
            {
                "version": r.version,
                "name": r.name,
                "active": r.active,
                "created_at": iso(r.created_at_us),
                "created_by": r.created_by,
                "activated_at": iso(r.activated_at_us),
                "source": r.source,
            }
            for r in rows
        ]
