"""HTTP that gunicorn rejects before the app sees it still gets a JSON error."""
from __future__ import annotations

import json
import socket

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def local_bridge(start_bridge, tmp_path):
    return start_bridge({"platform": "local", "server": {"workers": 1},
                         "local": {"db_path": str(tmp_path / "orders.db")},
                         "idempotency": {"sqlite_path": str(tmp_path / "idem.db")}})


def raw_exchange(port: int, raw: bytes) -> tuple[str, dict, bytes]:
    """Send bytes as they are; return the status line, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /placeOrder HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz?\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /placeOrder HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
])
def test_unparseable_http_is_answered_with_a_json_400(local_bridge, raw):
    status, headers, body = raw_exchange(local_bridge.port, raw)

    assert status.startswith("HTTP/1.1 400")
    assert headers["content-type"] == "application/json"
    assert "error" in json.loads(body)
