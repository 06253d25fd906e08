"""The real server against its own OpenAPI document: schemathesis generates the requests and checks the answers.

schemathesis' pytest loader for a schema held by a fixture (`schemathesis.pytest.from_fixture`) reaches into
pytest's private `Function._nodeid`, gone in the pytest this project runs; so each operation's cases are drawn
from schemathesis' own strategy (`APIOperation.as_strategy`) under a plain hypothesis `@given`, and checked
with schemathesis' checks by `Case.call_and_validate`, against the running server.
"""
from __future__ import annotations

import json
import socket

import pytest
import schemathesis
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.bridge_process import BridgeProcess

from .conftest import AUTH, TOKEN, fuzz_settings

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# The probes take no input, so there is nothing to get wrong in them.
CASES = [
    ("POST", "/placeOrder", POSITIVE), ("POST", "/placeOrder", NEGATIVE),
    ("POST", "/getOrder", POSITIVE), ("POST", "/getOrder", NEGATIVE),
    ("GET", "/healthz", POSITIVE), ("GET", "/readyz", POSITIVE), ("GET", "/metrics", POSITIVE),
    ("GET", "/openapi.json", POSITIVE),
]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """`bik-bridge serve` on the local platform with bearer auth, SQLite under a temporary folder."""
    folder = tmp_path_factory.mktemp("schemathesis")
    config = {
        "platform": "local",
        "server": {"workers": 1},
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "sqlite", "sqlite_path": str(folder / "idempotency.db"), "wait_seconds": 0},
        "local": {"db_path": str(folder / "local.db")},
        "logging": {"format": "json"},
    }
    with BridgeProcess(config, folder, name="schemathesis") as process:
        yield process


@pytest.fixture(scope="module")
def bridge_schema(bridge):
    """The document the bridge serves, loaded as any client would load it."""
    config = schemathesis.Config()
    config.projects.default.update(base_url=f"http://127.0.0.1:{bridge.port}", headers=dict(AUTH))
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{bridge.port}/openapi.json", config=config)


def test_every_served_operation_is_fuzzed_here(bridge_schema):
    """A new endpoint in the document gets a line in CASES, or this fails."""
    served = {(method.upper(), path) for path, item in bridge_schema.raw_schema["paths"].items() for method in item}
    assert served == {(method, path) for method, path, _ in CASES}


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda v: getattr(v, "value", v))
def test_bridge_conforms_to_its_openapi_document(bridge, bridge_schema, method, path, mode):
    """Cases valid or not for the schema: no 5xx; status, content type, headers and body as documented."""
    operation = bridge_schema[path][method]

    @fuzz_settings(60)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(session=bridge.session, headers=AUTH, checks=CHECKS, timeout=10)

    run()


def exchange(port: int, raw: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes as one HTTP request; the status line with headers, and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_malformed_chunked_body_is_a_json_400(bridge):
    """Was 500: gunicorn's reader raised its own parse error inside the app's body read."""
    head, body = exchange(bridge.port, (
        "POST /getOrder HTTP/1.1\r\nHost: bridge\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ).encode())
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "request body could not be read"}
