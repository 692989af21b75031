"""The same Segment messages through the live service (its real app on SQLite, in random
batches) and through `leadscore score --segment` give the same records."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.batch import run
from leadscore.model import parse_model
from leadscore.store import schema as t
from tests.service_helpers import MODEL, api_on, iso

USERS = ("u1", "u2", "u3")
ANONS = ("a1", "a2", "a3")
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
#: messages happen in the 40 days before this instant; both paths score at AT
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(days=40)
AT = NOW + timedelta(hours=1)

traits_st = st.dictionaries(
    st.sampled_from(["title", "email", "company"]),
    st.one_of(
        st.sampled_from(["VP Sales", "Head of Growth", "Engineer", "a@gmail.com", "b@acme.io"]),
        st.fixed_dictionaries({"employees": st.sampled_from([50, 300, 9000])}),
    ),
    max_size=3,
)


@st.composite
def who(draw: Any, *, need_user: bool = False) -> dict[str, str]:
    user = draw(st.sampled_from((None, *USERS))) if not need_user else draw(st.sampled_from(USERS))
    anon = draw(st.sampled_from((None, *ANONS)))
    if user is None and anon is None:
        anon = draw(st.sampled_from(ANONS))
    out = {}
    if user is not None:
        out["userId"] = user
    if anon is not None:
        out["anonymousId"] = anon
    return out


@st.composite
def message(draw: Any) -> tuple[dict[str, Any], bool]:
    """A message and whether it carries a time field."""
    kind = draw(st.sampled_from(["identify", "track", "page", "group", "alias", "track", "page"]))
    if kind == "identify":
        m: dict[str, Any] = {"type": "identify", **draw(who())}
        if draw(st.booleans()):
            m["traits"] = draw(traits_st)
        if draw(st.booleans()):
            m["context"] = {"traits": draw(traits_st)}
    elif kind == "track":
        m = {
            "type": "track",
            "event": draw(st.sampled_from(["Webinar Attended", "Demo Requested", "Signed Up"])),
            **draw(who()),
        }
    elif kind == "page":
        m = {
            "type": "page",
            "properties": {"path": draw(st.sampled_from(["/pricing", "/blog"]))},
            **draw(who()),
        }
        if draw(st.booleans()):
            m["name"] = "Pricing"
    elif kind == "group":
        m = {
            "type": "group",
            "groupId": draw(st.sampled_from(["g1", "g2"])),
            "traits": {"employees": draw(st.sampled_from([50, 300, 9000]))},
            **draw(who()),
        }
    else:
        m = {
            "type": "alias",
            "previousId": draw(st.sampled_from(ANONS)),
            "userId": draw(st.sampled_from(USERS)),
        }
    timed = draw(st.integers(0, 9)) > 0
    if timed:
        when = BASE + timedelta(minutes=draw(st.integers(0, 40 * 24 * 60)))
        m[draw(st.sampled_from(TIME_FIELDS))] = iso(when)
    return m, timed


def _time(m: dict[str, Any]) -> str:
    return next(m[f] for f in TIME_FIELDS if f in m)


@st.composite
def stream(draw: Any) -> list[list[dict[str, Any]]]:
    """Batches as a client sends them: identify, group and alias calls in time order (the service
    takes them in the order they arrive, a file by time); events in any order; messages with no
    time last (the service gives them the time it received them)."""
    msgs = draw(st.lists(message(), min_size=1, max_size=25))
    for i, (m, _) in enumerate(msgs):
        m["messageId"] = f"m{i}"
    timed = [m for m, ok in msgs if ok]
    untimed = [m for m, ok in msgs if not ok]
    ordered = sorted((m for m in timed if m["type"] in ("identify", "group", "alias")), key=_time)
    events = [m for m in timed if m["type"] not in ("identify", "group", "alias")]
    seq = list(ordered)
    for ev in events:  # an event lands anywhere in the stream: late events included
        seq.insert(draw(st.integers(0, len(seq))), ev)
    cuts = sorted(draw(st.sets(st.integers(1, max(len(seq), 1)), max_size=4)))
    batches = [seq[a:b] for a, b in zip([0, *cuts], [*cuts, len(seq)], strict=True)]
    if untimed:
        batches.append(untimed)
    return [b for b in batches if b]


_KEYS = ("fit", "engagement", "score", "grade", "mql", "reasons")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=stream())
def test_service_and_batch_find_the_same_records(batches):
    at_us = int(AT.timestamp()) * 1_000_000
    with tempfile.TemporaryDirectory() as tmp, api_on(f"sqlite:///{tmp}/live.db") as api:
        for b in batches:
            body = api.ok(*b)
            assert body["accepted"] == len(b)
        live = {}
        with api.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.select(t.leads.c.lead_id))]
            received = {
                r[0]: r[1] for r in conn.execute(sa.select(t.events.c.message_id, t.events.c.ts_us))
            }
        for lead in ids:
            view = api.service.lead(lead, at=at_us)
            live[lead] = {k: view[k] for k in _KEYS}
        # the file a Segment export of the same messages gives: receivedAt filled in by the
        # receiver, on the messages that had no time
        lines = []
        for b in batches:
            for m in b:
                if not any(f in m for f in TIME_FIELDS):
                    m = {
                        **m,
                        "receivedAt": iso(
                            datetime(1970, 1, 1, tzinfo=UTC)
                            + timedelta(microseconds=received[m["messageId"]])
                        ),
                    }
                lines.append(json.dumps(m))
        path = Path(tmp) / "segment.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        batch = run(parse_model(MODEL, "model"), None, None, AT, segment=path)
        got = {r["lead_id"]: {k: r[k] for k in _KEYS} for r in map(json.loads, batch.jsonl_lines())}
    assert got == live
