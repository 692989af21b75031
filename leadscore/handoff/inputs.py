"""What routing reads about a lead: its traits plus its computed score, as one mapping.

``leadscore route --explain`` and the live service both build it here, so a routing rule on
``score`` or ``fast_track`` reads the same values in either place.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..engine import Event, LeadScore, Scorer, round2
from ..errors import InvalidRequestError
from ..model import Model

__all__ = ["COMPUTED", "lead_document", "routing_lead"]

#: what routing and SLA conditions read besides the traits
COMPUTED = ("score", "fit", "engagement", "grade", "fast_track")


def routing_lead(traits: Mapping[str, Any], score: LeadScore | None = None) -> dict[str, Any]:
    """The traits plus ``score``, ``fit``, ``engagement``, ``grade``, ``fast_track``.

    The computed values win over traits of the same name; without a score, values the traits
    already hold under those names are kept (a lead file may carry them)."""
    lead = dict(traits)
    if score is not None:
        lead.update(
            score=round2(score.score),
            fit=round2(score.fit),
            engagement=round2(score.engagement),
            grade=score.grade,
            fast_track=score.fast_track,
        )
    return lead


def lead_document(
    doc: Any, model: Model | None, as_of: datetime
) -> tuple[dict[str, Any], LeadScore | None]:
    """Read a lead given as JSON: either its traits, or ``{"traits": {...}, "events": [...]}``.

    Events are ``{"event", "timestamp", "properties"?}``. With a model the lead is scored at
    ``as_of``; the routing lead and the score (None without a model) are returned."""
    if not isinstance(doc, Mapping):
        raise InvalidRequestError(
            'the lead must be a JSON object: its traits, or {"traits": {...}, "events": [...]}'
        )
    if isinstance(doc.get("traits"), Mapping):
        traits = dict(doc["traits"])
        for key in COMPUTED:
            if key in doc:
                traits[key] = doc[key]
    else:
        traits = {k: v for k, v in doc.items() if k != "events"}
    raw_events = doc.get("events")
    if raw_events is None:
        raw_events = []
    if not isinstance(raw_events, list):
        raise InvalidRequestError("'events' must be a list of {event, timestamp, properties}")
    if model is None:
        return routing_lead(traits), None
    events = [_event(e, i) for i, e in enumerate(raw_events, 1)]
    score = Scorer(model).score(traits, events, as_of)
    return routing_lead(traits, score), score


def _event(raw: Any, n: int) -> Event:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("event"), str):
        raise InvalidRequestError(f"event #{n} needs an 'event' name and a 'timestamp'")
    ts = raw.get("timestamp")
    if not isinstance(ts, str):
        raise InvalidRequestError(f"event #{n} ({raw['event']}) needs a 'timestamp' (ISO 8601)")
    s = ts.strip()
    try:
        when = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise InvalidRequestError(
            f"event #{n} ({raw['event']}): {ts!r} is not an ISO 8601 timestamp"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    props = raw.get("properties")
    return Event(raw["event"], when, props if isinstance(props, Mapping) else None)
