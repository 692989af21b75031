"""The routing file of issue 9, as written there, and small helpers for the handoff tests."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

ISSUE_EXAMPLE = """\
routing: 1
name: acme-sales
teams:
  enterprise:
    members: [ann@acme.io, raj@acme.io]
    max_open_mqls: 25
    working_hours: {timezone: America/New_York, days: mon-fri, hours: "09:00-18:00"}
  smb:
    members: [lee@acme.io]
rules:                     # first match wins; conditions are the model's condition language
  - name: Enterprise North America
    when: {all: [{field: company.employees, gte: 1000}, {field: country, in: [US, CA]}]}
    team: enterprise
  - name: Everyone else
    team: smb
fallback: lee@acme.io
sla:                       # first match wins; durations in s, m, h, d
  - name: Demo within 5 minutes
    when: {field: fast_track, equals: true}
    first_touch_within: 5m
    escalate_to: lee@acme.io
  - name: Other MQLs within a business day
    first_touch_within: 24h
    working_hours: true
rejection_reasons: [bad fit, no intent, wrong contact, duplicate, competitor, student]
"""

NEW_YORK = ZoneInfo("America/New_York")


def us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: str = "UTC") -> int:
    """An instant as microseconds, from a wall-clock time in a time zone."""
    dt = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
    return int(dt.timestamp()) * 1_000_000


def local(at_us: int, tz: str = "America/New_York") -> datetime:
    return datetime.fromtimestamp(at_us / 1_000_000, tz=ZoneInfo(tz))
