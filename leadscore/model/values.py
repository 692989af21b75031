"""How a trait or property value is read: its text form and its number.

These rules are part of the model language (docs/model.md, "How values are compared") and
every engine implements exactly them:

- A value is *absent* when it is missing, null, or text that is empty after trimming.
- Its *text* is the string itself; ``true``/``false`` for booleans; the JSON spelling for
  numbers (``250``, ``250.5``); compact JSON for lists and objects.
- Text comparisons trim ASCII white space and lower-case both sides.
- Its *number* is the number itself, or text (after trimming, at most 200 characters) written
  as a decimal number such as ``250``, ``-3.5``, ``.5`` or ``1e3``. Anything else (``"n/a"``,
  ``"1,000"``, booleans) is not a number, and neither is a number, given as such or as text,
  whose magnitude is 1e100 or more, or below 1e-99 and not 0: the range a two-digit exponent
  writes. Every engine reads a number of that range alike, whatever spelling its JSON gives it
  (``1e+308``, or 309 digits), and points times such a number stays well inside a double.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "NUMBER_MAX",
    "NUMBER_MAX_TEXT",
    "NUMBER_MIN",
    "NUMBER_PATTERN",
    "WHITESPACE",
    "lookup",
    "nest",
    "norm_text",
    "number_of",
    "text_of",
]

WHITESPACE = " \t\n\r\f\v"
#: The decimal-number syntax every engine accepts (also used inside SQL).
NUMBER_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?$"
_NUMBER = re.compile(NUMBER_PATTERN)
#: numbers are below NUMBER_MAX in magnitude, and 0 or at least NUMBER_MIN
NUMBER_MAX = 1e100
NUMBER_MIN = 1e-99
#: the longest text read as a number: every engine can cast it to a double without an error
NUMBER_MAX_TEXT = 200


def norm_text(s: str) -> str:
    return s.strip(WHITESPACE).lower()


def text_of(v: Any) -> str | None:
    """The value's text, or None when it is absent."""
    if v is None:
        return None
    if isinstance(v, str):
        return v if v.strip(WHITESPACE) else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return json.dumps(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def number_of(v: Any) -> float | None:
    """The value as a number, or None when it is not one."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        try:
            f = float(v)
        except OverflowError:  # an integer too large for a double
            return None
        return _in_range(f)
    if isinstance(v, str):
        s = v.strip(WHITESPACE)
        if len(s) <= NUMBER_MAX_TEXT and _NUMBER.match(s):
            return _in_range(float(s))
    return None


def _in_range(f: float) -> float | None:
    """The number when it is inside the range numbers have (NaN and infinities are not)."""
    a = abs(f)
    return f if a < NUMBER_MAX and (a >= NUMBER_MIN or f == 0) else None


def lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path into nested mappings (``company.employees``)."""
    cur: Any = data
    for part in path:
        # a plain dict (what JSON gives) is told without the ABC's slower check
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nesting: ``{"company.employees": 5}`` -> ``{"company": {"employees": 5}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        cur = out
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                cur[part] = nxt
            cur = nxt
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(cur.get(last), dict):
            cur[last].update(value)
        else:
            cur[last] = value
    return out
