"""Conditions compiled to plain Python predicates over a mapping of values."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any as AnyT

from ..model.schema import All, Any, Condition, Leaf, Not
from ..model.values import lookup, norm_text, number_of, text_of

__all__ = ["Predicate", "SharedPredicate", "compile_condition", "compile_shared"]

Predicate = Callable[[Mapping[str, AnyT]], bool]
#: A predicate that also takes a dict, fresh for each mapping tested, in which the conditions
#: compiled with the same ``missing`` share the text of a field: several rules reading one
#: field (a title matched three ways, an email against four domains) read and normalise it once.
SharedPredicate = Callable[[Mapping[str, AnyT], dict[AnyT, AnyT]], bool]
_UNSEEN = object()


def compile_condition(cond: Condition, missing: frozenset[str] = frozenset()) -> Predicate:
    """A predicate for ``cond``; ``missing`` holds the model's placeholder values (normalised
    text such as ``select`` or ``n/a``), which read as absent."""
    shared = compile_shared(cond, missing)
    return lambda d: shared(d, {})


def compile_shared(cond: Condition, missing: frozenset[str] = frozenset()) -> SharedPredicate:
    """``compile_condition``'s predicate, taking the dict of texts it shares with the other
    conditions tested on the same mapping (``SharedPredicate``); the same answers."""
    if isinstance(cond, Leaf):
        return _leaf(cond, missing)
    if isinstance(cond, All):
        parts = [compile_shared(c, missing) for c in cond.conditions]
        return lambda d, seen: all(p(d, seen) for p in parts)
    if isinstance(cond, Any):
        parts = [compile_shared(c, missing) for c in cond.conditions]
        return lambda d, seen: any(p(d, seen) for p in parts)
    if isinstance(cond, Not):
        inner = compile_shared(cond.condition, missing)
        return lambda d, seen: not inner(d, seen)
    raise TypeError(f"not a condition: {cond!r}")


def _leaf(leaf: Leaf, missing: frozenset[str]) -> SharedPredicate:
    path, op, value = leaf.path, leaf.op, leaf.value

    def present(raw: AnyT) -> str | None:
        """The value's text, or None when it is absent or a placeholder."""
        t = text_of(raw)
        if t is None or (missing and norm_text(t) in missing):
            return None
        return t

    def text(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> str | None:
        """The field's normalised text (None: absent), read once per mapping."""
        got = seen.get(path, _UNSEEN)
        if got is _UNSEEN:
            t = present(lookup(d, path))
            got = seen[path] = None if t is None else norm_text(t)
        return got  # type: ignore[no-any-return]

    if op == "exists":
        want = bool(value)
        return lambda d, seen: (present(lookup(d, path)) is not None) == want

    if op in ("gt", "gte", "lt", "lte", "between"):
        test = _numeric_test(op, value)

        def numeric(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> bool:
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

        def member(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> bool:
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
        return lambda d, seen: (t := text(d, seen)) is not None and operand in t
    if op == "starts_with":
        return lambda d, seen: (t := text(d, seen)) is not None and t.startswith(operand)
    if op == "ends_with":
        return lambda d, seen: (t := text(d, seen)) is not None and t.endswith(operand)
    if op == "matches":
        rx = re.compile(operand)
        return lambda d, seen: (t := text(d, seen)) is not None and rx.search(t) is not None
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
