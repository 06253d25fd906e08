"""The fake BigCommerce as its own process for the benchmark, with a small admin port to read its counters.

`python -m bench.platform --latency-ms 50` prints `{"api": URL, "admin": URL}` once ready. The admin port answers
GET /stats (requests per operation, connections accepted, orders created, requests sent per quota window),
GET /count (orders created so far) and
GET /service-ms?op=create (the fake's own time per request, injected latency included), and takes
POST /reset, POST /quota {"requests", "window_ms"} and POST /ship {"order_id"}.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from flask import Response, request

from tests.fakes.bigcommerce import FakeBigCommerce

_SUB_RESOURCE = re.compile(r"/orders/\d+/(products|shipments|shipping_addresses)$")


def operation_of(method: str, path: str) -> str:
    """The fake's operation name for a request line."""
    match = _SUB_RESOURCE.search(path)
    if match:
        return match.group(1)
    if path.endswith("/orders"):
        return "create" if method == "POST" else "list_orders"
    return "get_order" if re.search(r"/orders/[^/]+$", path) else "other"


class CountingBigCommerce(FakeBigCommerce):
    """The fake, counting every request that reached each quota window, and finding drafts by an index.

    The fake's GET /orders scans every order under its lock, so with the tens of thousands a run creates it
    would become the bottleneck of a lookup by draft id; BigCommerce's own answers do not slow down that way.
    """

    def __init__(self, **kwargs) -> None:
        self.windows: dict[float, list[int]] = {}  # window start -> [sent, accepted]
        self.connections_before_reset = 0
        super().__init__(**kwargs)

    def _reset_state(self) -> None:
        with self._state:
            self._by_draft: dict[str, list[int]] = collections.defaultdict(list)
            super()._reset_state()

    def _build_order(self, body: dict, stored_body: Optional[dict]):
        order = super()._build_order(body, stored_body)  # the caller holds the state lock and stores it next
        if order.header.get("external_order_id"):
            self._by_draft[order.header["external_order_id"]].append(order.id)
        return order

    def _list_orders(self, store_hash: str) -> Response:
        if set(request.args) != {"external_order_id"}:
            return super()._list_orders(store_hash)

        def apply() -> Response:
            with self._state:
                ids = sorted(self._by_draft.get(request.args["external_order_id"], ()))
                found = [copy.deepcopy(self._orders[i].header) for i in ids if i in self._orders]
            return Response(json.dumps(found), mimetype="application/json") if found else Response(status=204)
        return self._serve("list_orders", apply)

    def _take_quota(self) -> tuple[bool, dict]:
        allowed, headers = super()._take_quota()
        with self._state:
            counts = self.windows.setdefault(self._window_start, [0, 0])
            counts[0] += 1
            counts[1] += int(allowed)
        return allowed, headers


class Timings:
    """The fake's own service time per operation: from the request reaching the app to the answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms: dict[str, list[float]] = collections.defaultdict(list)

    def wrap(self, wsgi):
        def timed(environ, start_response):
            started = time.perf_counter()
            body = wsgi(environ, start_response)
            ms = (time.perf_counter() - started) * 1000
            with self._lock:
                self._ms[operation_of(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))].append(ms)
            return body
        return timed

    def of(self, operation: str) -> list[float]:
        with self._lock:
            return list(self._ms.get(operation, ()))

    def clear(self) -> None:
        with self._lock:
            self._ms.clear()


def stats(fake: CountingBigCommerce) -> dict:
    """Every counter the benchmark reads."""
    by_operation = collections.Counter(operation_of(r.method, r.path) for r in fake.requests)
    with fake._state:
        windows = [{"sent": sent, "accepted": accepted} for _, (sent, accepted) in sorted(fake.windows.items())]
    with fake._state:
        ids = list(fake._orders)
    return {
        "order_ids": [min(ids), max(ids)] if ids else [],
        "requests": sum(by_operation.values()), "by_operation": dict(by_operation),
        "connections_accepted": fake.connections_accepted, "create_count": fake.create_count,
        "connections_total": fake.connections_before_reset + fake.connections_accepted,
        "over_quota_attempts": fake.over_quota_attempts, "windows": windows,
        "invalid_requests": len(fake.invalid_requests),
    }


def admin_handler(fake: CountingBigCommerce, timings: Timings):
    class Admin(BaseHTTPRequestHandler):
        def _answer(self, data, status: int = 200) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/stats":
                return self._answer(stats(fake))
            if path == "/count":
                return self._answer({"create_count": fake.create_count, "requests": fake.server.request_count})
            if path == "/service-ms":
                return self._answer(timings.of(query.partition("op=")[2] or "create"))
            return self._answer({"error": "unknown"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/reset":
                fake.connections_before_reset += fake.connections_accepted
                fake.server.clear_log()
                fake.faults.clear()
                timings.clear()
                with fake._state:
                    fake.windows.clear()
                    fake._over_quota_attempts = 0
                return self._answer({"ok": True})
            if self.path == "/quota":
                fake.set_quota(int(body["requests"]), int(body.get("window_ms", 30_000)))
                return self._answer({"ok": True})
            if self.path == "/ship":
                order_id = int(body["order_id"])
                fake.add_shipment(order_id, tracking_link=f"https://track.example/{order_id}")
                fake.set_status(order_id, 2)
                return self._answer({"ok": True})
            return self._answer({"error": "unknown"}, 404)

        def log_message(self, *args) -> None:
            pass

    return Admin


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--admin-port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    timings = Timings()
    fake = CountingBigCommerce(latency_ms=args.latency_ms, port=args.port)
    # The timer wraps the whole WSGI call, so the injected latency is part of the fake's service time.
    fake.server._wsgi = timings.wrap(fake.server._wsgi)
    fake.start()
    admin = ThreadingHTTPServer(("127.0.0.1", args.admin_port), admin_handler(fake, timings))
    admin.daemon_threads = True
    threading.Thread(target=admin.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(json.dumps({"api": fake.api_base_url, "admin": f"http://127.0.0.1:{admin.server_address[1]}",
                      "store_hash": fake.store_hash, "token": fake.access_token}), flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        admin.shutdown()
        fake.stop()


if __name__ == "__main__":
    main()
