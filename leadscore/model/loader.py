"""Read a model file into a Model, collecting every problem with its line and column."""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any as AnyT

import yaml
from yaml.constructor import SafeConstructor

from ..errors import ModelError, Problem
from .schema import (
    OPERATORS,
    All,
    Any,
    Condition,
    EngagementRule,
    FitRule,
    Grades,
    Leaf,
    Model,
    Not,
)
from .values import norm_text, number_of

__all__ = ["load_model", "parse_model"]

TOP_KEYS = (
    "model",
    "name",
    "description",
    "missing_values",
    "fit",
    "engagement",
    "mql",
    "grades",
)
FIT_KEYS = ("max", "rules")
ENGAGEMENT_KEYS = ("max", "half_life_days", "window_days", "rules")
FIT_RULE_KEYS = ("name", "when", "points", "description")
ENGAGEMENT_RULE_KEYS = (
    "name",
    "event",
    "trait",
    "at",
    "when",
    "points",
    "cap",
    "fast_track",
    "description",
)
MQL_KEYS = ("threshold", "min_fit")
COMBINATORS = ("all", "any", "not")
LEAF_KEYS = ("field", *OPERATORS)

# YAML 1.1 reads these plain words as booleans; in a condition they are almost always text
# (`in: [NO, SE]` means Norway and Sweden), so conditions keep the words as written.
_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}
_SAFE = SafeConstructor()
_CODE_LIKE = re.compile(r"^[+-]?(0[0-9_]|0[xXoObB]|.*[:_])")

# `matches` accepts the syntax that Python, DuckDB (RE2) and PostgreSQL read alike.
_BAD_ESCAPE = re.compile(r"\\([A-Za-z0-9])")
_PORTABLE_ESCAPES = set("dswDSW")


@dataclass
class _Ctx:
    file: str
    problems: list[Problem]

    def add(self, node: yaml.Node, message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, message))


def _scalar(node: yaml.Node) -> AnyT:
    if isinstance(node, yaml.ScalarNode):
        return _SAFE.construct_object(node, deep=True)
    return None


def _text_scalar(node: yaml.ScalarNode) -> AnyT:
    """A scalar inside a condition: yes/no/on/off stay words, not booleans."""
    value = _scalar(node)
    if isinstance(value, bool) and node.style is None and node.value.lower() in _YAML11_BOOL_WORDS:
        return node.value
    # YAML 1.1 also reads 02134 as an octal number and 10:30 as 630: codes such as postal
    # codes, phone prefixes and times stay text, as written
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and node.style is None
        and _CODE_LIKE.match(node.value)
    ):
        return node.value
    return value


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    v = _scalar(node)
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"the boolean {node.value!r}"
    if isinstance(v, int | float):
        return f"the number {node.value}"
    return f"the text {node.value!r}"


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" (expected one of: {', '.join(allowed)})"


def _mapping(
    ctx: _Ctx, node: yaml.Node, allowed: tuple[str, ...], where: str
) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """The keys of a mapping node; unknown and repeated keys are reported."""
    if not isinstance(node, yaml.MappingNode):
        ctx.add(node, f"{where} must be a mapping, not {_kind(node)}")
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for knode, vnode in node.value:
        key = _scalar(knode)
        if not isinstance(key, str):
            ctx.add(knode, f"keys in {where} must be words, not {_kind(knode)}")
            continue
        if key in out:
            ctx.add(knode, f"'{key}' is given twice in {where}; keep one")
            continue
        if key not in allowed:
            ctx.add(knode, f"unknown key '{key}' in {where}{_suggest(key, allowed)}")
            continue
        out[key] = (knode, vnode)
    return out


def _number(
    ctx: _Ctx, node: yaml.Node, what: str, *, positive: bool = False, text_ok: bool = False
) -> float | None:
    v = _scalar(node)
    if text_ok and isinstance(v, str):
        n = number_of(v)
        if n is not None:
            v = n
    if isinstance(v, bool) or not isinstance(v, int | float):
        ctx.add(node, f"{what} must be a number, not {_kind(node)}")
        return None
    f = float(v)
    if not math.isfinite(f):
        ctx.add(node, f"{what} must be a finite number, not {node.value}")
        return None
    if positive and f <= 0:
        ctx.add(node, f"{what} must be greater than 0, not {node.value}")
        return None
    return f


def _text(ctx: _Ctx, node: yaml.Node, what: str) -> str | None:
    v = _scalar(node)
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = node.value  # a number written as a name or event is meant as text
    if not isinstance(v, str) or not v.strip():
        ctx.add(node, f"{what} must be non-empty text, not {_kind(node)}")
        return None
    return v


def _field(ctx: _Ctx, node: yaml.Node, what: str) -> str | None:
    """A field path such as ``TotalVisits`` or ``company.employees``."""
    text = _text(ctx, node, what)
    if text is None:
        return None
    text = text.strip()
    if any(not p for p in text.split(".")):
        ctx.add(node, f"{what} {text!r} has an empty part between dots")
        return None
    return text


def _operand(ctx: _Ctx, node: yaml.Node, op: str, field: str) -> AnyT:
    """Check and normalise the operand of one operator; None when it is invalid."""
    what = f"'{op}' on '{field}'"
    if op in ("gt", "gte", "lt", "lte"):
        return _number(ctx, node, what, text_ok=True)
    if op == "between":
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            ctx.add(node, f"{what} must be a list of two numbers [low, high], not {_kind(node)}")
            return None
        lo = _number(ctx, node.value[0], f"the low end of {what}", text_ok=True)
        hi = _number(ctx, node.value[1], f"the high end of {what}", text_ok=True)
        if lo is None or hi is None:
            return None
        if lo > hi:
            ctx.add(node, f"{what} has low {lo:g} above high {hi:g}; write [{hi:g}, {lo:g}]")
            return None
        return (lo, hi)
    if op == "exists":
        v = _scalar(node)
        if not isinstance(v, bool):
            ctx.add(node, f"{what} must be true or false, not {_kind(node)}")
            return None
        return v
    if op in ("in", "not_in"):
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            ctx.add(node, f"{what} must be a non-empty list of values, not {_kind(node)}")
            return None
        items = [_equals_operand(ctx, item, f"an item of {what}") for item in node.value]
        if any(i is None for i in items):
            return None
        return tuple(items)
    if op == "equals":
        return _equals_operand(ctx, node, what)
    # contains, starts_with, ends_with, matches
    if not isinstance(node, yaml.ScalarNode):
        ctx.add(node, f"{what} must be text, not {_kind(node)}")
        return None
    raw = _text_scalar(node)
    if raw is None or isinstance(raw, bool):
        ctx.add(node, f"{what} must be text, not {_kind(node)}")
        return None
    text = node.value if not isinstance(raw, str) else raw
    if not text.strip():
        ctx.add(node, f"{what} must be non-empty text")
        return None
    if op == "matches":
        return _pattern(ctx, node, text, what)
    return norm_text(text)


def _equals_operand(ctx: _Ctx, node: yaml.Node, what: str) -> str | float | None:
    if not isinstance(node, yaml.ScalarNode):
        ctx.add(node, f"{what} must be a single value, not {_kind(node)}")
        return None
    v = _text_scalar(node)
    if v is None:
        ctx.add(node, f"{what} needs a value; to test for a missing field use 'exists: false'")
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        f = float(v)
        if not math.isfinite(f):
            ctx.add(node, f"{what} must be a finite number, not {node.value}")
            return None
        return f
    if not isinstance(v, str) or not v.strip():
        ctx.add(node, f"{what} must be non-empty text or a number")
        return None
    return norm_text(v)


def _pattern(ctx: _Ctx, node: yaml.Node, text: str, what: str) -> str | None:
    pattern = text.strip()
    try:
        re.compile(pattern)
    except re.error as e:
        ctx.add(node, f"{what} is not a valid regular expression: {e}")
        return None
    if "(?" in pattern:
        ctx.add(
            node,
            f"{what} uses '(?…)' (flags, look-around or named groups), which not every engine "
            "reads; matching already ignores case",
        )
        return None
    for m in _BAD_ESCAPE.finditer(pattern):
        if m.group(1) not in _PORTABLE_ESCAPES:
            ctx.add(
                node,
                f"{what} uses '\\{m.group(1)}', which engines read differently; "
                "write the characters out, e.g. [0-9] or a literal",
            )
            return None
    # matching ignores case: lower-case the literal text, but not escapes (\\D is not \\d)
    return re.sub(
        r"\\.|[^\\]+",
        lambda m: m.group(0) if m.group(0).startswith("\\") else m.group(0).lower(),
        pattern,
    )


def _condition(ctx: _Ctx, node: yaml.Node, where: str) -> Condition | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.add(
            node,
            f"the condition of {where} must be a mapping such as "
            f"{{field: title, contains: director}}, not {_kind(node)}",
        )
        return None
    keys = {(_scalar(k) if isinstance(k, yaml.ScalarNode) else None): (k, v) for k, v in node.value}
    combinators = [k for k in keys if k in COMBINATORS]
    if combinators:
        allowed = tuple(combinators[:1])
        m = _mapping(ctx, node, allowed, f"the condition of {where}")
        if m is None or combinators[0] not in m:
            return None
        comb = combinators[0]
        knode, vnode = m[comb]
        if comb == "not":
            inner = _condition(ctx, vnode, where)
            return Not(inner) if inner is not None else None
        if not isinstance(vnode, yaml.SequenceNode) or not vnode.value:
            ctx.add(vnode, f"'{comb}' in {where} must be a non-empty list of conditions")
            return None
        parts = [_condition(ctx, item, where) for item in vnode.value]
        if any(p is None for p in parts):
            return None
        conds = tuple(p for p in parts if p is not None)
        return All(conds) if comb == "all" else Any(conds)

    m = _mapping(ctx, node, LEAF_KEYS, f"the condition of {where}")
    if m is None:
        return None
    ops = [k for k in m if k in OPERATORS]
    if "field" not in m:
        ctx.add(node, f"a condition in {where} has no 'field' (the trait or property to test)")
        return None
    field = _text(ctx, m["field"][1], f"'field' in {where}")
    if field is None:
        return None
    field = field.strip()
    path = tuple(field.split("."))
    if any(not p for p in path):
        ctx.add(m["field"][1], f"'field' {field!r} in {where} has an empty part between dots")
        return None
    if not ops:
        ctx.add(
            node,
            f"the condition on '{field}' in {where} has no operator; "
            f"add one of: {', '.join(OPERATORS)}",
        )
        return None
    if len(ops) > 1:
        knode = m[ops[1]][0]
        ctx.add(
            knode,
            f"the condition on '{field}' in {where} has {len(ops)} operators "
            f"({', '.join(repr(o) for o in ops)}); a condition takes exactly one — "
            "combine conditions with 'all' or 'any'",
        )
        return None
    op = ops[0]
    value = _operand(ctx, m[op][1], op, field)
    if value is None:
        return None
    return Leaf(field=field, path=path, op=op, value=value)


def _rules(
    ctx: _Ctx, node: yaml.Node, section: str, build: Callable[[yaml.Node, int], AnyT]
) -> list[AnyT]:
    if not isinstance(node, yaml.SequenceNode):
        ctx.add(node, f"'{section}.rules' must be a list of rules, not {_kind(node)}")
        return []
    out = []
    for item in node.value:
        rule = build(item, item.start_mark.line * 100000 + item.start_mark.column)
        if rule is not None:
            out.append(rule)
    return out


def _rule_head(
    ctx: _Ctx, item: yaml.Node, allowed: tuple[str, ...], section: str, index: int
) -> tuple[dict[str, tuple[yaml.Node, yaml.Node]], str] | None:
    label = f"{section} rule #{index}"
    if isinstance(item, yaml.MappingNode):
        for k, v in item.value:
            if _scalar(k) == "name" and isinstance(_scalar(v), str):
                label = f"{section} rule '{_scalar(v)}'"
    if section == "fit" and isinstance(item, yaml.MappingNode):
        for k, _v in item.value:
            if _scalar(k) in ("fast_track", "cap", "event"):
                ctx.add(
                    k,
                    f"'{_scalar(k)}' in {label} belongs to engagement rules only; "
                    "fit rules score traits, not events",
                )
        allowed_fit = (*allowed, "fast_track", "cap", "event")
        m = _mapping(ctx, item, allowed_fit, label)
        if m is not None:
            for k in ("fast_track", "cap", "event"):
                m.pop(k, None)
    else:
        m = _mapping(ctx, item, allowed, label)
    if m is None:
        return None
    for required in ("name", "points") + (("when",) if section == "fit" else ()):
        if required not in m:
            ctx.add(item, f"{label} has no '{required}'")
    if section == "engagement":
        if "event" not in m and "trait" not in m:
            ctx.add(
                item,
                f"{label} has no 'event' (the event it counts) or 'trait' (a count or amount "
                "on the lead)",
            )
        elif "event" in m and "trait" in m:
            ctx.add(
                m["trait"][0],
                f"{label} has both 'event' and 'trait'; a rule counts events or reads a "
                "trait, so split it in two",
            )
    return m, label


def parse_model(text: str, file: str = "<model>") -> Model:
    """Parse and validate a model; raise ModelError listing every problem."""
    ctx = _Ctx(file=file, problems=[])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ModelError(
            [Problem(file, line, col, f"this is not valid YAML: {e.problem or e.context}")]
        ) from None
    except yaml.YAMLError as e:
        raise ModelError([Problem(file, 1, 1, f"this is not valid YAML: {e}")]) from None
    if root is None:
        raise ModelError(
            [
                Problem(
                    file, 1, 1, "the model file is empty; `leadscore init` writes a starter model"
                )
            ]
        )
    top = _mapping(ctx, root, TOP_KEYS, "the model")
    if top is None:
        raise ModelError(ctx.problems)

    for required in ("model", "name"):
        if required not in top:
            ctx.add(
                root,
                f"the model has no '{required}'"
                + (" (the format version; write 'model: 1')" if required == "model" else ""),
            )
    if "model" in top:
        vnode = top["model"][1]
        v = _scalar(vnode)
        if v != 1 or isinstance(v, bool):
            ctx.add(vnode, f"'model' must be 1 (the only format version), not {_kind(vnode)}")
    name = _text(ctx, top["name"][1], "'name'") if "name" in top else None
    description = ""
    if "description" in top:
        description = _text(ctx, top["description"][1], "'description'") or ""

    missing_values: tuple[str, ...] = ()
    if "missing_values" in top:
        missing_values = _missing_values(ctx, top["missing_values"][1])

    rule_names: dict[str, yaml.Node] = {}

    def check_name(node: yaml.Node, label: str) -> str | None:
        nm = _text(ctx, node, f"the name of {label}")
        if nm is None:
            return None
        nm = nm.strip()
        key = nm.lower()
        if key in rule_names:
            first = rule_names[key].start_mark.line + 1
            ctx.add(
                node, f"rule name '{nm}' is already used on line {first}; rule names must be unique"
            )
            return None
        rule_names[key] = node
        return nm

    fit_rules: list[FitRule] = []
    fit_max = None
    if "fit" in top:
        fit = _mapping(ctx, top["fit"][1], FIT_KEYS, "'fit'")
        if fit is not None:
            if "max" in fit:
                fit_max = _number(ctx, fit["max"][1], "'fit.max'")
            counter = iter(range(1, 10**9))

            def build_fit(item: yaml.Node, order: int) -> FitRule | None:
                head = _rule_head(ctx, item, FIT_RULE_KEYS, "fit", next(counter))
                if head is None:
                    return None
                m, label = head
                nm = check_name(m["name"][1], label) if "name" in m else None
                when = _condition(ctx, m["when"][1], label) if "when" in m else None
                pts = (
                    _number(ctx, m["points"][1], f"'points' of {label}") if "points" in m else None
                )
                if nm is None or when is None or pts is None:
                    return None
                return FitRule(nm, when, pts, order, item.start_mark.line + 1)

            fit_rules = _rules(ctx, fit["rules"][1], "fit", build_fit) if "rules" in fit else []

    eng_rules: list[EngagementRule] = []
    eng_max = half_life = window = None
    if "engagement" in top:
        eng = _mapping(ctx, top["engagement"][1], ENGAGEMENT_KEYS, "'engagement'")
        if eng is not None:
            if "max" in eng:
                eng_max = _number(ctx, eng["max"][1], "'engagement.max'")
            if "half_life_days" in eng:
                half_life = _number(
                    ctx, eng["half_life_days"][1], "'engagement.half_life_days'", positive=True
                )
            if "window_days" in eng:
                window = _number(
                    ctx, eng["window_days"][1], "'engagement.window_days'", positive=True
                )
            counter2 = iter(range(1, 10**9))

            def build_eng(item: yaml.Node, order: int) -> EngagementRule | None:
                head = _rule_head(ctx, item, ENGAGEMENT_RULE_KEYS, "engagement", next(counter2))
                if head is None:
                    return None
                m, label = head
                nm = check_name(m["name"][1], label) if "name" in m else None
                event = _text(ctx, m["event"][1], f"'event' of {label}") if "event" in m else None
                trait = _field(ctx, m["trait"][1], f"'trait' of {label}") if "trait" in m else None
                at = _field(ctx, m["at"][1], f"'at' of {label}") if "at" in m else None
                bad_trait = ("trait" in m and trait is None) or ("at" in m and at is None)
                if "at" in m and "trait" not in m:
                    ctx.add(
                        m["at"][0],
                        f"'at' of {label} dates a trait rule; events carry their own time",
                    )
                    bad_trait = True
                if "when" in m and "trait" in m:
                    ctx.add(
                        m["when"][0],
                        f"'when' of {label}: a trait rule reads its trait alone; to score a lead's "
                        "traits by a condition, write a fit rule",
                    )
                    bad_trait = True
                if trait is not None and "event" not in m:
                    event = ""
                when = _condition(ctx, m["when"][1], label) if "when" in m else None
                bad_when = "when" in m and when is None
                pts = (
                    _number(ctx, m["points"][1], f"'points' of {label}") if "points" in m else None
                )
                cap = None
                if "cap" in m:
                    cap = _number(ctx, m["cap"][1], f"'cap' of {label}", positive=True)
                    if pts is not None and pts <= 0:
                        ctx.add(
                            m["cap"][0],
                            f"'cap' of {label} needs positive points; a cap limits what a rule "
                            f"adds, and this rule gives {pts:g}",
                        )
                        return None
                fast = False
                if "fast_track" in m:
                    fv = _scalar(m["fast_track"][1])
                    if not isinstance(fv, bool):
                        ctx.add(
                            m["fast_track"][1], f"'fast_track' of {label} must be true or false"
                        )
                        return None
                    fast = fv
                if (
                    nm is None
                    or event is None
                    or bad_when
                    or bad_trait
                    or pts is None
                    or ("cap" in m and cap is None)
                ):
                    return None
                return EngagementRule(
                    nm,
                    event.strip(),
                    norm_text(event),
                    when,
                    pts,
                    cap,
                    fast,
                    order,
                    item.start_mark.line + 1,
                    trait,
                    at,
                )

            eng_rules = (
                _rules(ctx, eng["rules"][1], "engagement", build_eng) if "rules" in eng else []
            )

    threshold = min_fit = None
    if "mql" not in top:
        ctx.add(root, "the model has no 'mql' section; add 'mql: {threshold: 50}'")
    else:
        mql = _mapping(ctx, top["mql"][1], MQL_KEYS, "'mql'")
        if mql is not None:
            if "threshold" not in mql:
                ctx.add(top["mql"][1], "'mql' has no 'threshold' (the score that makes an MQL)")
            else:
                threshold = _number(ctx, mql["threshold"][1], "'mql.threshold'")
            if "min_fit" in mql:
                min_fit = _number(ctx, mql["min_fit"][1], "'mql.min_fit'")

    grades = None
    if "grades" in top:
        grades = _grades(ctx, top["grades"][1])

    if ctx.problems:
        raise ModelError(sorted(ctx.problems, key=lambda p: (p.line, p.column)))
    assert name is not None and threshold is not None
    fit_rules.sort(key=lambda r: r.order)
    eng_rules.sort(key=lambda r: r.order)
    # renumber orders densely, in file order across both sections
    ordered: list[FitRule | EngagementRule] = sorted(
        [*fit_rules, *eng_rules], key=lambda r: r.order
    )
    rank = {id(r): i for i, r in enumerate(ordered)}
    fit_final = tuple(FitRule(r.name, r.when, r.points, rank[id(r)], r.line) for r in fit_rules)
    eng_final = tuple(replace(r, order=rank[id(r)]) for r in eng_rules)
    return Model(
        name=name.strip(),
        description=description,
        threshold=threshold,
        fit_rules=fit_final,
        engagement_rules=eng_final,
        fit_max=fit_max,
        engagement_max=eng_max,
        half_life_days=half_life,
        window_days=window,
        min_fit=min_fit,
        grades=grades,
        missing_values=missing_values,
        source=text,
        file=file,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
    )


def _grades(ctx: _Ctx, node: yaml.Node) -> Grades | None:
    g = _mapping(ctx, node, ("fit", "engagement"), "'grades'")
    if g is None:
        return None
    out: dict[str, tuple[float, float, float]] = {}
    for part, keys in (("fit", ("A", "B", "C")), ("engagement", ("1", "2", "3"))):
        if part not in g:
            ctx.add(
                node,
                f"'grades' has no '{part}'; give both fit {{A, B, C}} and engagement {{1, 2, 3}}",
            )
            continue
        pnode = g[part][1]
        if not isinstance(pnode, yaml.MappingNode):
            ctx.add(pnode, f"'grades.{part}' must be a mapping such as {_example(part)}")
            continue
        values: dict[str, tuple[float, yaml.Node]] = {}
        for knode, vnode in pnode.value:
            k = str(knode.value)
            if k not in keys:
                ctx.add(knode, f"unknown key '{k}' in 'grades.{part}'{_suggest(k, keys)}")
                continue
            n = _number(ctx, vnode, f"'grades.{part}.{k}'")
            if n is not None:
                values[k] = (n, vnode)
        missing = [k for k in keys if k not in values]
        if missing:
            if not any(p.line == pnode.start_mark.line + 1 for p in ctx.problems):
                ctx.add(
                    pnode, f"'grades.{part}' needs {', '.join(keys)}; missing {', '.join(missing)}"
                )
            continue
        a, b, c = (values[k][0] for k in keys)
        if not (a > b > c):
            ctx.add(
                pnode,
                f"'grades.{part}' thresholds must descend ({keys[0]} > {keys[1]} > {keys[2]}); "
                f"got {a:g}, {b:g}, {c:g}",
            )
            continue
        out[part] = (a, b, c)
    if len(out) != 2:
        return None
    return Grades(fit=out["fit"], engagement=out["engagement"])


def _missing_values(ctx: _Ctx, node: yaml.Node) -> tuple[str, ...]:
    """``missing_values``: a list of placeholder values (text or numbers), compared as text."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        ctx.add(
            node,
            "'missing_values' must be a non-empty list of the values that mean \"not answered\", "
            f'such as [Select, N/A, "-"], not {_kind(node)}',
        )
        return ()
    out: list[str] = []
    for item in node.value:
        v = _text_scalar(item) if isinstance(item, yaml.ScalarNode) else None
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int | float):
            v = item.value  # a number is compared as written: 0 means the text 0
        if not isinstance(v, str) or not v.strip():
            ctx.add(
                item, f"an item of 'missing_values' must be text or a number, not {_kind(item)}"
            )
            continue
        key = norm_text(v)
        if key not in out:
            out.append(key)
    return tuple(out)


def _example(part: str) -> str:
    return "{A: 40, B: 25, C: 10}" if part == "fit" else "{1: 40, 2: 20, 3: 5}"


def load_model(path: str | Path) -> Model:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            [Problem(str(path), 1, 1, "no such file; `leadscore init` writes a starter model")]
        ) from None
    except UnicodeDecodeError as e:
        raise ModelError(
            [Problem(str(path), 1, 1, f"the file is not UTF-8 text ({e.reason})")]
        ) from None
    except OSError as e:
        raise ModelError(
            [Problem(str(path), 1, 1, f"cannot read the file: {e.strerror}")]
        ) from None
    return parse_model(text, str(path))
