"""A property-based fuzz of the whole HTTP API from its own OpenAPI schema (schemathesis),
against a real `leadscore serve` on SQLite: no 5xx, every error in the one error shape, every
answer with a documented status, content type and schema. Bounded by ``FUZZ_EXAMPLES`` cases
per operation (and per kind of case) so it runs in CI in about a minute; figures in
docs/hardening.md."""

from __future__ import annotations

import gzip
import itertools
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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

#: what failed, by operation
FAILURES: list[str] = []

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
    if case.path.startswith("/v1/"):  # ingest: code and message at the top too, for clients
        assert set(body) == {"error", "code", "message"}, body
        assert body["code"] == body["error"]["code"], body
    else:
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
    except Exception as e:  # every operation is fuzzed before the test fails
        FAILURES.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {e}")


def test_the_api_answers_every_generated_request_as_documented(target: Target) -> None:
    api_schema = schemathesis.openapi.from_url(target.server.base + "/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13
    for operation, mode in itertools.product(operations, MODES):
        _fuzz(target, operation, mode)
    assert not FAILURES, "\n\n".join(FAILURES)
    assert sum(SEEN.values()) >= 10 * FUZZ_EXAMPLES  # /health alone has one case to try


# ---------------------------------------------------------------------- hand cases
# what a schema cannot generate, sent to the same real server


def _post(target: Target, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        target.server.base + "/v1/batch",
        content=body,
        headers={"Content-Type": "application/json", **target.headers, **headers},
        timeout=60,
    )


def _error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


def test_hand_made_bodies_get_a_4xx_or_are_taken(target: Target) -> None:
    msg = b'{"type":"page","anonymousId":"a%d","messageId":"h%d"}'
    # invalid UTF-8
    _error(
        _post(target, b'{"batch": [{"type": "page", "userId": "\xc3\x28"}]}'), 400, "bad_encoding"
    )
    # a gzip bomb: 2 KB that inflates past the limit
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}", 9)
    assert len(bomb) < 10_000
    _error(_post(target, bomb, **{"Content-Encoding": "gzip"}), 413, "too_large")
    # depth 10,000, alone and next to a valid message
    deep = b'{"batch": [' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    _error(_post(target, deep + b"]}"), 400, "invalid_messages")
    resp = _post(target, deep + b", " + msg % (0, 0) + b"]}")
    assert resp.status_code == 200 and resp.json()["accepted"] == 1, resp.text
    # a batch of 10,000 messages (within 500 KB)
    small = b'{"type":"page","anonymousId":"a%d"}'  # the service makes the messageId up
    many = b'{"batch": [' + b",".join(small % i for i in range(10_000)) + b"]}"
    assert len(many) < 500 * 1024
    resp = _post(target, many)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 10_000 and resp.json()["rejected"] == []
    # a Content-Encoding that is not one, and one that is wrong for the body
    _error(_post(target, many, **{"Content-Encoding": "br"}), 415, "unsupported_encoding")
    _error(_post(target, many, **{"Content-Encoding": "gzip"}), 400, "bad_encoding")
    _error(
        _post(target, gzip.compress(many), **{"Content-Encoding": "deflate"}), 400, "bad_encoding"
    )


def test_the_fuzzed_server_logged_no_error(target: Target) -> None:
    """Runs after the fuzz (same module): nothing in the server's log is a bug."""
    log = Path(target.server.log).read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
