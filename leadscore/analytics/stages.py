"""What counts as converted: outcome stages, the positive set and the horizon (pure)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "CONVERTED",
    "DEFAULT_POSITIVE",
    "NOT_CONVERTED",
    "STAGES",
    "Labeling",
    "canonical_stage",
    "parse_positive",
    "parse_stage_map",
    "truthy",
]

#: The stages an outcome names, in funnel order; ``lost`` and ``disqualified`` close a lead.
STAGES = ("sql", "opportunity", "customer", "won", "lost", "disqualified")
#: What a yes/no outcome column becomes: a conversion with no time, or none.
CONVERTED = "converted"
NOT_CONVERTED = "not_converted"
DEFAULT_POSITIVE = ("sql", "opportunity", "customer", "won")
CLOSED = ("lost", "disqualified")

_ALIASES = {
    "sal": "sql",
    "sales qualified lead": "sql",
    "sales_qualified": "sql",
    "opp": "opportunity",
    "closed won": "won",
    "closed_won": "won",
    "closed-won": "won",
    "closed lost": "lost",
    "closed_lost": "lost",
    "closed-lost": "lost",
    "dq": "disqualified",
    "unqualified": "disqualified",
    "recycled": "lost",
}
_YES = {"1", "1.0", "yes", "y", "true", "t", "converted", "won"}
_NO = {"0", "0.0", "no", "n", "false", "f", "not converted", "lost"}


def truthy(value: str) -> bool | None:
    """A 0/1, yes/no or true/false cell as a bool; None when it is none of those."""
    v = value.strip().lower()
    if v in _YES:
        return True
    if v in _NO:
        return False
    return None


def parse_stage_map(text: str | None) -> dict[str, str]:
    """``--stage-map "Closed Won=won,SAL=sql"``: the user's own stage names mapped to ours."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(
                f"--stage-map entry {part.strip()!r} has no '='; write it like 'Closed Won=won'"
            )
        name, stage = (s.strip() for s in part.split("=", 1))
        out[name.lower()] = _known(stage, "--stage-map")
    return out


def _known(stage: str, where: str) -> str:
    s = stage.strip().lower()
    if s in STAGES or s in (CONVERTED, NOT_CONVERTED):
        return s
    if s in _ALIASES:
        return _ALIASES[s]
    close = difflib.get_close_matches(s, STAGES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{where}: {stage!r} is not a stage ({', '.join(STAGES)}){hint}")


def canonical_stage(name: str, mapping: dict[str, str]) -> str | None:
    """Our stage for an outcome as written, or None when it is not one we know."""
    s = name.strip().lower()
    if s in mapping:
        return mapping[s]
    if s in STAGES or s in (CONVERTED, NOT_CONVERTED):
        return s
    return _ALIASES.get(s)


def parse_positive(text: str | None) -> tuple[str, ...]:
    """``--positive sql,opportunity,customer``: the stages that count as converted."""
    if text is None or not text.strip():
        return DEFAULT_POSITIVE
    got = tuple(dict.fromkeys(_known(p, "--positive") for p in text.split(",") if p.strip()))
    bad = [s for s in got if s in CLOSED]
    if bad:
        raise ConfigError(f"--positive: {', '.join(bad)} closes a lead without a sale")
    return got


@dataclass(frozen=True)
class Labeling:
    """A lead converted when it reached a positive stage within ``horizon_days`` after its
    decision point. A lead with no conversion whose horizon has not ended by the last outcome
    on record (and that was not closed as lost or disqualified) is still open: it is left out
    of the figures (right-censored), not counted as a failure."""

    positive: tuple[str, ...] = DEFAULT_POSITIVE
    horizon_days: float | None = 90.0

    def __post_init__(self) -> None:
        if self.horizon_days is not None and self.horizon_days <= 0:
            raise ConfigError("--horizon-days must be above 0")

    @property
    def positive_set(self) -> tuple[str, ...]:
        return (*self.positive, CONVERTED)
