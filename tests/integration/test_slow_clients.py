"""Slow clients cannot stall the server: 200 connections dribbling their requests, and Bik is still answered."""
from __future__ import annotations

import http.client
import json
import selectors
import socket
import threading
import time

import pytest

from tests.integration.conftest import TOKEN, bigcommerce_config

pytestmark = [pytest.mark.integration, pytest.mark.redis]

SLOW_CONNECTIONS = 200
# Short so the test sees the slow connections closed within seconds; the default is 10 s. It still leaves the
# probes far more time than they need, so they run while every slow connection is held open.
READ_TIMEOUT = 4.0
PROBE_TIMEOUT = 5.0  # a stalled server fails the probes; a slow machine does not


class SlowClients:
    """Connections that send a request a byte at a time: half still in the head, half in a large body."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self.answers: dict[socket.socket, bytes] = {}
        self.closed: set[socket.socket] = set()
        self._stop = threading.Event()
        self._dribbler = threading.Thread(target=self._dribble, daemon=True)

    def open(self) -> None:
        for i in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if i % 2:
                sock.sendall(b"POST /placeOrder HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
            else:
                sock.sendall(b"POST /placeOrder HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 500000\r\n\r\n{")
            sock.setblocking(False)
            self.sockets.append(sock)
            self.answers[sock] = b""
        self._dribbler.start()

    def _dribble(self) -> None:
        # One byte per connection every quarter second: never a whole request, never silent for long.
        while not self._stop.wait(0.25):
            for sock in self.sockets:
                try:
                    sock.send(b"a")
                except OSError:
                    pass  # closed by the server; the reader notices

    def wait_closed(self, timeout: float) -> None:
        """Read every connection until the server closes it, or until `timeout`."""
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            selector.register(sock, selectors.EVENT_READ)
        end = time.monotonic() + timeout
        while len(self.closed) < len(self.sockets) and time.monotonic() < end:
            for key, _ in selector.select(timeout=max(0.0, end - time.monotonic())):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # reset: closed as well
                if data:
                    self.answers[sock] += data
                else:
                    self.closed.add(sock)
                    selector.unregister(sock)
        selector.close()

    def close(self) -> None:
        self._stop.set()
        self._dribbler.join(timeout=5)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def slow_bridge(start_bridge, fake_bc, redis_url):
    """The server on its defaults but for a short read timeout, against the fake BigCommerce."""
    config = bigcommerce_config(fake_bc, redis_url)
    config["server"] = {"read_timeout_seconds": READ_TIMEOUT}
    return start_bridge(config)


def test_slow_clients_neither_stall_bik_nor_stay_connected(slow_bridge, place_body):
    slow = SlowClients(slow_bridge.port, SLOW_CONNECTIONS)
    slow.open()
    try:
        # Bik's calls while every slow connection is open and dribbling.
        assert slow_bridge.session.get(f"{slow_bridge.url}/healthz", timeout=PROBE_TIMEOUT).status_code == 200
        placed = slow_bridge.post("placeOrder", place_body, timeout=PROBE_TIMEOUT)
        assert placed.status_code == 200, placed.text
        order_id = placed.json()["order"]["id"]
        got = slow_bridge.post("getOrder", {"orderId": order_id}, timeout=PROBE_TIMEOUT)
        assert got.status_code == 200, got.text
        assert got.json()["order"]["id"] == order_id

        slow.wait_closed(timeout=READ_TIMEOUT + 10)
    finally:
        slow.close()

    assert len(slow.closed) == SLOW_CONNECTIONS, f"{SLOW_CONNECTIONS - len(slow.closed)} slow connections still open"
    # Whatever the server could still write before closing is a 408 in JSON.
    answered = [data for data in slow.answers.values() if data]
    assert answered, "no slow connection was told why it was closed"
    for data in answered:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), data[:200]
        assert "error" in json.loads(body)


def test_a_kept_alive_connection_outlives_the_read_timeout_between_requests(slow_bridge, place_body):
    """The read deadline starts with a request's first byte, so Bik's idle keep-alive connections stay usable."""
    connection = http.client.HTTPConnection("127.0.0.1", slow_bridge.port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read()
        first = connection.sock

        idle = threading.Event()
        idle.wait(READ_TIMEOUT + 1)  # idle for longer than a request may take to arrive

        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        assert answer.status == 200
        assert connection.sock is first, "the server closed an idle keep-alive connection after the read timeout"
    finally:
        connection.close()
