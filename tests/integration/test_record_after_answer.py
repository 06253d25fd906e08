"""On the defaults, a placed order's record is written once its answer has left, even for a client that never reads."""
from __future__ import annotations

import json
import socket
import sqlite3

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def record_state(path: str, draft: str):
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT state FROM idempotency_records WHERE key = ?", (draft,)).fetchone()
    return row[0] if row else None


def test_a_client_that_never_reads_its_answer_does_not_hold_the_record_back(start_bridge, tmp_path, place_body):
    """The answer (a few KB) goes into the socket's send buffer at once; the record follows it."""
    records = str(tmp_path / "idem.db")
    bridge = start_bridge({"local": {"db_path": str(tmp_path / "orders.db")}, "idempotency": {"sqlite_path": records}})
    body = json.dumps(place_body).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # a reader that takes nothing in
        sock.connect(("127.0.0.1", bridge.port))
        sock.sendall(b"POST /placeOrder HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        assert wait_until(lambda: record_state(records, place_body["draftOrderId"]) == "done",
                          "the record to be done while its answer is still unread", timeout=10)
