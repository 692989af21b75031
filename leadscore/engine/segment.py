"""The rules for Segment-spec messages, the same for ``leadscore score --segment`` and the live
service. Pure: no I/O; each front end reads, stores and orders the messages, and asks here what
they mean.

- Types: identify, track, page, screen, group, alias. A message needs a ``userId`` or an
  ``anonymousId``; an alias call needs ``userId`` and ``previousId``.
- Scored events: track calls (named by ``event``), page calls (named ``page``) and screen calls
  (named ``screen``); a page or screen call's ``name`` joins its properties as ``name``.
- Time: ``timestamp``, else ``originalTimestamp``, else ``sentAt``, else ``receivedAt``: the
  message's own fields, never the clock of the run that reads it. A message with none of them
  takes the time it was received when the reader knows it (the service does; a file does not,
  so there it is a bad row).
- Identity: the lead is ``userId``; an anonymous id joins the lead that the first link names
  (an identify call carrying both ids, or an alias call ``previousId`` -> ``userId``), in the
  order the messages are taken: by time, then as they came. A later link to another lead is
  ignored: an anonymous id belongs to one lead.
- Traits: identify ``traits`` over ``context.traits`` are lead traits, later calls overwriting
  earlier keys; a ``company`` object merges into the lead's company. group ``traits`` are company
  traits and ``groupId`` is ``company.id``. Traits sent while the anonymous id was not yet
  linked are not kept (its events are).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .scorer import us_of

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

__all__ = [
    "ID_FIELDS",
    "MAX_ID_LENGTH",
    "SCORED_TYPES",
    "TIME_FIELDS",
    "TYPES",
    "Call",
    "Identities",
    "SegmentError",
    "id_field",
    "merge_identify",
    "merge_traits",
    "parse_timestamp",
    "read_call",
    "read_fields",
]

TYPES = ("identify", "track", "page", "screen", "group", "alias")
SCORED_TYPES = ("track", "page", "screen")
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId")
MAX_ID_LENGTH = 255


class SegmentError(ValueError):
    """Why one message cannot be taken, naming the field."""


@dataclass(frozen=True)
class Call:
    """One Segment message, checked, as both front ends take it."""

    type: str
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    event: str | None  # the scored event's name: track's event, 'page' or 'screen'; else None
    ts_us: int  # when it happened (see the module's time rule)
    time_field: str | None  # the field the time came from; None: the time it was received
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None  # identify: lead traits; group: company traits
    group_id: str | None

    @property
    def link(self) -> tuple[str, str] | None:
        """(anonymous id, lead id) this call links, if any."""
        if self.type == "alias" and self.previous_id and self.user_id:
            return self.previous_id, self.user_id
        if self.type == "identify" and self.anonymous_id and self.user_id:
            return self.anonymous_id, self.user_id
        return None


def id_field(msg: Mapping[str, Any], key: str) -> str | None:
    """An id field as text (numbers are taken as their text), None when absent or empty."""
    v = msg.get(key)
    if type(v) is str:  # the common case, told at once: the same checks as below
        s = v.strip()
        if len(s) > MAX_ID_LENGTH:
            raise SegmentError(f"{key} is longer than {MAX_ID_LENGTH} characters")
        return s or None
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise SegmentError(f"{key} must be a string, not {type(v).__name__}")
    s = str(v).strip()
    if len(s) > MAX_ID_LENGTH:
        raise SegmentError(f"{key} is longer than {MAX_ID_LENGTH} characters")
    return s or None


def _object(msg: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    v = msg.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise SegmentError(f"{key} must be a JSON object, not {type(v).__name__}")
    return v


def parse_timestamp(text: Any, field: str) -> int:
    """Microseconds since the epoch of an ISO 8601 text (no offset: UTC)."""
    if not isinstance(text, str):
        raise SegmentError(f"{field} must be an ISO 8601 string")
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise SegmentError(f"{field} {text!r} is not an ISO 8601 timestamp") from None
    tz = ts.tzinfo
    if tz is UTC or tz is None:  # ``us_of`` with no zone to convert from: the common case
        return (ts.replace(tzinfo=UTC) - _EPOCH) // _US if tz is None else (ts - _EPOCH) // _US
    try:
        return us_of(ts)
    except OverflowError:  # e.g. year 1 with a positive offset
        raise SegmentError(f"{field} {text!r} is out of range") from None


def time_of(msg: Mapping[str, Any]) -> tuple[str, int] | None:
    """The field the message's time comes from and that time, or None when it has none."""
    for f in TIME_FIELDS:
        v = msg.get(f)
        if v is not None and v != "":
            return f, parse_timestamp(v, f)
    return None


def read_call(msg: Any, received_us: int | None = None) -> Call:
    """The message as both front ends take it, or SegmentError naming what is wrong.

    ``received_us``: when the reader received it, the time of a message with no time field;
    None (a file) makes such a message an error."""
    got = object.__new__(Call)
    got.__dict__.update(read_fields(msg, received_us))
    return got


_TYPES = frozenset(TYPES)


def read_fields(msg: Any, received_us: int | None = None) -> dict[str, Any]:
    """``read_call``'s answer as the ``Call``'s fields by name, for a caller that makes an
    object of its own from them (the service's ``Message``) without making a ``Call`` first:
    the same checks, the same errors."""
    if not isinstance(msg, dict):
        raise SegmentError("a message must be a JSON object")
    kind = msg.get("type")
    if type(kind) is not str or kind not in _TYPES:  # the common case told at once
        if kind is None:
            raise SegmentError("type is missing; use one of " + ", ".join(TYPES))
        if not isinstance(kind, str) or kind.strip().lower() not in TYPES:
            raise SegmentError(f"type {kind!r} is not one of " + ", ".join(TYPES))
        kind = kind.strip().lower()
    # (an absent id is told at once: most messages carry a userId alone)
    user_id = id_field(msg, "userId")
    anonymous_id = None if msg.get("anonymousId") is None else id_field(msg, "anonymousId")
    previous_id = None if msg.get("previousId") is None else id_field(msg, "previousId")
    if kind == "alias":
        if user_id is None or previous_id is None:
            raise SegmentError("an alias call needs userId and previousId")
    elif user_id is None and anonymous_id is None:
        raise SegmentError("the message has neither userId nor anonymousId")
    properties = msg.get("properties")
    if properties is not None and type(properties) is not dict:
        properties = _object(msg, "properties")  # the error it names
    traits: dict[str, Any] | None = None
    event: str | None = None
    if kind == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name.strip():
            raise SegmentError("a track call needs an event name in 'event'")
        event = name.strip()
        if len(event) > MAX_ID_LENGTH:
            raise SegmentError(f"event is longer than {MAX_ID_LENGTH} characters")
    elif kind == "page" or kind == "screen":
        event = kind
        name = msg.get("name")
        if isinstance(name, str) and name and (properties is None or "name" not in properties):
            properties = {"name": name, **(properties or {})}
    elif kind == "identify":
        ctx = _object(msg, "context")
        base = _object(ctx, "traits") if ctx else None
        own = _object(msg, "traits")
        traits = {**base, **own} if base and own else own if own is not None else base
    elif kind == "group":
        traits = _object(msg, "traits")
    group_id = id_field(msg, "groupId") if kind == "group" else None
    time_field: str | None = None
    for f in TIME_FIELDS:  # ``time_of``
        v = msg.get(f)
        if v is not None and v != "":
            time_field = f
            ts_us = parse_timestamp(v, f)
            break
    else:
        if received_us is None:
            raise SegmentError("the message has no " + ", ".join(TIME_FIELDS))
        ts_us = received_us
    return {
        "type": kind,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "previous_id": previous_id,
        "event": event,
        "ts_us": ts_us,
        "time_field": time_field,
        "properties": properties,
        "traits": traits,
        "group_id": group_id,
    }


def merge_identify(traits: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge an identify's traits into a lead's, in place: each trait replaces the lead's, but
    a ``company`` object is merged into the stored one (its other fields kept). The stored
    ``company`` object is replaced, never changed, so a copy of ``traits`` made before stays
    as it was."""
    for k, v in new.items():
        company = traits.get("company")
        if k == "company" and isinstance(v, dict) and isinstance(company, dict):
            traits[k] = {**company, **v}
        elif k == "company" and isinstance(v, dict):
            traits[k] = dict(v)
        else:
            traits[k] = v


def merge_traits(traits: dict[str, Any], call: Call) -> bool:
    """Apply an identify or group call to a lead's traits, in place; whether it is one."""
    if call.type == "identify":
        merge_identify(traits, call.traits or {})
        return True
    if call.type == "group":
        company = traits.get("company")
        if not isinstance(company, dict):
            company = {} if company is None else {"name": company}
            traits["company"] = company
        company.update(call.traits or {})
        if call.group_id:
            company["id"] = call.group_id
        return True
    return False


@dataclass
class Identities:
    """Anonymous id -> lead: the first link wins."""

    links: dict[str, str] = field(default_factory=dict)

    def link(self, anonymous_id: str, lead_id: str) -> bool:
        """Record a link; False when the anonymous id already belongs to a lead (kept)."""
        have = self.links.setdefault(anonymous_id, lead_id)
        return have == lead_id

    def take(self, call: Call) -> str | None:
        """The lead of this call, after recording the link it makes (taken in order)."""
        pair = call.link
        if pair is not None:
            self.link(*pair)
        if call.type == "alias":
            return call.user_id
        if call.user_id is not None:
            return call.user_id
        return self.links.get(call.anonymous_id) if call.anonymous_id else None
