"""What differs between SQL engines, one small adapter per dialect.

The compiler builds one sqlglot tree; wherever engines disagree on a function, a type or a shape
it asks the dialect's adapter for the subtree. Every adapter returns trees, never SQL text, so
names and values (``Won't buy``, ``C:\\new``, ``50%``, ``Zürich``) are quoted by sqlglot's
generator for the target dialect and reach the engine unchanged.

The instant the scores are computed at (``as_of``) is one of three things (:class:`AsOf`): a fixed
instant written into the query, the engine's current time when the query runs, or a named
parameter the caller binds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlglot import exp

from ..engine.scorer import to_utc, us_of
from .text import json_path, slot

__all__ = ["ADAPTERS", "DIALECTS", "AsOf", "Dialect", "adapter", "json_path"]

Path = tuple[str, ...]


def _str(s: str) -> exp.Literal:
    return exp.Literal.string(s)


def _num(n: int | float | str) -> exp.Expr:
    return exp.Literal.number(n)


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name)


@dataclass(frozen=True)
class AsOf:
    """The instant scores are computed at, as the query sees it.

    ``AsOf.fixed(dt)`` writes the instant into the query; ``AsOf.now()`` reads the engine's
    current time each time the query runs (a scheduled query or a dbt model keeps decaying);
    ``AsOf.parameter("as_of")`` leaves a named parameter (a UTC timestamp) for the caller to bind.
    """

    at: datetime | None = None
    param: str | None = None
    #: fixed, but written as slots that leadscore.sql.plan fills in with the instant each time
    #: the query runs (DuckDB): one compiled query serves every instant
    slots: bool = False

    @classmethod
    def fixed(cls, at: datetime) -> AsOf:
        return cls(at=to_utc(at))

    @classmethod
    def slotted(cls) -> AsOf:
        """Fixed at an instant given later: see leadscore.sql.plan."""
        return cls(at=datetime(1970, 1, 1, tzinfo=UTC), slots=True)

    @classmethod
    def now(cls) -> AsOf:
        return cls()

    @classmethod
    def parameter(cls, name: str = "as_of") -> AsOf:
        if not name.isidentifier():
            raise ValueError(f"a parameter name is a plain word, not {name!r}")
        return cls(param=name)

    @property
    def is_fixed(self) -> bool:
        return self.at is not None


class Dialect:
    """The engine-neutral spelling; each engine overrides what it spells differently."""

    name = "generic"

    def render(self, tree: exp.Expr, *, pretty: bool = False) -> str:
        """The tree as this engine's SQL text."""
        return tree.sql(dialect=self.name, pretty=pretty)

    #: booleans in the output columns: a bare condition, or CASE … THEN TRUE ELSE FALSE
    bare_booleans = False
    #: how the reasons list is made: "row" (list functions over one row), "subquery" (a JSON
    #: text list from a correlated subquery) or "grouped" (ARRAY_AGG in a CTE joined back)
    reasons_shape = "grouped"

    # -- text and numbers ------------------------------------------------------------------
    def halved(self, times: exp.Expr) -> exp.Expr:
        """0.5 to the power ``times`` (the decay of ``times`` half-lives)."""
        return exp.Pow(this=exp.Literal.number("0.5"), expression=times)

    def trim(self, x: exp.Expr, chars: str, *, per_lead: bool = False) -> exp.Expr:
        """``x`` without any of ``chars`` at either end; ``per_lead``: a lead's trait, read once
        per lead (not an event's field, read for millions of events with few distinct values)."""
        return exp.Trim(this=x, expression=_str(chars))

    def starts_with(self, t: exp.Expr, s: str) -> exp.Expr:
        """Text ``t`` begins with ``s`` (NULL when ``t`` is)."""
        n = _num(len(s))
        return exp.EQ(this=exp.Substring(this=t, start=_num(1), length=n), expression=_str(s))

    def ends_with(self, t: exp.Expr, s: str) -> exp.Expr:
        """Text ``t`` ends with ``s`` (NULL when ``t`` is)."""
        n = _num(len(s))
        length = exp.Length(this=t.copy())
        start = exp.Add(this=exp.Sub(this=length, expression=n.copy()), expression=_num(1))
        return exp.and_(
            exp.GTE(this=length.copy(), expression=n.copy()),
            exp.EQ(this=exp.Substring(this=t, start=start, length=n), expression=_str(s)),
        )

    def regex(self, x: exp.Expr, pattern: str) -> exp.Expr:
        return exp.RegexpLike(this=x, expression=_str(pattern))

    def round2(self, x: exp.Expr) -> exp.Expr:
        # + 0.0 turns the -0.0 that rounding a tiny negative number gives into 0.0, as Spark's
        # and PostgreSQL's decimal rounding do, so every engine writes the same records
        return exp.Add(
            this=exp.Round(this=x, decimals=_num(2)),
            expression=exp.cast(_num("0.0"), "double"),
        )

    def json_text(self, column: exp.Expr, path: Path, jsonb: bool) -> exp.Expr:
        """The text form of the JSON value at a path: strings as themselves, true/false, numbers."""
        jp = exp.JSONPath(
            expressions=[exp.JSONPathRoot(), *(exp.JSONPathKey(this=k) for k in path)]
        )
        return exp.JSONExtractScalar(this=column, expression=jp)

    # -- time --------------------------------------------------------------------------------
    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        """Microseconds since the epoch of a timestamp (a naive timestamp is read as UTC)."""
        return exp.Mul(this=exp.Paren(this=exp.TimeToUnix(this=ts)), expression=_num(1_000_000))

    def ts_literal(self, at: datetime, aware: bool) -> exp.Expr:
        """A fixed instant, comparable with the event time column."""
        at = to_utc(at)
        if aware:
            return exp.cast(_str(at.isoformat()), exp.DataType.build("timestamptz"))
        return exp.cast(
            _str(at.replace(tzinfo=None).isoformat(sep=" ")), exp.DataType.build("timestamp")
        )

    def now(self) -> exp.Expr:
        return exp.CurrentTimestamp()

    def _slot_ts(self, name: str, aware: bool) -> exp.Expr:
        """A slot for a timestamp literal, filled in as ts_literal writes one (quoted text)."""
        if type(self).ts_literal is not Dialect.ts_literal:
            raise ValueError(f"{self.name} writes no slots for the instant; give a fixed one")
        return exp.cast(
            _num(slot(name)), exp.DataType.build("timestamptz" if aware else "timestamp")
        )

    def parameter(self, name: str) -> exp.Expr:
        return exp.cast(exp.Placeholder(this=name), exp.DataType.build("timestamp"))

    def as_of_ts(self, as_of: AsOf, aware: bool) -> exp.Expr:
        """``as_of`` as a timestamp expression."""
        if as_of.at is not None:
            return self.ts_literal(as_of.at, aware)
        if as_of.param is not None:
            return self.parameter(as_of.param)
        return self.now()

    def as_of_us(self, as_of: AsOf) -> exp.Expr:
        """``as_of`` in microseconds since the epoch."""
        if as_of.slots:
            return _num(slot("us"))
        if as_of.at is not None:
            return _num(us_of(as_of.at))
        return self.epoch_us(self.as_of_ts(as_of, aware=True))

    def time_bounds(
        self, ts: exp.Expr, as_of: AsOf, window_us: int | None, aware: bool
    ) -> exp.Expr:
        """``ts`` at or before as_of and, with a window, no older than it."""
        if as_of.slots:
            kind = "tstz" if aware else "ts"
            upto = exp.LTE(this=ts, expression=self._slot_ts(kind, aware))
            if window_us is None:
                return upto
            return exp.and_(
                upto, exp.GTE(this=ts.copy(), expression=self._slot_ts("lo_" + kind, aware))
            )
        if as_of.at is not None:
            cond: exp.Expr = exp.LTE(this=ts, expression=self.ts_literal(as_of.at, aware))
            if window_us is None:
                return cond
            start = as_of.at - timedelta(microseconds=window_us)
            return exp.and_(cond, exp.GTE(this=ts.copy(), expression=self.ts_literal(start, aware)))
        return self.us_bounds(self.epoch_us(ts), as_of, window_us)

    def us_bounds(self, us: exp.Expr, as_of: AsOf, window_us: int | None) -> exp.Expr:
        """The same bounds over exact microseconds."""
        hi = self.as_of_us(as_of)
        cond: exp.Expr = exp.LTE(this=us, expression=hi)
        if window_us is None:
            return cond
        lo = (
            _num(slot("lo_us"))
            if as_of.slots
            else _num(us_of(as_of.at) - window_us)
            if as_of.at is not None
            else exp.Sub(this=hi.copy(), expression=_num(window_us))
        )
        return exp.and_(cond, exp.GTE(this=us.copy(), expression=lo))

    # -- output ------------------------------------------------------------------------------
    def boolean(self, cond: exp.Expr) -> exp.Expr:
        if self.bare_booleans:
            return exp.Paren(this=cond)
        return exp.Case(ifs=[exp.If(this=cond, true=exp.true())], default=exp.false())

    def empty_reasons(self) -> exp.Expr:
        return exp.Array(expressions=[])

    def reasons_row(self, terms: Sequence[tuple[str, exp.Expr, int]]) -> exp.Expr:
        """Reasons from one row: [{rule, points}] of the non-zero terms, largest |points| first,
        then model order. Each term is (rule name, points expression, order)."""
        items = exp.Array(
            expressions=[
                _struct(
                    ("k", exp.Neg(this=exp.Abs(this=pts))),
                    ("o", _num(o)),
                    ("rule", _str(name)),
                    ("points", pts.copy()),
                )
                for name, pts, o in terms
            ]
        )
        x = _ident("x")
        nonzero = exp.Lambda(
            this=exp.NEQ(this=exp.Dot(this=x, expression=_ident("points")), expression=_num(0)),
            expressions=[x.copy()],
        )
        out = exp.Lambda(
            this=_struct(
                ("rule", exp.Dot(this=x.copy(), expression=_ident("rule"))),
                ("points", self.round2(exp.Dot(this=x.copy(), expression=_ident("points")))),
            ),
            expressions=[x.copy()],
        )
        return exp.Transform(
            this=exp.ArraySort(this=exp.ArrayFilter(this=items, expression=nonzero)),
            expression=out,
        )

    def reasons_values(self, terms: Sequence[tuple[str, exp.Expr, int]], lead: bool) -> exp.Expr:
        """One row per term: (lead_id,) rule, points, o — a UNION ALL of SELECTs."""
        selects = []
        for name, pts, o in terms:
            cols: list[exp.Expr] = []
            if lead:
                cols.append(exp.column("lead_id", table="u"))
            cols += [
                exp.alias_(_str(name), "rule"),
                exp.alias_(pts.copy(), "points"),
                exp.alias_(_num(o), "o"),
            ]
            sel = exp.select(*cols)
            selects.append(sel.from_("u") if lead else sel)
        out: exp.Expr = selects[0]
        for s in selects[1:]:
            out = exp.union(out, s, distinct=False)
        return out

    def reasons_subquery(self, terms: Sequence[tuple[str, exp.Expr, int]]) -> exp.Expr:
        raise NotImplementedError(self.name)

    def reasons_grouped(self, terms: Sequence[tuple[str, exp.Expr, int]]) -> exp.Expr:
        """A CTE with one row per lead that has any reason: lead_id, reasons."""
        rule, points, o = (exp.column(c) for c in ("rule", "points", "o"))
        agg = exp.ArrayAgg(
            this=exp.Order(
                this=_struct(("rule", rule), ("points", self.round2(points))),
                expressions=[
                    exp.Ordered(this=exp.Abs(this=points.copy()), desc=True, nulls_first=False),
                    exp.Ordered(this=o, nulls_first=self.nulls_first),
                ],
            )
        )
        v = exp.Subquery(
            this=self.reasons_values(terms, lead=True), alias=exp.TableAlias(this=_ident("v"))
        )
        return (
            exp.select(exp.column("lead_id"), exp.alias_(agg, "reasons"))
            .from_(v)
            .where(exp.NEQ(this=points.copy(), expression=_num(0)))
            .group_by(exp.column("lead_id"))
        )

    #: the target's default NULL order for ascending keys (the sort keys are never NULL; spelling
    #: the default means no dialect has to translate it)
    nulls_first = False


def _struct(*fields: tuple[str, exp.Expr]) -> exp.Struct:
    return exp.Struct(expressions=[exp.PropertyEQ(this=_ident(k), expression=v) for k, v in fields])


class DuckDB(Dialect):
    name = "duckdb"
    bare_booleans = True
    reasons_shape = "row"

    def trim(self, x: exp.Expr, chars: str, *, per_lead: bool = False) -> exp.Expr:
        # trim() with a set of characters looks at every character of every value; almost no
        # trait has one at either end, which prefix()/suffix() (a byte compare each) tell
        # first: a third of the cost on 200,000 leads. Only for a lead's column (cheap to read
        # again); not for events' fields, whose few distinct values DuckDB trims once each
        # (dictionary vectors, which the CASE would unpack)
        trimmed = super().trim(x, chars)
        if not per_lead or not isinstance(x, exp.Column):
            return trimmed
        ends = [
            exp.Anonymous(this=fn, expressions=[x.copy(), _str(c)])
            for fn in ("prefix", "suffix")
            for c in chars
        ]
        return exp.Case(ifs=[exp.If(this=exp.or_(*ends), true=trimmed)], default=x.copy())

    def starts_with(self, t: exp.Expr, s: str) -> exp.Expr:
        # the first len(s) characters are s exactly when the UTF-8 bytes begin with s's bytes
        return exp.Anonymous(this="prefix", expressions=[t, _str(s)])

    def ends_with(self, t: exp.Expr, s: str) -> exp.Expr:
        return exp.Anonymous(this="suffix", expressions=[t, _str(s)])

    def json_text(self, column: exp.Expr, path: Path, jsonb: bool) -> exp.Expr:
        return exp.Anonymous(
            this="json_extract_string", expressions=[column, _str(json_path(path))]
        )

    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        return exp.Anonymous(this="epoch_us", expressions=[ts])

    def parameter(self, name: str) -> exp.Expr:
        return exp.cast(exp.Placeholder(this=name), exp.DataType.build("timestamptz"))

    def empty_reasons(self) -> exp.Expr:
        return exp.cast(
            exp.Array(expressions=[]),
            exp.DataType.build("STRUCT(rule VARCHAR, points DOUBLE)[]", dialect="duckdb"),
        )


class Postgres(Dialect):
    name = "postgres"
    bare_booleans = True
    reasons_shape = "subquery"

    def render(self, tree: exp.Expr, *, pretty: bool = False) -> str:
        if tree.find(exp.Placeholder) is not None:
            # %(as_of)s is psycopg's parameter style, in which a % of the text is written %%
            tree = tree.transform(
                lambda n: (
                    _str(n.this.replace("%", "%%"))
                    if isinstance(n, exp.Literal) and n.is_string and "%" in n.this
                    else n
                )
            )
        return tree.sql(dialect=self.name, pretty=pretty)

    def halved(self, times: exp.Expr) -> exp.Expr:
        # PostgreSQL raises "value out of range: underflow" where the power is too small for a
        # double (from 1,075 half-lives on: an event or a dated trait years old with a short
        # half-life); there the value is 0, as in the other engines
        return exp.Case(
            ifs=[exp.If(this=exp.GTE(this=times.copy(), expression=_num(1075)), true=_num(0))],
            default=super().halved(times),
        )

    def round2(self, x: exp.Expr) -> exp.Expr:
        # round(double precision, int) does not exist there
        return exp.cast(exp.Round(this=exp.cast(x, "numeric"), decimals=_num(2)), "double")

    def json_text(self, column: exp.Expr, path: Path, jsonb: bool) -> exp.Expr:
        fn = "jsonb_extract_path_text" if jsonb else "json_extract_path_text"
        return exp.Anonymous(this=fn, expressions=[column, *(_str(p) for p in path)])

    def parameter(self, name: str) -> exp.Expr:
        return exp.cast(exp.Placeholder(this=name), exp.DataType.build("timestamptz"))

    def reasons_subquery(self, terms: Sequence[tuple[str, exp.Expr, int]]) -> exp.Expr:
        v = exp.Subquery(
            this=self.reasons_values(terms, lead=False), alias=exp.TableAlias(this=_ident("v"))
        )
        points = exp.column("points", table="v")
        obj = exp.Anonymous(
            this="json_build_object",
            expressions=[
                _str("rule"),
                exp.column("rule", table="v"),
                _str("points"),
                exp.Round(this=exp.cast(points, "numeric"), decimals=_num(2)),
            ],
        )
        agg = exp.JSONArrayAgg(
            this=exp.Order(
                this=obj,
                expressions=[
                    exp.Ordered(this=exp.Abs(this=points.copy()), desc=True, nulls_first=True),
                    exp.Ordered(this=exp.column("o", table="v"), nulls_first=False),
                ],
            )
        )
        text = exp.cast(exp.Coalesce(this=agg, expressions=[exp.cast(_str("[]"), "json")]), "text")
        sel = exp.select(text).from_(v).where(exp.NEQ(this=points.copy(), expression=_num(0)))
        return exp.Subquery(this=sel)

    def empty_reasons(self) -> exp.Expr:
        return _str("[]")


class SQLite(Dialect):
    name = "sqlite"
    reasons_shape = "subquery"
    #: a value's JSON text by the ``->`` operator (SQLite 3.38 and later); else by the JSON
    #: array ``json_extract`` makes of two paths, which spells the number the same way and
    #: runs on every SQLite with JSON: the query ``leadscore sql`` prints runs on someone
    #: else's SQLite, whatever version this one is (only a number whose 15-digit text is not
    #: exact reads it, so the two cost the same)
    arrows = False

    def render(self, tree: exp.Expr, *, pretty: bool = False) -> str:
        # SQLite's reading of a decimal reads some shortest spellings of a double a bit off
        # (-6.793921531704187 as -6.7939215317041874); 17 significant digits it reads exactly
        return tree.transform(_seventeen_digits).sql(dialect=self.name, pretty=pretty)

    def json_text(self, column: exp.Expr, path: Path, jsonb: bool) -> exp.Expr:
        p = _str(json_path(path))
        jtype = exp.Anonymous(this="json_type", expressions=[column, p])
        value = exp.Anonymous(this="json_extract", expressions=[column.copy(), p.copy()])
        text = exp.cast(value.copy(), "text")

        def exact(t: exp.Expr) -> exp.Expr:  # SQLite reads the text back as the double
            return exp.EQ(this=exp.cast(t, "double"), expression=value.copy())

        # json_extract reads a JSON number exactly, but SQLite's text of a REAL keeps 15
        # significant digits (0.30000000000000004 -> 0.3, 9.999999999999999e99 -> 1.0e+100;
        # an integer past 64 bits is a REAL there too). Where that text does not give the
        # double back: the number's JSON spelling, what the Python engine parses; where
        # SQLite's reading of that spelling is a bit off too, 17 significant digits
        spelt = self._spelling(column, p)
        number = exp.Case(
            ifs=[
                exp.If(this=exact(text.copy()), true=text.copy()),
                exp.If(this=exact(spelt.copy()), true=spelt),
            ],
            default=exp.Anonymous(this="printf", expressions=[_str("%!.17g"), value.copy()]),
        )
        # one json_extract for text (and NULL, objects, lists: their JSON text), tested first:
        # CASE x WHEN … reads x once
        return exp.Case(
            this=exp.Anonymous(this="typeof", expressions=[value.copy()]),
            ifs=[
                # (an integer past 64 bits is a REAL there too, though its json_type is 'integer')
                exp.If(this=_str("real"), true=number),
                # json_extract gives 1/0 for true/false; the text form is 'true'/'false'
                exp.If(
                    this=_str("integer"),
                    true=exp.Case(
                        this=jtype,
                        ifs=[
                            exp.If(this=_str("true"), true=_str("true")),
                            exp.If(this=_str("false"), true=_str("false")),
                        ],
                        default=text.copy(),
                    ),
                ),
            ],
            default=text,
        )

    def _spelling(self, column: exp.Expr, p: exp.Expr) -> exp.Expr:
        """The JSON text of the (number) value at path ``p``, as stored."""
        if self.arrows:
            return exp.JSONExtract(this=column.copy(), expression=p.copy())
        # '[v,v]': a number has no comma, so v is what lies between '[' and the first ','
        pair = exp.Anonymous(this="json_extract", expressions=[column.copy(), p.copy(), p.copy()])
        comma = exp.Anonymous(this="instr", expressions=[pair.copy(), _str(",")])
        return exp.Substring(
            this=pair, start=_num(2), length=exp.Sub(this=comma, expression=_num(2))
        )

    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        # SQLite keeps timestamps as ISO text ('YYYY-MM-DD HH:MM:SS[.ffffff]', UTC): whole
        # seconds from strftime, microseconds from the digits after the point
        secs = exp.cast(exp.Anonymous(this="strftime", expressions=[_str("%s"), ts]), "integer")
        frac_text = exp.Substring(
            this=exp.DPipe(
                this=exp.Substring(this=ts.copy(), start=_num(21)), expression=_str("000000")
            ),
            start=_num(1),
            length=_num(6),
        )
        return exp.Paren(
            this=exp.Add(
                this=exp.Mul(this=secs, expression=_num(1_000_000)),
                expression=exp.cast(frac_text, "integer"),
            )
        )

    def now(self) -> exp.Expr:
        # the current time as the same ISO text, to the millisecond
        return exp.Anonymous(this="strftime", expressions=[_str("%Y-%m-%d %H:%M:%f"), _str("now")])

    def parameter(self, name: str) -> exp.Expr:
        return exp.Placeholder(this=name)

    def time_bounds(
        self, ts: exp.Expr, as_of: AsOf, window_us: int | None, aware: bool
    ) -> exp.Expr:
        # text timestamps: compare exact microseconds
        return self.us_bounds(self.epoch_us(ts), as_of, window_us)

    def reasons_subquery(self, terms: Sequence[tuple[str, exp.Expr, int]]) -> exp.Expr:
        points = exp.column("points", table="w")
        ordered = (
            exp.select(exp.Star())
            .from_(
                exp.Subquery(
                    this=self.reasons_values(terms, lead=False),
                    alias=exp.TableAlias(this=_ident("w")),
                )
            )
            .where(exp.NEQ(this=points, expression=_num(0)))
            .order_by(
                exp.Ordered(this=exp.Abs(this=points.copy()), desc=True),
                exp.Ordered(this=exp.column("o", table="w")),
            )
        )
        obj = exp.JSONObject(
            expressions=[
                exp.JSONKeyValue(this=_str("rule"), expression=exp.column("rule", table="v")),
                exp.JSONKeyValue(
                    this=_str("points"), expression=self.round2(exp.column("points", table="v"))
                ),
            ]
        )
        sel = exp.select(exp.JSONArrayAgg(this=obj)).from_(
            exp.Subquery(this=ordered, alias=exp.TableAlias(this=_ident("v")))
        )
        return exp.Subquery(this=sel)

    def empty_reasons(self) -> exp.Expr:
        return _str("[]")


def _seventeen_digits(node: exp.Expr) -> exp.Expr:
    """A number literal with a fraction or an exponent, written with 17 significant digits."""
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if any(c in text for c in ".eE"):
            digits = format(float(text), ".17g")
            if not any(c in digits for c in ".e"):  # still a REAL to SQLite: 2.0, not 2
                digits += ".0"
            return exp.Literal.number(digits)
    return node


class Snowflake(Dialect):
    name = "snowflake"

    def regex(self, x: exp.Expr, pattern: str) -> exp.Expr:
        # REGEXP_LIKE must match the whole text there; REGEXP_INSTR finds a match anywhere
        return exp.GT(
            this=exp.Anonymous(this="REGEXP_INSTR", expressions=[x, _str(pattern)]),
            expression=_num(0),
        )

    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        return exp.Anonymous(this="DATE_PART", expressions=[exp.var("EPOCH_MICROSECOND"), ts])

    def parameter(self, name: str) -> exp.Expr:
        return exp.cast(exp.Placeholder(this=name), exp.DataType.build("timestamptz"))


class BigQuery(Dialect):
    name = "bigquery"
    nulls_first = True  # BigQuery sorts NULLs first when ascending

    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        return exp.Anonymous(this="UNIX_MICROS", expressions=[ts])

    def ts_literal(self, at: datetime, aware: bool) -> exp.Expr:
        # an instant (TIMESTAMP there); a cast of text would be a DATETIME, a wall-clock time
        return exp.Anonymous(this="TIMESTAMP_MICROS", expressions=[_num(us_of(at))])

    def parameter(self, name: str) -> exp.Expr:
        return exp.Placeholder(this=name)


@functools.cache
def _spark_sql() -> type:
    """sqlglot's Spark dialect is imported when Spark SQL is first written, not by every run."""
    from sqlglot.dialects.spark import Spark as _SparkSQL

    class SparkSQL(_SparkSQL):
        """Spark SQL as sqlglot writes it, except that ``$`` in a string is written ``\\u0024``:
        Spark replaces ``${name}`` in a query's text with a setting (or nothing) before parsing
        it, string literals included."""

    SparkSQL.ESCAPED_SEQUENCES = {**_SparkSQL.ESCAPED_SEQUENCES, "$": "\\u0024"}
    return SparkSQL


class Spark(Dialect):
    name = "spark"
    reasons_shape = "row"

    def render(self, tree: exp.Expr, *, pretty: bool = False) -> str:
        return tree.sql(dialect=_spark_sql(), pretty=pretty)

    def epoch_us(self, ts: exp.Expr) -> exp.Expr:
        # UNIX_TIMESTAMP keeps whole seconds; UNIX_MICROS keeps every microsecond
        return exp.Anonymous(this="UNIX_MICROS", expressions=[ts])

    def ts_literal(self, at: datetime, aware: bool) -> exp.Expr:
        # a timestamp literal's text is read in the session's time zone; microseconds are not
        return exp.Anonymous(this="TIMESTAMP_MICROS", expressions=[_num(us_of(at))])

    def parameter(self, name: str) -> exp.Expr:
        return exp.Placeholder(this=name)


ADAPTERS: dict[str, Dialect] = {
    d.name: d for d in (DuckDB(), Postgres(), SQLite(), Snowflake(), BigQuery(), Spark())
}
DIALECTS = tuple(ADAPTERS)


def adapter(dialect: str) -> Dialect:
    try:
        return ADAPTERS[dialect]
    except KeyError:
        raise ValueError(
            f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}"
        ) from None
