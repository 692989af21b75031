"""Conditions compiled to plain Python predicates over a mapping of values."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any as AnyT

from ..model.schema import All, Any, Condition, Leaf, Not
from ..model.values import lookup, norm_text, number_of, text_of

__all__ = ["Predicate", "compile_condition"]

Predicate = Callable[[Mapping[str, AnyT]], bool]


def compile_condition(cond: Condition, missing: frozenset[str] = frozenset()) -> Predicate:
    """A predicate for ``cond``; ``missing`` holds the model's placeholder values (normalised
    text such as ``select`` or ``n/a``), which read as absent."""
    if isinstance(cond, Leaf):
        return _leaf(cond, missing)
    if isinstance(cond, All):
        parts = [compile_condition(c, missing) for c in cond.conditions]
        return lambda d: all(p(d) for p in parts)
    if isinstance(cond, Any):
        parts = [compile_condition(c, missing) for c in cond.conditions]
        return lambda d: any(p(d) for p in parts)
    if isinstance(cond, Not):
        inner = compile_condition(cond.condition, missing)
        return lambda d: not inner(d)
    raise TypeError(f"not a condition: {cond!r}")


def _leaf(leaf: Leaf, missing: frozenset[str]) -> Predicate:
    path, op, value = leaf.path, leaf.op, leaf.value

    def present(raw: AnyT) -> str | None:
        """The value's text, or None when it is absent or a placeholder."""
        t = text_of(raw)
        if t is None or (missing and norm_text(t) in missing):
            return None
        return t

    def text(d: Mapping[str, AnyT]) -> str | None:
        t = present(lookup(d, path))
        return None if t is None else norm_text(t)

    if op == "exists":
        want = bool(value)
        return lambda d: (present(lookup(d, path)) is not None) == want

    if op in ("gt", "gte", "lt", "lte", "between"):
        test = _numeric_test(op, value)

        def numeric(d: Mapping[str, AnyT]) -> bool:
            raw = lookup(d, path)
            if present(raw) is None:
                return False
            n = number_of(raw)
            return n is not None and test(n)

        return numeric

    if op in ("equals", "in", "not_in"):
        items = value if isinstance(value, tuple) else (value,)
        texts = frozenset(i for i in items if isinstance(i, str))
        numbers = frozenset(float(i) for i in items if isinstance(i, float))
        negate = op == "not_in"

        def member(d: Mapping[str, AnyT]) -> bool:
            raw = lookup(d, path)
            t = present(raw)
            if t is None:
                return False
            hit = norm_text(t) in texts
            if not hit and numbers:
                n = number_of(raw)
                hit = n is not None and n in numbers
            return hit != negate

        return member

    operand = str(value)
    if op == "contains":
        return lambda d: (t := text(d)) is not None and operand in t
    if op == "starts_with":
        return lambda d: (t := text(d)) is not None and t.startswith(operand)
    if op == "ends_with":
        return lambda d: (t := text(d)) is not None and t.endswith(operand)
    if op == "matches":
        rx = re.compile(operand)
        return lambda d: (t := text(d)) is not None and rx.search(t) is not None
    raise ValueError(f"unknown operator {op!r}")


def _numeric_test(op: str, value: AnyT) -> Callable[[float], bool]:
    if op == "between":
        lo, hi = value
        return lambda n: lo <= n <= hi
    v = float(value)
    return {
        "gt": lambda n: n > v,
        "gte": lambda n: n >= v,
        "lt": lambda n: n < v,
        "lte": lambda n: n <= v,
    }[op]
