"""A key the process remembers (``find_key``'s cache) is checked on the event loop, with no
database read and no thread hand-off; any other is looked up on a thread (``threads.hand_off``) as
before. The answers are the same either way."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import leadscore.api.ingest as api_ingest
from leadscore.service.auth import (
    REMEMBERED_LEN,
    KeyCache,
    create_key,
    find_key,
    key_cache,
    remembered_key,
    revoke_key,
)
from leadscore.service.common import POLL_S
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import Api, assert_error, basic, page


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    a = Api(f"sqlite:///{tmp_path / 'keys.db'}")
    key_cache(a.engine).clock = Clock()  # a slow test run does not forget the keys
    try:
        yield a
    finally:
        a.close()


def _key_reads(engine: sa.Engine) -> list[str]:
    seen: list[str] = []

    def record(_conn: object, _cur: object, sql: str, *_: object) -> None:
        if "FROM api_keys" in sql:
            seen.append(sql)

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen


def test_only_a_key_found_valid_is_remembered_and_only_for_a_second(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        clock = Clock()
        cache = KeyCache(clock=clock)
        key_id, secret = create_key(engine, "site", "ingest")
        reads = _key_reads(engine)
        assert remembered_key(engine, secret, cache) is None  # never looked up: not known
        assert find_key(engine, secret, cache).id == key_id
        assert remembered_key(engine, secret, cache).id == key_id
        for bad in (secret[:-1], secret + "x", "\ud800", "", None, 12345, "x" * 10_000):
            assert remembered_key(engine, bad, cache) is None, bad
        assert len(reads) == 1  # remembered_key never reads the database
        clock.t += POLL_S
        assert remembered_key(engine, secret, cache) is None  # the second has passed
        assert len(reads) == 1
    finally:
        engine.dispose()


def test_a_secret_longer_than_any_key_is_left_to_the_lookup(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        _, secret = create_key(engine, "site", "ingest")
        assert len(secret) <= REMEMBERED_LEN
        long = "lsw_" + secrets.token_urlsafe(REMEMBERED_LEN)
        assert find_key(engine, long) is None
        assert remembered_key(engine, long) is None
    finally:
        engine.dispose()


def test_a_remembered_key_takes_one_hand_off_per_request(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[str] = []
    plain = api_ingest.hand_off

    async def counted(func: Any, *args: Any) -> Any:
        handed.append(func.__name__)
        return await plain(func, *args)

    monkeypatch.setattr(api_ingest, "hand_off", counted)
    reads = _key_reads(sqlite_api.engine)
    sqlite_api.ok(page("u1", "/pricing"))  # the key is looked up, on a thread
    assert handed == ["check_write_key", "_ingest"] and len(reads) == 1
    handed.clear()
    for n in range(3):
        sqlite_api.ok(page(f"u{n}", "/docs"))
    assert handed == ["_ingest"] * 3  # checked on the event loop: only the ingest is handed off
    assert len(reads) == 1
    assert sqlite_api.count(t.events) == 4


def test_a_remembered_key_of_another_scope_is_refused_before_the_body_is_read(
    sqlite_api: Api,
) -> None:
    assert sqlite_api.get("/api/leads").status_code == 200  # the read token is remembered now
    assert remembered_key(sqlite_api.engine, sqlite_api.read_token) is not None
    # a body that is not JSON: refused for the key, not the body
    resp = sqlite_api.client.post(
        "/v1/batch", content=b"\xff not json", headers=basic(sqlite_api.read_token)
    )
    err = assert_error(resp, 403, "forbidden")
    assert "scope read cannot send events" in err["message"]


def test_a_remembered_key_revoked_through_this_process_is_refused_at_once(
    sqlite_api: Api,
) -> None:
    sqlite_api.ok(page("u1", "/pricing"))
    row = remembered_key(sqlite_api.engine, sqlite_api.write_key)
    assert row is not None
    assert revoke_key(sqlite_api.engine, row.id)
    resp = sqlite_api.client.post(
        "/v1/batch", content=b"\xff not json", headers=basic(sqlite_api.write_key)
    )
    assert "not valid or was revoked" in assert_error(resp, 401, "unauthorized")["message"]
    assert sqlite_api.count(t.events) == 1


def test_a_remembered_token_reads_without_a_lookup(sqlite_api: Api) -> None:
    reads = _key_reads(sqlite_api.engine)
    for _ in range(3):
        assert sqlite_api.get("/api/leads").status_code == 200
    assert len(reads) == 1
    # an ingest key cannot read, remembered or not
    sqlite_api.ok(page("u1", "/pricing"))
    assert_error(sqlite_api.get("/api/leads", token=sqlite_api.write_key), 403, "forbidden")
