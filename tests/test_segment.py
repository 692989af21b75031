"""The Segment rules (leadscore.engine.segment) and `leadscore score --segment` following them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadscore.batch import load_lead, run
from leadscore.engine import us_of
from leadscore.engine.segment import (
    Identities,
    SegmentError,
    merge_traits,
    read_call,
)
from leadscore.errors import BadRowsError
from leadscore.model import parse_model

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = parse_model(
    """
model: 1
name: seg
fit:
  rules:
    - {name: VP, when: {field: title, matches: "^vp"}, points: 10}
    - {name: Big, when: {field: company.employees, gte: 200}, points: 20}
engagement:
  half_life_days: 7
  rules:
    - {name: Pricing, event: page, when: {field: path, starts_with: /pricing}, points: 5}
    - {name: Demo, event: Demo Requested, points: 40}
mql: {threshold: 50}
"""
)


def _us(text: str) -> int:
    return us_of(datetime.fromisoformat(text).replace(tzinfo=UTC))


def _file(tmp_path: Path, msgs: list[dict]) -> Path:
    path = tmp_path / "segment.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in msgs), encoding="utf-8")
    return path


def _records(path: Path) -> dict[str, dict]:
    batch = run(MODEL, None, None, AS_OF, segment=path)
    return {r["lead_id"]: r for r in map(json.loads, batch.jsonl_lines())}


# ---------------------------------------------------------------- the rules, without files


def test_time_comes_from_the_message_in_a_fixed_order():
    base = {"type": "track", "userId": "u", "event": "X"}
    t = {
        "timestamp": "2026-05-01T00:00:00Z",
        "originalTimestamp": "2026-05-02T00:00:00Z",
        "sentAt": "2026-05-03T00:00:00Z",
        "receivedAt": "2026-05-04T00:00:00Z",
    }
    keys = list(t)
    for i, k in enumerate(keys):
        msg = base | {x: t[x] for x in keys[i:]}
        call = read_call(msg)
        assert (call.time_field, call.ts_us) == (k, _us(t[k][:-1]))
    # none of them: the time it was received, when the reader knows it; else an error
    assert read_call(base, received_us=123).ts_us == 123
    assert read_call(base, received_us=123).time_field is None
    with pytest.raises(SegmentError, match="no timestamp, originalTimestamp, sentAt, receivedAt"):
        read_call(base)
    with pytest.raises(SegmentError, match="sentAt 'soon' is not an ISO 8601 timestamp"):
        read_call(base | {"sentAt": "soon"})


def test_identify_traits_over_context_traits():
    call = read_call(
        {
            "type": "identify",
            "userId": "u",
            "traits": {"title": "VP Sales"},
            "context": {"traits": {"title": "CEO", "email": "a@b.c"}},
            "timestamp": "2026-05-01",
        }
    )
    assert call.traits == {"title": "VP Sales", "email": "a@b.c"}
    only_ctx = read_call(
        {"type": "identify", "userId": "u", "context": {"traits": {"email": "a@b.c"}}},
        received_us=0,
    )
    assert only_ctx.traits == {"email": "a@b.c"}
    # a track call's context.traits do not change the lead
    track = read_call(
        {"type": "track", "userId": "u", "event": "X", "context": {"traits": {"a": 1}}},
        received_us=0,
    )
    assert track.traits is None and not merge_traits({}, track)


def test_merge_traits_company_from_identify_and_group():
    traits: dict = {"company": "Acme"}
    group = read_call(
        {"type": "group", "userId": "u", "groupId": "g1", "traits": {"employees": 300}},
        received_us=0,
    )
    assert merge_traits(traits, group)
    assert traits == {"company": {"name": "Acme", "employees": 300, "id": "g1"}}
    ident = read_call(
        {"type": "identify", "userId": "u", "traits": {"company": {"plan": "pro"}, "x": 1}},
        received_us=0,
    )
    merge_traits(traits, ident)
    assert traits == {
        "company": {"name": "Acme", "employees": 300, "id": "g1", "plan": "pro"},
        "x": 1,
    }
    fresh: dict = {"company": "Old"}
    merge_traits(fresh, ident)
    assert fresh["company"] == {"plan": "pro"}


def test_first_link_wins():
    ids = Identities()
    ident = {"type": "identify", "anonymousId": "a1", "timestamp": "2026-05-01"}
    assert ids.take(read_call(ident | {"userId": "u1"})) == "u1"
    assert ids.take(read_call(ident | {"userId": "u2"})) == "u2"
    assert ids.links == {"a1": "u1"}
    alias = read_call({"type": "alias", "previousId": "a1", "userId": "u3"}, received_us=0)
    assert ids.take(alias) == "u3" and ids.links["a1"] == "u1"
    anon = read_call({"type": "page", "anonymousId": "a1"}, received_us=0)
    assert ids.take(anon) == "u1"
    assert anon.event == "page"


def test_bad_messages_name_the_field():
    ok = {"timestamp": "2026-05-01"}
    for msg, text in [
        ({"userId": "u"}, "type is missing"),
        ({"type": "buy", "userId": "u"}, "type 'buy' is not one of"),
        ({"type": "track", "event": "X"}, "neither userId nor anonymousId"),
        ({"type": "alias", "userId": "u"}, "an alias call needs userId and previousId"),
        ({"type": "track", "userId": "u"}, "a track call needs an event name"),
        ({"type": "page", "userId": "u", "properties": [1]}, "properties must be a JSON object"),
        ({"type": "page", "userId": {"id": 1}}, "userId must be a string"),
    ]:
        with pytest.raises(SegmentError, match=text):
            read_call(msg | ok)


# ---------------------------------------------------------------- the batch follows them


def test_batch_links_an_anonymous_id_to_the_first_user(tmp_path):
    path = _file(
        tmp_path,
        [
            {
                "type": "page",
                "anonymousId": "a1",
                "properties": {"path": "/pricing"},
                "timestamp": "2026-05-31T00:00:00Z",
            },
            # the later link comes first in the file: time order decides
            {
                "type": "identify",
                "anonymousId": "a1",
                "userId": "u2",
                "timestamp": "2026-05-20T00:00:00Z",
            },
            {
                "type": "identify",
                "anonymousId": "a1",
                "userId": "u1",
                "timestamp": "2026-05-10T00:00:00Z",
            },
        ],
    )
    got = _records(path)
    assert got["u1"]["engagement"] == pytest.approx(5 * 0.5 ** (1 / 7), abs=0.01)
    assert got["u2"]["engagement"] == 0


def test_batch_reads_context_traits(tmp_path):
    path = _file(
        tmp_path,
        [
            {
                "type": "identify",
                "userId": "u1",
                "context": {"traits": {"title": "VP Sales"}},
                "timestamp": "2026-05-10T00:00:00Z",
            },
        ],
    )
    assert _records(path)["u1"]["fit"] == 10


def test_batch_time_never_comes_from_the_run(tmp_path):
    msgs = [
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"title": "VP"},
            "receivedAt": "2026-05-25T00:00:00Z",
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Demo Requested",
            "sentAt": "2026-05-25T00:00:00Z",
        },
    ]
    first = _records(_file(tmp_path, msgs))
    assert first["u1"]["engagement"] == pytest.approx(40 * 0.5 ** (7 / 7), abs=0.01)
    assert _records(_file(tmp_path, msgs)) == first
    batch = run(MODEL, None, None, AS_OF, segment=_file(tmp_path, msgs))
    _, events = load_lead(batch.inputs, "u1")
    assert [e.timestamp for e in events] == [datetime(2026, 5, 25, tzinfo=UTC)]
    # no time at all: a bad row naming the fields, not the time of the run
    path = _file(tmp_path, [{"type": "track", "userId": "u1", "event": "Demo Requested"}])
    with pytest.raises(BadRowsError, match=r"segment.jsonl:1: the message has no timestamp"):
        run(MODEL, None, None, AS_OF, segment=path)


def test_batch_keeps_no_traits_of_an_anonymous_id_before_its_link(tmp_path):
    path = _file(
        tmp_path,
        [
            {
                "type": "identify",
                "anonymousId": "a1",
                "traits": {"title": "VP"},
                "timestamp": "2026-05-01T00:00:00Z",
            },
            {
                "type": "identify",
                "anonymousId": "a1",
                "userId": "u1",
                "timestamp": "2026-05-02T00:00:00Z",
            },
            {
                "type": "identify",
                "anonymousId": "a1",
                "traits": {"email": "x@y.z"},
                "timestamp": "2026-05-03T00:00:00Z",
            },
        ],
    )
    batch = run(MODEL, None, None, AS_OF, segment=path)
    traits, _ = load_lead(batch.inputs, "u1")
    assert traits.get("title") is None and traits["email"] == "x@y.z"
