"""A property-based fuzz of the whole HTTP API from its own OpenAPI schema (schemathesis),
against a real `leadscore serve` on SQLite: no 5xx, every error in the one error shape, every
answer with a documented status, content type and schema. Bounded by ``FUZZ_EXAMPLES`` cases
per operation (and per kind of case) so it runs in CI in about a minute; figures in
docs/hardening.md."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service_helpers import MODEL, Server, cli

#: cases per operation; LEADSCORE_FUZZ_EXAMPLES raises it for a longer run by hand
FUZZ_EXAMPLES = int(os.environ.get("LEADSCORE_FUZZ_EXAMPLES", "40"))

#: requests that fit the schema, and requests that break it on purpose
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

#: what the run saw, by operation and status (printed at the end with -s)
SEEN: Counter[tuple[str, int]] = Counter()


class Target:
    def __init__(self, server: Server, admin: str) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {admin}"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    db = f"sqlite:///{tmp / 'leadscore.db'}"
    model = tmp / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db, model, tmp / "server.log", "--request-timeout", "5").start()
    try:
        # an admin token may do everything, ingest included: every operation is reached
        admin = cli("keys", "create", "--name", "fuzz", "--scope", "admin", "--database-url", db)
        yield Target(server, admin.strip())
    finally:
        server.stop()
        print("\nfuzz cases by operation and status:")
        for (op, status), n in sorted(SEEN.items()):
            print(f"  {op:55} {status}  {n}")
        print(f"  total {sum(SEEN.values())}")


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx answers {"error": {"code", "message", "details"}}."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["details"], list), body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(target: Target, operation: Any, mode: GenerationMode) -> None:
    """``FUZZ_EXAMPLES`` generated requests to one operation, each checked."""

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(
            base_url=target.server.base,
            headers=target.headers,
            timeout=30,
            checks=CHECKS,
            additional_checks=[error_shape],
        )
        SEEN[(f"{case.method} {case.path} {mode.value}", response.status_code)] += 1

    try:
        fuzz()
    except Unsatisfiable:
        # nothing to break on purpose (no parameters, no body): only /health
        assert mode is GenerationMode.NEGATIVE and operation.path == "/health"


def test_the_api_answers_every_generated_request_as_documented(target: Target) -> None:
    api_schema = schemathesis.openapi.from_url(target.server.base + "/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13
    for operation, mode in itertools.product(operations, MODES):
        _fuzz(target, operation, mode)
    assert sum(SEEN.values()) >= 10 * FUZZ_EXAMPLES  # /health alone has one case to try


def test_the_fuzzed_server_logged_no_error(target: Target) -> None:
    """Runs after the fuzz (same module): nothing in the server's log is a bug."""
    log = Path(target.server.log).read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
