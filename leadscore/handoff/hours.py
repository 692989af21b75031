"""Working hours in a time zone, and durations: the clock arithmetic behind SLA deadlines.

All instants are integer microseconds since the Unix epoch, UTC. Local times are read in the
hours' own time zone with ``zoneinfo``, so a day on which daylight saving time starts or ends
counts the time that really passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "DAY_NAMES",
    "UNIT_US",
    "WorkingHours",
    "add_working_time",
    "format_duration",
    "parse_days",
    "parse_duration",
    "parse_hours",
]

#: weekday names as written in a routing file; Monday is 0, as in ``date.weekday()``
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the units of a duration, in microseconds
UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}

_DURATION = re.compile(r"^(?:[0-9]+[smhd])+$")
_PART = re.compile(r"([0-9]+)([smhd])")
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_US = 1_000_000


@dataclass(frozen=True)
class WorkingHours:
    """One opening per working day, from ``start`` to ``end`` minutes after local midnight.

    ``days`` holds weekday numbers (Monday 0 … Sunday 6) in ascending order; ``end`` may be
    1440 (24:00), and is always after ``start``: an opening never crosses midnight.
    """

    timezone: str
    days: tuple[int, ...]
    start: int
    end: int

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def opening(self, day: date) -> tuple[int, int] | None:
        """The day's opening as (start_us, end_us) in UTC, or None on a day off."""
        if day.weekday() not in self.days:
            return None
        return _opening(self, day)

    def contains(self, at_us: int) -> bool:
        """Whether an instant falls in an opening (start included, end not)."""
        day = _local_date(at_us, self.zone)
        for d in (day - timedelta(days=1), day):
            window = self.opening(d)
            if window is not None and window[0] <= at_us < window[1]:
                return True
        return False

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in self.days)
        return f"{days} {_clock(self.start)}-{_clock(self.end)} {self.timezone}"


@lru_cache(maxsize=4096)
def _opening(hours: WorkingHours, day: date) -> tuple[int, int]:
    zone = hours.zone
    return _local_us(day, hours.start, zone), _local_us(day, hours.end, zone)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_date(at_us: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(at_us / _US, tz=UTC).astimezone(zone).date()


def _local_us(day: date, minute: int, zone: ZoneInfo) -> int:
    """The UTC instant of a local wall-clock time; 24:00 is the next day's midnight.

    A wall-clock time that does not exist (skipped when clocks go forward) is read with the
    offset before the change, as ``zoneinfo`` does (fold=0)."""
    extra, minute = divmod(minute, 1440)
    d = day + timedelta(days=extra)
    local = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=zone)
    off = local.utcoffset()
    assert off is not None
    naive_utc = datetime(d.year, d.month, d.day, minute // 60, minute % 60) - off
    return (naive_utc - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def add_working_time(start_us: int, duration_us: int, hours: WorkingHours | None) -> int:
    """The instant when ``duration_us`` of working time has passed since ``start_us``.

    Without working hours the clock runs straight through. With them, only time inside an
    opening counts: a clock started at night starts at the next opening, and a deadline never
    falls outside an opening (it may fall on an opening's last instant, its end)."""
    if duration_us < 0:
        raise ValueError("a duration cannot be negative")
    if hours is None:
        return start_us + duration_us
    if not hours.days:
        raise ValueError("working hours need at least one day")
    remaining = duration_us
    day = _local_date(start_us, hours.zone) - timedelta(days=1)
    # a year of days is far more than any deadline needs; the bound keeps a bug from hanging
    for _ in range(366 * 20):
        window = hours.opening(day)
        if window is not None:
            begin = max(window[0], start_us)
            if begin < window[1]:
                if remaining <= window[1] - begin:
                    return begin + remaining
                remaining -= window[1] - begin
        day += timedelta(days=1)
    raise ValueError("the deadline is more than twenty years away")


def parse_duration(text: str) -> int | None:
    """``5m``, ``24h``, ``1h30m``, ``2d`` as microseconds; None when not a duration."""
    s = text.strip().lower()
    if not _DURATION.match(s):
        return None
    return sum(int(n) * UNIT_US[u] for n, u in _PART.findall(s))


def format_duration(us: int) -> str:
    """The shortest way to write a duration back (``90m`` → ``1h30m``)."""
    if us <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        n, us = divmod(us, UNIT_US[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


def parse_days(text: str) -> tuple[int, ...] | str:
    """``mon-fri``, ``mon,wed,fri``, ``mon-fri,sun``, ``fri-mon`` (wrapping): weekday numbers.

    Returns the problem as text when the days cannot be read."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if not part:
            return "an empty day between commas"
        ends = part.split("-")
        if len(ends) > 2:
            return f"{part!r} is not a day or a range of days like mon-fri"
        nums = []
        for e in ends:
            if e not in DAY_NAMES:
                return f"{e!r} is not a day; write days as {', '.join(DAY_NAMES)}"
            nums.append(DAY_NAMES.index(e))
        if len(nums) == 1:
            days.add(nums[0])
        else:
            d = nums[0]
            days.add(d)
            while d != nums[1]:
                d = (d + 1) % 7
                days.add(d)
    return tuple(sorted(days))


def parse_hours(text: str) -> tuple[int, int] | str:
    """``09:00-18:00`` as minutes after midnight; 24:00 may end the day.

    Returns the problem as text when the hours cannot be read."""
    parts = text.replace(" ", "").split("-")
    if len(parts) != 2:
        return f'{text!r} is not a range of hours like "09:00-18:00"'
    minutes = []
    for p in parts:
        m = _CLOCK.match(p)
        if not m:
            return f"{p!r} is not a time like 09:00"
        h, mi = int(m.group(1)), int(m.group(2))
        if mi > 59 or h > 24 or (h == 24 and mi != 0):
            return f"{p!r} is not a time of day (00:00 to 24:00)"
        minutes.append(h * 60 + mi)
    start, end = minutes
    if start == 1440:
        return "an opening cannot start at 24:00"
    if end <= start:
        return (
            f"the hours end ({parts[1]}) must be after they start ({parts[0]}); "
            "an opening cannot cross midnight"
        )
    return start, end


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
