"""The scoring model compiled to one SQL syntax tree (sqlglot), rendered per dialect.

The query computes exactly what leadscore.engine computes (spec "Scores of one lead"), for every
lead of a source at one instant ``as_of``:

    f    one row per lead: each fit rule's points when its condition holds
    ev   the counted events: matching names, at or before as_of, inside the window; age in seconds
    g    per lead, each engagement rule's decayed sum, and whether a fast-track rule counted
    r    fit rules and capped engagement subtotals side by side (leads without events get zeros)
    t    fit (lowered to fit.max) and engagement (lowered to engagement.max)
    u    score = fit + engagement
    out  rounded numbers, grade, mql, fast_track, reasons

Conditions follow leadscore/model/values.py: a field's text form is trimmed and lower-cased;
a number is text of at most NUMBER_MAX_TEXT characters that matches NUMBER_PATTERN and whose
value is inside the range numbers have (NUMBER_MIN, NUMBER_MAX); an absent value makes every leaf false except
``exists: false``. Every leaf is wrapped so it is TRUE or FALSE, never NULL, so ``not`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from ..engine.scorer import US_PER_DAY
from ..engine.traits import DATE_PATTERN
from ..model.schema import All, Any, Condition, EngagementRule, Leaf, Model, Not
from ..model.values import NUMBER_MAX, NUMBER_MAX_TEXT, NUMBER_MIN, NUMBER_PATTERN, WHITESPACE
from .dialects import DIALECTS, AsOf, Dialect, adapter
from .sources import Source

__all__ = ["DIALECTS", "AsOf", "compile_score", "reason_terms", "score_sql"]

Path = tuple[str, ...]
Reader = Callable[[Path], exp.Expr]


def _lit(v: float | str) -> exp.Expr:
    if isinstance(v, str):
        return exp.Literal.string(v)
    if v == int(v) and abs(v) < 1e15:
        return exp.Literal.number(int(v))
    return exp.Literal.number(repr(float(v)))


def _dbl(v: float | str) -> exp.Expr:
    """A DOUBLE literal: plain ``0.0`` is DECIMAL in some engines."""
    return exp.cast(_lit(float(v)), "double")


def _false() -> exp.Expr:
    return exp.Boolean(this=False)


def _bool(e: exp.Expr) -> exp.Expr:
    """TRUE or FALSE, never NULL."""
    return exp.Coalesce(this=exp.Paren(this=e), expressions=[_false()])


@dataclass
class _Leafs:
    d: Dialect
    fields: dict[tuple[str, ...], tuple[int, exp.Expr]] | None = None
    #: the model's placeholder values (normalised text): a field holding one is NULL
    missing: tuple[str, ...] = ()

    def value(self, path: Path, read: Reader) -> exp.Expr:
        """The field's text form, NULL when it is one of the model's placeholder values."""
        x = read(path)
        if not self.missing:
            return x
        placeholder = exp.In(
            this=self.norm(x.copy()), expressions=[exp.Literal.string(m) for m in self.missing]
        )
        return exp.Case(ifs=[exp.If(this=placeholder, true=exp.Null())], default=x)

    def trimmed(self, x: exp.Expr) -> exp.Expr:
        # the precomputed fields (fields) are a lead's traits; the others an event's
        return self.d.trim(x, WHITESPACE, per_lead=self.fields is not None)

    def norm(self, x: exp.Expr) -> exp.Expr:
        return exp.Lower(this=self.trimmed(x))

    def number(self, x: exp.Expr) -> exp.Expr:
        t = self.trimmed(x)
        # text this long or not a number is never cast (a cast of it could fail); the range is
        # tested on the cast value, as leadscore/model/values.py does
        readable = exp.and_(
            exp.LTE(this=exp.Length(this=t.copy()), expression=_lit(NUMBER_MAX_TEXT)),
            self.regex(t.copy(), NUMBER_PATTERN),
        )
        n = exp.cast(t, "double")
        size = exp.Abs(this=n.copy())
        in_range = exp.and_(
            exp.LT(this=size, expression=_dbl(NUMBER_MAX)),
            exp.or_(
                exp.GTE(this=size.copy(), expression=_dbl(NUMBER_MIN)),
                exp.EQ(this=n.copy(), expression=_dbl(0)),
            ),
        )
        return exp.Case(
            ifs=[exp.If(this=readable, true=exp.Case(ifs=[exp.If(this=in_range, true=n)]))]
        )

    def regex(self, x: exp.Expr, pattern: str) -> exp.Expr:
        return self.d.regex(x, pattern)

    def present(self, x: exp.Expr) -> exp.Expr:
        return exp.and_(
            exp.Not(this=exp.Is(this=x, expression=exp.Null())),
            exp.NEQ(this=self.trimmed(x.copy()), expression=exp.Literal.string("")),
        )

    def leaf(self, leaf: Leaf, read: Reader) -> exp.Expr:
        op, v = leaf.op, leaf.value
        if self.fields is not None:
            # each field's text form and number are computed once, in a subquery (fields)
            if leaf.path not in self.fields:
                self.fields[leaf.path] = (len(self.fields), self.value(leaf.path, read))
            idx = self.fields[leaf.path][0]

            def norm() -> exp.Expr:
                return exp.column(f"n{idx}")

            def number() -> exp.Expr:
                return exp.column(f"x{idx}")

            def present() -> exp.Expr:
                return exp.Not(this=exp.Is(this=exp.column(f"n{idx}"), expression=exp.Null()))

        else:
            x = self.value(leaf.path, read)

            def norm() -> exp.Expr:
                return self.norm(x.copy())

            def number() -> exp.Expr:
                return self.number(x.copy())

            def present() -> exp.Expr:
                return self.present(x.copy())

        if op == "exists":
            pres = _bool(present())
            return pres if v else exp.Not(this=pres)
        if op in ("gt", "gte", "lt", "lte"):
            cls = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}[op]
            assert isinstance(v, float)
            return _bool(cls(this=number(), expression=_lit(v)))
        if op == "between":
            assert isinstance(v, tuple)
            lo, hi = v
            return _bool(exp.Between(this=number(), low=_lit(lo), high=_lit(hi)))
        if op in ("equals", "in", "not_in"):
            items = v if isinstance(v, tuple) else (v,)
            texts = [i for i in items if isinstance(i, str)]
            nums = [i for i in items if isinstance(i, float)]
            parts: list[exp.Expr] = []
            if texts:
                parts.append(exp.In(this=norm(), expressions=[_lit(t) for t in texts]))
            if nums:
                parts.append(exp.In(this=number(), expressions=[_lit(n) for n in nums]))
            hit = _bool(exp.or_(*parts) if len(parts) > 1 else parts[0])
            if op == "not_in":
                return exp.and_(_bool(present()), exp.Not(this=hit))
            return hit
        assert isinstance(v, str)
        t = norm()
        s = exp.Literal.string(v)
        if op == "contains":
            return _bool(
                exp.GT(this=exp.StrPosition(this=t, substr=s), expression=exp.Literal.number(0))
            )
        if op == "starts_with":
            return _bool(self.d.starts_with(t, v))
        if op == "ends_with":
            return _bool(self.d.ends_with(t, v))
        if op == "matches":
            return _bool(self.regex(t, v))
        raise ValueError(f"unknown operator {op!r}")

    def field(self, path: Path, read: Reader) -> int:
        """The index of a field's precomputed ``n<i>``/``x<i>`` columns (registering it)."""
        assert self.fields is not None
        if path not in self.fields:
            self.fields[path] = (len(self.fields), self.value(path, read))
        return self.fields[path][0]

    def field_columns(self, used: set[str] | None = None) -> list[exp.Expr]:
        """The precomputed columns for every field the leaves read: ``n<i>`` its normalised
        text (NULL when absent), ``x<i>`` its number (NULL when not a number)."""
        assert self.fields is not None
        cols: list[exp.Expr] = []
        for idx, x in self.fields.values():
            if used is None or f"n{idx}" in used:
                cols.append(
                    exp.alias_(
                        exp.Nullif(this=self.norm(x.copy()), expression=exp.Literal.string("")),
                        f"n{idx}",
                    )
                )
            if used is None or f"x{idx}" in used:
                cols.append(exp.alias_(self.number(x.copy()), f"x{idx}"))
        return cols

    def condition(self, cond: Condition, read: Reader) -> exp.Expr:
        if isinstance(cond, Leaf):
            return exp.Paren(this=self.leaf(cond, read))
        if isinstance(cond, All):
            return exp.Paren(this=exp.and_(*(self.condition(c, read) for c in cond.conditions)))
        if isinstance(cond, Any):
            return exp.Paren(this=exp.or_(*(self.condition(c, read) for c in cond.conditions)))
        if isinstance(cond, Not):
            return exp.Not(this=self.condition(cond.condition, read))
        raise TypeError(cond)


def _trait_rule(
    rule: EngagementRule,
    LF: _Leafs,
    d: Dialect,
    source: Source,
    as_of: AsOf,
    model: Model,
    window_us: int | None,
) -> tuple[exp.Expr, exp.Expr]:
    """A trait rule over the precomputed lead fields: (whether it counts, its points before the
    cap), as leadscore/engine/traits.py reads the units and the date."""
    assert rule.trait_path is not None
    read: Reader = lambda p: source.lead_text(p, d)  # noqa: E731
    units = exp.column(f"x{LF.field(rule.trait_path, read)}")
    hit: exp.Expr = exp.GT(this=units, expression=_dbl(0))
    worth: exp.Expr = exp.Mul(this=_dbl(rule.points), expression=units.copy())
    if rule.at_path is not None:
        n = exp.column(f"n{LF.field(rule.at_path, read)}")
        # the arithmetic only on text that is a date (CASE: a cast of other text would fail)
        at_us = exp.Case(
            ifs=[exp.If(this=_bool(d.regex(n.copy(), DATE_PATTERN)), true=_date_us(n, d))]
        )
        age = exp.Paren(this=exp.Sub(this=d.as_of_us(as_of), expression=at_us))
        ok: exp.Expr = _bool(exp.GTE(this=age.copy(), expression=exp.Literal.number(0)))
        if window_us is not None:
            ok = exp.and_(
                ok, _bool(exp.LTE(this=age.copy(), expression=exp.Literal.number(window_us)))
            )
        hit = exp.and_(_bool(hit), exp.Paren(this=ok))
        if model.half_life_days is not None:
            seconds = exp.Div(
                this=exp.cast(age.copy(), "double"),
                expression=exp.cast(exp.Literal.number(1000000), "double"),
            )
            factor = d.halved(
                exp.Div(this=seconds, expression=_dbl(model.half_life_days * 86400.0))
            )
            worth = exp.Mul(this=exp.Paren(this=worth), expression=factor)
    return exp.Paren(this=hit), worth


def _date_us(n: exp.Expr, d: Dialect) -> exp.Expr:
    """Microseconds since the epoch of date text (already trimmed and lower-cased), by the
    calendar arithmetic of leadscore/engine/traits.py in doubles: every engine computes it alike,
    with no parsing and no session time zone. Text that is not a date gives garbage here; the
    caller tests it against DATE_PATTERN."""

    def part(start: int, length: int) -> exp.Expr:
        piece = exp.Substring(
            this=n.copy(), start=exp.Literal.number(start), length=exp.Literal.number(length)
        )
        digits = exp.Nullif(
            this=exp.Anonymous(
                this="REPLACE", expressions=[piece, exp.Literal.string("z"), exp.Literal.string("")]
            ),
            expression=exp.Literal.string(""),
        )
        return exp.cast(
            exp.Coalesce(this=exp.cast(digits, "int"), expressions=[exp.Literal.number(0)]),
            "double",
        )

    def floor_div(a: exp.Expr, b: float) -> exp.Expr:
        return exp.Floor(this=exp.Div(this=a, expression=_dbl(b)))

    def add(*xs: exp.Expr) -> exp.Expr:
        out = xs[0]
        for x in xs[1:]:
            out = exp.Add(this=out, expression=x)
        return exp.Paren(this=out)

    def mul(a: exp.Expr, b: float) -> exp.Expr:
        return exp.Mul(this=a, expression=_dbl(b))

    y, mo, day = part(1, 4), part(6, 2), part(9, 2)
    early = exp.LTE(this=mo.copy(), expression=_dbl(2))
    y2 = exp.Paren(
        this=exp.Sub(
            this=y, expression=exp.Case(ifs=[exp.If(this=early, true=_dbl(1))], default=_dbl(0))
        )
    )
    era = floor_div(y2, 400)
    yoe = exp.Paren(this=exp.Sub(this=y2.copy(), expression=mul(era, 400)))
    shift = exp.Case(
        ifs=[exp.If(this=exp.GT(this=mo.copy(), expression=_dbl(2)), true=_dbl(-3))],
        default=_dbl(9),
    )
    doy = add(
        floor_div(add(mul(add(mo.copy(), shift), 153), _dbl(2)), 5),
        day,
        _dbl(-1),
    )
    doe = add(
        mul(yoe, 365),
        floor_div(yoe.copy(), 4),
        exp.Neg(this=floor_div(yoe.copy(), 100)),
        doy,
    )
    days = add(mul(era.copy(), 146097), doe, _dbl(-719468))
    frac_text = exp.Substring(
        this=exp.DPipe(
            this=exp.Anonymous(
                this="REPLACE",
                expressions=[
                    exp.Substring(
                        this=n.copy(), start=exp.Literal.number(21), length=exp.Literal.number(6)
                    ),
                    exp.Literal.string("z"),
                    exp.Literal.string(""),
                ],
            ),
            expression=exp.Literal.string("000000"),
            safe=True,
        ),
        start=exp.Literal.number(1),
        length=exp.Literal.number(6),
    )
    frac = exp.cast(exp.cast(frac_text, "int"), "double")
    return add(
        mul(days, 86_400_000_000),
        mul(part(12, 2), 3_600_000_000),
        mul(part(15, 2), 60_000_000),
        mul(part(18, 2), 1_000_000),
        frac,
    )


def _cap(x: exp.Expr, cap: float | None) -> exp.Expr:
    if cap is None:
        return x
    return exp.Case(
        ifs=[exp.If(this=exp.GT(this=x, expression=_lit(cap)), true=_lit(cap))], default=x.copy()
    )


def _sum(cols: list[exp.Expr]) -> exp.Expr:
    if not cols:
        return _dbl(0)
    out = cols[0]
    for c in cols[1:]:
        out = exp.Add(this=out, expression=c)
    return exp.Paren(this=out)


def _c(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def _grade(model: Model) -> exp.Expr:
    g = model.grades
    if g is None:
        return exp.Literal.string("")

    def steps(col: str, thresholds: tuple[float, float, float], names: str) -> exp.Expr:
        return exp.Case(
            ifs=[
                exp.If(this=exp.GTE(this=_c(col), expression=_lit(t)), true=exp.Literal.string(n))
                for t, n in zip(thresholds, names, strict=False)
            ],
            default=exp.Literal.string(names[3]),
        )

    return exp.DPipe(
        this=steps("fit", g.fit, "ABCD"),
        expression=steps("engagement", g.engagement, "1234"),
        safe=True,
    )


def _counted() -> exp.Expr:
    """An event the rules count: it has a decay (see compile_score's ``every_event``)."""
    return exp.Not(this=exp.Is(this=_c("d"), expression=exp.Null()))


def reason_terms(model: Model, table: str | None) -> list[tuple[str, exp.Expr, int]]:
    """(rule name, its points column, order) for every rule, in model order."""
    terms = [(r.name, _c(f"f{i}", table), r.order) for i, r in enumerate(model.fit_rules)]
    terms += [(r.name, _c(f"e{i}", table), r.order) for i, r in enumerate(model.engagement_rules)]
    return sorted(terms, key=lambda t: t[2])


def compile_score(
    model: Model,
    source: Source,
    as_of: datetime | AsOf,
    dialect: str = "duckdb",
    *,
    detail: bool = False,
    every_event: bool = False,
) -> exp.Expr:
    """The whole scoring query as a sqlglot tree for one dialect.

    ``detail=True`` adds unrounded ``fit_raw``, ``engagement_raw``, ``score_raw`` and one column
    per rule (``f0``…, ``e0``… after caps, ``s0``… before caps) — what parity tests, explanations
    and the service's read-time decay use.

    ``every_event=True`` makes ``g`` read every row of the events: a row outside the window or
    with a name no rule scores gets a NULL decay ``d`` and adds nothing, so a caller can add
    aggregates of its own over all rows (the batch checks the input in the same scan).
    """
    d = adapter(dialect)
    if not isinstance(as_of, AsOf):
        as_of = AsOf.fixed(as_of)
    L = _Leafs(d, missing=model.missing_values)
    lead_id = source.lead_id_col()

    # f: fit rule points per lead, over each trait's text and number computed once (fx)
    LF = _Leafs(d, fields={}, missing=model.missing_values)
    f_cols: list[exp.Expr] = [_c("lead_id")]
    for i, r in enumerate(model.fit_rules):
        cond = LF.condition(r.when, lambda p: source.lead_text(p, d))
        f_cols.append(
            exp.alias_(
                exp.Case(ifs=[exp.If(this=cond, true=_dbl(r.points))], default=_dbl(0)),
                f"f{i}",
            )
        )
    window_us = round(model.window_days * US_PER_DAY) if model.window_days is not None else None
    trait_fast: list[exp.Expr] = []
    for i, er in enumerate(model.engagement_rules):
        if er.trait_path is None:
            continue
        counts_, worth = _trait_rule(er, LF, d, source, as_of, model, window_us)
        f_cols.append(
            exp.alias_(
                exp.Case(ifs=[exp.If(this=counts_, true=worth)], default=_dbl(0)),
                f"ts{i}",
            )
        )
        if er.fast_track:
            trait_fast.append(
                exp.EQ(
                    this=exp.Case(
                        ifs=[exp.If(this=counts_.copy(), true=exp.Literal.number(1))],
                        default=exp.Literal.number(0),
                    ),
                    expression=exp.Literal.number(1),
                )
            )
    if trait_fast:
        f_cols.append(
            exp.alias_(
                exp.Case(
                    ifs=[exp.If(this=exp.or_(*trait_fast), true=exp.Literal.number(1))],
                    default=exp.Literal.number(0),
                ),
                "tft",
            )
        )
    # only the columns the rules read: a trait's number costs a regular expression per lead
    used = {c.name for col in f_cols for c in col.find_all(exp.Column)}
    fx = exp.select(exp.alias_(lead_id, "lead_id"), *LF.field_columns(used)).from_(
        source.leads_table(), copy=False
    )
    f = exp.select(*f_cols).from_(
        exp.Subquery(this=fx, alias=exp.TableAlias(this=exp.to_identifier("fx"))), copy=False
    )
    query = exp.select("*").with_("f", as_=f, copy=False)

    has_events = model.has_event_rules
    if has_events:
        key = L.norm(source.event_name_col())
        keys = sorted(model.event_keys)
        ev_where = exp.and_(
            source.time_filter(as_of, window_us, d),
            exp.In(this=key.copy(), expressions=[exp.Literal.string(k) for k in keys]),
        )
        age = source.age_seconds(as_of, d)
        if model.half_life_days is not None:
            decay: exp.Expr = d.halved(
                exp.Div(this=age, expression=_dbl(model.half_life_days * 86400.0))
            )
        else:
            decay = _dbl(1)
        g_cols: list[exp.Expr] = [exp.alias_(source.event_lead_id_col(), "lead_id")]
        fast_terms: list[exp.Expr] = []
        for i, er in enumerate(model.engagement_rules):
            if er.trait_path is not None:
                continue
            hit: exp.Expr = exp.EQ(this=key.copy(), expression=exp.Literal.string(er.event_key))
            if er.when is not None:
                hit = exp.and_(hit, L.condition(er.when, lambda p: source.event_text(p, d)))
            g_cols.append(
                exp.alias_(
                    exp.Sum(
                        this=exp.Case(
                            ifs=[
                                exp.If(
                                    this=hit, true=exp.Mul(this=_dbl(er.points), expression=_c("d"))
                                )
                            ],
                            default=_dbl(0),
                        )
                    ),
                    f"s{i}",
                )
            )
            if er.fast_track:
                fast_terms.append(hit.copy())
        if fast_terms:
            fast_hit = exp.or_(*fast_terms)
            if every_event:
                fast_hit = exp.and_(fast_hit, _counted())
            g_cols.append(
                exp.alias_(
                    exp.Max(
                        this=exp.Case(
                            ifs=[exp.If(this=fast_hit, true=exp.Literal.number(1))],
                            default=exp.Literal.number(0),
                        )
                    ),
                    "ft",
                )
            )
        else:
            g_cols.append(exp.alias_(exp.Literal.number(0), "ft"))
        # the decay factor once per event, then every rule's sum in one pass
        if every_event:
            counted = exp.Case(ifs=[exp.If(this=ev_where, true=decay)])
            ev_inner = exp.select(exp.Star(), exp.alias_(counted, "d")).from_(
                source.events_table(), copy=False
            )
        else:
            ev_inner = (
                exp.select(exp.Star(), exp.alias_(decay, "d"))
                .from_(source.events_table(), copy=False)
                .where(ev_where, copy=False)
            )
        # keep the events table alias "e" visible to the conditions: select from a subquery aliased e
        g = (
            exp.select(*g_cols)
            .from_(
                exp.Subquery(this=ev_inner, alias=exp.TableAlias(this=exp.to_identifier("e"))),
                copy=False,
            )
            .group_by(source.event_lead_id_col(), copy=False)
        )
        query = query.with_("g", as_=g, copy=False)

    # r: fit rules and capped engagement subtotals per lead
    r_cols: list[exp.Expr] = [_c("lead_id", "f")]
    r_cols += [_c(f"f{i}", "f") for i in range(len(model.fit_rules))]
    for i, rule in enumerate(model.engagement_rules):
        s: exp.Expr
        if rule.trait_path is not None:
            s = _c(f"ts{i}", "f")
        else:
            s = exp.Coalesce(this=_c(f"s{i}", "g"), expressions=[_dbl(0)])
        r_cols.append(exp.alias_(_cap(s, rule.cap), f"e{i}"))
        if detail:  # the decayed sum before the cap: the service decays it further at read time
            r_cols.append(exp.alias_(s.copy(), f"s{i}"))
    ft: exp.Expr = (
        exp.Coalesce(this=_c("ft", "g"), expressions=[exp.Literal.number(0)])
        if has_events
        else exp.Literal.number(0)
    )
    if trait_fast:
        ft = exp.Case(
            ifs=[
                exp.If(
                    this=exp.or_(
                        exp.EQ(this=ft, expression=exp.Literal.number(1)),
                        exp.EQ(this=_c("tft", "f"), expression=exp.Literal.number(1)),
                    ),
                    true=exp.Literal.number(1),
                )
            ],
            default=exp.Literal.number(0),
        )
    r_cols.append(exp.alias_(ft, "ft"))
    r_sel = exp.select(*r_cols).from_("f", copy=False)
    if has_events:
        r_sel = r_sel.join(
            "g",
            on=exp.EQ(this=_c("lead_id", "g"), expression=_c("lead_id", "f")),
            join_type="left",
            copy=False,
        )
    query = query.with_("r", as_=r_sel, copy=False)

    fit_sum = _sum([_c(f"f{i}") for i in range(len(model.fit_rules))])
    eng_sum = _sum([_c(f"e{i}") for i in range(len(model.engagement_rules))])
    t = exp.select(
        exp.Star(),
        exp.alias_(_cap(fit_sum, model.fit_max), "fit"),
        exp.alias_(_cap(eng_sum, model.engagement_max), "engagement"),
    ).from_("r", copy=False)
    query = query.with_("t", as_=t, copy=False)
    u = exp.select(
        exp.Star(), exp.alias_(exp.Add(this=_c("fit"), expression=_c("engagement")), "score")
    ).from_("t", copy=False)
    query = query.with_("u", as_=u, copy=False)

    fast = exp.EQ(this=_c("ft", "u"), expression=exp.Literal.number(1))
    mql: exp.Expr = exp.Paren(
        this=exp.or_(exp.GTE(this=_c("score", "u"), expression=_lit(model.threshold)), fast.copy())
    )
    if model.min_fit is not None:
        mql = exp.and_(mql, exp.GTE(this=_c("fit", "u"), expression=_lit(model.min_fit)))

    reasons: exp.Expr
    reasons_cte = None
    if not model.rules:
        reasons = d.empty_reasons()
    elif d.reasons_shape == "row":
        reasons = d.reasons_row(reason_terms(model, "u"))
    elif d.reasons_shape == "subquery":
        reasons = d.reasons_subquery(reason_terms(model, "u"))
    else:
        reasons_cte = d.reasons_grouped(reason_terms(model, "u"))
        query = query.with_("rs", as_=reasons_cte, copy=False)
        # a lead without reasons has no row in rs: an empty list, not NULL
        reasons = exp.Coalesce(this=_c("reasons", "rs"), expressions=[d.empty_reasons()])

    mql_out = d.boolean(mql)
    fast_out = d.boolean(fast)
    out_cols = [
        exp.alias_(_c("lead_id", "u"), "lead_id"),
        exp.alias_(d.round2(_c("fit", "u")), "fit"),
        exp.alias_(d.round2(_c("engagement", "u")), "engagement"),
        exp.alias_(d.round2(_c("score", "u")), "score"),
        exp.alias_(
            _grade(model).transform(lambda n: _c(n.name, "u") if isinstance(n, exp.Column) else n),
            "grade",
        ),
        exp.alias_(mql_out, "mql"),
        exp.alias_(fast_out, "fast_track"),
        exp.alias_(reasons, "reasons"),
    ]
    if detail:
        out_cols += [
            exp.alias_(_c("fit", "u"), "fit_raw"),
            exp.alias_(_c("engagement", "u"), "engagement_raw"),
            exp.alias_(_c("score", "u"), "score_raw"),
        ]
        out_cols += [_c(f"f{i}", "u") for i in range(len(model.fit_rules))]
        out_cols += [_c(f"e{i}", "u") for i in range(len(model.engagement_rules))]
        out_cols += [_c(f"s{i}", "u") for i in range(len(model.engagement_rules))]
    final = exp.select(*out_cols).from_(exp.Table(this=exp.to_identifier("u")), copy=False)
    if reasons_cte is not None:
        final = final.join(
            "rs",
            on=exp.EQ(this=_c("lead_id", "rs"), expression=_c("lead_id", "u")),
            join_type="left",
        )
    # replace the placeholder outer SELECT * with the final select, keeping the CTEs
    with_key = "with_" if "with_" in query.args else "with"
    final.set(with_key, query.args.get(with_key))
    return final


def score_sql(
    model: Model,
    source: Source,
    as_of: datetime | AsOf,
    dialect: str = "duckdb",
    *,
    detail: bool = False,
    pretty: bool = False,
) -> str:
    """The scoring query as SQL text for one dialect."""
    tree = compile_score(model, source, as_of, dialect, detail=detail)
    return adapter(dialect).render(tree, pretty=pretty)
