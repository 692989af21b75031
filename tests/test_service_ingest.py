"""Ingest through HTTP, as the Segment clients send it: the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import time

import pytest
import sqlalchemy as sa

from leadscore.store import schema as t
from tests.service_helpers import (
    Api,
    ago,
    assert_error,
    assert_matches,
    basic,
    group,
    identify,
    mid,
    page,
    parse_iso,
    track,
    us,
)


def test_every_error_has_one_shape(api: Api) -> None:
    """{"error": {"code", "message", "details"}} for every kind of failure, pinned here."""
    cases = [
        (api.post("/v1/batch", b"{not json", basic(api.write_key)), 400, "malformed_json"),
        (api.post("/v1/batch", {"batch": [page("u", "/")]}), 401, "unauthorized"),
        (api.post("/v1/batch", {"batch": [page("u", "/")]}, basic("lsw_nope")), 401, None),
        (api.get("/api/leads", token=api.write_key), 403, "forbidden"),
        (api.get("/api/leads/nobody"), 404, "not_found"),
        (api.get("/no/such/path"), 404, "not_found"),
        (api.client.delete("/v1/batch"), 405, "method_not_allowed"),
        (api.get("/api/leads", limit=0), 422, "invalid_request"),
        (
            api.client.post(
                "/v1/batch",
                content=b"batch=1",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    **basic(api.write_key),
                },
            ),
            415,
            "unsupported_media_type",
        ),
        (
            api.post("/v1/batch", b"[" + b" " * 600_000 + b"]", basic(api.write_key)),
            413,
            "too_large",
        ),
    ]
    for resp, status, code in cases:
        assert_error(resp, status, code)
    # and the exact JSON of one, so the shape cannot drift (an ingest error has code and
    # message at the top too, for the tracking clients that read them there)
    resp = api.post("/v1/batch", {"batch": "x"}, basic(api.write_key))
    assert resp.json() == {
        "code": "invalid_batch",
        "message": "the body must be a JSON object with a 'batch' list",
        "error": {
            "code": "invalid_batch",
            "message": "the body must be a JSON object with a 'batch' list",
            "details": [],
        },
    }


def test_a_batch_of_every_call_type_is_stored_and_scored(api: Api) -> None:
    resp = api.ok(
        identify("u1", {"email": "ann@acme.io", "title": "VP Marketing"}, anonymousId="a1"),
        group("u1", "acme", {"name": "Acme", "employees": 800}),
        page("u1", "/pricing", name="Pricing"),
        {"type": "screen", "messageId": mid(), "userId": "u1", "name": "Home"},
        track("u1", "Webinar Attended", {"title": "Scoring 101"}),
        {"type": "alias", "messageId": mid(), "userId": "u1", "previousId": "a0"},
    )
    assert (resp["accepted"], resp["duplicates"], resp["success"]) == (6, 0, True)
    with api.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(t.events.c.type, t.events.c.lead_id)).all())
    assert stored == {t: "u1" for t in ("identify", "group", "page", "screen", "track", "alias")}
    lead = api.lead("u1")
    assert lead["traits"] == {"email": "ann@acme.io", "title": "VP Marketing"}
    assert lead["company"] == {"name": "Acme", "employees": 800, "id": "acme"}
    assert {r["rule"] for r in lead["reasons"]} == {
        "Senior title",
        "Company size",
        "Pricing page",
        "Any page",
        "Webinar",
    }
    assert_matches(api.row("u1"), api.reference("u1"))
    assert lead["fit"] == 35 and lead["grade"] == "A2"


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_single_call_endpoints(api: Api, kind: str) -> None:
    body = {
        "identify": identify("u1", {"title": "Director"}),
        "track": track("u1", "Webinar Attended"),
        "page": page("u1", "/pricing"),
        "screen": {"messageId": mid(), "userId": "u1", "name": "Home"},
        "group": group("u1", "g1", {"employees": 300}),
        "alias": {"messageId": mid(), "userId": "u1", "previousId": "anon-1"},
    }[kind]
    body.pop("type", None)  # the endpoint says what it is
    resp = api.post(f"/v1/{kind}", body, basic(api.write_key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    with api.engine.connect() as conn:
        assert conn.execute(sa.select(t.events.c.type)).scalars().all() == [kind]
    # a message of another type sent to this endpoint is refused, naming both
    other = "track" if kind != "track" else "page"
    err = assert_error(api.post(f"/v1/{kind}", {**body, "type": other}, basic(api.write_key)), 400)
    assert other in err["message"] and kind in err["message"]


def test_write_key_by_basic_auth_or_in_the_body(api: Api) -> None:
    assert (
        api.post("/v1/batch", {"batch": [page("u1", "/a")]}, basic(api.write_key)).status_code
        == 200
    )
    by_body = api.post("/v1/batch", {"batch": [page("u1", "/b")], "writeKey": api.write_key})
    assert by_body.status_code == 200, by_body.text
    single = api.post("/v1/track", {**track("u1", "Webinar Attended"), "writeKey": api.write_key})
    assert single.status_code == 200, single.text
    assert_error(api.post("/v1/batch", {"batch": [page("u1", "/c")], "writeKey": "lsw_wrong"}), 401)
    assert api.count(t.events) == 3


def test_gzip_bodies(api: Api) -> None:
    resp = api.send(page("u1", "/pricing"), track("u1", "Webinar Attended"), gz=True)
    assert resp.status_code == 200 and resp.json()["accepted"] == 2
    assert api.lead("u1")["score"] > 0
    bad = api.client.post(
        "/v1/batch",
        content=b"\x1f\x8b not really gzip",
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            **basic(api.write_key),
        },
    )
    assert "gzip" in assert_error(bad, 400, "bad_encoding")["message"]
    # a small gzip body that inflates past the batch limit is refused without inflating it all
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    assert len(bomb) < 10_000
    resp = api.client.post(
        "/v1/batch",
        content=bomb,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            **basic(api.write_key),
        },
    )
    assert_error(resp, 413, "too_large")
    assert api.count(t.events) == 2


def test_size_limits(api: Api) -> None:
    big = page("u1", "/pricing")
    big["properties"]["blob"] = "x" * (33 * 1024)
    resp = api.send(page("u1", "/a"), big, page("u1", "/b"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 2
    [rej] = body["rejected"]
    assert rej["index"] == 1 and rej["messageId"] == big["messageId"]
    assert "32 KB" in rej["reason"]
    # a whole batch over 500 KB: 413 and nothing of it stored
    msgs = [page("u2", "/p", properties={"path": "/p", "pad": "y" * 20_000}) for _ in range(30)]
    assert sum(len(json.dumps(m)) for m in msgs) > 500 * 1024
    err = assert_error(api.send(*msgs), 413, "too_large")
    assert "512,000" in err["message"]
    assert api.count(t.events) == 2
    assert api.count(t.leads, t.leads.c.lead_id == "u2") == 0


def test_bad_bodies_get_a_4xx_naming_the_problem_and_store_nothing(api: Api) -> None:
    key = basic(api.write_key)
    deep: dict = {"path": "/pricing"}
    for _ in range(40):
        deep = {"x": deep}
    very_deep = b'{"batch": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}"
    cases = [
        (api.post("/v1/batch", b'{"batch": [', key), 400, "malformed_json", "not valid JSON"),
        (
            api.client.post(
                "/v1/batch",
                content=json.dumps({"batch": [page("u1", "/")]}),
                headers={"Content-Type": "text/csv", **key},
            ),
            415,
            "unsupported_media_type",
            "text/csv",
        ),
        (
            api.post("/v1/batch", b'{"batch": [{"type": "page", "userId": "\xff\xfe"}]}', key),
            400,
            "bad_encoding",
            "not UTF-8",
        ),
        (api.send({"type": "purchase", "userId": "u1"}), 400, "invalid_messages", "'purchase'"),
        (
            api.send({"type": "page", "properties": {"path": "/"}}),
            400,
            "invalid_messages",
            "neither userId nor anonymousId",
        ),
        (api.send(page("u1", "/", properties=deep)), 400, "invalid_messages", "nested deeper"),
        # cut at the parser's depth, the one message is refused by index like any other
        (api.post("/v1/batch", very_deep, key), 400, "invalid_messages", "JSON object"),
        (api.send({"type": "track", "userId": "u1"}), 400, "invalid_messages", "event name"),
        (api.send(page("u1", "/", timestamp="last tuesday")), 400, "invalid_messages", "ISO 8601"),
        (api.send("not an object"), 400, "invalid_messages", "JSON object"),
        (api.post("/v1/batch", [page("u1", "/")], key), 400, "invalid_batch", "'batch' list"),
    ]
    for resp, status, code, words in cases:
        err = assert_error(resp, status, code)
        text = err["message"] + json.dumps(err["details"])
        assert words in text, (words, err)
    # the per-message reasons are listed by index
    err = assert_error(api.send({"type": "purchase", "userId": "u1"}), 400)
    assert err["details"][0]["index"] == 0 and "purchase" in err["details"][0]["reason"]
    assert api.count(t.events) == 0
    assert api.count(t.leads) == 0


def test_a_batch_with_some_invalid_messages_stores_the_valid_ones(api: Api) -> None:
    good1, good2 = page("u1", "/pricing"), track("u2", "Webinar Attended")
    future = page("u3", "/", timestamp=ago(-3))
    resp = api.send(
        {"type": "bogus", "userId": "u1", "messageId": "m-bad-1"},
        good1,
        {"type": "page", "messageId": "m-bad-2"},
        good2,
        future,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["messageId"]) for r in body["rejected"]] == [
        (0, "m-bad-1"),
        (2, "m-bad-2"),
        (4, future["messageId"]),
    ]
    assert "future" in body["rejected"][2]["reason"]
    with api.engine.connect() as conn:
        ids = set(conn.execute(sa.select(t.events.c.message_id)).scalars())
    assert ids == {good1["messageId"], good2["messageId"]}
    assert api.count(t.leads) == 2


def test_the_same_message_id_twice_changes_nothing(api: Api) -> None:
    msgs = [
        identify("u1", {"title": "VP Sales"}),
        page("u1", "/pricing", timestamp=ago(2)),
        track("u1", "Webinar Attended", timestamp=ago(1)),
    ]
    api.ok(*msgs)
    before = api.row("u1")
    n = api.count(t.events)
    again = api.send(*msgs)
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 3
    # a duplicate inside one batch counts once too
    pair = page("u1", "/pricing/enterprise")
    twice = api.send(pair, pair)
    assert twice.json()["accepted"] == 1 and twice.json()["duplicates"] == 1
    assert api.count(t.events) == n + 1
    after = api.row("u1")
    assert after.engagement == pytest.approx(before.engagement + 10 + 1, abs=0.01)
    # resending the identify with other traits under the same messageId changes no trait
    api.send({**msgs[0], "traits": {"title": "Student"}})
    assert api.lead("u1")["traits"] == {"title": "VP Sales"}


def test_events_are_scored_by_their_own_timestamp_not_arrival_order(api: Api) -> None:
    old, new = ago(60), ago(0, minutes=1)
    api.ok(page("in-order", "/pricing", timestamp=old))
    api.ok(page("in-order", "/pricing", timestamp=new))
    api.ok(page("reversed", "/pricing", timestamp=new))
    api.ok(page("reversed", "/pricing", timestamp=old))
    for lead in ("in-order", "reversed"):
        row = api.row(lead)
        assert_matches(row, api.reference(lead))
        # 10 points now + 10 points 60 days (two half-lives) ago, + the capped page rule
        assert row.engagement == pytest.approx(10 + 2.5 + 1 + 0.25, abs=0.01)
    with api.engine.connect() as conn:
        stamps = sorted(
            conn.execute(
                sa.select(t.events.c.ts_us).where(t.events.c.lead_id == "reversed")
            ).scalars()
        )
    assert stamps == [us(parse_iso(old)), us(parse_iso(new))]


def test_a_missing_timestamp_is_the_receive_time(api: Api) -> None:
    before = time.time_ns() // 1000
    m = page("u1", "/pricing")
    assert "timestamp" not in m
    api.ok(m)
    after = time.time_ns() // 1000
    original = page("u1", "/pricing", originalTimestamp="2026-01-02T03:04:05Z")
    api.ok(original)
    with api.engine.connect() as conn:
        ts = dict(conn.execute(sa.select(t.events.c.message_id, t.events.c.ts_us)).all())
    assert before <= ts[m["messageId"]] <= after
    assert ts[original["messageId"]] == us(parse_iso("2026-01-02T03:04:05+00:00"))


def test_timestamps_more_than_a_day_ahead_are_rejected_and_nearer_ones_count_when_due(
    api: Api,
) -> None:
    far = page("u1", "/pricing", timestamp=ago(0, hours=-25))
    resp = api.send(far)
    err = assert_error(resp, 400, "invalid_messages")
    assert "more than a day in the future" in err["details"][0]["reason"]
    soon_at = parse_iso(ago(0, hours=-2))
    api.ok(track("u1", "Webinar Attended", timestamp=soon_at.isoformat()))
    row = api.row("u1")
    assert row.engagement == 0  # not yet happened
    later = us(soon_at) + 60 * 1_000_000
    current = api.service.current(row, later)
    assert current is not None and current.engagement == pytest.approx(10, abs=1e-3)
    assert_matches(current, api.reference("u1", later))


def test_anonymous_page_views_join_the_lead_after_identify(api: Api) -> None:
    api.ok(
        page(None, "/pricing", anonymousId="anon-1", timestamp=ago(1)),
        page(None, "/pricing/teams", anonymousId="anon-1", timestamp=ago(0.5)),
    )
    assert api.count(t.leads) == 0  # nobody to score yet
    api.ok(identify("u1", {"title": "Director"}, anonymousId="anon-1"))
    lead = api.lead("u1")
    pages = {e["messageId"] for e in lead["recent_events"] if e["type"] == "page"}
    assert pages == _ids(api, "anon-1")
    assert lead["reasons"][0]["rule"] in ("Pricing page", "Senior title")
    assert_matches(api.row("u1"), api.reference("u1"))
    assert api.row("u1").engagement == pytest.approx(
        11 * 0.5 ** (1 / 30) + 11 * 0.5 ** (0.5 / 30), abs=1e-3
    )
    # later anonymous events of the same browser go to the lead at once
    api.ok(page(None, "/pricing", anonymousId="anon-1"))
    assert api.row("u1").engagement > lead["engagement"]
    assert_matches(api.row("u1"), api.reference("u1"))


def test_anonymous_events_join_the_lead_after_alias_and_in_the_same_batch(api: Api) -> None:
    api.ok(page(None, "/pricing", anonymousId="anon-2", timestamp=ago(1)))
    api.ok({"type": "alias", "messageId": mid(), "userId": "u2", "previousId": "anon-2"})
    assert api.lead("u2")["reasons"][0]["rule"] == "Pricing page"
    assert_matches(api.row("u2"), api.reference("u2"))
    # pages before the identify in one batch join too, whatever their order in the batch
    api.ok(
        identify("u3", {"title": "VP"}, anonymousId="anon-3", timestamp=ago(0, hours=1)),
        page(None, "/pricing", anonymousId="anon-3", timestamp=ago(0, hours=2)),
        page(None, "/pricing", anonymousId="anon-3", timestamp=ago(0, minutes=30)),
    )
    assert api.count(t.events, t.events.c.lead_id == "u3") == 3
    assert_matches(api.row("u3"), api.reference("u3"))
    assert api.row("u3").engagement == pytest.approx(22, abs=0.05)


def test_identify_traits_merge_and_group_traits_land_in_company(api: Api) -> None:
    api.ok(
        identify("u1", {"email": "ann@gmail.com", "title": "Analyst", "company": {"name": "Acme"}})
    )
    assert api.lead("u1")["fit"] == -20
    api.ok(identify("u1", {"title": "Head of Growth", "first_name": "Ann"}))
    api.ok(group("u1", "acme-id", {"employees": 1200, "industry": "Software"}))
    lead = api.lead("u1")
    assert lead["traits"] == {
        "email": "ann@gmail.com",
        "title": "Head of Growth",
        "first_name": "Ann",
    }
    assert lead["company"] == {
        "name": "Acme",
        "employees": 1200,
        "industry": "Software",
        "id": "acme-id",
    }
    assert lead["fit"] == 20 - 20 + 15
    api.ok(identify("u1", {"email": "ann@acme.io"}))
    assert api.lead("u1")["fit"] == 35
    assert_matches(api.row("u1"), api.reference("u1"))
    listed = api.leads(q="acme")["leads"]
    assert [(x["lead_id"], x["email"], x["name"], x["company"]) for x in listed] == [
        ("u1", "ann@acme.io", "Ann", "Acme")
    ]


def _ids(api: Api, anon: str) -> set[str]:
    """The page views of an anonymous id."""
    with api.engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(t.events.c.message_id).where(
                    t.events.c.anonymous_id == anon, t.events.c.type == "page"
                )
            ).scalars()
        )


def test_values_no_database_can_store_are_refused_by_index_not_with_a_server_error(
    api: Api,
) -> None:
    """A 5xx makes the clients resend the whole batch; one bad message must not do that."""
    good = page("u1", "/pricing")
    bad = [
        page("u2", "/pri\u0000cing"),
        page("u2", "/", properties={"path": "/", "n\u0000": 1}),
        page("u2", "/", properties={"path": "/", "big": 1e400}),
        page("u2", "/", timestamp="0001-01-01T00:00:00+14:00"),
        page("u2", "/", timestamp="9999-12-31T23:59:59-14:00"),
        track("u2", "E" * 300),
    ]
    resp = api.send(good, *bad)
    assert resp.status_code == 200, resp.text
    reasons = [r["reason"] for r in resp.json()["rejected"]]
    assert [r["index"] for r in resp.json()["rejected"]] == [1, 2, 3, 4, 5, 6]
    for words, reason in zip(
        ["NUL", "NUL", "inf", "out of range", "out of range", "longer than 255"],
        reasons,
        strict=True,
    ):
        assert words in reason, reason
    nan = b'{"batch": [{"type": "page", "userId": "u3", "properties": {"n": NaN}}]}'
    assert (
        "nan"
        in assert_error(api.post("/v1/batch", nan, basic(api.write_key)), 400)["details"][0][
            "reason"
        ]
    )
    assert api.count(t.events) == 1 and api.count(t.leads) == 1


def test_identify_traits_may_come_in_the_context(api: Api) -> None:
    msg = identify("u1", context={"traits": {"title": "VP Sales"}})
    del msg["traits"]
    api.ok(msg)
    assert api.lead("u1")["traits"] == {"title": "VP Sales"} and api.lead("u1")["fit"] == 20


def test_an_open_read_does_not_hold_up_ingest(api: Api) -> None:
    """SQLite runs in WAL mode so that readers and the writer do not wait for each other."""
    api.ok(page("u1", "/pricing"))
    with api.engine.connect() as reader:
        assert reader.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one() == 1
        # the reader's transaction is still open while a batch comes in
        resp = api.send(page("u1", "/pricing/teams"))
        assert resp.status_code == 200, resp.text
        assert api.lead("u1")["recent_events"][0]["properties"] == {"path": "/pricing/teams"}


def test_single_endpoints_take_the_type_in_any_case_and_refuse_another(api: Api) -> None:
    msg = {**page("u-case", "/pricing"), "type": "PAGE"}
    resp = api.post("/v1/page", msg, basic(api.write_key))
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    other = api.post("/v1/page", {**page("u-case", "/"), "type": "track"}, basic(api.write_key))
    assert_error(other, 400, "invalid_message")
    assert api.count(t.events, t.events.c.lead_id == "u-case") == 1


def test_a_body_longer_than_the_limit_on_the_wire_is_refused_before_it_is_read(api: Api) -> None:
    big = b'{"batch": [' + b" " * (600 * 1024) + b"]}"
    resp = api.post("/v1/batch", big, basic(api.write_key))
    err = assert_error(resp, 413, "too_large")
    assert "614,4" in err["message"] and "512,000" in err["message"]
    assert api.count(t.events) == 0
