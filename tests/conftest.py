"""Shared fixtures: real databases, the shared data sets, the example models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _plan_cache_of_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`leadscore score --quiet` keeps compiled queries in the user's cache directory
    (leadscore.sql.cache): the tests, and the commands they start, use one of their own."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL server for the whole run: LEADSCORE_TEST_POSTGRES_URL, or one we start."""
    url = os.environ.get("LEADSCORE_TEST_POSTGRES_URL")
    if url:
        yield _External(url)
        return
    from leadscore.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


class _External:
    def __init__(self, url: str) -> None:
        self._url = url

    def url(self, database: str = "postgres") -> str:
        base, _, _ = self._url.rpartition("/")
        return f"{base}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)


@pytest.fixture
def pg_url(postgres_server: object) -> str:
    """The URL of a new, empty PostgreSQL database on the test server."""
    return postgres_server.create_database()  # type: ignore[attr-defined]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data sets are not beside the project ({SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(params=["sqlite", "postgresql"])
def service_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The live service's database, once on a SQLite file and once on a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leadscore.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def api(service_db_url: str) -> Iterator[object]:
    """The real service app on ``service_db_url`` with the test model active and real keys."""
    from tests.service_helpers import api_on

    with api_on(service_db_url) as a:
        yield a
