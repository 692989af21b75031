"""A batch run's scoring statements as DuckDB SQL text, compiled once per model and input shape.

Compiling the model (leadscore.sql.compiler, on sqlglot) costs a run about a fifth of a second of
CPU before the first file is read: importing sqlglot and its DuckDB dialect, building the tree,
writing it out. Nothing of that depends on the data, only on the model, the leads' and events'
column types and whether the scan also checks the events. So a batch run compiles a
:class:`ScorePlan` — the statements as text — with the instant it scores at left as *slots*
(``AsOf.slotted()``), and fills them in as text each time; leadscore.sql.cache keeps plans on
disk between runs, so a run that finds its plan there never imports sqlglot.

The statements of a plan (see leadscore.batch):

- ``aggregate``: the per-lead engagement aggregate over the events, with the counts that check
  the events file, run first into the temp table ``leadscore_g`` (None when there are no events
  to aggregate);
- the scoring query: ``ctes`` and ``final``, whose ``g`` reads ``leadscore_g``;
- the check for rules that fired for no lead, over the same CTEs (:meth:`ScorePlan.fired_sql`);
- ``lead_fields``: how each lead field the model reads is read from the leads, for the check for
  fields no lead has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..engine.scorer import US_PER_DAY, to_utc, us_of
from .text import slot

if TYPE_CHECKING:
    import duckdb

    from ..model import Model

__all__ = ["FORMAT", "ScorePlan", "compile_plan", "rule_columns", "slot_values"]

Path = tuple[str, ...]

#: the layout of a plan as stored (leadscore.sql.cache); another layout is never read
FORMAT = 1

#: the slots a compiled query may hold (leadscore.sql.dialects writes them)
SLOTS = ("us", "lo_us", "ts", "lo_ts", "tstz", "lo_tstz")


def slot_values(as_of: datetime, window_us: int | None) -> dict[str, str]:
    """What each slot is at ``as_of``: microseconds, and timestamps as the quoted text that
    ``Dialect.ts_literal`` writes; ``lo_`` is the start of the model's window."""
    at = to_utc(as_of)
    out = {"us": str(us_of(at)), "ts": _naive(at), "tstz": _aware(at)}
    if window_us is not None:
        start = at - timedelta(microseconds=window_us)
        out.update(lo_us=str(us_of(at) - window_us), lo_ts=_naive(start), lo_tstz=_aware(start))
    return out


def _naive(at: datetime) -> str:
    return "'" + at.replace(tzinfo=None).isoformat(sep=" ") + "'"


def _aware(at: datetime) -> str:
    return "'" + at.isoformat() + "'"


def _fill(sql: str, values: dict[str, str]) -> str:
    if "{ls'" not in sql:
        return sql
    for name in SLOTS:
        mark = slot(name)
        if mark in sql:
            if name not in values:
                raise ValueError(f"the query has a slot {name!r} and no value for it")
            sql = sql.replace(mark, values[name])
    return sql


def rule_columns(model: Model) -> list[tuple[str, str]]:
    """(rule name, its points column in the scoring query's ``u``) for every rule, in model
    order: ``f<i>`` for the i-th fit rule, ``e<i>`` for the i-th engagement rule (as
    leadscore.sql.compiler.reason_terms names them)."""
    terms = [(r.name, f"f{i}", r.order) for i, r in enumerate(model.fit_rules)]
    terms += [(r.name, f"e{i}", r.order) for i, r in enumerate(model.engagement_rules)]
    return [(name, col) for name, col, _ in sorted(terms, key=lambda t: t[2])]


@dataclass(frozen=True)
class ScorePlan:
    """The scoring statements of a batch run as DuckDB SQL, the instant left as slots."""

    #: the scoring query's common table expressions, (name, body) in order
    ctes: tuple[tuple[str, str], ...]
    #: the scoring query's outer SELECT, after its WITH
    final: str
    #: the body of ``leadscore_g``: the per-lead aggregate, with ``__n`` (counted events) and,
    #: when the scan checks the events, ``__rows`` and ``__bad``; None: ``g`` reads the events
    aggregate: str | None
    #: whether ``aggregate`` counts every row and the bad ones (the events check)
    checks_events: bool
    #: the model's window in microseconds, for the window's start
    window_us: int | None
    #: each lead field the model reads, as DuckDB SQL over the leads (alias ``l``); None when
    #: the leads have no such column
    lead_fields: tuple[tuple[Path, str | None], ...]

    def _with(self, values: dict[str, str], limit: int | None = None) -> str:
        parts = []
        for name, body in self.ctes:
            if name == "f" and limit is not None:
                body = f"SELECT * FROM ({body}) AS f LIMIT {int(limit)}"
            parts.append(f"{name} AS ({body})")
        return _fill("WITH " + ", ".join(parts), values)

    def query(self, as_of: datetime) -> str:
        """The scoring query at ``as_of``: one row per lead, the spec's columns."""
        values = slot_values(as_of, self.window_us)
        return f"{self._with(values)} {_fill(self.final, values)}"

    def aggregate_sql(self, as_of: datetime) -> str | None:
        if self.aggregate is None:
            return None
        return _fill(self.aggregate, slot_values(as_of, self.window_us))

    def fired_sql(self, as_of: datetime, columns: list[str], limit: int | None) -> str:
        """Whether each points column is non-zero for any lead (``c0``, ``c1``, …), over the
        first ``limit`` leads or all of them."""
        checks = ", ".join(f"bool_or({c} <> 0) AS c{i}" for i, c in enumerate(columns))
        return f"{self._with(slot_values(as_of, self.window_us), limit)} SELECT {checks} FROM u"

    def field_sql(self) -> dict[Path, str | None]:
        return dict(self.lead_fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "ctes": [list(c) for c in self.ctes],
            "final": self.final,
            "aggregate": self.aggregate,
            "checks_events": self.checks_events,
            "window_us": self.window_us,
            "lead_fields": [[list(p), s] for p, s in self.lead_fields],
        }

    @classmethod
    def from_json(cls, data: Any) -> ScorePlan:
        """A stored plan; ValueError for anything that is not one, in every detail."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a stored plan of this format")
        ctes = data["ctes"]
        fields = data["lead_fields"]
        window = data["window_us"]
        plan = cls(
            ctes=tuple((_text(n), _text(b)) for n, b in ctes),
            final=_text(data["final"]),
            aggregate=None if data["aggregate"] is None else _text(data["aggregate"]),
            checks_events=_flag(data["checks_events"]),
            window_us=None if window is None else _int(window),
            lead_fields=tuple(
                (tuple(_text(p) for p in path), None if s is None else _text(s))
                for path, s in fields
            ),
        )
        if not plan.ctes or not plan.final:
            raise ValueError("a stored plan without a query")
        return plan


def _text(x: Any) -> str:
    if not isinstance(x, str):
        raise ValueError(f"expected text, found {type(x).__name__}")
    return x


def _flag(x: Any) -> bool:
    if not isinstance(x, bool):
        raise ValueError(f"expected true or false, found {type(x).__name__}")
    return x


def _int(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise ValueError(f"expected a whole number, found {type(x).__name__}")
    return x


def compile_plan(
    model: Model,
    con: duckdb.DuckDBPyConnection,
    leads_view: str,
    events_view: str | None,
    *,
    checks_events: bool,
) -> ScorePlan:
    """Compile the model for these views (their column types decide how fields are read):
    the one step of a batch run that needs sqlglot."""
    from sqlglot import exp

    from .compiler import compile_score
    from .dialects import AsOf
    from .duckdb import column_source, lead_field_sql, lead_paths
    from .text import EMPTY_EVENTS

    if events_view is None:  # column_source reads an empty view instead
        con.execute(f'CREATE OR REPLACE TEMP VIEW "leadscore_no_events" AS {EMPTY_EVENTS}')
    source = column_source(con, model, leads_view, events_view)
    every_event = checks_events and events_view is not None
    tree = compile_score(model, source, AsOf.slotted(), "duckdb", every_event=every_event)
    g = next((c for c in tree.find_all(exp.CTE) if c.alias == "g"), None)
    aggregate: str | None = None
    if events_view is not None and g is not None and isinstance(g.this, exp.Select):
        per_lead = [exp.alias_(exp.Count(this=exp.Star()), "__n")]
        if every_event:
            per_lead = [
                exp.alias_(exp.Count(this=exp.column("d")), "__n"),
                exp.alias_(exp.Count(this=exp.Star()), "__rows"),
                exp.alias_(exp.Count(this=exp.column("__bad")), "__bad"),
            ]
        agg = g.this.select(*per_lead, copy=False)
        aggregate = agg.sql(dialect="duckdb")
        g.set("this", exp.select("*").from_("leadscore_g"))
    key = "with_" if "with_" in tree.args else "with"
    with_ = tree.args[key]
    ctes = tuple((str(c.alias), c.this.sql(dialect="duckdb")) for c in with_.expressions)
    tree.set(key, None)
    lead_cols = _columns(con, leads_view)
    window_us = round(model.window_days * US_PER_DAY) if model.window_days is not None else None
    return ScorePlan(
        ctes=ctes,
        final=tree.sql(dialect="duckdb"),
        aggregate=aggregate,
        checks_events=every_event and aggregate is not None,
        window_us=window_us,
        lead_fields=tuple((p, lead_field_sql(lead_cols, p)) for p in lead_paths(model)),
    )


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, Any]:
    rel = con.sql(f'SELECT * FROM "{view}" LIMIT 0')
    return dict(zip(rel.columns, rel.types, strict=True))
