"""Names and shapes of the DuckDB SQL that leadscore writes as text, without the SQL compiler.

What the file readers (leadscore.io) and a batch run whose query is already compiled need:
importing them does not import sqlglot, which a run that finds its query in the cache never
loads (see leadscore.sql.plan).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EMPTY_EVENTS", "TRAITS_COLUMN", "json_path", "type_name"]

Path = tuple[str, ...]

#: Leads read from JSON Lines keep all their traits in this one JSON column.
TRAITS_COLUMN = "__traits"

EMPTY_EVENTS = (
    "SELECT CAST(NULL AS VARCHAR) AS lead_id, CAST(NULL AS VARCHAR) AS event, "
    "CAST(NULL AS TIMESTAMP) AS ts, CAST(NULL AS JSON) AS properties WHERE false"
)


def json_path(path: Path) -> str:
    """A JSON path such as ``$.company.employees``; keys that are not plain words are quoted."""
    parts = []
    for p in path:
        if p.replace("_", "").isalnum() and p.isascii():
            parts.append("." + p)
        else:
            parts.append('."' + p.replace('"', '\\"') + '"')
    return "$" + "".join(parts)


def type_name(dtype: Any) -> str:
    """DuckDB's type name in lower case; JSON (a VARCHAR underneath) is ``json``."""
    if str(dtype).upper() == "JSON":
        return "json"
    return str(getattr(dtype, "id", dtype)).lower()


def slot(name: str) -> str:
    """The mark a compiled query holds where the instant it scores at goes (see
    leadscore.sql.plan): a lone ``'`` and a lone ``"``, which neither a string literal (where
    ``'`` is doubled) nor a quoted name (where ``"`` is) can hold, so no text of a model or a
    file can spell it."""
    return "{ls'" + name + '"}'
