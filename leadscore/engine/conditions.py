"""Conditions compiled to plain Python predicates over a mapping of values."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any as AnyT

from ..model.schema import All, Any, Condition, Leaf, Not
from ..model.values import WHITESPACE, lookup, norm_text, number_of, text_of

__all__ = [
    "Predicate",
    "SharedPredicate",
    "TextTest",
    "compile_condition",
    "compile_shared",
    "compile_text",
    "text_reader",
]

Predicate = Callable[[Mapping[str, AnyT]], bool]
#: A condition on one field decided from that field's normalised text alone (None: absent)
TextTest = Callable[[str | None], bool]
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
        if len(parts) == 1:
            return parts[0]
        return lambda d, seen: all(p(d, seen) for p in parts)
    if isinstance(cond, Any):
        parts = [compile_shared(c, missing) for c in _affixes_together(cond.conditions)]
        if len(parts) == 1:
            return parts[0]
        return lambda d, seen: any(p(d, seen) for p in parts)
    if isinstance(cond, Not):
        inner = compile_shared(cond.condition, missing)
        return lambda d, seen: not inner(d, seen)
    raise TypeError(f"not a condition: {cond!r}")


def _affixes_together(conds: tuple[Condition, ...]) -> list[Condition]:
    """The alternatives of an ``any``, with the ``starts_with`` (or ``ends_with``) leaves on one
    field made one leaf whose value is the tuple of their operands: one test of the field's text
    (``str.endswith`` takes a tuple) instead of one per operand. The predicates have no side
    effect, so whichever order ``any`` tries them in, it answers the same."""
    out: list[Condition] = []
    grouped: dict[tuple[tuple[str, ...], str], int] = {}
    for c in conds:
        if isinstance(c, Leaf) and c.op in ("starts_with", "ends_with"):
            key = (c.path, c.op)
            at = grouped.get(key)
            if at is None:
                grouped[key] = len(out)
                out.append(Leaf(c.field, c.path, c.op, (str(c.value),)))
                continue
            first = out[at]
            assert isinstance(first, Leaf) and isinstance(first.value, tuple)
            out[at] = Leaf(first.field, first.path, first.op, (*first.value, str(c.value)))
            continue
        out.append(c)
    return out


def compile_text(
    cond: Condition, missing: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], TextTest] | None:
    """A condition that reads one field, and only its text (no number: ``exists``,
    ``contains``, ``starts_with``, ``ends_with``, ``matches``, ``equals``/``in``/``not_in`` of
    texts, and ``all``/``any``/``not`` of such on that one field), as its field's path and a
    test of the field's normalised text (``text_reader``'s): ``compile_shared``'s answers,
    decided from the text read once. None for any other condition. ``missing`` is
    ``text_reader``'s to apply: the test takes the text as read."""
    if isinstance(cond, Leaf):
        test = _text_leaf(cond)
        return None if test is None else (cond.path, test)
    if isinstance(cond, Not):
        inner = compile_text(cond.condition, missing)
        if inner is None:
            return None
        path, one = inner
        return path, lambda t: not one(t)
    if isinstance(cond, All | Any):
        conds = cond.conditions if isinstance(cond, All) else _affixes_together(cond.conditions)
        parts = [compile_text(c, missing) for c in conds]
        if not parts or any(p is None for p in parts):
            return None
        paths = {p[0] for p in parts if p is not None}
        if len(paths) != 1:
            return None
        tests = [p[1] for p in parts if p is not None]
        if len(tests) == 1:
            return paths.pop(), tests[0]
        if isinstance(cond, All):
            return paths.pop(), lambda t: all(x(t) for x in tests)
        return paths.pop(), lambda t: any(x(t) for x in tests)
    return None


def _text_leaf(leaf: Leaf) -> TextTest | None:
    """``_leaf``'s predicate as a test of the field's text, for the operators that read the text
    alone; None for those that read a number."""
    op, value = leaf.op, leaf.value
    if op == "exists":
        if value:
            return lambda t: t is not None
        return lambda t: t is None
    if op in ("equals", "in", "not_in"):
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(i, float) for i in items):
            return None  # a number is compared as a number
        texts = frozenset(i for i in items if isinstance(i, str))
        if op == "not_in":
            return lambda t: t is not None and t not in texts
        return lambda t: t is not None and t in texts
    if op in ("gt", "gte", "lt", "lte", "between"):
        return None
    operand = tuple(str(v) for v in value) if isinstance(value, tuple) else str(value)
    if op == "contains":
        part = str(value)
        return lambda t: t is not None and part in t
    if op == "starts_with":
        return lambda t: t is not None and t.startswith(operand)
    if op == "ends_with":
        return lambda t: t is not None and t.endswith(operand)
    if op == "matches":
        rx = re.compile(str(value))
        return lambda t: t is not None and rx.search(t) is not None
    return None


def text_reader(
    path: tuple[str, ...], missing: frozenset[str]
) -> Callable[[Mapping[str, AnyT]], str | None]:
    """A field's normalised text in a mapping, as every condition reads it (None: absent, blank
    or a placeholder in ``missing``): ``_reader``'s, for a caller that reads the field once."""
    one = len(path) == 1
    key = path[0]

    def text(d: Mapping[str, AnyT]) -> str | None:
        raw = d.get(key) if one and type(d) is dict else lookup(d, path)
        if type(raw) is str:  # text_of and norm_text at once: empty when blank
            got = raw.strip(WHITESPACE).lower() or None
        else:
            t = text_of(raw)
            got = None if t is None else norm_text(t)
        if got is not None and missing and got in missing:
            return None
        return got

    return text


#: a field's normalised text, read through the shared dict (None: absent)
_Reader = Callable[[Mapping[str, AnyT], dict[AnyT, AnyT]], str | None]


def _reader(path: tuple[str, ...], missing: frozenset[str]) -> _Reader:
    """The field's normalised text (None: absent, or a placeholder in ``missing``), read once
    per mapping: the first condition that reads it stores it in the shared dict."""

    read = text_reader(path, missing)

    def text(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> str | None:
        got = seen.get(path, _UNSEEN)
        if got is _UNSEEN:
            got = seen[path] = read(d)
        return got  # type: ignore[no-any-return]

    return text


def _leaf(leaf: Leaf, missing: frozenset[str]) -> SharedPredicate:
    path, op, value = leaf.path, leaf.op, leaf.value
    text = _reader(path, missing)

    if op == "exists":
        if value:
            return lambda d, seen: text(d, seen) is not None
        return lambda d, seen: text(d, seen) is None

    if op in ("gt", "gte", "lt", "lte", "between"):
        test = _numeric_test(op, value)

        def numeric(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> bool:
            if text(d, seen) is None:
                return False
            n = number_of(lookup(d, path))
            return n is not None and test(n)

        return numeric

    if op in ("equals", "in", "not_in"):
        items = value if isinstance(value, tuple) else (value,)
        texts = frozenset(i for i in items if isinstance(i, str))
        numbers = frozenset(float(i) for i in items if isinstance(i, float))
        negate = op == "not_in"

        def member(d: Mapping[str, AnyT], seen: dict[AnyT, AnyT]) -> bool:
            t = text(d, seen)
            if t is None:
                return False
            hit = t in texts
            if not hit and numbers:
                n = number_of(lookup(d, path))
                hit = n is not None and n in numbers
            return hit != negate

        return member

    # one operand, or the tuple of several an ``any`` tests on one field (``_affixes_together``)
    operand = tuple(str(v) for v in value) if isinstance(value, tuple) else str(value)
    if op == "contains":
        part = str(value)
        return lambda d, seen: (t := text(d, seen)) is not None and part in t
    if op == "starts_with":
        return lambda d, seen: (t := text(d, seen)) is not None and t.startswith(operand)
    if op == "ends_with":
        return lambda d, seen: (t := text(d, seen)) is not None and t.endswith(operand)
    if op == "matches":
        rx = re.compile(str(value))
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
