"""The routing file as frozen values: teams, routing rules, SLAs, rejection reasons, CRM stages.

``leadscore.handoff.reader`` builds a Routing from YAML (``parse_routing``/``load_routing``);
the rules that use it (``decide``, ``sla``, ``lifecycle``, ``crm``) read it and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..engine.conditions import Predicate, compile_condition
from ..model.schema import Condition
from .hours import WorkingHours

__all__ = ["RouteRule", "Routing", "SlaRule", "Team", "WorkingHours"]


def rep_key(who: str) -> str:
    """A rep as stored and compared everywhere: trimmed, and an email address lower-cased, as
    addresses are the same whatever their case (``Ann@Acme.io`` is ``ann@acme.io``). Whoever is
    not an address (``cli``, ``crm``) is kept as written."""
    who = who.strip()
    return who.lower() if "@" in who else who


def _always(_lead: Mapping[str, Any]) -> bool:
    return True


def _predicate(when: Condition | None) -> Predicate:
    return _always if when is None else compile_condition(when)


@dataclass(frozen=True)
class Team:
    """Reps who share leads by round robin, in the order written (which breaks ties)."""

    name: str
    members: tuple[str, ...]
    max_open_mqls: int | None = None
    working_hours: WorkingHours | None = None


@dataclass(frozen=True)
class RouteRule:
    """Send leads matching ``when`` (always, when None) to a team, or straight to one owner."""

    name: str
    when: Condition | None
    team: str | None
    owner: str | None = None
    line: int = 0
    _test: Predicate = field(default=_always, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _predicate(self.when))

    def matches(self, lead: Mapping[str, Any]) -> bool:
        return self._test(lead)


@dataclass(frozen=True)
class SlaRule:
    """Leads matching ``when`` must be touched within ``first_touch_within_us`` of their MQL.

    With ``working_hours`` the clock only runs inside the working hours of the lead's team (or
    the routing file's own ``working_hours`` when the team has none)."""

    name: str
    when: Condition | None
    first_touch_within_us: int
    escalate_to: str | None = None
    working_hours: bool = False
    line: int = 0
    _test: Predicate = field(default=_always, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _predicate(self.when))

    def matches(self, lead: Mapping[str, Any]) -> bool:
        return self._test(lead)


@dataclass(frozen=True)
class Routing:
    """A validated routing file. Rules and SLAs are in file order: the first match wins."""

    name: str
    teams: Mapping[str, Team]
    rules: tuple[RouteRule, ...]
    fallback: str
    sla: tuple[SlaRule, ...] = ()
    rejection_reasons: tuple[str, ...] = ()
    crm_stages: Mapping[str, str] = field(default_factory=dict)
    working_hours: WorkingHours | None = None
    description: str = ""
    format: int = 1
    source: str = field(default="", compare=False, repr=False)
    file: str = field(default="<routing>", compare=False)
    digest: str = field(default="", compare=False)

    def team_of(self, rep: str) -> str | None:
        """The first team (in file order) that lists a rep, or None."""
        for team in self.teams.values():
            if rep in team.members:
                return team.name
        return None

    def hours_for(self, team: str | None) -> WorkingHours | None:
        """The working hours that apply to a team: its own, else the file's, else none."""
        t = self.teams.get(team) if team is not None else None
        if t is not None and t.working_hours is not None:
            return t.working_hours
        return self.working_hours
