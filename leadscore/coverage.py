"""What a model reads that the data does not have: mistakes that would otherwise fail silently.

A misspelt field (``company.employes``) or event name (``Demo Requestd``) is valid in a model, so
the rule simply never fires. Given the data, these checks name every field no lead has, every
event name no event has and every property no such event has, each with the closest real name,
and, after scoring, every rule that fired for no lead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import duckdb

from .io import Inputs
from .model import Model, leaves
from .model.schema import EngagementRule, Rule
from .sql.text import TRAITS_COLUMN, type_name

__all__ = ["by_line", "check_inputs", "silent_rules"]

#: rows looked at to collect the keys of JSON traits and properties for suggestions
SAMPLE = 10_000


def _where(model: Model, rule: Rule) -> str:
    kind = "engagement" if isinstance(rule, EngagementRule) else "fit"
    return f"{model.file}:{rule.line}: {kind} rule '{rule.name}'"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    names = sorted(set(candidates))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f"; did you mean '{close[0]}'?" if close else ""


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, Any]:
    rel = con.sql(f'SELECT * FROM "{view}" LIMIT 0')
    return dict(zip(rel.columns, rel.types, strict=True))


def _paths(name: str, dtype: Any) -> list[str]:
    """A column's field names: itself, and the dotted paths into a STRUCT."""
    out = [name]
    if type_name(dtype) == "struct":
        for child, ctype in dtype.children:
            out += _paths(f"{name}.{child}", ctype)
    return out


def _json_keys(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Keys, and keys one level down, of the JSON objects ``sql`` gives (one column ``j``)."""
    try:
        rows = con.execute(
            f"SELECT DISTINCT k FROM (SELECT unnest(json_keys(j)) AS k, j FROM ({sql}) "
            f"WHERE json_type(j) = 'OBJECT' LIMIT {SAMPLE * 10})"
        ).fetchall()
        top = [str(r[0]) for r in rows]
        nested = con.execute(
            f"SELECT DISTINCT k || '.' || unnest(json_keys(j, '$.\"' || k || '\"')) FROM ("
            f"SELECT unnest(json_keys(j)) AS k, j FROM ({sql}) WHERE json_type(j) = 'OBJECT' "
            f"LIMIT {SAMPLE * 10}) WHERE json_type(j, '$.\"' || k || '\"') = 'OBJECT'"
        ).fetchall()
    except duckdb.Error:
        return []
    return top + [str(r[0]) for r in nested]


def _present(text: str, missing: tuple[str, ...]) -> str:
    """SQL: the field's text (SQL ``text``) is there, and not one of the model's placeholder
    values."""
    cond = f"nullif(trim({text}), '') IS NOT NULL"
    if missing:
        values = ", ".join("'" + m.replace("'", "''") + "'" for m in missing)
        cond += f" AND lower(trim({text})) NOT IN ({values})"
    return cond


def _lead_fields(
    model: Model, inputs: Inputs, fields: dict[tuple[str, ...], str | None] | None = None
) -> list[str]:
    con = inputs.con
    cols = _columns(con, inputs.leads_view)
    wanted: dict[tuple[str, ...], list[Rule]] = {}
    reads: list[tuple[tuple[str, ...], Rule]] = [
        (leaf.path, r) for r in model.fit_rules for leaf in leaves(r.when)
    ]
    reads += [
        (p, er)
        for er in model.engagement_rules
        for p in (er.trait_path, er.at_path)
        if p is not None
    ]
    for path, r in reads:
        rules = wanted.setdefault(path, [])
        if r not in rules:
            rules.append(r)
    if not wanted:
        return []
    if fields is None or any(p not in fields for p in wanted):
        from .sql.duckdb import lead_field_sql

        fields = {p: lead_field_sql(cols, p) for p in wanted}
    found = {p: e for p in wanted if (e := fields[p]) is not None}
    counts: dict[tuple[str, ...], int] = {}
    # a sample of leads first; every lead only for the fields the sample has no value for
    for rows in (f'(SELECT * FROM "{inputs.leads_view}" LIMIT {SAMPLE})', f'"{inputs.leads_view}"'):
        todo = [p for p in found if not counts.get(p)]
        if not todo:
            break
        sel = ", ".join(
            f"count(*) FILTER (WHERE {_present(found[p], model.missing_values)})" for p in todo
        )
        row = con.execute(f"SELECT {sel} FROM {rows} l").fetchone()
        counts.update(zip(todo, row or (), strict=False))
    candidates = [
        p for c, t in cols.items() if c not in ("lead_id", TRAITS_COLUMN) for p in _paths(c, t)
    ]
    if TRAITS_COLUMN in cols:
        candidates += _json_keys(
            con, f'SELECT CAST({TRAITS_COLUMN} AS JSON) AS j FROM "{inputs.leads_view}"'
        )
    out = []
    for path, rules in wanted.items():
        if counts.get(path, 0):
            continue
        field = ".".join(path)
        why = "which no lead has" if path not in found else "which no lead has a value for"
        for rule in rules:
            out.append(f"{_where(model, rule)} reads '{field}', {why}{_suggest(field, candidates)}")
    return out


def _event_names(model: Model, inputs: Inputs, fired: set[str] | None = None) -> list[str]:
    """Rules counting an event name no event has. A rule in ``fired`` gave some lead points,
    so its name is there: when every rule did, the names are not counted at all."""
    rules = [
        r
        for r in model.engagement_rules
        if r.trait is None and (fired is None or r.name not in fired)
    ]
    if not rules:
        return []
    seen = inputs.spellings()
    if seen is None:  # not counted while reading (Segment messages): one pass here
        assert inputs.events_view is not None
        rows = inputs.con.execute(
            f'SELECT lower(trim(event)) AS k, mode(event) FROM "{inputs.events_view}" '
            "WHERE event IS NOT NULL GROUP BY k"
        ).fetchall()
        seen = {str(k): str(name).strip() for k, name in rows}
    out = []
    for r in rules:
        if r.event_key in seen:
            continue
        out.append(
            f"{_where(model, r)} counts '{r.event}' events, and no event has that name"
            + _suggest(r.event, seen.values())
        )
    return out


def _properties(model: Model, inputs: Inputs, rules: list[EngagementRule]) -> list[str]:
    """For engagement rules that fired for no lead: the properties no event of theirs has."""
    con = inputs.con
    if inputs.events_view is None:
        return []
    cols = _columns(con, inputs.events_view)
    ptype = type_name(cols.get("properties"))
    out = []
    for r in rules:
        if r.when is None:
            continue
        named = f"lower(trim(event)) = '{r.event_key.replace(chr(39), chr(39) * 2)}'"
        for path in dict.fromkeys(leaf.path for leaf in leaves(r.when)):
            from .sql.duckdb import resolve_field

            e = resolve_field("e", cols, ("properties", *path))
            if e is not None:
                row = con.execute(
                    f'SELECT count(*) FROM "{inputs.events_view}" e WHERE {named} AND '
                    f"{_present(e.sql(dialect='duckdb'), model.missing_values)}"
                ).fetchone()
                if row and row[0]:
                    continue
            if ptype == "struct":
                keys = _paths("properties", cols["properties"])[1:]
                keys = [k.removeprefix("properties.") for k in keys]
            else:
                keys = _json_keys(
                    con,
                    f'SELECT CAST(properties AS JSON) AS j FROM "{inputs.events_view}" e '
                    f"WHERE {named}",
                )
            field = ".".join(path)
            out.append(
                f"{_where(model, r)} reads property '{field}' of '{r.event}' events, which none "
                f"has{_suggest(field, keys)}"
            )
    return out


def check_inputs(
    model: Model,
    inputs: Inputs,
    fields: dict[tuple[str, ...], str | None] | None = None,
    fired: set[str] | None = None,
) -> list[str]:
    """Warnings, one line each: fields no lead has, event names and properties no event has.
    ``fields``: each lead field as SQL over the leads, when a compiled plan has them; ``fired``:
    the rules known to have given some lead points (their event names need no looking up)."""
    out = _lead_fields(model, inputs, fields)
    if inputs.events_view is not None and model.has_event_rules:
        out += _event_names(model, inputs, fired)
    return out


def silent_rules(
    model: Model,
    inputs: Inputs,
    table: str | None,
    already: Iterable[str] = (),
    *,
    fired: set[str] | None = None,
) -> list[str]:
    """Rules that fired for no lead in a scored table (rules already warned about aside); for an
    engagement rule, the property it reads that no event of its name has, when that is why.
    ``fired`` gives the rules that did fire (and then ``inputs.leads`` the leads scored) where
    no table was made of the scores."""
    con = inputs.con
    if fired is None or table is not None:
        assert table is not None
        rows = con.execute(
            f"SELECT r.rule, count(*) FROM (SELECT unnest(reasons) AS r FROM {table}) GROUP BY r.rule"
        ).fetchall()
        fired = {str(name) for name, _ in rows}
        total = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        n = int(total[0]) if total else 0
    else:
        n = inputs.leads
    told = "\n".join(already)
    silent = [
        r
        for r in model.rules
        if r.points != 0 and r.name not in fired and f"rule '{r.name}' " not in told
    ]
    why = _properties(model, inputs, [r for r in silent if isinstance(r, EngagementRule)])
    explained = "\n".join(why)
    out = list(why)
    for r in silent:
        if f"rule '{r.name}' " not in explained:
            out.append(f"{_where(model, r)} fired for no lead (of {n:,})")
    return out


def by_line(messages: list[str]) -> list[str]:
    """Warnings in the order of the rules they are about in the model file."""
    return sorted(messages, key=_line_of)


def _line_of(message: str) -> int:
    import re

    m = re.search(r":(\d+): ", message)
    return int(m.group(1)) if m else 0
