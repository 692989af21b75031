"""Read a routing file into a Routing, collecting every problem with its line and column.

The file format is described in docs/handoff.md, "The routing file". It is read with the same
helpers as the scoring model (leadscore.model.yamlnodes) and its conditions are the model's
condition language (leadscore.model.conditions).
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import yaml

from ..errors import RoutingError
from ..model.conditions import parse_condition
from ..model.schema import Condition
from ..model.values import norm_text
from ..model.yamlnodes import (
    Ctx,
    compose_file,
    did_you_mean,
    kind_of,
    mapping_of,
    number_at,
    read_file,
    scalar_of,
    text_at,
    unique_name,
)
from .hours import WorkingHours, parse_days, parse_duration, parse_hours
from .lifecycle import STAGES
from .routing import RouteRule, Routing, SlaRule, Team, rep_key

__all__ = ["load_routing", "parse_routing"]

TOP_KEYS = (
    "routing",
    "name",
    "description",
    "teams",
    "rules",
    "fallback",
    "sla",
    "rejection_reasons",
    "crm_stages",
    "working_hours",
)
TEAM_KEYS = ("members", "max_open_mqls", "working_hours")
HOURS_KEYS = ("timezone", "days", "hours")
RULE_KEYS = ("name", "when", "team", "owner", "description")
SLA_KEYS = ("name", "when", "first_touch_within", "escalate_to", "working_hours", "description")
#: working days when a working_hours mapping gives none
DEFAULT_DAYS = "mon-fri"

T = TypeVar("T")
Found = dict[str, tuple[yaml.Node, yaml.Node]]


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _raw(node: yaml.Node) -> str | None:
    """A scalar as written (``09:00-18:00`` stays text; YAML 1.1 would read 09:00 as 540)."""
    if isinstance(node, yaml.ScalarNode) and node.value.strip():
        return str(node.value).strip()
    return None


def _email(ctx: Ctx, node: yaml.Node, what: str) -> str | None:
    v = text_at(ctx, node, what)
    if v is None:
        return None
    v = v.strip()
    if "@" not in v or v.startswith("@") or v.endswith("@") or " " in v:
        ctx.add(node, f"{what} must be a rep's email address, not {v!r}")
        return None
    return rep_key(v)


def _hours(ctx: Ctx, node: yaml.Node, where: str) -> WorkingHours | None:
    m = mapping_of(ctx, node, HOURS_KEYS, where)
    if m is None:
        return None
    ok = True
    for required in ("timezone", "hours"):
        if required not in m:
            ctx.add(
                node,
                f"{where} has no '{required}'; write it like "
                '{timezone: America/New_York, days: mon-fri, hours: "09:00-18:00"}',
            )
            ok = False
    tz = None
    if "timezone" in m:
        vnode = m["timezone"][1]
        tz = text_at(ctx, vnode, f"'timezone' in {where}")
        if tz is not None:
            tz = tz.strip()
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                ctx.add(
                    vnode,
                    f"unknown time zone '{tz}' in {where}"
                    + _close(tz, _zones(), "an IANA name like Europe/Paris"),
                )
                tz = None
    days: tuple[int, ...] | None = None
    dnode = m["days"][1] if "days" in m else None
    if dnode is None:
        parsed = parse_days(DEFAULT_DAYS)
        assert not isinstance(parsed, str)
        days = parsed
    elif isinstance(dnode, yaml.SequenceNode):
        words = [_raw(item) for item in dnode.value]
        if not words or any(w is None for w in words):
            ctx.add(dnode, f"'days' in {where} must list days, like [mon, tue, wed]")
        else:
            got = parse_days(",".join(w for w in words if w is not None))
            if isinstance(got, str):
                ctx.add(dnode, f"'days' in {where}: {got}")
            else:
                days = got
    else:
        word = _raw(dnode)
        got = parse_days(word) if word is not None else "no days given"
        if isinstance(got, str):
            ctx.add(dnode, f"'days' in {where}: {got} (write them like mon-fri or mon,wed,fri)")
        else:
            days = got
    span: tuple[int, int] | None = None
    if "hours" in m:
        hnode = m["hours"][1]
        word = _raw(hnode)
        got_h = parse_hours(word) if word is not None else "no hours given"
        if isinstance(got_h, str):
            ctx.add(hnode, f"'hours' in {where}: {got_h}")
        else:
            span = got_h
    if not ok or tz is None or days is None or span is None:
        return None
    return WorkingHours(tz, days, span[0], span[1])


def _close(word: str, choices: tuple[str, ...], example: str) -> str:
    hint = did_you_mean(word, choices)
    return hint if "did you mean" in hint else f" (expected {example})"


def _list(
    ctx: Ctx, node: yaml.Node, where: str, item: Callable[[yaml.Node, int], T | None]
) -> list[T] | None:
    if not isinstance(node, yaml.SequenceNode):
        ctx.add(node, f"{where} must be a list, not {kind_of(node)}")
        return None
    out = []
    for i, child in enumerate(node.value, 1):
        v = item(child, i)
        if v is not None:
            out.append(v)
    return out


def _label(item: yaml.Node, section: str, index: int) -> str:
    if isinstance(item, yaml.MappingNode):
        for k, v in item.value:
            if scalar_of(k) == "name" and isinstance(scalar_of(v), str):
                return f"{section} rule '{scalar_of(v)}'"
    return f"{section} rule #{index}"


def parse_routing(text: str, file: str = "<routing>") -> Routing:
    """Parse and validate a routing file; raise RoutingError listing every problem."""
    ctx = Ctx(file=file, problems=[])
    root = compose_file(
        text,
        file,
        RoutingError,
        "the routing file is empty; docs/handoff.md shows one to start from",
    )
    top = mapping_of(ctx, root, TOP_KEYS, "the routing file")
    if top is None:
        raise RoutingError(ctx.problems)

    for required, hint in (
        ("routing", " (the format version; write 'routing: 1')"),
        ("name", ""),
        ("fallback", " (the rep who takes a lead nobody else can; e.g. 'fallback: lee@acme.io')"),
    ):
        if required not in top:
            ctx.add(root, f"the routing file has no '{required}'{hint}")
    if "routing" in top:
        vnode = top["routing"][1]
        v = scalar_of(vnode)
        if v != 1 or isinstance(v, bool):
            ctx.add(vnode, f"'routing' must be 1 (the only format version), not {kind_of(vnode)}")
    name = text_at(ctx, top["name"][1], "'name'") if "name" in top else None
    description = ""
    if "description" in top:
        description = text_at(ctx, top["description"][1], "'description'") or ""
    fallback = _email(ctx, top["fallback"][1], "'fallback'") if "fallback" in top else None

    default_hours = None
    if "working_hours" in top:
        default_hours = _hours(ctx, top["working_hours"][1], "'working_hours'")

    teams = _teams(ctx, top["teams"][1]) if "teams" in top else {}
    team_names = tuple(teams)
    rules = _route_rules(ctx, top["rules"][1], team_names) if "rules" in top else []
    any_hours = default_hours is not None or any(t.working_hours for t in teams.values())
    slas = _slas(ctx, top["sla"][1], any_hours) if "sla" in top else []
    reasons = _reasons(ctx, top["rejection_reasons"][1]) if "rejection_reasons" in top else ()
    crm = _crm(ctx, top["crm_stages"][1]) if "crm_stages" in top else {}

    if ctx.problems:
        raise RoutingError(sorted(ctx.problems, key=lambda p: (p.line, p.column)))
    assert name is not None and fallback is not None
    return Routing(
        name=name.strip(),
        teams=teams,
        rules=tuple(rules),
        fallback=fallback,
        sla=tuple(slas),
        rejection_reasons=reasons,
        crm_stages=crm,
        working_hours=default_hours,
        description=description,
        source=text,
        file=file,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
    )


def _teams(ctx: Ctx, node: yaml.Node) -> dict[str, Team]:
    if not isinstance(node, yaml.MappingNode):
        ctx.add(
            node,
            f"'teams' must be a mapping of team names to teams, not {kind_of(node)}",
        )
        return {}
    teams: dict[str, Team] = {}
    for knode, vnode in node.value:
        tname = text_at(ctx, knode, "a team's name")
        if tname is None:
            continue
        tname = tname.strip()
        if tname in teams:
            ctx.add(knode, f"team '{tname}' is given twice; keep one")
            continue
        where = f"team '{tname}'"
        m = mapping_of(ctx, vnode, TEAM_KEYS, where)
        if m is None:
            continue
        if "members" not in m:
            ctx.add(vnode, f"{where} has no 'members' (the reps' email addresses, in order)")
            continue
        members = _members(ctx, m["members"][1], where)
        cap = None
        bad = members is None
        if "max_open_mqls" in m:
            cnode = m["max_open_mqls"][1]
            n = number_at(ctx, cnode, f"'max_open_mqls' of {where}", positive=True)
            if n is not None and n != int(n):
                ctx.add(cnode, f"'max_open_mqls' of {where} must be a whole number")
                n = None
            bad = bad or n is None
            cap = int(n) if n is not None else None
        hours = None
        if "working_hours" in m:
            hours = _hours(ctx, m["working_hours"][1], f"'working_hours' of {where}")
            bad = bad or hours is None
        if not bad and members is not None:
            teams[tname] = Team(tname, members, cap, hours)
        else:
            # keep the name so rules naming the team are not reported as well
            teams.setdefault(tname, Team(tname, members or ("?",), cap, hours))
    return teams


def _members(ctx: Ctx, node: yaml.Node, where: str) -> tuple[str, ...] | None:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        ctx.add(node, f"'members' of {where} must be a non-empty list of email addresses")
        return None
    seen: dict[str, yaml.Node] = {}
    ok = True
    for item in node.value:
        email = _email(ctx, item, f"a member of {where}")
        if email is None:
            ok = False
        elif email in seen:
            ctx.add(item, f"{email} is listed twice in {where}; a rep takes one turn per round")
            ok = False
        else:
            seen[email] = item
    return tuple(seen) if ok else None


def _unique_name(
    ctx: Ctx, m: Found, label: str, names: dict[str, yaml.Node], item: yaml.Node
) -> str | None:
    if "name" not in m:
        ctx.add(item, f"{label} has no 'name'")
        return None
    return unique_name(ctx, m["name"][1], label, names)


def _unreachable(ctx: Ctx, items: list[tuple[yaml.Node, str, bool]], section: str) -> None:
    """A rule after one that matches every lead can never be used: say so."""
    catch_all: tuple[yaml.Node, str] | None = None
    for node, label, has_when in items:
        if catch_all is not None:
            ctx.add(
                node,
                f"{label} is never used: {catch_all[1]} on line "
                f"{catch_all[0].start_mark.line + 1} has no 'when' and takes every lead first "
                f"({section} rules are tried in order, first match wins)",
            )
            return
        if not has_when:
            catch_all = (node, label)


@dataclass(frozen=True)
class _Head:
    """What every rule of a rule list has: its place, keys and label, its name (None when
    missing or taken), and its condition (None for a catch-all or one that did not parse)."""

    item: yaml.Node
    m: Found
    label: str
    name: str | None
    when: Condition | None
    bad_when: bool


def _rule_list(
    ctx: Ctx,
    node: yaml.Node,
    key: str,
    section: str,
    keys: tuple[str, ...],
    build: Callable[[_Head], T | None],
) -> list[T]:
    """A list of named rules tried in order (routing ``rules``, ``sla``): each a mapping of
    ``keys`` with a unique name and an optional ``when``; ``build`` reads the rest of one (None
    when it has problems). A rule after a catch-all is reported."""
    names: dict[str, yaml.Node] = {}
    seen: list[tuple[yaml.Node, str, bool]] = []

    def item(child: yaml.Node, index: int) -> T | None:
        label = _label(child, section, index)
        m = mapping_of(ctx, child, keys, label)
        if m is None:
            return None
        seen.append((child, label, "when" in m))
        nm = _unique_name(ctx, m, label, names, child)
        when = parse_condition(ctx, m["when"][1], label) if "when" in m else None
        return build(_Head(child, m, label, nm, when, "when" in m and when is None))

    rules = _list(ctx, node, f"'{key}'", item) or []
    _unreachable(ctx, seen, section)
    return rules


def _route_rules(ctx: Ctx, node: yaml.Node, team_names: tuple[str, ...]) -> list[RouteRule]:
    def build(h: _Head) -> RouteRule | None:
        m, label, bad = h.m, h.label, h.bad_when
        team = owner = None
        if ("team" in m) == ("owner" in m):
            ctx.add(
                h.item,
                f"{label} needs one of 'team' (round robin in a team) or 'owner' (one rep)"
                + (", not both" if "team" in m else ""),
            )
            bad = True
        elif "team" in m:
            tnode = m["team"][1]
            team = text_at(ctx, tnode, f"'team' of {label}")
            if team is not None:
                team = team.strip()
                if team not in team_names:
                    known = (
                        did_you_mean(team, team_names)
                        if team_names
                        else " (the file has no 'teams')"
                    )
                    ctx.add(tnode, f"{label} names team '{team}', which is not in 'teams'{known}")
                    team = None
            bad = bad or team is None
        else:
            owner = _email(ctx, m["owner"][1], f"'owner' of {label}")
            bad = bad or owner is None
        if h.name is None or bad:
            return None
        return RouteRule(h.name, h.when, team, owner, h.item.start_mark.line + 1)

    return _rule_list(ctx, node, "rules", "routing", RULE_KEYS, build)


def _slas(ctx: Ctx, node: yaml.Node, any_hours: bool) -> list[SlaRule]:
    def build(h: _Head) -> SlaRule | None:
        m, label, bad = h.m, h.label, h.bad_when
        within = None
        if "first_touch_within" not in m:
            ctx.add(h.item, f"{label} has no 'first_touch_within' (a duration such as 5m or 24h)")
            bad = True
        else:
            dnode = m["first_touch_within"][1]
            word = _raw(dnode)
            within = parse_duration(word) if word is not None else None
            if within is None or within <= 0:
                ctx.add(
                    dnode,
                    f"'first_touch_within' of {label} must be a duration above zero with a unit "
                    f"(s, m, h, d), like 5m, 24h or 1h30m, not {kind_of(dnode)}",
                )
                bad = True
        escalate = None
        if "escalate_to" in m:
            escalate = _email(ctx, m["escalate_to"][1], f"'escalate_to' of {label}")
            bad = bad or escalate is None
        use_hours = False
        if "working_hours" in m:
            wnode = m["working_hours"][1]
            wv = scalar_of(wnode)
            if not isinstance(wv, bool):
                ctx.add(
                    wnode,
                    f"'working_hours' of {label} must be true or false (true: the clock runs "
                    "only in the team's working hours)",
                )
                bad = True
            elif wv and not any_hours:
                ctx.add(
                    wnode,
                    f"'working_hours: true' in {label} has no hours to follow: give a team "
                    "'working_hours', or the routing file a 'working_hours' for every team",
                )
                bad = True
            else:
                use_hours = wv
        if h.name is None or bad or within is None:
            return None
        return SlaRule(h.name, h.when, within, escalate, use_hours, h.item.start_mark.line + 1)

    return _rule_list(ctx, node, "sla", "sla", SLA_KEYS, build)


def _reasons(ctx: Ctx, node: yaml.Node) -> tuple[str, ...]:
    seen: dict[str, str] = {}

    def item(child: yaml.Node, _i: int) -> str | None:
        v = text_at(ctx, child, "a rejection reason")
        if v is None:
            return None
        v = v.strip()
        if norm_text(v) in seen:
            ctx.add(child, f"rejection reason '{v}' is listed twice")
            return None
        seen[norm_text(v)] = v
        return v

    got = _list(ctx, node, "'rejection_reasons'", item)
    if isinstance(node, yaml.SequenceNode) and not node.value:
        ctx.add(
            node, "'rejection_reasons' is empty; list the reasons sales may give, or leave it out"
        )
    return tuple(got or ())


def _crm(ctx: Ctx, node: yaml.Node) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        ctx.add(
            node,
            "'crm_stages' must map CRM statuses to stages, like "
            "{'Working': sal, 'Closed Won': customer}, not " + kind_of(node),
        )
        return {}
    out: dict[str, str] = {}
    for knode, vnode in node.value:
        status = _raw(knode)
        if status is None or not isinstance(knode, yaml.ScalarNode):
            ctx.add(knode, "a CRM status in 'crm_stages' must be text")
            continue
        key = norm_text(status)
        if key in out:
            ctx.add(
                knode, f"CRM status '{status}' is mapped twice in 'crm_stages' (case is ignored)"
            )
            continue
        stage = _raw(vnode)
        if stage is None or stage.lower() not in STAGES:
            ctx.add(
                vnode,
                f"CRM status '{status}' maps to "
                + (f"'{stage}', which is not a stage" if stage else kind_of(vnode))
                + (
                    did_you_mean(stage.lower(), STAGES)
                    if stage
                    else f" (one of: {', '.join(STAGES)})"
                ),
            )
            continue
        out[key] = stage.lower()
    return out


def load_routing(path: str | Path) -> Routing:
    text = read_file(path, RoutingError, "give the path of a routing file (docs/handoff.md)")
    return parse_routing(text, str(path))
