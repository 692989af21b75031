"""Where the SQL engine finds leads and events, and how it reads a field from them.

A source answers four questions for the compiler: which tables, which id/name columns, how to get
the *text form* of a trait or property (see leadscore/model/values.py), and how old an event is.
Everything that differs between layouts lives here; the scoring logic in compiler.py is one tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from .dialects import AsOf, Dialect, json_path

__all__ = ["ColumnTables", "JsonTables", "Source", "json_path"]

Path = tuple[str, ...]


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _table(name: str, alias: str) -> exp.Table:
    """A table by name; ``db.table`` and ``catalog.db.table`` name it in a schema."""
    parts = name.split(".") if name.count(".") <= 2 else [name]
    qual: list[exp.Identifier | None] = [None, None, *(_ident(p) for p in parts[:-1])]
    return exp.Table(
        this=_ident(parts[-1]),
        db=qual[-1],
        catalog=qual[-2],
        alias=exp.TableAlias(this=_ident(alias)),
    )


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=_ident(name), table=_ident(table) if table else None)


@dataclass(frozen=True)
class Source:
    """The base shape: a leads relation and an events relation."""

    leads: str
    lead_id: str
    events: str
    event_lead_id: str
    event: str

    def leads_table(self) -> exp.Expr:
        return _table(self.leads, "l")

    def events_table(self) -> exp.Expr:
        return _table(self.events, "e")

    def lead_id_col(self) -> exp.Expr:
        return _col(self.lead_id, "l")

    def event_lead_id_col(self) -> exp.Expr:
        return _col(self.event_lead_id, "e")

    def event_name_col(self) -> exp.Expr:
        return _col(self.event, "e")

    # overridden per layout
    def lead_text(self, path: Path, d: Dialect) -> exp.Expr:
        raise NotImplementedError

    def event_text(self, path: Path, d: Dialect) -> exp.Expr:
        raise NotImplementedError

    def time_filter(self, as_of: AsOf, window_us: int | None, d: Dialect) -> exp.Expr:
        raise NotImplementedError

    def age_seconds(self, as_of: AsOf, d: Dialect) -> exp.Expr:
        raise NotImplementedError


@dataclass(frozen=True)
class _TimeMixin:
    """Event time either as a timestamp column (``ts``) or integer microseconds (``ts_us``)."""

    def _time_cols(self) -> tuple[str | None, str | None, bool]:
        raise NotImplementedError

    def time_filter(self, as_of: AsOf, window_us: int | None, d: Dialect) -> exp.Expr:
        ts, ts_us, aware = self._time_cols()
        if ts_us is not None:
            return d.us_bounds(_col(ts_us, "e"), as_of, window_us)
        assert ts is not None
        return d.time_bounds(_col(ts, "e"), as_of, window_us, aware)

    def age_seconds(self, as_of: AsOf, d: Dialect) -> exp.Expr:
        ts, ts_us, _aware = self._time_cols()
        event_us = _col(ts_us, "e") if ts_us is not None else d.epoch_us(_col(ts or "ts", "e"))
        diff = exp.Sub(this=d.as_of_us(as_of), expression=event_us)
        # exact integer microseconds, then double arithmetic in the engine's own order
        return exp.Div(
            this=exp.cast(exp.Paren(this=diff), "double"),
            expression=exp.cast(exp.Literal.number(1000000), "double"),
        )


@dataclass(frozen=True)
class JsonTables(_TimeMixin, Source):
    """Traits and properties as JSON columns: the service's store and the warehouse default.

    Give the event time either as ``ts`` (a timestamp column; ``ts_aware`` when it is
    ``timestamptz``) or as ``ts_us`` (integer microseconds since the epoch, UTC).
    """

    leads: str = "leads"
    lead_id: str = "lead_id"
    traits: str = "traits"
    events: str = "events"
    event_lead_id: str = "lead_id"
    event: str = "event"
    properties: str = "properties"
    ts: str | None = None
    ts_us: str | None = None
    ts_aware: bool = False
    jsonb: bool = False

    def __post_init__(self) -> None:
        if (self.ts is None) == (self.ts_us is None):
            raise ValueError("give exactly one of ts and ts_us")

    def _time_cols(self) -> tuple[str | None, str | None, bool]:
        return self.ts, self.ts_us, self.ts_aware

    def lead_text(self, path: Path, d: Dialect) -> exp.Expr:
        return d.json_text(_col(self.traits, "l"), path, self.jsonb)

    def event_text(self, path: Path, d: Dialect) -> exp.Expr:
        return d.json_text(_col(self.properties, "e"), path, self.jsonb)


FieldReader = Callable[[exp.Expr, Path], exp.Expr]


@dataclass(frozen=True)
class ColumnTables(_TimeMixin, Source):
    """Traits as columns (``company.employees`` or a ``company`` struct), as read from files.

    ``lead_fields`` / ``event_fields`` map a field path to an expression giving its text form
    (built by the engine adapter that knows the column types); a path not in the map is absent.
    """

    leads: str = "leads"
    lead_id: str = "lead_id"
    events: str = "events"
    event_lead_id: str = "lead_id"
    event: str = "event"
    ts: str | None = "ts"
    ts_us: str | None = None
    ts_aware: bool = False
    lead_fields: Mapping[Path, exp.Expr] = field(default_factory=dict)
    event_fields: Mapping[Path, exp.Expr] = field(default_factory=dict)

    def _time_cols(self) -> tuple[str | None, str | None, bool]:
        return self.ts, self.ts_us, self.ts_aware

    def lead_text(self, path: Path, d: Dialect) -> exp.Expr:
        e = self.lead_fields.get(path)
        return e.copy() if e is not None else exp.cast(exp.Null(), "text")

    def event_text(self, path: Path, d: Dialect) -> exp.Expr:
        e = self.event_fields.get(path)
        return e.copy() if e is not None else exp.cast(exp.Null(), "text")
