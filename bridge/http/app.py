"""The Flask app factory: thin views (auth, parse, service, JSON) and one error renderer."""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Optional

from flask import Flask, Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bridge.config import ENDPOINTS, Config
from bridge.core.errors import (
    BadRequest,
    BridgeError,
    CurrencyMismatch,
    MethodNotAllowed,
    OrderNotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.core.models import GetOrderRequest, PlaceOrderRequest
from bridge.core.service import OrderService
from bridge.http.auth import Authenticator
from bridge.http.openapi import build_openapi
from bridge.ops import context

if TYPE_CHECKING:  # prometheus-client is imported by the worker that builds the metrics, after the fork
    from bridge.ops.metrics import Metrics

log = logging.getLogger("bik_bridge.http")
EXTENSION = "bik_bridge"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_response(body: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Response(data, status=status, headers=headers, mimetype="application/json")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class _Repeated(dict):
    """A JSON object in which some key came more than once; `repeated` names those keys."""

    __slots__ = ("repeated",)


def parse_json(raw: bytes) -> Any:
    """The document, or BadRequest naming the path of every key repeated within one object, at any depth."""
    repeated: list[_Repeated] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        # Which of the two values wins differs from one JSON parser to the next: refuse rather than guess.
        marked = _Repeated(obj)
        marked.repeated = []
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in marked.repeated:
                marked.repeated.append(key)
            seen.add(key)
        repeated.append(marked)
        return marked

    body = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=pairs_hook)
    if repeated:
        details = [{"field": path, "message": "duplicate key"} for path in _repeated_paths(body)]
        raise BadRequest("request body repeats a key", details)
    return body


_REPORT = object()


def _repeated_paths(document: Any) -> list[str]:
    """The dotted path of every repeated key, in document order (the shape of validation errors' fields)."""
    paths: list[str] = []
    # Entries are (node, path) to visit, or (_REPORT, path) for a repeated key to report at its place.
    stack: list[tuple[Any, tuple]] = [(document, ())]
    while stack:  # not recursive: the parser takes nesting deeper than Python's recursion limit
        node, path = stack.pop()
        if node is _REPORT:
            paths.append(".".join(map(str, path)))
            continue
        repeated = node.repeated if isinstance(node, _Repeated) else ()
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        entries: list[tuple[Any, tuple]] = []
        for key, child in children:
            if key in repeated:
                entries.append((_REPORT, (*path, key)))
            entries.append((child, (*path, key)))
        stack.extend(reversed(entries))
    return paths


def read_json(max_bytes: int) -> dict:
    """The request body as a JSON object, or a 4xx error that says why not."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes") from None
    except Exception as exc:  # noqa: BLE001 - each WSGI server raises its own types here
        timeout = exc if isinstance(exc, TimeoutError) else exc.__context__
        if isinstance(timeout, TimeoutError):
            # The server's read deadline passed while the body was still arriving (bridge/http/worker.py); werkzeug
            # reports that as a disconnect, with the timeout as its context.
            raise RequestTimeout(str(timeout) or "request body not received in time") from None
        # The server's body reader fails on a malformed chunked body or a body cut short (gunicorn raises
        # its own parse errors, not OSError): the caller's fault, so a 400, not a 500.
        log.warning("request body could not be read", extra={"request_id": g.get("request_id"),
                                                             "error_type": type(exc).__name__})
        raise BadRequest("request body could not be read") from None
    if request.content_length is None and len(raw) >= max_bytes:
        # A chunked body is cut at the limit without an error; the limit itself counts as over it.
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    try:
        body = parse_json(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def validate(model, body: dict):
    """Bik's payload as a model, or 400 naming each bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise BadRequest("invalid request", details) from None


def check_currency(order_request: PlaceOrderRequest, store_currency: str) -> None:
    """Refuse an order Bik priced in another currency than the store's ("" means the store's)."""
    currency = order_request.order.currency
    if currency and currency != store_currency:
        raise CurrencyMismatch(f'order.currency "{currency}" is not the store\'s currency "{store_currency}"; '
                               "nothing was placed")


def create_app(config: Config, *, service: OrderService, metrics: Optional["Metrics"] = None) -> Flask:
    """The app for one config over the service it is given; `/metrics` is served when it is given metrics."""
    app = Flask("bik_bridge")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.extensions[EXTENSION] = service
    authenticators = {endpoint: Authenticator(config.auth_for(endpoint)) for endpoint in ENDPOINTS}
    base = config.server.base_path
    max_bytes = config.server.max_body_bytes

    def guard(endpoint: str) -> None:
        g.endpoint = endpoint
        if not authenticators[endpoint].allows(request.headers):
            raise Unauthorized("missing or invalid credentials")

    @app.post(f"{base}/placeOrder")
    def place_order() -> Response:
        guard("placeOrder")
        order_request = validate(PlaceOrderRequest, read_json(max_bytes))
        g.draft_order_id = order_request.draftOrderId
        check_currency(order_request, config.store.currency)
        result = service.place_order(order_request)
        g.order_id, g.decision = result.order_id, result.decision
        return json_response(result.body)

    @app.post(f"{base}/getOrder")
    def get_order() -> Response:
        guard("getOrder")
        order_request = validate(GetOrderRequest, read_json(max_bytes))
        g.order_id = order_request.orderId
        return json_response(service.get_order(order_request.orderId))

    def healthz() -> Response:
        return json_response({"status": "ok"})

    def readyz() -> Response:
        try:
            service.ready()
        except BridgeError as exc:
            return json_response({"status": "unavailable", "error": exc.message}, 503)
        return json_response({"status": "ready", "platform": config.platform})

    metrics_token = config.metrics.token.get_secret_value() if config.metrics.token else ""

    def scrape() -> Response:
        if metrics_token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), metrics_token.encode()):
                raise Unauthorized("missing or invalid credentials")
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    for prefix in {"", base}:
        app.add_url_rule(f"{prefix}/healthz", f"healthz{prefix}", healthz, methods=["GET"])
        app.add_url_rule(f"{prefix}/readyz", f"readyz{prefix}", readyz, methods=["GET"])
        if metrics is not None:
            app.add_url_rule(f"{prefix}/metrics", f"metrics{prefix}", scrape, methods=["GET"])

    # Built once per app; it holds paths and auth schemes but no secret, so it is served without auth.
    openapi_body = json.dumps(build_openapi(config), separators=(",", ":")).encode()
    app.add_url_rule("/openapi.json", "openapi", lambda: json_response(openapi_body), methods=["GET"])

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.context = context.begin(g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if g.get("endpoint"):
            seconds = time.perf_counter() - g.started
            summary = request_summary(response.status_code, seconds)
            # Written once the answer has left: Bik waits for the answer, not for the log line.
            response.call_on_close(lambda: log.info("request", extra=summary))
            if metrics is not None:
                metrics.request(g.endpoint, response.status_code, seconds)
        return response

    def request_summary(status: int, seconds: float) -> dict:
        """The one line a Bik request leaves: what was asked, what the platform was asked, what came of it."""
        decision = g.get("decision")
        summary = {
            "request_id": g.get("request_id"), "endpoint": g.endpoint, "status": status,
            "platform": config.platform, "draftOrderId": g.get("draft_order_id"), "orderId": g.get("order_id"),
            "outcome": decision or ("ok" if status < 400 else g.get("error_type", "error")),
            "upstream": g.context.upstream if g.get("context") else [], "ms": round(seconds * 1000, 1),
        }
        if decision:
            summary["idempotency"] = "replay" if decision == "replayed" else "fresh"
        return summary

    @app.teardown_request
    def forget(_exc: Optional[BaseException]) -> None:
        context.end()

    @app.errorhandler(BridgeError)
    def bridge_error(exc: BridgeError) -> Response:
        g.error_type = type(exc).__name__
        # Everything Bik sees comes from the class: its status, and Retry-After when a retry may succeed.
        headers = {"Retry-After": str(int(max(1, round(exc.retry_after))))} if exc.retryable else None
        if exc.status >= 500:
            log.warning("request failed", extra={"request_id": g.get("request_id"), "error": exc.message,
                                                 "error_type": type(exc).__name__})
        return json_response(exc.body(), exc.status, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        mapped = {404: OrderNotFound("no such endpoint"), 405: MethodNotAllowed("method not allowed"),
                  413: PayloadTooLarge(f"request body over {max_bytes} bytes")}.get(exc.code)
        if mapped is not None:
            return bridge_error(mapped)
        return json_response({"error": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        g.error_type = "internal"
        log.exception("unexpected error", extra={"request_id": g.get("request_id")})
        return json_response({"error": "internal error"}, 500)

    return app
