"""Schemathesis against paysaga's own OpenAPI document: generated requests for every
operation, without a token, as a user and as an admin. No answer is a 5xx, and every answer
matches the schema (status codes documented, bodies of the documented shape). Every answer
the document lists has a schema, so the body check has something to check against.

The API runs as its own process (`paysaga api`, as deployed) against the session's
PostgreSQL and Temporal server; no worker, so nothing generated here is ever confirmed.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from temporalio.testing import WorkflowEnvironment

from api.auth import make_token
from paysaga.devstack import free_port, start_process, stop_process, wait_http
from tests.support.signing import SECRETS

EXAMPLES = 15  # per operation and caller: bounded, so `make test` stays within its minutes


@pytest.fixture(scope="module")
def live_api(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ) | {
        "PAYSAGA_DATABASE_URL": database_url,
        "PAYSAGA_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "PAYSAGA_TASK_QUEUE": f"schemathesis-{uuid.uuid4()}",
        "PAYSAGA_API_PORT": str(port),
        "PAYSAGA_JWT_SECRET": SECRETS["jwt"],
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRETS["razorpay"],
        "PAYSAGA_STRIPE_WEBHOOK_SECRETS": SECRETS["stripe"],
        "PAYSAGA_STANDARD_WEBHOOK_SECRETS": SECRETS["standard"],
    }
    log = Path(tmp_path_factory.mktemp("api")) / "api.log"
    proc = start_process([sys.executable, "-m", "paysaga.cli", "api"], env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=60, children={"api": proc})
        yield url
    finally:
        stop_process(proc)


CALLERS = {
    "anonymous": {},
    "user": {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'fuzz-user')}"},
    "admin": {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'fuzz-admin', admin=True)}"},
}


def test_no_5xx_and_answers_match_the_schema(live_api: str) -> None:
    """Each operation's strategy driven by Hypothesis directly (schemathesis' lazy pytest
    loader does not run on this pytest); every generated request is sent as each caller."""
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case[Any]) -> None:
            nonlocal sent
            for headers in CALLERS.values():
                # Not checked: that every schema-valid body is accepted (a quantity of 2.0 is a
                # JSON Schema integer; we refuse it, 422, as we refuse floats for money).
                case.call_and_validate(
                    base_url=live_api,
                    headers=headers,
                    excluded_checks=[schemathesis.checks.positive_data_acceptance],
                )
                sent += 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation tried, all reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:1500]
    assert operations >= 10
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    print(f"schemathesis: {operations} operations, {sent} requests, none a 5xx or off-schema")


def test_every_answer_has_a_schema(live_api: str) -> None:
    """Every status of every operation names a media type and a schema for it: a route
    without a response model, or an error without `ErrorBody`, fails here."""
    document = httpx.get(f"{live_api}/openapi.json", timeout=10).json()
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                content = answer.get("content") or {}
                if not content or not all(media.get("schema") for media in content.values()):
                    missing.append(f"{method.upper()} {path} {status}")
    assert missing == []
    assert len(document["paths"]) >= 10
    ticket = document["paths"]["/api/v1/orders/{order_id}/ticket"]["get"]["responses"]["200"]
    assert list(ticket["content"]) == ["application/pdf"]  # the PDF, not JSON


def test_a_body_off_the_schema_fails_the_check(live_api: str) -> None:
    """The body check is real: a forged answer of the right status and media type but the
    wrong shape fails `response_schema_conformance`, where the true answer passes."""
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    check = [schemathesis.checks.response_schema_conformance]
    health = schema["/api/v1/healthz"]["GET"].Case()
    health.validate_response(health.call(base_url=live_api), checks=check)

    order_id = str(uuid.uuid4())
    get_order = schema["/api/v1/orders/{order_id}"]["GET"].Case(
        path_parameters={"order_id": order_id}
    )
    forged: list[tuple[schemathesis.Case[Any], str, list[dict[str, Any]]]] = [
        (health, "/api/v1/healthz", [{"status": "fine"}, {}]),
        (
            get_order,
            f"/api/v1/orders/{order_id}",
            [{"id": order_id, "status": "paid"}, {"detail": "an error body, not an order"}],
        ),
    ]
    for case, path, bodies in forged:
        for body in bodies:
            request = httpx.Request("GET", f"{live_api}{path}")
            answer = httpx.Response(200, json=body, request=request)
            answer.elapsed = timedelta(0)  # as if it had been read off the wire
            with pytest.raises((AssertionError, BaseExceptionGroup)):
                case.validate_response(answer, checks=check)


def _raw(live_api: str, request: bytes) -> bytes:
    host, port = live_api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(request)
        except OSError:  # the server may answer and close before the rest is sent
            pass
        return sock.recv(65536)


def test_a_lying_content_length_is_refused_without_reading_the_lie(live_api: str) -> None:
    """Over a real socket (in-process transports cannot lie about lengths)."""
    head = (
        "POST /api/v1/webhooks/razorpay HTTP/1.1\r\nhost: x\r\n"
        "content-type: application/json\r\ncontent-length: {n}\r\n\r\n"
    )
    # Declares more than the cap: 413 before one byte of the body is read.
    answer = _raw(live_api, head.format(n=300_000).encode() + b"{}")
    assert answer.startswith(b"HTTP/1.1 413")
    # Declares 20 bytes and sends a megabyte: the 20 are the body and the rest is not a
    # request. The server answers the body (401: no signature) or, having parsed ahead,
    # the garbage (400); either way a 4xx and the connection closed, never a 1 MB body.
    answer = _raw(live_api, head.format(n=20).encode() + b"{" * 1_000_000)
    assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400"))
