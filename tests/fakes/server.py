"""A WSGI app on a loopback port in a background thread, plus a per-operation fault script shared by fakes.

A fake builds a Flask app, wraps it in `FakeServer`, and runs each of its operations through
`FaultScript.run(operation, apply, error_response)`, so tests can script what the next call of an
operation does instead of succeeding normally:

    status(code)               answer `code`, apply nothing
    delay_then_apply(s)        sleep, then apply and answer normally (the client may have timed out)
    delay_without_apply(s)     sleep, then answer 504, apply nothing
    apply_then_status(code)    apply, then answer `code`
    apply_then_delay(s)        apply, then sleep before answering normally (created, then the answer timed out)
    status_then_apply_later(code, s)  answer `code` at once, apply `s` seconds later (a create landing late)
    hold(apply_first)          signal its arrival, block until released (at most 30 s), applying before or after
    drop_connection(apply_first)  close the socket without any HTTP response

Unlike werkzeug's own handler, the server keeps HTTP/1.1 connections alive and counts them, so tests and
benchmarks can see whether a client reuses its connections. `FakeServer.gate`, when set, is asked about each
request before its body is read, and may drop the connection unread (nothing applied, no answer).
"""
from __future__ import annotations

import collections
import io
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, NamedTuple, Optional

from flask import Response, copy_current_request_context, g, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

HOLD_LIMIT_SECONDS = 30.0
# Set in the WSGI environ by a view that wants its connection dropped instead of answered.
DROP_CONNECTION_KEY = "fakes.drop_connection"

ErrorResponse = Callable[[int, Any, Optional[dict]], Response]


def reason_phrase(code: int) -> str:
    """The standard reason phrase for an HTTP status code, or "Error"."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def json_error(code: int, body: Any = None, headers: Optional[dict] = None) -> Response:
    """A generic error response: `body` as given (str/bytes raw, anything else as JSON) or a small JSON object."""
    if body is None:
        body = {"status": code, "message": reason_phrase(code)}
    response = Response(body) if isinstance(body, (str, bytes)) else jsonify(body)
    response.status_code = code
    response.headers.update(headers or {})
    return response


@dataclass(frozen=True)
class Fault:
    """One scripted deviation from normal handling of an operation; build it with the factories below."""

    kind: str
    code: int = 0
    body: Any = None
    headers: Optional[dict] = None
    seconds: float = 0.0
    apply_first: bool = False

    def run(self, apply: Callable[[], Response], error_response: ErrorResponse) -> Response:
        """Handle one request under this fault; `apply` performs the operation and returns its normal response."""
        # The sleeps and the timer below are the fault itself (a store slower than the client's timeout, a create
        # landing late); tests synchronise on what the fake then records (FakePlatform.wait_until), never on them.
        if self.kind == "status":
            return error_response(self.code, self.body, self.headers)
        if self.kind == "delay_then_apply":
            time.sleep(self.seconds)
            return apply()
        if self.kind == "delay_without_apply":
            time.sleep(self.seconds)
            return error_response(504, None, None)
        if self.kind == "apply_then_status":
            apply()
            return error_response(self.code, self.body, self.headers)
        if self.kind == "apply_then_delay":
            response = apply()
            time.sleep(self.seconds)
            return response
        if self.kind == "status_then_apply_later":
            later = threading.Timer(self.seconds, copy_current_request_context(apply))
            later.daemon = True
            later.start()
            return error_response(self.code, self.body, self.headers)
        if self.kind == "drop_connection":
            if self.apply_first:
                apply()
            request.environ[DROP_CONNECTION_KEY] = True
            return Response(status=500)  # never sent: FakeServer drops the socket instead
        raise ValueError(f"unknown fault kind {self.kind!r}")


def status(code: int, body: Any = None, headers: Optional[dict] = None) -> Fault:
    """Answer `code` (with `body`/`headers`, or the fake's usual error body) without applying the operation."""
    return Fault("status", code=code, body=body, headers=headers)


def delay_then_apply(seconds: float) -> Fault:
    """Sleep, then apply and answer normally: "created, then the response timed out" for a short client timeout."""
    return Fault("delay_then_apply", seconds=seconds)


def delay_without_apply(seconds: float) -> Fault:
    """Sleep, then answer 504 without applying: "timed out without creating"."""
    return Fault("delay_without_apply", seconds=seconds)


def apply_then_status(code: int, body: Any = None, headers: Optional[dict] = None) -> Fault:
    """Apply the operation, then answer `code` instead of the normal response."""
    return Fault("apply_then_status", code=code, body=body, headers=headers)


def apply_then_delay(seconds: float) -> Fault:
    """Apply, then sleep before answering: "created, then the response timed out" for the client's read timeout."""
    return Fault("apply_then_delay", seconds=seconds)


def status_then_apply_later(code: int, seconds: float, body: Any = None, headers: Optional[dict] = None) -> Fault:
    """Answer `code` at once, then apply the operation `seconds` later in the background: a create landing late."""
    return Fault("status_then_apply_later", code=code, body=body, headers=headers, seconds=seconds)


@dataclass
class HeldCall:
    """A fault that signals when its call arrives, then holds the call until released.

    With `apply_first` the operation is applied before holding (the platform created the order, the answer
    is late); without, it is applied only once released (the create lands after the client gave up).
    """

    apply_first: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def run(self, apply: Callable[[], Response], error_response: ErrorResponse) -> Response:
        """Apply (if first), say the call arrived, wait for the release (at most 30 s), then answer."""
        response = apply() if self.apply_first else None
        self.arrived.set()
        self.release.wait(HOLD_LIMIT_SECONDS)
        return response if self.apply_first else apply()


def hold(apply_first: bool = False) -> HeldCall:
    """Signal the call's arrival, then block until released (at most 30 s), applying before or after blocking."""
    return HeldCall(apply_first=apply_first)


def drop_connection(apply_first: bool = False) -> Fault:
    """Close the connection without any HTTP response, optionally after applying the operation."""
    return Fault("drop_connection", apply_first=apply_first)


class FaultScript:
    """Per-operation FIFO queues of faults; each handled request of an operation consumes at most one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)

    def script(self, operation: str, *faults: Fault) -> None:
        """Queue faults for the next calls of `operation`, in order."""
        with self._lock:
            self._queues[operation].extend(faults)

    def pop(self, operation: str) -> Optional[Fault]:
        """Take the next fault for `operation`, or None when none is queued."""
        with self._lock:
            queue = self._queues.get(operation)
            return queue.popleft() if queue else None

    def pending(self, operation: Optional[str] = None) -> int:
        """How many faults are still queued (for one operation or all)."""
        with self._lock:
            if operation is not None:
                return len(self._queues.get(operation, ()))
            return sum(len(queue) for queue in self._queues.values())

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._queues.clear()

    def run(self, operation: str, apply: Callable[[], Response],
            error_response: ErrorResponse = json_error) -> Response:
        """Handle one request of `operation`: normally, or as the next scripted fault says."""
        fault = self.pop(operation)
        return apply() if fault is None else fault.run(apply, error_response)


class RequestRecord(NamedTuple):
    """One handled request; `status` is None when the connection was dropped."""

    method: str
    path: str
    query: str
    status: Optional[int]


class FakeServer:
    """Serves a WSGI app on 127.0.0.1 from a background thread; counts connections and logs requests."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.sleep = sleep  # how the latency is spent; a test may record it instead
        # Asked with each request's environ before its body is read; True drops the connection unread.
        self.gate: Optional[Callable[[dict], bool]] = None
        # Guards the log and counters; notified with each logged request, for wait_until().
        self._lock = threading.Condition(threading.RLock())
        self._log: list[RequestRecord] = []
        self._status_counts: collections.Counter = collections.Counter()
        self._connections_accepted = 0
        self._open_sockets: set[socket.socket] = set()
        self._server = None
        self._thread: Optional[threading.Thread] = None

    # lifecycle

    def start(self) -> "FakeServer":
        """Bind and start serving; returns self."""
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True, request_handler=_KeepAliveHandler)
        self._server.owner = self
        self.port = self._server.port
        # A short poll interval keeps stop() fast; the default 0.5 s adds up over per-test fixtures.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-server-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close idle keep-alive connections, and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Handler threads blocked reading an idle keep-alive connection would otherwise live on.
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            _shutdown_quietly(sock)
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (valid once started)."""
        return f"http://{self.host}:{self.port}"

    # observations

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        """How many requests reached the app."""
        with self._lock:
            return len(self._log)

    @property
    def status_counts(self) -> collections.Counter:
        """How many responses of each status were produced (None for dropped connections)."""
        with self._lock:
            return collections.Counter(self._status_counts)

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections were accepted (keep-alive reuse shows as fewer connections than requests)."""
        with self._lock:
            return self._connections_accepted

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds, checked again as each request is logged; False if `timeout` passes first."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    def clear_log(self) -> None:
        """Forget logged requests and counters (connections included)."""
        with self._lock:
            self._log.clear()
            self._status_counts.clear()
            self._connections_accepted = 0

    # internals

    def _wsgi(self, environ, start_response):
        if self.latency_ms:
            self.sleep(self.latency_ms / 1000)
        status_line: list[str] = []

        def recording_start_response(status, headers, exc_info=None):
            status_line[:] = [status]
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        dropped = environ.get(DROP_CONNECTION_KEY) or not status_line
        self._record(environ, None if dropped else int(status_line[0].split()[0]))
        return body

    def _record(self, environ, status: Optional[int]) -> None:
        record = RequestRecord(
            environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), status
        )
        with self._lock:
            self._log.append(record)
            self._status_counts[status] += 1
            self._lock.notify_all()

    def _connected(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections_accepted += 1
            self._open_sockets.add(sock)

    def _disconnected(self, sock: socket.socket) -> None:
        with self._lock:
            self._open_sockets.discard(sock)


class FakePlatform:
    """What every fake store shares: its server's lifecycle, its state lock, and what tests read back.

    A subclass sets `server` (a `FakeServer`), `_state` (a Condition over every piece of store state),
    `_create_count` and `_invalid` (its rejected requests).
    """

    server: FakeServer
    _state: threading.Condition
    _create_count: int
    _invalid: list

    def start(self):
        """Start serving; returns self."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return self.server.url

    @property
    def create_count(self) -> int:
        """Orders created through the create endpoint (seeded orders not included)."""
        with self._state:
            return self._create_count

    @property
    def invalid_requests(self) -> list:
        """Every request rejected as malformed, oldest first."""
        with self._state:
            return list(self._invalid)

    @property
    def requests(self) -> list[RequestRecord]:
        """The server's request log: (method, path, query, status) records."""
        return self.server.requests

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds after some state change (e.g. a delayed create landing), or time out."""
        with self._state:
            return self._state.wait_for(predicate, timeout)

    def _add_rate_headers(self, response: Response) -> Response:
        """The quota headers the guard computed for this request (none for scripted faults)."""
        response.headers.update(g.get("rate_headers", {}))
        return response


def serve_until_stopped(fake: FakePlatform) -> None:
    """Start `fake`, print its API base URL once ready, and serve until SIGTERM or Ctrl-C."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start()
    print(fake.api_base_url, flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


class _KeepAliveHandler(WSGIRequestHandler):
    """Werkzeug's handler, but with HTTP/1.1 keep-alive, connection counting, drops, and no per-request log line.

    Werkzeug answers every request with `Connection: close` and then drains the socket for 10 ms, which
    would swallow a fast client's next request on a kept-alive connection. Here each request body is read
    in full before the app runs and each response is buffered and sent with a Content-Length, so the
    connection stays usable and the fake can show whether a client reuses its connections.
    """

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; with Nagle's algorithm the second waits for a delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._connected(self.connection)

    def finish(self) -> None:
        self.server.owner._disconnected(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        gate = self.server.owner.gate
        if gate is not None and gate(environ):
            # Refused unread: nothing reaches the app, and the client gets no answer at all.
            self.server.owner._record(environ, None)
            self.close_connection = True
            return
        environ["wsgi.input"] = io.BytesIO(self._read_body(environ))
        started: list = []
        written: list[bytes] = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return written.append

        try:
            chunks = self.server.app(environ, start_response)
            try:
                body = b"".join(written) + b"".join(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        except Exception as exc:  # the app's own errors; Flask normally turns them into 500s itself
            self.server.log("error", "Error on request: %r", exc)
            started, body, self.close_connection = ["500 INTERNAL SERVER ERROR", []], b"Internal Server Error", True
        if environ.get(DROP_CONNECTION_KEY):
            # Write nothing: handle() then closes the socket and the client sees the connection end.
            self.close_connection = True
            return
        self._send(started[0], started[1], body)

    def _read_body(self, environ) -> bytes:
        """The whole request body, so nothing of it is left to be mistaken for the next request."""
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's DechunkedInput knows where it ends
            return environ["wsgi.input"].read()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: str, headers, body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if code >= 200 and code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        pass


def _shutdown_quietly(sock: socket.socket) -> None:
    """Shut a socket down in both directions, ignoring an already closed one."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
