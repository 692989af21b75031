"""Segment-spec messages: check one, and turn it into what the service stores. Pure: no I/O.

Accepted types: identify, track, page, screen, group, alias. A message needs a ``userId`` or an
``anonymousId`` (alias: ``userId`` and ``previousId``). ``timestamp`` (else
``originalTimestamp``) is when it happened; missing means the time it was received; more than a
day in the future is rejected. ``messageId`` makes a message idempotent; without one the
service makes one up, and a resent copy would count twice.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..engine import us_of
from ..errors import BadMessageError

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "TYPES",
    "Message",
    "MessageError",
    "check_message",
]

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DEPTH = 32
MAX_ID_LENGTH = 255
DAY_US = 86_400_000_000


class MessageError(BadMessageError, ValueError):
    """Why one message was rejected, naming the field."""


@dataclass(frozen=True)
class Message:
    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    event: str | None  # the event name scored: track's event, 'page' or 'screen'
    ts_us: int
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None
    group_id: str | None
    raw: dict[str, Any]
    encoded: str | None = None  # ``raw`` as compact JSON, when it was made while checking


def _depth(v: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past ``limit``. Raises MessageError for what
    no database stores: a NUL character (PostgreSQL) or NaN/Infinity (not JSON)."""
    stack = [(v, 1)]
    deepest = 0
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
            if any("\x00" in k for k in x):
                raise MessageError("a key contains a NUL character (\\u0000)")
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
        elif isinstance(x, str):
            if "\x00" in x:
                raise MessageError("a value contains a NUL character (\\u0000)")
        elif isinstance(x, float) and not math.isfinite(x):
            raise MessageError(f"a number is {x!r}; JSON numbers are finite")
    return deepest


def _id(msg: dict[str, Any], key: str) -> str | None:
    v = msg.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise MessageError(f"{key} must be a string, not {type(v).__name__}")
    s = str(v).strip()
    if len(s) > MAX_ID_LENGTH:
        raise MessageError(f"{key} is longer than {MAX_ID_LENGTH} characters")
    return s or None


def parse_timestamp(text: Any, field: str) -> int:
    if not isinstance(text, str):
        raise MessageError(f"{field} must be an ISO 8601 string")
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise MessageError(f"{field} {text!r} is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        return us_of(ts)
    except OverflowError:  # e.g. year 1 with a positive offset
        raise MessageError(f"{field} {text!r} is out of range") from None


def _object(msg: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = msg.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise MessageError(f"{key} must be a JSON object, not {type(v).__name__}")
    return v


def check_message(
    msg: Any, received_us: int, size: int | None = None, *, strict_json: bool = False
) -> Message:
    """The message as stored, or MessageError naming the field that is wrong.

    ``strict_json``: the body was parsed as strict JSON (no NaN or Infinity can be in it), which
    lets the common case skip walking the message."""
    if not isinstance(msg, dict):
        raise MessageError("a message must be a JSON object")
    walk = True
    encoded: bytes | None = None
    try:
        encoded = orjson.dumps(msg)
        if size is None:
            size = len(encoded)
        # no NUL escape and fewer brackets than the depth limit: nothing for the walk to find
        walk = (
            not strict_json
            or b"\\u0000" in encoded
            or encoded.count(b"{") + encoded.count(b"[") > MAX_DEPTH
        )
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits
        if size is None:
            size = len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(
            f"the message is {size:,} bytes; the limit is {MAX_MESSAGE_BYTES:,} (32 KB)"
        )
    kind = msg.get("type")
    if kind is None:
        raise MessageError("type is missing; use one of " + ", ".join(TYPES))
    if not isinstance(kind, str) or kind.strip().lower() not in TYPES:
        raise MessageError(f"type {kind!r} is not one of " + ", ".join(TYPES))
    kind = kind.strip().lower()
    if walk and _depth(msg, MAX_DEPTH) > MAX_DEPTH:
        raise MessageError(f"the message is nested deeper than {MAX_DEPTH} levels")
    user_id = _id(msg, "userId")
    anonymous_id = _id(msg, "anonymousId")
    previous_id = _id(msg, "previousId")
    if kind == "alias":
        if user_id is None or previous_id is None:
            raise MessageError("an alias call needs userId and previousId")
    elif user_id is None and anonymous_id is None:
        raise MessageError("the message has neither userId nor anonymousId")
    message_id = _id(msg, "messageId") or f"leadscore-{uuid.uuid4()}"
    when = msg.get("timestamp")
    field = "timestamp"
    if when is None:
        when, field = msg.get("originalTimestamp"), "originalTimestamp"
    ts_us = received_us if when is None else parse_timestamp(when, field)
    if ts_us > received_us + DAY_US:
        raise MessageError(f"{field} {when!r} is more than a day in the future")
    properties = _object(msg, "properties")
    traits = _object(msg, "traits")
    if traits is None and kind == "identify":
        ctx = _object(msg, "context")
        traits = _object(ctx, "traits") if ctx else None
    event: str | None = None
    if kind == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name.strip():
            raise MessageError("a track call needs an event name in 'event'")
        event = name.strip()
        if len(event) > MAX_ID_LENGTH:
            raise MessageError(f"event is longer than {MAX_ID_LENGTH} characters")
    elif kind in ("page", "screen"):
        event = kind
        name = msg.get("name")
        if isinstance(name, str) and name and (properties is None or "name" not in properties):
            properties = {"name": name, **(properties or {})}
    group_id = _id(msg, "groupId") if kind == "group" else None
    return Message(
        message_id=message_id,
        type=kind,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        event=event,
        ts_us=ts_us,
        properties=properties,
        traits=traits,
        group_id=group_id,
        raw=msg,
        encoded=encoded.decode() if encoded is not None else None,
    )
