"""The Flask app factory: thin views (auth, parse, service, JSON) and one error renderer."""
from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any, Optional

from flask import Flask, Response, request
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
from bridge.core.models import GetOrderRequest, PlaceOrderRequest, looks_like_draft_id
from bridge.core.service import OrderService, body_digest
from bridge.http.auth import Authenticator
from bridge.http.observed import Observed
from bridge.http.openapi import build_openapi
from bridge.ops import context

if TYPE_CHECKING:  # prometheus-client is imported by the worker that builds the metrics, after the fork
    from bridge.ops.metrics import Metrics

log = logging.getLogger("bik_bridge.http")
EXTENSION = "bik_bridge"


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


def read_body(max_bytes: int) -> bytes:
    """The request body's bytes, or a 4xx error that says why not."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    # The media type as werkzeug's `mimetype` reads it, without parsing the parameters it would throw away.
    if request.environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
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
        log.warning("request body could not be read", extra={"error_type": type(exc).__name__})
        raise BadRequest("request body could not be read") from None
    if request.content_length is None and len(raw) >= max_bytes:
        # A chunked body is cut at the limit without an error; the limit itself counts as over it.
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    return raw


def json_object(raw: bytes) -> dict:
    """A request body as a JSON object, or a 400 that says why not."""
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

    def guard(endpoint: str) -> context.RequestContext:
        """The request's context, named for its endpoint, once its credentials are checked."""
        served = context.current()
        served.endpoint = endpoint
        if not authenticators[endpoint].allows(request.headers):
            raise Unauthorized("missing or invalid credentials")
        return served

    @app.post(f"{base}/placeOrder")
    def place_order() -> Response:
        served = guard("placeOrder")
        raw = read_body(max_bytes)
        document, digest = json_object(raw), body_digest(raw)
        # Only an id validation would let through reaches the store and the log, before validation: a retry of a
        # placed order, byte for byte, is answered from its record (a fresh draft claimed in the same step), and the
        # request line names the draft even when the store cannot answer.
        draft = document.get("draftOrderId")
        served.draft_order_id = draft = draft if looks_like_draft_id(draft) else None

        def read() -> PlaceOrderRequest:
            order_request = validate(PlaceOrderRequest, document)
            check_currency(order_request, config.store.currency)
            return order_request

        # A placed order's record is written once the answer has left, whatever the answer (`Observed` runs it): Bik
        # is not kept waiting for the bookkeeping.
        result = service.place(draft, digest, read, defer=served.after_answer.append)
        served.order_id, served.decision = result.order_id, result.decision
        return json_response(result.body)

    @app.post(f"{base}/getOrder")
    def get_order() -> Response:
        served = guard("getOrder")
        order_request = validate(GetOrderRequest, json_object(read_body(max_bytes)))
        served.order_id = order_request.orderId
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

    @app.errorhandler(BridgeError)
    def bridge_error(exc: BridgeError) -> Response:
        _note_error(type(exc).__name__)
        # Everything Bik sees comes from the class: its status, and Retry-After when a retry may succeed.
        headers = {"Retry-After": str(int(max(1, round(exc.retry_after))))} if exc.retryable else None
        if exc.status >= 500:
            log.warning("request failed", extra={"error": exc.message, "error_type": type(exc).__name__})
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
        _note_error("internal")
        log.exception("unexpected error")
        return json_response({"error": "internal error"}, 500)

    # The request id, the request line and the metrics come from around the app, so that every answer has them.
    app.wsgi_app = Observed(app.wsgi_app, config.platform, metrics)
    return app


def _note_error(error_type: str) -> None:
    served = context.current()
    if served is not None:
        served.error_type = error_type
