"""Lifecycle stages and the moves allowed between them (docs/handoff.md, "Lifecycle stages").

    lead → mql → sal → sql → opportunity → customer
                 (forward jumps allowed: mql → sql, sal → opportunity, …)
    mql, sal, sql, opportunity → recycled      (a reason; optionally a date to come back)
    mql, sal, sql, opportunity → disqualified  (a reason from rejection_reasons)
    recycled → mql                              (it qualifies again: a new MQL)

``customer`` and ``disqualified`` are final. A move to ``sql`` records BANT: ``budget``,
``authority``, ``need`` and ``timeline``, each as sales confirmed it, in words.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError, StageMoveError
from ..model.values import norm_text

__all__ = [
    "BANT_KEYS",
    "FINAL_STAGES",
    "FUNNEL",
    "STAGES",
    "WORKING_STAGES",
    "Move",
    "allowed_moves",
    "check_bant",
    "check_move",
]

#: the main path, in order
FUNNEL = ("lead", "mql", "sal", "sql", "opportunity", "customer")
STAGES = (*FUNNEL, "recycled", "disqualified")
#: stages where sales works a lead: from these it can be recycled or disqualified
WORKING_STAGES = ("mql", "sal", "sql", "opportunity")
FINAL_STAGES = ("customer", "disqualified")
BANT_KEYS = ("budget", "authority", "need", "timeline")
#: the longest reason or BANT answer kept, in characters
MAX_TEXT = 1000


def allowed_moves(stage: str) -> tuple[str, ...]:
    """The stages a lead in ``stage`` can move to, in funnel order."""
    if stage == "lead":
        return ("mql",)
    if stage == "recycled":
        return ("mql",)
    if stage in WORKING_STAGES:
        later = FUNNEL[FUNNEL.index(stage) + 1 :]
        return (*later, "recycled", "disqualified")
    return ()


@dataclass(frozen=True)
class Move:
    """A checked move, with what it carries in the form to keep."""

    from_stage: str
    to_stage: str
    reason: str
    bant: dict[str, str] | None = None
    come_back_at_us: int | None = None


def check_move(
    from_stage: str,
    to_stage: str,
    *,
    reason: str | None = None,
    bant: Mapping[str, Any] | None = None,
    rejection_reasons: tuple[str, ...] = (),
    come_back_at_us: int | None = None,
    at_us: int | None = None,
) -> Move:
    """Check one move and what it carries; return it ready to keep.

    A move the lifecycle does not allow raises StageMoveError (with the allowed moves). What
    the move carries — a reason, BANT, a come-back date — raises InvalidRequestError when it is
    missing or wrong. ``reason`` of a disqualification is returned as written in
    ``rejection_reasons`` (matched ignoring case); with no list in the routing file any
    reason is accepted."""
    allowed = allowed_moves(from_stage) if from_stage in STAGES else ()
    if to_stage not in STAGES:
        raise StageMoveError(
            f"'{to_stage}' is not a stage{_did_you_mean(to_stage, STAGES)}",
            from_stage=from_stage,
            to_stage=to_stage,
            allowed=allowed,
        )
    if from_stage not in STAGES:
        raise StageMoveError(
            f"the lead is at '{from_stage}', which is not a stage",
            from_stage=from_stage,
            to_stage=to_stage,
            allowed=(),
        )
    if to_stage not in allowed:
        if from_stage == to_stage:
            what = f"the lead is already at '{to_stage}'"
        else:
            what = f"a lead cannot move from '{from_stage}' to '{to_stage}'"
        choices = ", ".join(allowed) if allowed else f"none: '{from_stage}' is final"
        raise StageMoveError(
            f"{what}; from '{from_stage}' it can move to: {choices}",
            from_stage=from_stage,
            to_stage=to_stage,
            allowed=allowed,
        )

    text = (reason or "").strip()
    if len(text) > MAX_TEXT:
        raise InvalidRequestError(f"the reason is longer than {MAX_TEXT} characters")
    if to_stage == "disqualified":
        text = _rejection_reason(text, rejection_reasons)
    if to_stage == "recycled" and not text:
        raise InvalidRequestError("recycling a lead needs a reason (why it is not ready now)")
    if come_back_at_us is not None:
        if to_stage != "recycled":
            raise InvalidRequestError("a come-back date goes with a move to 'recycled' only")
        if at_us is not None and come_back_at_us <= at_us:
            raise InvalidRequestError("the come-back date must be after the move")

    kept_bant = None
    if to_stage == "sql":
        kept_bant = check_bant(bant)
    elif bant is not None:
        raise InvalidRequestError("BANT is recorded on a move to 'sql' only")
    return Move(from_stage, to_stage, text, kept_bant, come_back_at_us)


def check_bant(bant: Mapping[str, Any] | None) -> dict[str, str]:
    """BANT as sales confirmed it: all four of budget, authority, need, timeline, in words."""
    example = (
        '{"budget": "$40k approved", "authority": "VP Sales signs", '
        '"need": "replacing spreadsheets", "timeline": "live by Q3"}'
    )
    if bant is None:
        raise InvalidRequestError(
            "a move to 'sql' records BANT as sales confirmed it; give bant: " + example
        )
    if not isinstance(bant, Mapping):
        raise InvalidRequestError("bant must be an object like " + example)
    unknown = [k for k in bant if k not in BANT_KEYS]
    if unknown:
        k = str(unknown[0])
        raise InvalidRequestError(f"unknown BANT key '{k}'{_did_you_mean(k, BANT_KEYS)}")
    out: dict[str, str] = {}
    missing = []
    for key in BANT_KEYS:
        value = bant.get(key)
        if not isinstance(value, str) or not value.strip():
            missing.append(key)
            continue
        if len(value) > MAX_TEXT:
            raise InvalidRequestError(f"BANT '{key}' is longer than {MAX_TEXT} characters")
        out[key] = value.strip()
    if missing:
        raise InvalidRequestError(
            f"BANT needs {', '.join(BANT_KEYS)} as text; missing or empty: {', '.join(missing)}"
        )
    return out


def _rejection_reason(text: str, reasons: tuple[str, ...]) -> str:
    if not text:
        listed = f": one of {', '.join(reasons)}" if reasons else ""
        raise InvalidRequestError(f"disqualifying a lead needs a reason{listed}")
    if not reasons:
        return text
    for r in reasons:
        if norm_text(r) == norm_text(text):
            return r
    hint = _did_you_mean(text, reasons)
    listed = ", ".join(reasons)
    if "did you mean" in hint:
        raise InvalidRequestError(
            f"'{text}' is not a rejection reason{hint} (the routing file lists: {listed})"
        )
    raise InvalidRequestError(
        f"'{text}' is not a rejection reason; the routing file lists: {listed}"
    )


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{choices[[c.lower() for c in choices].index(close[0])]}'?"
    return f" (one of: {', '.join(choices)})"
