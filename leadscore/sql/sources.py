"""Where the SQL engine finds leads and events, and how it reads a field from them.

A source answers four questions for the compiler: which tables, which id/name columns, how to get
the *text form* of a trait or property (see leadscore/model/values.py), and how old an event is.
Everything that differs between layouts lives here; the scoring logic in compiler.py is one tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlglot import exp

from ..engine.scorer import to_utc, us_of

__all__ = ["ColumnTables", "JsonTables", "Source", "json_path"]

Path = tuple[str, ...]


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=_ident(name), table=_ident(table) if table else None)


def json_path(path: Path) -> str:
    """A JSON path such as ``$.company.employees``; keys that are not plain words are quoted."""
    parts = []
    for p in path:
        if p.replace("_", "").isalnum() and p.isascii():
            parts.append("." + p)
        else:
            parts.append('."' + p.replace('"', '\\"') + '"')
    return "$" + "".join(parts)


@dataclass(frozen=True)
class Source:
    """The base shape: a leads relation and an events relation."""

    leads: str
    lead_id: str
    events: str
    event_lead_id: str
    event: str

    def leads_table(self) -> exp.Expr:
        return exp.Table(this=_ident(self.leads), alias=exp.TableAlias(this=_ident("l")))

    def events_table(self) -> exp.Expr:
        return exp.Table(this=_ident(self.events), alias=exp.TableAlias(this=_ident("e")))

    def lead_id_col(self) -> exp.Expr:
        return _col(self.lead_id, "l")

    def event_lead_id_col(self) -> exp.Expr:
        return _col(self.event_lead_id, "e")

    def event_name_col(self) -> exp.Expr:
        return _col(self.event, "e")

    # overridden per layout
    def lead_text(self, path: Path, dialect: str) -> exp.Expr:
        raise NotImplementedError

    def event_text(self, path: Path, dialect: str) -> exp.Expr:
        raise NotImplementedError

    def time_filter(self, as_of: datetime, window_us: int | None, dialect: str) -> exp.Expr:
        raise NotImplementedError

    def age_seconds(self, as_of: datetime, dialect: str) -> exp.Expr:
        raise NotImplementedError


def _ts_literal(ts: datetime, dialect: str, aware: bool) -> exp.Expr:
    ts = to_utc(ts)
    if aware:
        return exp.cast(exp.Literal.string(ts.isoformat()), exp.DataType.build("timestamptz"))
    text = ts.replace(tzinfo=None).isoformat(sep=" ")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("timestamp"))


def _epoch_us(ts: exp.Expr, dialect: str) -> exp.Expr:
    """Microseconds since the epoch of a timestamp column, per engine."""
    if dialect == "duckdb":
        return exp.Anonymous(this="epoch_us", expressions=[ts])
    if dialect == "bigquery":
        return exp.Anonymous(this="UNIX_MICROS", expressions=[ts])
    if dialect == "sqlite":
        # SQLite keeps timestamps as ISO text ('YYYY-MM-DD HH:MM:SS[.ffffff]', UTC): whole
        # seconds from strftime, microseconds from the digits after the point
        secs = exp.cast(
            exp.Anonymous(this="strftime", expressions=[exp.Literal.string("%s"), ts]), "integer"
        )
        frac_text = exp.Substring(
            this=exp.DPipe(
                this=exp.Substring(this=ts.copy(), start=exp.Literal.number(21)),
                expression=exp.Literal.string("000000"),
            ),
            start=exp.Literal.number(1),
            length=exp.Literal.number(6),
        )
        return exp.Paren(
            this=exp.Add(
                this=exp.Mul(this=secs, expression=exp.Literal.number(1_000_000)),
                expression=exp.cast(frac_text, "integer"),
            )
        )
    # postgres, snowflake, spark: epoch seconds (with fraction) times a million
    return exp.Mul(
        this=exp.Paren(this=exp.TimeToUnix(this=ts)), expression=exp.Literal.number(1_000_000)
    )


@dataclass(frozen=True)
class _TimeMixin:
    """Event time either as a timestamp column (``ts``) or integer microseconds (``ts_us``)."""

    def _time_cols(self) -> tuple[str | None, str | None, bool]:
        raise NotImplementedError

    def time_filter(self, as_of: datetime, window_us: int | None, dialect: str) -> exp.Expr:
        ts, ts_us, aware = self._time_cols()
        if ts_us is not None:
            col = _col(ts_us, "e")
            hi = us_of(as_of)
            cond: exp.Expr = exp.LTE(this=col, expression=exp.Literal.number(hi))
            if window_us is not None:
                cond = exp.and_(
                    cond, exp.GTE(this=col, expression=exp.Literal.number(hi - window_us))
                )
            return cond
        assert ts is not None
        if dialect == "sqlite":  # text timestamps: compare exact microseconds
            us = _epoch_us(_col(ts, "e"), dialect)
            hi = us_of(as_of)
            cond = exp.LTE(this=us, expression=exp.Literal.number(hi))
            if window_us is not None:
                cond = exp.and_(
                    cond, exp.GTE(this=us.copy(), expression=exp.Literal.number(hi - window_us))
                )
            return cond
        col = _col(ts, "e")
        cond = exp.LTE(this=col, expression=_ts_literal(as_of, dialect, aware))
        if window_us is not None:
            from datetime import timedelta

            start = to_utc(as_of) - timedelta(microseconds=window_us)
            cond = exp.and_(cond, exp.GTE(this=col, expression=_ts_literal(start, dialect, aware)))
        return cond

    def age_seconds(self, as_of: datetime, dialect: str) -> exp.Expr:
        ts, ts_us, _aware = self._time_cols()
        if ts_us is not None:
            diff: exp.Expr = exp.Sub(
                this=exp.Literal.number(us_of(as_of)), expression=_col(ts_us, "e")
            )
        else:
            assert ts is not None
            diff = exp.Sub(
                this=exp.Literal.number(us_of(as_of)), expression=_epoch_us(_col(ts, "e"), dialect)
            )
        # exact integer microseconds, then double arithmetic in the engine's own order
        return exp.Div(
            this=exp.cast(exp.Paren(this=diff), "double"),
            expression=exp.cast(exp.Literal.number(1000000), "double"),
        )


def _json_text(column: exp.Expr, path: Path, dialect: str, jsonb: bool) -> exp.Expr:
    """The text form of the JSON value at a path: strings as themselves, true/false, numbers."""
    if dialect == "postgres":
        fn = "jsonb_extract_path_text" if jsonb else "json_extract_path_text"
        return exp.Anonymous(this=fn, expressions=[column, *(exp.Literal.string(p) for p in path)])
    p = exp.Literal.string(json_path(path))
    if dialect == "duckdb":
        return exp.Anonymous(this="json_extract_string", expressions=[column, p])
    if dialect == "sqlite":
        # json_extract gives 1/0 for true/false; the text form is 'true'/'false'
        jtype = exp.Anonymous(this="json_type", expressions=[column, p])
        raw = exp.cast(exp.Anonymous(this="json_extract", expressions=[column, p]), "text")
        return exp.Case(
            ifs=[
                exp.If(
                    this=exp.EQ(this=jtype, expression=exp.Literal.string("true")),
                    true=exp.Literal.string("true"),
                ),
                exp.If(
                    this=exp.EQ(this=jtype, expression=exp.Literal.string("false")),
                    true=exp.Literal.string("false"),
                ),
            ],
            default=raw,
        )
    # warehouses: a parsed JSON path, so sqlglot spells it the way each dialect wants
    jp = exp.JSONPath(expressions=[exp.JSONPathRoot(), *(exp.JSONPathKey(this=k) for k in path)])
    return exp.JSONExtractScalar(this=column, expression=jp)


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

    def lead_text(self, path: Path, dialect: str) -> exp.Expr:
        return _json_text(_col(self.traits, "l"), path, dialect, self.jsonb)

    def event_text(self, path: Path, dialect: str) -> exp.Expr:
        return _json_text(_col(self.properties, "e"), path, dialect, self.jsonb)


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

    def lead_text(self, path: Path, dialect: str) -> exp.Expr:
        e = self.lead_fields.get(path)
        return e.copy() if e is not None else exp.cast(exp.Null(), "text")

    def event_text(self, path: Path, dialect: str) -> exp.Expr:
        e = self.event_fields.get(path)
        return e.copy() if e is not None else exp.cast(exp.Null(), "text")
