"""gunicorn's gevent worker with a read deadline, so clients that send slowly are cut off instead of waited for."""
from __future__ import annotations

import socket
import time
from typing import Callable, Optional

from gunicorn.workers.ggevent import GeventWorker

from bridge.http.server import write_json_error

# How often a connection idle between requests checks whether its worker is shutting down.
IDLE_SLICE_SECONDS = 0.5


class DeadlineSocket:
    """A client connection on which each request, head and body, must arrive within `seconds` of its first byte."""

    def __init__(self, sock, seconds: float, clock: Callable[[], float] = time.monotonic,
                 stopping: Callable[[], bool] = lambda: False):
        self._sock = sock
        self._seconds = seconds
        self._clock = clock
        self._stopping = stopping  # the worker is shutting down: an idle kept-alive connection ends
        # The first request counts from the accept: a connection that sends nothing is not kept either.
        self._deadline: Optional[float] = clock() + seconds
        self._received = False
        self.reading_body = False
        self.expired = False

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def recv(self, size: int) -> bytes:
        if self.expired:
            return b""  # the rest of a late request is never read; gunicorn closes the connection
        if self._deadline is None:
            # Between requests gunicorn's keep-alive timeout bounds the wait; the next deadline starts with a byte.
            # The wait is cut into slices so that a worker told to stop closes its idle connections at once,
            # instead of holding its shutdown for the keep-alive or the graceful timeout.
            self._sock.settimeout(IDLE_SLICE_SECONDS)
            while True:
                try:
                    data = self._sock.recv(size)
                    break
                except socket.timeout:
                    if self._stopping():
                        return b""
            if data:
                self._deadline, self._received = self._clock() + self._seconds, True
            return data
        try:
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self._sock.settimeout(remaining)
            data = self._sock.recv(size)
        except socket.timeout:
            return self._expire()
        self._received = self._received or bool(data)
        return data

    def sendall(self, data) -> None:
        # A client that stops reading its answer is dropped after the same time.
        self._sock.settimeout(self._seconds)
        self._sock.sendall(data)

    def request_done(self) -> None:
        """The app has answered: the wait for the next request on this connection has no deadline of its own."""
        self.reading_body = False
        if not self.expired:
            self._deadline, self._received = None, False

    def _expire(self) -> bytes:
        self.expired = True
        message = f"request not received within {self._seconds:g} s"
        if self.reading_body:
            # The app is reading the body: it answers 408 itself (bridge/http/app.py), then gunicorn closes.
            raise socket.timeout(message)
        if self._received:
            # A head cut short: answered here, as gunicorn answers a malformed one. An idle connection just closes.
            try:
                write_json_error(self._sock, 408, "Request Timeout", message)
            except OSError:
                pass  # the client's receive buffer is full or gone: closing is all that is left
        return b""


class BridgeWorker(GeventWorker):
    """One greenlet per connection (`server.worker_connections` at most), each request read within a deadline."""

    # Replaced after the fork with `server.read_timeout_seconds` (bridge/http/server.py).
    read_timeout: float = 10.0

    def handle(self, listener, client, addr) -> None:
        super().handle(listener, DeadlineSocket(client, self.read_timeout, stopping=lambda: not self.alive), addr)

    def handle_request(self, listener_name, req, sock, addr):
        sock.reading_body = True
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.request_done()
