"""The sales handoff's rules, pure: routing, SLA deadlines, lifecycle moves, CRM statuses.

Nothing here touches a database, the network or a clock; the live service (leadscore.service)
and the CLI call in with plain values. See docs/handoff.md.
"""

from .crm import crm_stage, crm_status_key
from .decide import AT_CAP, AWAY, OUTSIDE_HOURS, Decision, RepState, round_robin_order, route
from .hours import WorkingHours, add_working_time, format_duration, parse_duration
from .inputs import COMPUTED, lead_document, routing_lead
from .lifecycle import (
    BANT_KEYS,
    FINAL_STAGES,
    FUNNEL,
    STAGES,
    WORKING_STAGES,
    Move,
    allowed_moves,
    check_bant,
    check_move,
)
from .reader import load_routing, parse_routing
from .routing import RouteRule, Routing, SlaRule, Team, rep_key
from .sla import SlaClock, breached_at, is_breached, sla_for

__all__ = [
    "AT_CAP",
    "AWAY",
    "BANT_KEYS",
    "COMPUTED",
    "FINAL_STAGES",
    "FUNNEL",
    "OUTSIDE_HOURS",
    "STAGES",
    "WORKING_STAGES",
    "Decision",
    "Move",
    "RepState",
    "RouteRule",
    "Routing",
    "SlaClock",
    "SlaRule",
    "Team",
    "WorkingHours",
    "add_working_time",
    "allowed_moves",
    "breached_at",
    "check_bant",
    "check_move",
    "crm_stage",
    "crm_status_key",
    "format_duration",
    "is_breached",
    "lead_document",
    "load_routing",
    "parse_duration",
    "parse_routing",
    "rep_key",
    "round_robin_order",
    "route",
    "routing_lead",
    "sla_for",
]
