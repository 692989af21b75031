"""Alembic environment: leadscore applies its migrations itself on start (leadscore.store.db)."""

from __future__ import annotations

from alembic import context

from leadscore.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` run by hand, e.g. to write a new migration
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///leadscore.db")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
