"""The gevent worker's ground rules: what the master imports, and the read deadline of a connection."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from bridge.http.worker import DeadlineSocket


def test_the_master_imports_no_platform_client_before_the_workers_patch_them():
    """gevent makes urllib3's TLS cooperative only when urllib3 is first imported after the worker's patching."""
    code = ("import sys, bridge.ops.cli, bridge.http.worker; from bridge.http.server import BridgeServer, serve; "
            "print(sorted(m for m in ('urllib3', 'requests', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_head_still_arriving_at_the_deadline_is_answered_408_and_read_no_further(pair):
    server, client = pair
    clock = Clock()
    conn = DeadlineSocket(server, 10, clock)
    client.sendall(b"POST /getOrder HTTP/1.1\r\n")
    assert conn.recv(100) == b"POST /getOrder HTTP/1.1\r\n"

    clock.now = 10.5
    client.sendall(b"Host: x\r\n")

    assert conn.recv(100) == b""
    assert conn.recv(100) == b""
    assert client.recv(1000).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_body_still_arriving_at_the_deadline_times_out_for_the_app_to_answer(pair):
    server, client = pair
    clock = Clock()
    conn = DeadlineSocket(server, 10, clock)
    conn.reading_body = True
    clock.now = 10.5

    with pytest.raises(TimeoutError):
        conn.recv(100)


def test_between_requests_the_next_deadline_starts_with_the_next_byte(pair):
    server, client = pair
    clock = Clock()
    conn = DeadlineSocket(server, 10, clock)
    conn.request_done()
    clock.now = 60  # idle far beyond the read timeout: gunicorn's keep-alive timeout governs that wait
    client.sendall(b"GET /healthz HTTP/1.1\r\n")
    assert conn.recv(100) == b"GET /healthz HTTP/1.1\r\n"

    clock.now = 69
    client.sendall(b"Host: x\r\n\r\n")
    assert conn.recv(100) == b"Host: x\r\n\r\n"


def test_an_idle_kept_alive_connection_ends_once_its_worker_stops(pair):
    """Between requests a connection waits for the next one until the worker shuts down, not for the keep-alive."""
    server, client = pair
    stopping = []
    conn = DeadlineSocket(server, 10, Clock(), stopping=lambda: bool(stopping.append(1)) or len(stopping) > 1)
    conn.request_done()  # a request was answered: the connection waits for the next one

    assert conn.recv(1024) == b""  # the second slice saw the worker stopping
    assert len(stopping) == 2


def test_an_idle_kept_alive_connection_reads_the_next_request_while_its_worker_runs(pair):
    server, client = pair
    conn = DeadlineSocket(server, 10, Clock(), stopping=lambda: False)
    conn.request_done()
    client.sendall(b"GET /healthz HTTP/1.1\r\n")

    assert conn.recv(1024) == b"GET /healthz HTTP/1.1\r\n"
