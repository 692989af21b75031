"""What SQLite needs to run the scoring query: the functions it lacks out of the box."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

__all__ = ["connect_functions"]


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str | None, value: str | None) -> bool | None:
    if pattern is None or value is None:
        return None
    return _compiled(pattern).search(value) is not None


def connect_functions(con: sqlite3.Connection) -> None:
    """Register REGEXP (``x REGEXP p``) on a sqlite3 connection; POWER is built in since 3.35."""
    con.create_function("regexp", 2, _regexp, deterministic=True)
