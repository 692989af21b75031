"""What an ingest request costs outside its statements, on PostgreSQL: one pool check-out (the
write transaction's) and no read of the keys once the key is remembered; a key revoked by
another process is refused by the API once the second has passed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service.auth import key_cache
from leadscore.service.common import POLL_S
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import Api, api_on, basic, page


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[Api]:
    with api_on(pg_url) as a:
        yield a


def _batch(n: int) -> list[dict[str, Any]]:
    return [
        dict(page(f"u{(n * 7 + i) % 40}", "/pricing"), messageId=str(uuid.uuid4()))
        for i in range(20)
    ]


def test_an_ingest_request_checks_out_one_connection_and_reads_no_key(pg_api: Api) -> None:
    clock = Clock()
    key_cache(pg_api.engine).clock = clock
    # per check-out, the statements run through SQLAlchemy on it (the write transaction runs
    # its statements on the driver's cursor)
    checkouts: list[list[str]] = []
    sa.event.listen(pg_api.engine, "checkout", lambda *a: checkouts.append([]))
    sa.event.listen(
        pg_api.engine, "before_cursor_execute", lambda *a: checkouts[-1].append(str(a[2]))
    )
    pg_api.ok(*_batch(0))  # reads the key (and the model) once
    assert any("FROM api_keys" in s for c in checkouts for s in c)
    checkouts.clear()
    for n in range(1, 11):
        pg_api.ok(*_batch(n))
    # one check-out per request, for its write; at most a read of the active versions besides
    # (once a second, on a slow machine)
    assert not [s for c in checkouts for s in c if "api_keys" in s]
    writes = [c for c in checkouts if not c]
    polls = [c for c in checkouts if c]
    assert len(writes) == 10
    assert all("models" in s or "routing_versions" in s for c in polls for s in c), polls
    assert pg_api.count(t.events) == 11 * 20
    # once the second has passed the key is read again, on a check-out of its own
    clock.t += POLL_S
    checkouts.clear()
    pg_api.ok(*_batch(11))
    assert len([c for c in checkouts if any("FROM api_keys" in s for s in c)]) == 1
    assert len([c for c in checkouts if not c]) == 1


def test_a_key_revoked_by_another_process_is_refused_once_the_second_has_passed(
    pg_api: Api,
) -> None:
    clock = Clock()
    key_cache(pg_api.engine).clock = clock
    key = basic(pg_api.write_key)
    assert pg_api.send(*_batch(0), key=pg_api.write_key).status_code == 200
    other = open_engine(pg_api.url)  # another process's engine, its own memory
    try:
        with other.begin() as conn:
            conn.execute(
                sa.update(t.api_keys).where(t.api_keys.c.scope == "ingest").values(revoked_at_us=1)
            )
    finally:
        other.dispose()
    clock.t += POLL_S
    resp = pg_api.client.post("/v1/batch", json={"batch": _batch(1)}, headers=key)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthorized"
    assert pg_api.count(t.events) == 20
