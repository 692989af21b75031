"""The condition language read from YAML nodes (docs/model.md, "Conditions").

The scoring model's rules and the routing file's rules and SLAs share it; what a condition
means at run time is leadscore.engine.conditions.compile_condition.
"""

from __future__ import annotations

import math
import re
from typing import Any as AnyT

import yaml

from .schema import OPERATORS, All, Any, Condition, Leaf, Not
from .values import norm_text
from .yamlnodes import Ctx, kind_of, mapping_of, number_at, scalar_of, text_at, text_scalar

__all__ = ["COMBINATORS", "LEAF_KEYS", "parse_condition"]

COMBINATORS = ("all", "any", "not")
LEAF_KEYS = ("field", *OPERATORS)

# `matches` accepts the syntax that Python, DuckDB (RE2) and PostgreSQL read alike.
_BAD_ESCAPE = re.compile(r"\\([A-Za-z0-9])")
_PORTABLE_ESCAPES = set("dswDSW")


def _operand(ctx: Ctx, node: yaml.Node, op: str, field: str) -> AnyT:
    """Check and normalise the operand of one operator; None when it is invalid."""
    what = f"'{op}' on '{field}'"
    if op in ("gt", "gte", "lt", "lte"):
        return number_at(ctx, node, what, text_ok=True)
    if op == "between":
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            ctx.add(node, f"{what} must be a list of two numbers [low, high], not {kind_of(node)}")
            return None
        lo = number_at(ctx, node.value[0], f"the low end of {what}", text_ok=True)
        hi = number_at(ctx, node.value[1], f"the high end of {what}", text_ok=True)
        if lo is None or hi is None:
            return None
        if lo > hi:
            ctx.add(node, f"{what} has low {lo:g} above high {hi:g}; write [{hi:g}, {lo:g}]")
            return None
        return (lo, hi)
    if op == "exists":
        v = scalar_of(node)
        if not isinstance(v, bool):
            ctx.add(node, f"{what} must be true or false, not {kind_of(node)}")
            return None
        return v
    if op in ("in", "not_in"):
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            ctx.add(node, f"{what} must be a non-empty list of values, not {kind_of(node)}")
            return None
        items = [_equals_operand(ctx, item, f"an item of {what}") for item in node.value]
        if any(i is None for i in items):
            return None
        return tuple(items)
    if op == "equals":
        return _equals_operand(ctx, node, what)
    # contains, starts_with, ends_with, matches
    if not isinstance(node, yaml.ScalarNode):
        ctx.add(node, f"{what} must be text, not {kind_of(node)}")
        return None
    raw = text_scalar(node)
    if raw is None or isinstance(raw, bool):
        ctx.add(node, f"{what} must be text, not {kind_of(node)}")
        return None
    text = node.value if not isinstance(raw, str) else raw
    if not text.strip():
        ctx.add(node, f"{what} must be non-empty text")
        return None
    if op == "matches":
        return _pattern(ctx, node, text, what)
    return norm_text(text)


def _equals_operand(ctx: Ctx, node: yaml.Node, what: str) -> str | float | None:
    if not isinstance(node, yaml.ScalarNode):
        ctx.add(node, f"{what} must be a single value, not {kind_of(node)}")
        return None
    v = text_scalar(node)
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


def _pattern(ctx: Ctx, node: yaml.Node, text: str, what: str) -> str | None:
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


def parse_condition(ctx: Ctx, node: yaml.Node, where: str) -> Condition | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.add(
            node,
            f"the condition of {where} must be a mapping such as "
            f"{{field: title, contains: director}}, not {kind_of(node)}",
        )
        return None
    keys = {
        (scalar_of(k) if isinstance(k, yaml.ScalarNode) else None): (k, v) for k, v in node.value
    }
    combinators = [k for k in keys if k in COMBINATORS]
    if combinators:
        allowed = tuple(combinators[:1])
        m = mapping_of(ctx, node, allowed, f"the condition of {where}")
        if m is None or combinators[0] not in m:
            return None
        comb = combinators[0]
        knode, vnode = m[comb]
        if comb == "not":
            inner = parse_condition(ctx, vnode, where)
            return Not(inner) if inner is not None else None
        if not isinstance(vnode, yaml.SequenceNode) or not vnode.value:
            ctx.add(vnode, f"'{comb}' in {where} must be a non-empty list of conditions")
            return None
        parts = [parse_condition(ctx, item, where) for item in vnode.value]
        if any(p is None for p in parts):
            return None
        conds = tuple(p for p in parts if p is not None)
        return All(conds) if comb == "all" else Any(conds)

    m = mapping_of(ctx, node, LEAF_KEYS, f"the condition of {where}")
    if m is None:
        return None
    ops = [k for k in m if k in OPERATORS]
    if "field" not in m:
        ctx.add(node, f"a condition in {where} has no 'field' (the trait or property to test)")
        return None
    field = text_at(ctx, m["field"][1], f"'field' in {where}")
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
