"""Moving a test database to one migration of the service's, up or down, as the migration
tests need (the service itself only ever upgrades to the head: ``store.db.upgrade``)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from leadscore.store.db import _MIGRATIONS


def migrate(engine: sa.Engine, to: str, down: bool = False) -> None:
    """Upgrade (or, ``down``, downgrade) ``engine``'s database to revision ``to``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, to)
