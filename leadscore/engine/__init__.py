"""Pure scoring: one lead, its traits and events, at an instant. No I/O here."""

from .conditions import compile_condition
from .scorer import (
    Event,
    EventContribution,
    Explanation,
    LeadScore,
    Reason,
    RuleExplanation,
    Scorer,
    counts,
    decay,
    grade_of,
    round2,
    to_utc,
    us_of,
    window_us,
)

__all__ = [
    "Event",
    "EventContribution",
    "Explanation",
    "LeadScore",
    "Reason",
    "RuleExplanation",
    "Scorer",
    "compile_condition",
    "counts",
    "decay",
    "grade_of",
    "round2",
    "to_utc",
    "us_of",
    "window_us",
]
