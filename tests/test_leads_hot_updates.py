"""A lead's score is rewritten by every ingest that touches it: the score is in no index, so
PostgreSQL updates the lead in place on its page (a HOT update, with room kept on each page);
events without an anonymous id are not indexed by it; an UPDATE by key finds its rows through
the key's index; and databases made before (migration 0004) move over with their rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from leadscore.service import ingest
from leadscore.service.common import dumps
from leadscore.service.prepared import Prepared
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.migration_helpers import migrate as _migrate
from tests.service_helpers import Api, ago, assert_matches, page, track


def _lead(lead_id: str, **values: object) -> dict[str, object]:
    return {"lead_id": lead_id, "traits": "{}", "created_at_us": 1, "updated_at_us": 1, **values}


def _score(lead_id: str, score: float) -> dict[str, object]:
    return {
        "b_id": lead_id,
        "fit": 10.0,
        "engagement": score - 10.0,
        "score": score,
        "grade": "B",
        "mql": False,
        "fast_track": False,
        "rule_sums": {"v": 1, "h": [0], "s": [score - 10.0], "c": [False]},
        "scored_at_us": 5,
        "model_version": 1,
        "rescore_at_us": None,
        "updated_at_us": 5,
    }


def test_a_score_update_is_made_in_place_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(t.leads), [_lead("a"), _lead("b")])
        with engine.begin() as conn:
            # the ingest's own statement, over two leads
            assert ingest._UPDATE_SCORES.run(conn, [_score("a", 42.5), _score("b", 7.0)]) == 2
            hot, updated = conn.exec_driver_sql(
                "SELECT pg_stat_get_xact_tuples_hot_updated('leads'::regclass), "
                "pg_stat_get_xact_tuples_updated('leads'::regclass)"
            ).one()
            assert (hot, updated) == (2, 2)
            # a stage move changes an indexed column: stored all the same
            conn.execute(sa.update(t.leads).where(t.leads.c.lead_id == "a").values(stage="mql"))
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    t.leads.c.lead_id, t.leads.c.stage, t.leads.c.score, t.leads.c.rule_sums
                ).order_by(t.leads.c.lead_id)
            ).all()
            assert [tuple(r) for r in rows] == [
                ("a", "mql", 42.5, {"v": 1, "h": [0], "s": [32.5], "c": [False]}),
                ("b", "lead", 7.0, {"v": 1, "h": [0], "s": [-3.0], "c": [False]}),
            ]
            options = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'leads'"
            ).scalar_one()
            assert options == ["fillfactor=85"]
            indexes = dict(
                conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
                    "('leads', 'events') AND indexname LIKE 'ix_%%'"
                ).all()
            )
            assert "ix_leads_stage_score" not in indexes
            assert indexes["ix_leads_stage"].endswith("USING btree (stage)")
            assert indexes["ix_events_anon"].endswith("WHERE (anonymous_id IS NOT NULL)")
    finally:
        engine.dispose()


def test_an_update_by_key_reads_the_keys_index_on_postgres(pg_url: str) -> None:
    """Joined to the rows alone, PostgreSQL read a table of a few thousand leads whole for
    each UPDATE; the keys' own list lets it look them up in the key's index."""
    engine = open_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(t.leads), [_lead(f"u-{i}") for i in range(3000)])
            conn.exec_driver_sql("ANALYZE leads")
            sql, names = ingest._UPDATE_SCORES._batch_sql(conn)
            rows = [_score("u-7", 1.0), _score("u-2999", 2.0)]
            params = {
                "rows": dumps([{n: r[n] for n in names} for r in rows]),
                "keys": '["u-7", "u-2999"]',
            }
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute("EXPLAIN (COSTS OFF) " + sql, params)
            plan = "\n".join(r[0] for r in cur.fetchall())
            assert "Seq Scan on leads" not in plan
            assert "leads_pkey" in plan
            # an integer key: its list is read as integers
            conn.execute(
                sa.insert(t.mql_episodes),
                [
                    {"lead_id": x, "mql_at_us": 1, "track": "threshold", "stage": "mql"}
                    for x in ("u-1", "u-2")
                ],
            )
            ids = conn.execute(sa.select(t.mql_episodes.c.id).order_by("id")).scalars().all()
            close = Prepared.update(t.mql_episodes, "id", ("stage", "closed_at_us"))
            assert close.run(conn, [{"b_id": ids[1], "stage": "recycled", "closed_at_us": 9}]) == 1
            got = conn.execute(
                sa.select(t.mql_episodes.c.lead_id, t.mql_episodes.c.stage).order_by("id")
            ).all()
            assert [tuple(r) for r in got] == [("u-1", "mql"), ("u-2", "recycled")]
    finally:
        engine.dispose()


def test_a_sqlite_database_from_before_moves_over_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = open_engine(f"sqlite:///{path}", migrate=False)
    _migrate(old, "0004")
    with old.begin() as conn:
        conn.execute(sa.insert(t.leads), [_lead("a", score=30.0), _lead("b", score=60.0)])
        conn.execute(
            sa.insert(t.events),
            [
                {
                    "message_id": f"m{i}",
                    "type": "track",
                    "lead_id": "a" if anon is None else None,
                    "anonymous_id": anon,
                    "event": "Email Opened",
                    "ts_us": i,
                    "received_at_us": i,
                    "message": "{}",
                }
                for i, anon in enumerate([None, "anon-1", None])
            ],
        )
    old.dispose()

    engine = open_engine(f"sqlite:///{path}")  # migrates to the newest
    try:
        with engine.begin() as conn:
            indexes = dict(
                conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'"
                ).all()
            )
            assert "ix_leads_stage_score" not in indexes
            assert "ix_leads_stage" in indexes
            assert indexes["ix_events_anon"].endswith("WHERE anonymous_id IS NOT NULL")
            # linking an anonymous id reads the partial index
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN UPDATE events SET lead_id = 'a' "
                "WHERE anonymous_id = 'anon-1' AND lead_id IS NULL"
            ).all()
            assert any("ix_events_anon" in r[-1] for r in plan)
            assert conn.execute(
                sa.select(t.leads.c.lead_id)
                .where(t.leads.c.stage == "lead")
                .order_by(t.leads.c.score.desc())
            ).scalars().all() == ["b", "a"]
            assert conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar() == 3
        # and back, and forth again
        _migrate(engine, "0004", down=True)
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
            assert "ix_leads_stage_score" in names and "ix_leads_stage" not in names
        _migrate(engine, "head")
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
            assert "ix_leads_stage" in names and "ix_events_anon" in names
    finally:
        engine.dispose()


def test_a_postgres_database_goes_back_and_forth(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        _migrate(engine, "0004", down=True)
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql(
                    "SELECT reloptions FROM pg_class WHERE relname = 'leads'"
                ).scalar_one()
                is None
            )
            names = {r[0] for r in conn.exec_driver_sql("SELECT indexname FROM pg_indexes").all()}
            assert "ix_leads_stage_score" in names and "ix_leads_stage" not in names
        _migrate(engine, "head")
        with engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT indexname FROM pg_indexes").all()}
            assert "ix_leads_stage" in names and "ix_leads_stage_score" not in names
    finally:
        engine.dispose()


def test_a_request_of_new_and_stored_messages_stores_and_scores_the_new_ones(api: Api) -> None:
    """Of a request's messages, those stored before are skipped and the new ones stored and
    scored, whatever their order (on SQLite, the new ones are told apart after the insert)."""
    first = [
        page("u1", "/pricing", timestamp=ago(3)),
        track("u2", "Webinar Attended", timestamp=ago(3)),
    ]
    api.ok(*first)
    n = api.count(t.events)
    u2 = api.row("u2")
    webinar = track("u1", "Webinar Attended", timestamp=ago(1))
    got = api.send(first[1], page("u3", "/pricing", timestamp=ago(1)), first[0], webinar).json()
    assert (got["accepted"], got["duplicates"]) == (2, 2)
    assert api.count(t.events) == n + 2
    assert api.count(t.events, t.events.c.lead_id == "u1") == 2
    assert api.row("u2").engagement == u2.engagement  # nothing new for u2
    for lead in ("u1", "u2", "u3"):
        assert_matches(api.row(lead), api.reference(lead), tol=0.01)
