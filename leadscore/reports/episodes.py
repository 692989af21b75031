"""One lead's stage history → its MQL episodes, as ``mql_episodes`` holds them.

The semantics are the handoff's (docs/funnel.md): a move to ``mql`` opens an episode unless one
is open already; ``sal``/``sql``/``opportunity``/``customer`` set their time (the first time
only) and the episode's stage; ``disqualified``/``recycled`` close it with a reason. A lead has
at most one open episode; after ``customer``, ``disqualified`` or ``recycled`` a new move to
``mql`` opens a new one. A move with no open episode (a ``sal`` before any ``mql``, say) stays in
the stage history and belongs to no episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLOSING",
    "LADDER",
    "STAGES",
    "Episode",
    "Move",
    "campaign_of",
    "fold",
    "source_of",
]

#: every stage a lead can be in, in lifecycle order (the handoff's ``lifecycle.STAGES``)
STAGES = ("lead", "mql", "sal", "sql", "opportunity", "customer", "recycled", "disqualified")
#: the stages past mql an episode climbs, each with the time column it sets
LADDER = ("sal", "sql", "opportunity", "customer")
#: the stages that end an episode without a sale
CLOSING = ("disqualified", "recycled")


@dataclass(frozen=True)
class Move:
    """One row of stage history."""

    stage: str
    at_us: int
    reason: str = ""
    by: str | None = None


@dataclass
class Episode:
    """One MQL episode: the columns of ``mql_episodes`` the stage history decides."""

    mql_at_us: int
    track: str = "import"
    stage: str = "mql"
    reached: dict[str, int] = field(default_factory=dict)  # sal/sql/opportunity/customer → at
    closed_stage: str | None = None
    closed_reason: str | None = None
    closed_at_us: int | None = None

    @property
    def open(self) -> bool:
        return self.closed_stage is None and "customer" not in self.reached

    def row(self) -> dict[str, Any]:
        """The episode as ``mql_episodes`` column values."""
        return {
            "mql_at_us": self.mql_at_us,
            "track": self.track,
            "stage": self.stage,
            **{f"{s}_at_us": self.reached.get(s) for s in LADDER},
            "closed_stage": self.closed_stage,
            "closed_reason": self.closed_reason,
            "closed_at_us": self.closed_at_us,
        }


def fold(moves: Iterable[Move], *, track: str = "import") -> tuple[list[Episode], int]:
    """The episodes of one lead's moves, and how many moves fell outside any episode.

    Moves are taken in time order; moves at the same instant keep the order given (a file's line
    order), so ``mql`` then ``sal`` at one instant opens the episode first."""
    episodes: list[Episode] = []
    outside = 0
    current: Episode | None = None
    for m in sorted(moves, key=lambda m: m.at_us):  # stable: ties keep the given order
        if m.stage == "mql":
            if current is None or not current.open:
                current = Episode(mql_at_us=m.at_us, track=track)
                episodes.append(current)
            # a second mql while one is open: the same episode goes on
            continue
        if current is None or not current.open:
            outside += 1
            continue
        if m.stage in LADDER:
            current.reached.setdefault(m.stage, m.at_us)
            current.stage = m.stage
        elif m.stage in CLOSING:
            current.stage = m.stage
            current.closed_stage = m.stage
            current.closed_reason = m.reason
            current.closed_at_us = m.at_us
        else:  # 'lead': not a move within an episode
            outside += 1
    return episodes, outside


_SOURCE = ("source", "utm_source", "context.campaign.source", "campaign.source")
_CAMPAIGN = ("campaign", "utm_campaign", "context.campaign.name", "campaign.name")


def _text(traits: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    for path in paths:
        v: Any = traits.get(path)  # a top-level trait, or a flat dotted key
        if v is None and "." in path:
            v = traits
            for part in path.split("."):
                v = v.get(part) if isinstance(v, Mapping) else None
        if v is not None and not isinstance(v, Mapping | list):
            text = str(v).strip()
            if text:
                return text
    return None


def source_of(traits: Mapping[str, Any]) -> str | None:
    """The episode's source: trait ``source``, else ``utm_source``, else ``context.campaign.source``."""
    return _text(traits, _SOURCE)


def campaign_of(traits: Mapping[str, Any]) -> str | None:
    """The episode's campaign: trait ``campaign``, else ``utm_campaign``, else ``context.campaign.name``."""
    return _text(traits, _CAMPAIGN)
