"""Checking a Segment message takes one pass: ``check_message`` makes the service's ``Message``
from the message's fields without making a ``Call`` first, and ``read_call`` tells the common
type at once. Both answer as the plain reading did, message for message, error for error. No
database: the checks alone."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine.segment import (
    MAX_ID_LENGTH,
    TIME_FIELDS,
    TYPES,
    Call,
    SegmentError,
    _object,
    id_field,
    read_call,
    time_of,
)
from leadscore.service.messages import Message, MessageError, check_message

RECEIVED = 1_780_000_000 * 1_000_000


def _read_call_as_before(msg: Any, received_us: int | None = None) -> Call:
    """``read_call`` as it was written before it made its fields in one pass."""
    if not isinstance(msg, dict):
        raise SegmentError("a message must be a JSON object")
    kind = msg.get("type")
    if kind is None:
        raise SegmentError("type is missing; use one of " + ", ".join(TYPES))
    if not isinstance(kind, str) or kind.strip().lower() not in TYPES:
        raise SegmentError(f"type {kind!r} is not one of " + ", ".join(TYPES))
    kind = kind.strip().lower()
    user_id = id_field(msg, "userId")
    anonymous_id = id_field(msg, "anonymousId")
    previous_id = id_field(msg, "previousId")
    if kind == "alias":
        if user_id is None or previous_id is None:
            raise SegmentError("an alias call needs userId and previousId")
    elif user_id is None and anonymous_id is None:
        raise SegmentError("the message has neither userId nor anonymousId")
    properties = _object(msg, "properties")
    traits: dict[str, Any] | None = None
    if kind == "identify":
        ctx = _object(msg, "context")
        base = _object(ctx, "traits") if ctx else None
        own = _object(msg, "traits")
        traits = {**base, **own} if base and own else own if own is not None else base
    elif kind == "group":
        traits = _object(msg, "traits")
    event: str | None = None
    if kind == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name.strip():
            raise SegmentError("a track call needs an event name in 'event'")
        event = name.strip()
        if len(event) > MAX_ID_LENGTH:
            raise SegmentError(f"event is longer than {MAX_ID_LENGTH} characters")
    elif kind in ("page", "screen"):
        event = kind
        name = msg.get("name")
        if isinstance(name, str) and name and (properties is None or "name" not in properties):
            properties = {"name": name, **(properties or {})}
    group_id = id_field(msg, "groupId") if kind == "group" else None
    when = time_of(msg)
    if when is not None:
        time_field: str | None
        time_field, ts_us = when
    elif received_us is not None:
        time_field, ts_us = None, received_us
    else:
        raise SegmentError("the message has no " + ", ".join(TIME_FIELDS))
    return Call(
        type=kind,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        event=event,
        ts_us=ts_us,
        time_field=time_field,
        properties=properties,
        traits=traits,
        group_id=group_id,
    )


_ID = st.one_of(
    st.none(),
    st.sampled_from(["u1", " u2 ", "", "   ", "x" * 300, 7, 12.5, True, ["u"], {"id": 1}]),
)
_OBJ = st.one_of(
    st.none(),
    st.sampled_from([{}, {"title": "VP"}, {"name": "n/a"}, "text", 5, ["a"]]),
)
_TIME = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-05-28T10:00:00Z",
            "2026-05-28T10:00:00.123456+02:00",
            "2026-05-28 10:00",
            "",
            "yesterday",
            5,
            "0001-01-01T00:00:00+05:00",
            "2026-06-01T00:00:00Z",  # days ahead of RECEIVED: refused by the service
        ]
    ),
)


@st.composite
def _messages(draw: st.DrawFn) -> Any:
    """Messages as clients send them and as they get them wrong: each field present or not,
    of the right kind or not."""
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from([None, [], "text", 5]))
    msg: dict[str, Any] = {}
    kind = draw(
        st.sampled_from([*TYPES, " Track ", "PAGE", "Identify", "click", "", 5, None, ["track"]])
    )
    if kind is not None or draw(st.booleans()):
        msg["type"] = kind
    for key in ("userId", "anonymousId", "previousId", "groupId", "messageId"):
        v = draw(_ID)
        if v is not None or draw(st.booleans()):
            msg[key] = v
    for key in ("properties", "traits", "context"):
        v = draw(_OBJ)
        if key == "context" and draw(st.booleans()):
            v = {"traits": draw(_OBJ)}
        if v is not None:
            msg[key] = v
    for key in ("event", "name"):
        v = draw(st.sampled_from([None, "Demo Requested", " Pricing ", "", "  ", 5, "e" * 300]))
        if v is not None:
            msg[key] = v
    for f in TIME_FIELDS:
        v = draw(_TIME)
        if v is not None:
            msg[f] = v
    return msg


def _outcome(f: Any) -> Any:
    try:
        return f()
    except (SegmentError, MessageError) as e:
        return (type(e).__name__, str(e))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=_messages(), received=st.sampled_from([RECEIVED, None]))
def test_reading_a_call_answers_as_the_plain_reading(msg, received):
    """``read_call``: the same Call, or the same error, for any message."""
    got = _outcome(lambda: read_call(msg, received))
    want = _outcome(lambda: _read_call_as_before(msg, received))
    assert got == want
    if isinstance(got, Call):
        assert vars(got) == vars(want)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=_messages())
def test_a_checked_message_is_the_message_the_plain_reading_makes(msg):
    """``check_message``: the same Message (its fields from the call the plain reading makes,
    its id, the message and its text), or an error of the same words."""
    got = _outcome(lambda: check_message(msg, RECEIVED, strict_json=True))
    try:
        call = _read_call_as_before(msg, RECEIVED)
    except SegmentError as e:
        assert got == ("MessageError", str(e))
        return
    if not isinstance(got, Message):
        assert got[0] == "MessageError"  # refused for a limit of the service's own
        return
    want = Message(**vars(call), message_id=got.message_id, raw=got.raw, encoded=got.encoded)
    assert got == want
    assert vars(got) == vars(want)
    if id_field(msg, "messageId"):
        assert got.message_id == id_field(msg, "messageId")
