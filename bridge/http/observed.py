"""Around the WSGI app: each request's id, and the one log line and metrics each Bik request leaves."""
from __future__ import annotations

import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from werkzeug.wsgi import ClosingIterator

from bridge.ops import context

if TYPE_CHECKING:
    from bridge.ops.metrics import Metrics

log = logging.getLogger("bik_bridge.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Observed:
    """WSGI middleware: a request id for every request (Bik's X-Request-Id when sane), echoed in the answer;
    for each Bik endpoint, its metrics as it is answered, then, once the answer has left, the work the request
    left for that moment and its request line."""

    def __init__(self, app: Callable, platform: str, metrics: Optional["Metrics"] = None):
        self.app = app
        self.platform = platform
        self.metrics = metrics

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        served = context.begin(given if _REQUEST_ID.match(given) else secrets.token_hex(16))
        started = time.perf_counter()
        answered: list[Any] = []  # the status and seconds, once the app has answered

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            headers.append(("X-Request-Id", served.request_id))
            answered[:] = [int(status[:3]), time.perf_counter() - started]
            if served.endpoint and self.metrics is not None:
                self.metrics.request(served.endpoint, answered[0], answered[1], served)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            context.end()
            raise
        return ClosingIterator(body, lambda: self._done(served, answered))

    def _done(self, served: context.RequestContext, answered: list) -> None:
        # The server closes the answer once its last byte is sent (or it could not be): Bik waits for neither.
        try:
            for work in served.after_answer:
                work()
        finally:
            try:
                if served.endpoint and answered:
                    log.info("request", extra=self.summary(served, *answered))
            finally:
                context.end()

    def summary(self, served: context.RequestContext, status: int, seconds: float) -> dict:
        """The one line a Bik request leaves: what was asked, what the platform was asked, what came of it."""
        decision = served.decision
        line = {
            "request_id": served.request_id, "endpoint": served.endpoint, "status": status,
            "platform": self.platform, "draftOrderId": served.draft_order_id, "orderId": served.order_id,
            "outcome": decision or ("ok" if status < 400 else served.error_type or "error"),
            "upstream": served.upstream, "ms": round(seconds * 1000, 1),
        }
        if decision:
            line["idempotency"] = "replay" if decision == "replayed" else "fresh"
        return line
