"""Where a lead goes, and why: one pure decision from the routing file and the reps' state.

The order of the decision (docs/handoff.md, "Where a lead goes, and why"):

1. lead-to-account matching: an ``account_owner`` (the owner of a lead from the same email
   domain) takes the lead unless away;
2. the routing rules in file order; the first that matches names a team or an owner;
3. in a team, round robin from the member after the team's ``last_member``, in the order the
   members are written, skipping reps who are away, at ``max_open_mqls``, or (when the team
   has working hours) outside them;
4. when no rule matches or nobody can take it, the ``fallback`` owner.

Every step is written to ``Decision.path`` (JSON-able), so a lead keeps why it went where it
went. Same inputs, same decision: nothing here reads a clock or a random number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .routing import RouteRule, Routing, Team

__all__ = [
    "AT_CAP",
    "AWAY",
    "KINDS",
    "OUTSIDE_HOURS",
    "Decision",
    "RepState",
    "round_robin_order",
    "route",
]

#: why a rep was skipped, as written in the path
AWAY = "away"
AT_CAP = "at cap"
OUTSIDE_HOURS = "outside hours"
#: how an owner was found: a rule's team or owner, the account's owner, or the fallback
KINDS = ("route", "account", "fallback")


@dataclass(frozen=True)
class RepState:
    """What routing needs to know about a rep. A rep with no state is not away.

    ``away`` with a ``back_at_us`` in the past counts as back, so a forgotten flag does not
    keep a rep out of the rotation."""

    away: bool = False
    back_at_us: int | None = None

    def is_away(self, at_us: int) -> bool:
        return self.away and (self.back_at_us is None or at_us < self.back_at_us)


_HERE = RepState()


@dataclass(frozen=True)
class Decision:
    """Who gets the lead, from which team and rule, how, and every step that led there.

    ``last_member`` is the team's new round-robin state (the member who got the lead) when the
    lead went round robin; None when round robin did not move (the caller keeps its state)."""

    owner: str
    team: str | None
    rule: str | None
    kind: str
    path: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    last_member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "team": self.team,
            "rule": self.rule,
            "kind": self.kind,
            "path": [dict(step) for step in self.path],
        }


def round_robin_order(members: tuple[str, ...], last_member: str | None) -> tuple[str, ...]:
    """The members in the order round robin tries them: from the one after ``last_member``.

    A ``last_member`` no longer in the team (or None) starts from the first member."""
    if last_member in members:
        i = members.index(last_member) + 1
        return members[i:] + members[:i]
    return members


def _skip_reason(
    rep: str,
    team: Team | None,
    reps: Mapping[str, RepState],
    open_mqls: Mapping[str, int],
    at_us: int,
) -> dict[str, Any] | None:
    """Why a rep cannot take a lead now, as a path step's details; None when they can."""
    if reps.get(rep, _HERE).is_away(at_us):
        return {"reason": AWAY}
    if team is not None and team.max_open_mqls is not None:
        n = int(open_mqls.get(rep, 0))
        if n >= team.max_open_mqls:
            return {"reason": AT_CAP, "open_mqls": n, "max_open_mqls": team.max_open_mqls}
    hours = team.working_hours if team is not None else None
    if hours is not None and not hours.contains(at_us):
        return {"reason": OUTSIDE_HOURS, "working_hours": hours.describe()}
    return None


def route(
    routing: Routing,
    lead: Mapping[str, Any],
    *,
    reps: Mapping[str, RepState],
    last_member: Mapping[str, str | None],
    open_mqls: Mapping[str, int],
    at_us: int,
    account_owner: str | None = None,
) -> Decision:
    """Decide who gets ``lead`` (its traits plus score, fit, engagement, grade, fast_track)."""
    path: list[dict[str, Any]] = []

    if account_owner:
        skip = _skip_reason(account_owner, None, reps, open_mqls, at_us)
        if skip is None:
            path.append({"step": "account", "owner": account_owner, "result": "assigned"})
            return Decision(
                account_owner, routing.team_of(account_owner), None, "account", tuple(path)
            )
        path.append({"step": "account", "owner": account_owner, "result": "skipped", **skip})

    matched: RouteRule | None = None
    for rule in routing.rules:
        hit = rule.matches(lead)
        path.append({"step": "rule", "rule": rule.name, "matched": hit})
        if hit:
            matched = rule
            break

    if matched is None:
        why = "no rule matched"
    elif matched.owner is not None:
        skip = _skip_reason(matched.owner, None, reps, open_mqls, at_us)
        if skip is None:
            path.append({"step": "owner", "owner": matched.owner, "result": "assigned"})
            return Decision(
                matched.owner, routing.team_of(matched.owner), matched.name, "route", tuple(path)
            )
        path.append({"step": "owner", "owner": matched.owner, "result": "skipped", **skip})
        why = f"owner {matched.owner} cannot take it"
    else:
        assert matched.team is not None
        team = routing.teams[matched.team]
        for rep in round_robin_order(team.members, last_member.get(team.name)):
            skip = _skip_reason(rep, team, reps, open_mqls, at_us)
            if skip is None:
                path.append({"step": "rep", "team": team.name, "rep": rep, "result": "assigned"})
                return Decision(rep, team.name, matched.name, "route", tuple(path), rep)
            path.append({"step": "rep", "team": team.name, "rep": rep, "result": "skipped", **skip})
        why = f"nobody in team {team.name} can take it"

    step: dict[str, Any] = {"step": "fallback", "owner": routing.fallback, "because": why}
    if reps.get(routing.fallback, _HERE).is_away(at_us):
        # the fallback is the last resort: it takes the lead even when away, and says so
        step["note"] = "the fallback owner is away"
    path.append(step)
    return Decision(
        routing.fallback,
        None,
        matched.name if matched is not None else None,
        "fallback",
        tuple(path),
    )
