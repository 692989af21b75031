"""The service's storage: tables, migrations and the database it opens."""

from .db import DEFAULT_URL, database_url, open_engine
from .schema import metadata

__all__ = ["DEFAULT_URL", "database_url", "metadata", "open_engine"]
