"""Speed-to-lead clocks: which SLA applies to a new MQL, when it is due, whether it was missed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .hours import WorkingHours, add_working_time
from .routing import Routing

__all__ = ["SlaClock", "breached_at", "is_breached", "sla_for"]


@dataclass(frozen=True)
class SlaClock:
    """The SLA a lead is on: ``due_at_us`` is when its first touch is due."""

    name: str
    started_at_us: int
    due_at_us: int
    escalate_to: str | None = None
    working_hours: WorkingHours | None = None
    #: the SLA's duration as written (working time when ``working_hours`` is set)
    within_us: int = 0


def sla_for(
    routing: Routing, lead: Mapping[str, Any], mql_at_us: int, team: str | None
) -> SlaClock | None:
    """The first SLA whose condition the lead meets, with its deadline; None when none does.

    ``team`` is the team the lead was assigned to: its working hours (else the file's
    ``working_hours``) apply to an SLA with ``working_hours: true``; with none, the clock runs
    straight through nights and weekends."""
    for rule in routing.sla:
        if rule.matches(lead):
            hours = routing.hours_for(team) if rule.working_hours else None
            due = add_working_time(mql_at_us, rule.first_touch_within_us, hours)
            return SlaClock(
                rule.name, mql_at_us, due, rule.escalate_to, hours, rule.first_touch_within_us
            )
    return None


def breached_at(clock: SlaClock, first_touch_at_us: int | None, now_us: int) -> int | None:
    """When the SLA was breached (its due time), or None when it was not (yet).

    A touch at or before the due time meets it, even when it is logged later; the breach is
    only certain once the due time has passed (``now_us`` after it)."""
    if first_touch_at_us is not None and first_touch_at_us <= clock.due_at_us:
        return None
    if now_us <= clock.due_at_us:
        return None
    return clock.due_at_us


def is_breached(clock: SlaClock, first_touch_at_us: int | None, now_us: int) -> bool:
    return breached_at(clock, first_touch_at_us, now_us) is not None
