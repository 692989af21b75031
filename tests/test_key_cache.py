"""Valid keys are remembered in the process for at most a second (``POLL_S``): a key revoked
elsewhere (another process, ``leadscore keys revoke``) is refused once that second has passed,
a secret that matches no key is never accepted nor remembered, and the memory is bounded."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from leadscore.service.auth import KeyCache, create_key, find_key, revoke_key
from leadscore.service.common import POLL_S
from leadscore.store import open_engine
from leadscore.store import schema as t


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engines(service_db_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database: two processes' views of it."""
    a, b = open_engine(service_db_url), open_engine(service_db_url)
    try:
        yield a, b
    finally:
        a.dispose()
        b.dispose()


def _revoke_elsewhere(engine: Engine, key_id: int) -> None:
    # as another process does it: straight in the database, this process's memory untouched
    with engine.begin() as conn:
        conn.execute(sa.update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at_us=1))


def _reads(engine: Engine) -> list[str]:
    """The reads of the keys table made through ``engine`` from now on."""
    seen: list[str] = []

    def record(_conn: object, _cur: object, sql: str, *_: object) -> None:
        if "FROM api_keys" in sql:
            seen.append(sql)

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen


def test_a_key_revoked_elsewhere_is_refused_once_the_second_has_passed(
    engines: tuple[Engine, Engine],
) -> None:
    here, elsewhere = engines
    clock = Clock()
    cache = KeyCache(clock=clock)
    key_id, secret = create_key(elsewhere, "site", "ingest")
    reads = _reads(here)
    row = find_key(here, secret, cache)
    assert row is not None and row.id == key_id and row.scope == "ingest"
    assert len(reads) == 1
    # within the second the key is answered from memory: no database read
    clock.t += POLL_S / 2
    assert find_key(here, secret, cache).id == key_id
    assert len(reads) == 1
    _revoke_elsewhere(elsewhere, key_id)
    clock.t += POLL_S / 2  # a second after the read that found it
    assert find_key(here, secret, cache) is None
    assert len(reads) == 2 and len(cache) == 0
    # and it stays refused
    clock.t += 10 * POLL_S
    assert find_key(here, secret, cache) is None


def test_a_valid_key_is_read_again_each_second(engines: tuple[Engine, Engine]) -> None:
    here, _ = engines
    clock = Clock()
    cache = KeyCache(clock=clock)
    _, secret = create_key(here, "site", "ingest")
    reads = _reads(here)
    for _ in range(5):
        assert find_key(here, secret, cache) is not None
        clock.t += POLL_S * 0.999
        assert find_key(here, secret, cache) is not None
        clock.t += POLL_S * 0.002
    assert len(reads) == 5


def test_revoking_through_this_process_forgets_the_key_at_once(
    engines: tuple[Engine, Engine],
) -> None:
    here, other = engines
    key_id, secret = create_key(here, "site", "ingest")
    assert find_key(here, secret) is not None  # the engine's own cache now holds it
    assert find_key(other, secret) is not None
    assert revoke_key(other, key_id)  # through another engine of this process
    assert find_key(here, secret) is None
    assert find_key(other, secret) is None


def test_a_bad_secret_is_never_accepted_nor_remembered(engines: tuple[Engine, Engine]) -> None:
    here, _ = engines
    clock = Clock()
    cache = KeyCache(clock=clock, size=8)
    _, secret = create_key(here, "site", "ingest")
    assert find_key(here, secret, cache) is not None
    bad = [
        secret[:-1],
        secret + "x",
        secret.upper(),
        " " + secret,
        "lsw_" + secrets.token_urlsafe(32),
        "\ud800",
        "",
    ]
    bad += ["lsw_" + secrets.token_urlsafe(8) for _ in range(200)]
    for attempt in range(2):
        for s in bad:
            assert find_key(here, s, cache) is None, (attempt, s)
        clock.t += POLL_S / 4
    assert find_key(here, None, cache) is None
    assert find_key(here, 12345, cache) is None
    assert find_key(here, {"key": secret}, cache) is None
    # only the valid key was ever remembered
    assert len(cache) == 1
    # a remembered row is only ever given for its own secret's hash
    assert find_key(here, secret, cache) is not None


def test_the_cache_is_bounded(engines: tuple[Engine, Engine]) -> None:
    here, _ = engines
    clock = Clock()
    cache = KeyCache(clock=clock, size=3)
    keys = [create_key(here, f"site {i}", "ingest") for i in range(6)]
    for _ in range(2):
        for key_id, secret in keys:
            assert find_key(here, secret, cache).id == key_id
            assert len(cache) <= 3
    for _ in range(500):
        find_key(here, "lsw_" + secrets.token_urlsafe(16), cache)
    assert len(cache) == 3
    # the most recently used are the ones kept
    reads = _reads(here)
    for key_id, secret in keys[-3:]:
        assert find_key(here, secret, cache).id == key_id
    assert reads == []


def test_the_process_default_cache_is_bounded() -> None:
    assert 0 < KeyCache().size <= 10_000
    assert KeyCache().ttl == POLL_S


def test_a_key_revoked_while_it_was_being_read_is_not_remembered(pg_url: str) -> None:
    """A request reads its key; before it remembers the row, this process revokes the key:
    the row read before the revoke is not remembered, so the key is refused at once."""
    here, other = open_engine(pg_url), open_engine(pg_url)
    try:
        key_id, secret = create_key(here, "site", "ingest")
        revoked: list[bool] = []

        def revoke_meanwhile(_conn: object, _cur: object, sql: str, *_: object) -> None:
            if "FROM api_keys" in sql and not revoked:
                revoked.append(revoke_key(other, key_id))  # another request of this process

        sa.event.listen(here, "after_cursor_execute", revoke_meanwhile)
        assert find_key(here, secret) is not None  # it was valid when read
        assert revoked == [True]
        assert find_key(here, secret) is None  # the engine's own cache
    finally:
        here.dispose()
        other.dispose()
