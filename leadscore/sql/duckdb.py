"""How the scoring query reads the DuckDB views leadscore.io makes of the user's files.

The views have a canonical shape (see leadscore.io): leads ``lead_id`` plus one column per trait
(dotted names or STRUCT columns), events ``lead_id, event, ts, properties``. This adapter looks at
the column types once and tells the compiler how to read each field the model uses as text.
"""

from __future__ import annotations

from typing import Any

import duckdb
from sqlglot import exp

from ..model.schema import Condition, Model, leaves
from .dialects import json_path
from .sources import ColumnTables
from .text import EMPTY_EVENTS, TRAITS_COLUMN, type_name

__all__ = [
    "EMPTY_EVENTS",
    "TRAITS_COLUMN",
    "column_source",
    "fields_of",
    "lead_field_sql",
    "lead_paths",
    "resolve_field",
    "text_expr",
    "type_name",
]

Path = tuple[str, ...]


def fields_of(cond: Condition | None) -> set[Path]:
    return {leaf.path for leaf in leaves(cond)}


def _q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def text_expr(value: exp.Expr, dtype: Any) -> exp.Expr:
    """The text form (leadscore/model/values.py) of a DuckDB value of type ``dtype``."""
    tid = type_name(dtype)
    if tid == "varchar":
        return value
    if tid == "json":
        return exp.Anonymous(
            this="json_extract_string", expressions=[value, exp.Literal.string("$")]
        )
    if tid in ("struct", "list", "map", "array"):
        return exp.cast(exp.Anonymous(this="to_json", expressions=[value]), "varchar")
    if tid == "decimal":
        return exp.cast(exp.cast(value, "double"), "varchar")
    return exp.cast(value, "varchar")


def _resolve(table: str, columns: dict[str, Any], path: Path) -> exp.Expr | None:
    """An expression for the field at ``path`` in a relation with these columns, or None."""
    flat = ".".join(path)
    if flat in columns:
        return text_expr(exp.column(_q(flat), table=_q(table)), columns[flat])
    for cut in range(len(path) - 1, 0, -1):
        head = ".".join(path[:cut])
        if head not in columns:
            continue
        value: exp.Expr = exp.column(_q(head), table=_q(table))
        dtype = columns[head]
        rest = path[cut:]
        for i, part in enumerate(rest):
            tid = type_name(dtype)
            if tid == "struct":
                children = dict(dtype.children)
                if part not in children:
                    return None
                value = exp.Anonymous(
                    this="struct_extract", expressions=[value, exp.Literal.string(part)]
                )
                dtype = children[part]
            elif tid in ("json", "varchar"):
                if tid == "varchar" and head != "properties":
                    return None
                nested = exp.Anonymous(
                    this="json_extract_string",
                    expressions=[value, exp.Literal.string(json_path(rest[i:]))],
                )
                if head != TRAITS_COLUMN or len(rest) - i < 2:
                    return nested
                # a JSON Lines lead may spell a nested trait as one dotted key
                dotted = exp.Anonymous(
                    this="json_extract_string",
                    expressions=[
                        value.copy(),
                        exp.Literal.string(json_path((".".join(rest[i:]),))),
                    ],
                )
                return exp.Coalesce(this=nested, expressions=[dotted])
            else:
                return None
        return text_expr(value, dtype)
    return None


resolve_field = _resolve


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, Any]:
    rel = con.sql(f'SELECT * FROM "{view}" LIMIT 0')
    return dict(zip(rel.columns, rel.types, strict=True))


def lead_paths(model: Model) -> list[Path]:
    """Every lead field the model reads, once each, in the order its rules read them."""
    paths = [p for r in model.fit_rules for p in fields_of(r.when)]
    paths += [
        p for er in model.engagement_rules for p in (er.trait_path, er.at_path) if p is not None
    ]
    return list(dict.fromkeys(paths))


def lead_field(columns: dict[str, Any], path: Path) -> exp.Expr | None:
    """The text form of a lead field in the leads view (alias ``l``), or None when no column
    holds it: a column of its own, a STRUCT, or the JSON traits of JSON Lines leads."""
    e = _resolve("l", columns, path)
    if e is None and TRAITS_COLUMN in columns:
        e = _resolve("l", columns, (TRAITS_COLUMN, *path))
    return e


def lead_field_sql(columns: dict[str, Any], path: Path) -> str | None:
    """lead_field as DuckDB SQL text."""
    e = lead_field(columns, path)
    return None if e is None else e.sql(dialect="duckdb")


def column_source(
    con: duckdb.DuckDBPyConnection, model: Model, leads_view: str, events_view: str | None
) -> ColumnTables:
    lead_cols = _columns(con, leads_view)
    lead_fields = {}
    for path in lead_paths(model):
        e = lead_field(lead_cols, path)
        if e is not None:
            lead_fields[path] = e
    if events_view is None:
        events_view = "leadscore_no_events"
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{events_view}" AS {EMPTY_EVENTS}')
    ev_cols = _columns(con, events_view)
    event_fields = {}
    for er in model.engagement_rules:
        for path in fields_of(er.when):
            e = _resolve("e", ev_cols, ("properties", *path))
            if e is not None:
                event_fields[path] = e
    return ColumnTables(
        leads=leads_view,
        events=events_view,
        ts="ts",
        lead_fields=lead_fields,
        event_fields=event_fields,
    )
