"""The scoring model as frozen values: what validation produces and every engine reads."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "NUMERIC_OPS",
    "OPERATORS",
    "TEXT_OPS",
    "All",
    "Any",
    "Condition",
    "EngagementRule",
    "FitRule",
    "Grades",
    "Leaf",
    "Model",
    "Not",
    "Rule",
]

#: Operators that compare text, ignoring case and surrounding white space.
TEXT_OPS = ("equals", "in", "not_in", "contains", "starts_with", "ends_with", "matches")
#: Operators that read the value as a number.
NUMERIC_OPS = ("gt", "gte", "lt", "lte", "between")
OPERATORS = (*TEXT_OPS[:3], *NUMERIC_OPS, *TEXT_OPS[3:], "exists")

#: An operand after normalisation: text is stripped and lower-cased, numbers are floats.
Operand = str | float


@dataclass(frozen=True)
class Leaf:
    """``field`` plus one operator.

    ``value`` holds the normalised operand(s):
    - equals: a float (numeric comparison) or normalised text;
    - in / not_in: a tuple of floats and/or normalised texts;
    - gt / gte / lt / lte: a float; between: a (lo, hi) tuple of floats;
    - contains / starts_with / ends_with / matches: normalised text (a pattern for matches);
    - exists: a bool.
    """

    field: str
    path: tuple[str, ...]
    op: str
    value: Operand | bool | tuple[Operand, ...]


@dataclass(frozen=True)
class All:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Any:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Leaf | All | Any | Not


def leaves(cond: Condition | None) -> list[Leaf]:
    """Every leaf of a condition, in file order (what the condition reads)."""
    if cond is None:
        return []
    if isinstance(cond, Leaf):
        return [cond]
    if isinstance(cond, Not):
        return leaves(cond.condition)
    return [leaf for c in cond.conditions for leaf in leaves(c)]


@dataclass(frozen=True)
class FitRule:
    name: str
    when: Condition
    points: float
    order: int  # position among all rules in the file: ties in reasons keep this order
    line: int = 0


@dataclass(frozen=True)
class EngagementRule:
    name: str
    event: str  # as written
    event_key: str  # stripped and lower-cased, what event names are compared with
    when: Condition | None
    points: float
    cap: float | None
    fast_track: bool
    order: int
    line: int = 0
    #: a trait rule reads a count or amount on the lead (``trait``) instead of events: its
    #: points are per unit; ``at`` names a date trait that dates it for decay and the window
    trait: str | None = None
    at: str | None = None

    @property
    def trait_path(self) -> tuple[str, ...] | None:
        return tuple(self.trait.split(".")) if self.trait is not None else None

    @property
    def at_path(self) -> tuple[str, ...] | None:
        return tuple(self.at.split(".")) if self.at is not None else None


Rule = FitRule | EngagementRule


@dataclass(frozen=True)
class Grades:
    fit: tuple[float, float, float]  # thresholds of A, B, C
    engagement: tuple[float, float, float]  # thresholds of 1, 2, 3


@dataclass(frozen=True)
class Model:
    name: str
    threshold: float
    fit_rules: tuple[FitRule, ...] = ()
    engagement_rules: tuple[EngagementRule, ...] = ()
    fit_max: float | None = None
    engagement_max: float | None = None
    half_life_days: float | None = None
    window_days: float | None = None
    min_fit: float | None = None
    grades: Grades | None = None
    description: str = ""
    #: placeholder values that mean "not answered" (normalised text: trimmed, lower-cased);
    #: a field holding one reads as absent in every condition
    missing_values: tuple[str, ...] = ()
    format: int = 1
    source: str = field(default="", compare=False, repr=False)
    file: str = field(default="<model>", compare=False)
    digest: str = field(default="", compare=False)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule in file order."""
        both: list[Rule] = [*self.fit_rules, *self.engagement_rules]
        return tuple(sorted(both, key=lambda r: r.order))

    @property
    def event_keys(self) -> frozenset[str]:
        return frozenset(r.event_key for r in self.engagement_rules if r.trait is None)

    @property
    def has_event_rules(self) -> bool:
        return any(r.trait is None for r in self.engagement_rules)
