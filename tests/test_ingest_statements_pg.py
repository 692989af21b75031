"""The ingest path's statements on PostgreSQL (``service/ingest_pg.py``, ``prepared.py``), run on
psycopg's cursor with values adapted by the service: the same stored rows as SQLite's, JSON as
jsonb values (never JSON strings), and the driver's errors as SQLAlchemy's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from leadscore.service import ingest_pg
from leadscore.service.facade import Service
from leadscore.service.messages import MessageError, check_message
from leadscore.service.prepared import Prepared, run_sql
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import MODEL, ago, identify, page, track, us

EVENT_COLUMNS = "message_id, type, lead_id, anonymous_id, event, ts_us, received_at_us"
LEAD_COLUMNS = (
    "lead_id, stage, fit, engagement, score, grade, mql, fast_track, scored_at_us, "
    "rescore_at_us, model_version, created_at_us, updated_at_us, email_domain, mql_at_us"
)


def _requests() -> list[list[dict[str, Any]]]:
    """Requests with what the statements must carry over: nested and non-ASCII JSON, floats, an
    integer beyond 64 bits, a message without properties, an anonymous visitor linked later, the
    same messageId twice in a request and again in a later one, MQLs."""
    seen = page(None, "/pricing", anonymousId="anon-1", timestamp=ago(days=3))
    again = track("u-1", "Webinar Attended", {"n": 1}, timestamp=ago(days=1))
    no_props = {k: v for k, v in track("u-2", "Webinar Attended").items() if k != "properties"}
    return [
        [
            identify(
                "u-1",
                {"title": "VP Marketing", "company": {"employees": 800}, "name": "Zoë ☃"},
                timestamp=ago(days=5),
            ),
            identify("u-2", {"title": "Director", "email": "x@gmail.com"}, timestamp=ago(days=5)),
            seen,
            again,
            again,
            track(
                "u-1",
                "Demo Requested",
                {"plan": {"seats": 12, "ratio": 0.1, "big": 2**70}, "tags": ["a", "é"]},
                timestamp=ago(days=1),
            ),
            no_props,
        ],
        [
            identify("u-2", {"company": {"employees": 300}}, anonymousId="anon-1"),
            page("u-2", "/pricing", timestamp=ago(hours=2)),
            track("u-2", "Demo Requested", timestamp=ago(hours=1)),
            again,
        ],
    ]


def _ingest_all(url: str, requests: list[list[dict[str, Any]]], at: int) -> sa.Engine:
    engine = open_engine(url)
    service = Service(engine)
    service.add_model(MODEL, "test")
    for i, request in enumerate(requests):
        received = at + i
        service.ingest([(j, check_message(m, received)) for j, m in enumerate(request)], received)
    return engine


def _stored(engine: sa.Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        events = [
            (*r[:-2], _json(r[-2]), _json(r[-1]))
            for r in conn.execute(
                sa.text(f"SELECT {EVENT_COLUMNS}, properties, message FROM events ORDER BY id")
            )
        ]
        leads = [
            (*r[:-2], _json(r[-2]), _json(r[-1]))
            for r in conn.execute(
                sa.text(f"SELECT {LEAD_COLUMNS}, traits, rule_sums FROM leads ORDER BY lead_id")
            )
        ]
    return events, leads


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v  # SQLite's text; jsonb comes parsed


def test_postgres_stores_what_sqlite_stores(pg_url: str, tmp_path: Path) -> None:
    requests = _requests()
    at = us(datetime.now(UTC))
    lite = _ingest_all(f"sqlite:///{tmp_path / 'l.db'}", requests, at)
    pg = _ingest_all(pg_url, requests, at)
    try:
        lite_events, lite_leads = _stored(lite)
        pg_events, pg_leads = _stored(pg)
        assert pg_events == lite_events
        assert pg_leads == lite_leads
        assert len(pg_events) == 9  # each messageId once
        assert any((e[-2] or {}).get("plan", {}).get("big") == 2**70 for e in pg_events)
        assert [x[0] for x in pg_leads] == ["u-1", "u-2"]
        assert [x[1] for x in pg_leads] == ["mql", "lead"]  # u-2 has a personal email
        with pg.connect() as conn:
            # JSON went in as jsonb values, not as JSON strings holding them; none is SQL NULL
            kinds = conn.execute(
                sa.text(
                    "SELECT DISTINCT jsonb_typeof(message), jsonb_typeof(properties) FROM events"
                )
            ).all()
            assert set(kinds) == {("object", "object"), ("object", None)}
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM leads WHERE jsonb_typeof(traits) <> 'object'")
                ).scalar_one()
                == 0
            )
            assert (
                conn.execute(
                    sa.text("SELECT lead_id FROM identities WHERE anonymous_id = 'anon-1'")
                ).scalar_one()
                == "u-2"
            )
    finally:
        lite.dispose()
        pg.dispose()


def test_prepared_on_postgres_adapts_values_as_sqlalchemy_does(pg_url: str) -> None:
    """A ``Prepared`` statement on psycopg's cursor stores what ``Connection.execute`` stores:
    a dict as a jsonb object, a str as a jsonb string, None as SQL NULL, booleans."""
    engine = open_engine(pg_url)
    insert = Prepared(sa.insert(t.leads), ("lead_id", "traits", "created_at_us", "updated_at_us"))
    update = Prepared.update(t.leads, "lead_id", ("rule_sums", "mql"))
    # not a plain INSERT (it returns the ids): row by row
    history = Prepared(
        sa.insert(t.stage_history).returning(t.stage_history.c.id),
        ("lead_id", "stage", "at_us", "reason", "by"),
    )
    rows = [
        {"lead_id": "a", "traits": {"x": [1, 2.5, "é"]}, "created_at_us": 1, "updated_at_us": 2},
        {"lead_id": "b", "traits": "text", "created_at_us": 1, "updated_at_us": 2},
    ]
    try:
        with engine.begin() as conn:
            assert insert.run(conn, rows) == 2
            # one statement for all the rows; a key given twice: the last row, as one by one
            twice = [
                {"b_id": "a", "rule_sums": {"v": 0}, "mql": False},
                {"b_id": "b", "rule_sums": None, "mql": False},
                {"b_id": "a", "rule_sums": {"v": 1}, "mql": True},
                {"b_id": "nobody", "rule_sums": None, "mql": True},
            ]
            assert update.run(conn, twice) == 2
            stages = [
                {"lead_id": "a", "stage": "mql", "at_us": 5, "reason": "é", "by": "model"},
                {"lead_id": "b", "stage": "sql", "at_us": 6, "reason": "x", "by": "rep"},
            ]
            assert history.run(conn, stages) == 2
            assert conn.execute(
                sa.text("SELECT lead_id, stage, at_us, reason, by FROM stage_history ORDER BY id")
            ).all() == [("a", "mql", 5, "é", "model"), ("b", "sql", 6, "x", "rep")]
            mqls = Prepared(sa.select(t.leads.c.lead_id).where(t.leads.c.mql == sa.bindparam("m")))
            assert mqls.fetch(conn, {"m": True}) == [("a",)]
            conn.execute(
                sa.insert(t.leads),
                [{**r, "lead_id": r["lead_id"] + "-sa"} for r in rows],
            )
            got = conn.execute(
                sa.text(
                    "SELECT lead_id, traits, jsonb_typeof(traits), rule_sums, mql FROM leads "
                    "ORDER BY lead_id"
                )
            ).all()
        assert got == [
            ("a", {"x": [1, 2.5, "é"]}, "object", {"v": 1}, True),
            ("a-sa", {"x": [1, 2.5, "é"]}, "object", None, False),
            ("b", "text", "string", None, False),
            ("b-sa", "text", "string", None, False),
        ]
    finally:
        engine.dispose()


def test_driver_errors_come_out_as_sqlalchemys(pg_url: str) -> None:
    """What the service tells apart: a constraint (IntegrityError, the request's own fault) and
    a lost server (OperationalError: 503 and Retry-After)."""
    engine = open_engine(pg_url)
    try:
        with engine.connect() as conn:
            insert = Prepared(
                sa.insert(t.leads), ("lead_id", "traits", "created_at_us", "updated_at_us")
            )
            with pytest.raises(sa.exc.IntegrityError), conn.begin():
                insert.run(
                    conn,
                    [{"lead_id": "a", "traits": None, "created_at_us": 1, "updated_at_us": 1}],
                )
            pid = run_sql(conn, "SELECT pg_backend_pid()")[0][0]
            conn.rollback()
            with psycopg.connect(pg_url.replace("+psycopg", "")) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(sa.exc.OperationalError):
                ingest_pg.lead_state(conn, ["a"])
    finally:
        engine.dispose()


#: ids and text that SQL, a PostgreSQL array literal or JSON could read otherwise
AWKWARD = ["it's", 'say "hi"', "back\\slash", "{a,b}", "NULL", "a, b", "x\u2028y", "😀 Zoë"]


def test_awkward_ids_and_values_are_stored_as_sqlite_stores_them(
    pg_url: str, tmp_path: Path
) -> None:
    """Ids with quotes, backslashes, braces and commas (one JSON array for the locks and the
    reads), the text of SQL, tiny and subnormal floats and a long string go through
    json_to_recordset as they go into SQLite; a NUL never reaches the database."""
    props = {
        "sql": "'); DROP TABLE events; --",
        "tiny": 1e-300,
        "subnormal": 5e-324,
        "neg": -2.5e-10,
        "long": "x" * 20_000,
        "keys": {k: k for k in AWKWARD},
    }
    request = []
    for i, user in enumerate(AWKWARD):
        request.append(
            identify(user, {"title": "VP Marketing", "note": user}, timestamp=ago(days=2))
        )
        request.append(track(user, "Demo Requested", props, timestamp=ago(hours=i + 1)))
        request.append(page(None, "/pricing", anonymousId=f"anon {user}", timestamp=ago(days=1)))
        request.append(identify(user, anonymousId=f"anon {user}"))
    at = us(datetime.now(UTC))
    lite = _ingest_all(f"sqlite:///{tmp_path / 'l.db'}", [request], at)
    pg = _ingest_all(pg_url, [request], at)
    try:
        lite_events, lite_leads = _stored(lite)
        pg_events, pg_leads = _stored(pg)
        assert pg_events == lite_events
        assert pg_leads == lite_leads
        assert sorted(x[0] for x in pg_leads) == sorted(AWKWARD)
        stored = [e[-2] for e in pg_events if e[4] == "Demo Requested"]
        assert len(stored) == len(AWKWARD) and all(p == props for p in stored)
        with pg.connect() as conn:  # every visitor linked to its lead
            links = dict(
                conn.execute(sa.text("SELECT anonymous_id, lead_id FROM identities")).all()
            )
        assert links == {f"anon {u}": u for u in AWKWARD}
    finally:
        lite.dispose()
        pg.dispose()
    for bad in ({"n": "a\x00b"}, {"a\x00": 1}):
        with pytest.raises(MessageError, match="NUL"):
            check_message(track("u", "x", bad), at, strict_json=True)


def test_a_prepared_batch_takes_its_keys_from_each_row_and_no_more(pg_url: str) -> None:
    """Rows of exactly the statement's keys go as they are, rows with more keys are cut to
    them (whatever the others hold), and a row without one of them is an error, never a NULL."""
    engine = open_engine(pg_url)
    update = Prepared.update(t.leads, "lead_id", ("rule_sums", "mql"))
    insert = Prepared(sa.insert(t.leads), ("lead_id", "traits", "created_at_us", "updated_at_us"))
    try:
        with engine.begin() as conn:
            new = [{"traits": {}, "created_at_us": 1, "updated_at_us": 1, "extra": object()}]
            insert.run(conn, [{**new[0], "lead_id": x} for x in ("a", "b")])
            update.run(
                conn,
                [
                    {"b_id": "a", "rule_sums": {"v": 2}, "mql": True},
                    {"b_id": "b", "rule_sums": {"v": 3}, "mql": True, "stage": "x", "o": object()},
                ],
            )
            got = conn.execute(
                sa.text("SELECT lead_id, rule_sums, mql, stage FROM leads ORDER BY lead_id")
            ).all()
            assert got == [("a", {"v": 2}, True, "lead"), ("b", {"v": 3}, True, "lead")]
            with pytest.raises(KeyError):
                update.run(conn, [{"b_id": "a", "rule_sums": {"v": 4}, "stage": "x"}])
    finally:
        engine.dispose()
