"""Segment-spec messages: check one, and turn it into what the service stores. Pure: no I/O.

What a message means (types, ids, time, traits, scored events) is decided by
``leadscore.engine.segment``, the rules ``leadscore score --segment`` follows too. Here are the
service's own limits: size, nesting, characters no database stores, a time more than a day in
the future, and ``messageId`` (it makes a message idempotent; without one the service makes one
up, and a resent copy would count twice). A message with no time field happened when it was
received.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..engine.segment import TYPES, Call, SegmentError, read_fields
from ..engine.segment import id_field as _id_field
from ..errors import BadMessageError

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "TYPES",
    "HugeNumber",
    "Message",
    "MessageError",
    "check_message",
]

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DEPTH = 32
DAY_US = 86_400_000_000


class MessageError(BadMessageError, ValueError):
    """Why one message was rejected, naming the field."""


class HugeNumber:
    """An integer in a request too long to convert (over 4,300 digits): the parser keeps this in
    its place so that only the message holding it is refused."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<a number of {self.digits:,} digits>"


def _unstorable(v: Any) -> None:
    """Raises MessageError for a value no JSON column can take: an unpaired UTF-16 surrogate
    (what a cut emoji becomes) or a ``HugeNumber``. Walks no deeper than the depth limit."""
    stack = [(v, 1)]
    while stack:
        x, d = stack.pop()
        if d > MAX_DEPTH + 1:
            continue  # refused for its depth
        if isinstance(x, dict):
            stack.extend((k, d) for k in x)
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
        elif isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                raise MessageError(
                    f"a value contains an unpaired UTF-16 surrogate "
                    f"({x[e.start]!a}); send valid Unicode text"
                ) from None
        elif isinstance(x, HugeNumber):
            raise MessageError(
                f"a number has {x.digits:,} digits; the limit is 4,300 (send long numbers as text)"
            )


@dataclass(frozen=True)
class Message(Call):
    """A checked message as the service stores it: the Segment call plus its id and text."""

    message_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
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


def check_message(
    msg: Any, received_us: int, size: int | None = None, *, strict_json: bool = False
) -> Message:
    """The message as stored, or MessageError naming the field that is wrong.

    ``strict_json``: the body was parsed as strict JSON (no NaN or Infinity can be in it), which
    lets the common case skip walking the message."""
    if not isinstance(msg, dict):
        raise MessageError("a message must be a JSON object")
    if "writeKey" in msg:  # a key is a secret: it is checked, never stored
        msg = {k: v for k, v in msg.items() if k != "writeKey"}
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
        _unstorable(msg)
        if _depth(msg, MAX_DEPTH) > MAX_DEPTH:
            raise MessageError(f"the message is nested deeper than {MAX_DEPTH} levels") from None
        if size is None:
            size = len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(
            f"the message is {size:,} bytes; the limit is {MAX_MESSAGE_BYTES:,} (32 KB)"
        )
    try:
        fields = read_fields(msg, received_us)
    except SegmentError as e:
        raise MessageError(str(e)) from None
    if walk and _depth(msg, MAX_DEPTH) > MAX_DEPTH:
        raise MessageError(f"the message is nested deeper than {MAX_DEPTH} levels")
    try:
        message_id = _id_field(msg, "messageId") or f"leadscore-{uuid.uuid4()}"
    except SegmentError as e:
        raise MessageError(str(e)) from None
    if fields["ts_us"] > received_us + DAY_US:
        name = fields["time_field"]
        raise MessageError(f"{name} {msg.get(name or '')!r} is more than a day in the future")
    fields["message_id"] = message_id
    fields["raw"] = msg
    fields["encoded"] = encoded.decode() if encoded is not None else None
    return _message(fields)


def _message(fields: dict[str, Any]) -> Message:
    """``Message(**fields)``, made without a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field, for every message of every batch), nor a ``Call`` made
    first and copied: the same fields, the same object."""
    m = object.__new__(Message)
    m.__dict__.update(fields)
    return m
