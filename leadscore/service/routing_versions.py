"""Routing versions, like model versions: store a validated routing file as a new version,
activate a version, list the versions. The active one decides where new MQLs go; activating a
version routes the open MQLs nobody owns yet (those that arrived while no routing was active).
How the active version is followed across processes: ``versions.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from ..errors import NotFoundError
from ..handoff import Routing, parse_routing
from ..store import schema as t
from .common import iso
from .versions import StoredVersions

__all__ = ["ActiveRouting", "RoutingVersions"]


@dataclass(frozen=True)
class ActiveRouting:
    version: int
    routing: Routing


class RoutingVersions(StoredVersions[ActiveRouting]):
    """The stored routing versions and the one active in this process."""

    table = t.routing_versions

    def __init__(
        self,
        engine: Engine,
        tx: Callable[..., Any],
        now: Callable[[], int],
        on_activate: Callable[[Connection, ActiveRouting, int], int] | None = None,
    ) -> None:
        #: called in the activating transaction: routes the open MQLs without an owner
        self.on_activate = on_activate
        super().__init__(engine, tx, now)

    def make(self, version: int, source: str) -> ActiveRouting:
        return ActiveRouting(version, parse_routing(source, f"routing v{version}"))

    def in_tx(self, versions: tuple[int | None, int | None] | None) -> ActiveRouting | None:
        """The active routing of a write transaction (see ``ModelVersions.in_tx``)."""
        return self.current if versions is None else self.of(versions[1])

    def version(self, version: int) -> Routing | None:
        """A stored version (kept parsed while recently used), or None."""
        got = self.find(version)
        return None if got is None else got.routing

    def add(self, source: str, by: str, file: str = "<request>") -> dict[str, Any]:
        """Validate (RoutingError with every problem), store as a new version, activate."""
        routing = parse_routing(source, file)
        with self._tx() as conn:
            version = self.store(conn, routing.name, source, self._now(), by)
        self.keep(ActiveRouting(version, routing))
        return self.activate(version)

    def ensure(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --routing: activate this file unless the active version has its text."""
        parse_routing(source, file)  # the file's own name in every problem
        current = self.current
        if current is not None and self.active_source() == source:
            return {
                "version": current.version,
                "name": current.routing.name,
                "active": True,
                "unchanged": True,
            }
        return self.add(source, by, file)

    def activate(self, version: int) -> dict[str, Any]:
        """Make a stored version the active one; routes open MQLs that have no owner."""
        active = self.find(version)
        if active is None:
            raise NotFoundError(f"there is no routing version {version}")

        def switch(conn: Connection) -> int:
            at = self._now()
            self.mark_active(conn, version, activated_at_us=at)
            return self.on_activate(conn, active, at) if self.on_activate else 0

        routed = self.switch(active, switch)
        return {"version": version, "name": active.routing.name, "active": True, "routed": routed}

    def list(self) -> list[dict[str, Any]]:
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
            for r in self.rows()
        ]
