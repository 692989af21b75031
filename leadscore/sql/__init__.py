"""The scoring model as one SQL query: compiled once to a sqlglot tree, rendered per dialect.

The names below are loaded when first used: a batch run whose query is already compiled
(leadscore.sql.plan) imports leadscore.sql.text and leadscore.sql.plan alone, never sqlglot.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compiler import DIALECTS, compile_score, score_sql
    from .dialects import AsOf
    from .sources import ColumnTables, JsonTables, Source

__all__ = ["DIALECTS", "AsOf", "ColumnTables", "JsonTables", "Source", "compile_score", "score_sql"]

_HOME = {
    "DIALECTS": "compiler",
    "compile_score": "compiler",
    "score_sql": "compiler",
    "AsOf": "dialects",
    "ColumnTables": "sources",
    "JsonTables": "sources",
    "Source": "sources",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
