"""Behaviour stored on the lead: a count or amount (``TotalVisits``) and, optionally, the date it
was last brought up to date. How a trait rule reads them, exactly as every SQL engine does.

- The **units** are the trait's number (leadscore/model/values.py); a value that is absent, a
  placeholder, not a number, zero or negative gives no units, and the rule does not count.
- The **date** is text written ``YYYY-MM-DD`` with an optional time ``HH:MM``, ``HH:MM:SS`` or
  ``HH:MM:SS.ffffff`` after a ``T`` or a space, and an optional ``Z``; it is UTC (an offset such
  as ``+02:00`` is not read: the date is then missing). A missing or unreadable date makes the
  rule not count. The day is not checked against the month's length (``2026-02-30`` is read as
  2 March): the arithmetic below is the one SQL engines can do alike, without parsing.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

from ..model.values import norm_text, number_of, text_of

__all__ = ["DATE_PATTERN", "date_us", "units_of"]

#: the date text a trait rule's ``at`` reads, after trimming and lower-casing
DATE_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([ t]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?z?$"
)
_DATE = re.compile(DATE_PATTERN)
_EPOCH_DAYS = 719468  # days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar


def units_of(raw: Any, missing: frozenset[str] = frozenset()) -> float | None:
    """The units a trait value gives, or None (absent, placeholder, not a number, <= 0)."""
    t = text_of(raw)
    if t is None or (missing and norm_text(t) in missing):
        return None
    n = number_of(raw)
    return n if n is not None and n > 0 else None


def _part(t: str, start: int, length: int) -> int:
    """Digits at a 1-based position, as SUBSTRING reads them; nothing there is 0."""
    s = t[start - 1 : start - 1 + length].replace("z", "")
    return int(s) if s else 0


def date_us(raw: Any, missing: frozenset[str] = frozenset()) -> int | None:
    """Microseconds since the epoch of a date trait, or None when it is not one."""
    if isinstance(raw, datetime):
        raw = raw.isoformat(sep=" ") if raw.tzinfo is None else None
    elif isinstance(raw, date):
        raw = raw.isoformat()
    t = text_of(raw)
    if t is None:
        return None
    t = norm_text(t)
    if (missing and t in missing) or not _DATE.match(t):
        return None
    y, mo, d = _part(t, 1, 4), _part(t, 6, 2), _part(t, 9, 2)
    h, mi, sec = _part(t, 12, 2), _part(t, 15, 2), _part(t, 18, 2)
    frac = (t[20:26].replace("z", "") + "000000")[:6]
    y2 = y - (1 if mo <= 2 else 0)
    era = math.floor(y2 / 400)
    yoe = y2 - era * 400
    doy = math.floor((153 * (mo + (-3 if mo > 2 else 9)) + 2) / 5) + d - 1
    doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    days = era * 146097 + doe - _EPOCH_DAYS
    return days * 86_400_000_000 + h * 3_600_000_000 + mi * 60_000_000 + sec * 1_000_000 + int(frac)
