"""The Flask app factory: thin views (auth, parse, service, JSON) and one error renderer."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, Optional

from flask import Flask, Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bridge.auth import Authenticator
from bridge.config import ENDPOINTS, Config
from bridge.errors import (
    BadRequest,
    BridgeError,
    MethodNotAllowed,
    OrderNotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.models import GetOrderRequest, PlaceOrderRequest
from bridge.service import OrderService

log = logging.getLogger("bik_bridge.http")
EXTENSION = "bik_bridge"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_response(body: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Response(data, status=status, headers=headers, mimetype="application/json")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


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
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
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
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise BadRequest("invalid request", details) from None


def create_app(config: Config, *, service: Optional[OrderService] = None) -> Flask:
    """Build the app for one config; the service is built from it unless given."""
    if service is None:
        from bridge.bootstrap import build_service

        service = build_service(config)
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
        result = service.place_order(order_request)
        g.order_id, g.outcome = result.order_id, result.outcome
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

    for prefix in {"", base}:
        app.add_url_rule(f"{prefix}/healthz", f"healthz{prefix}", healthz, methods=["GET"])
        app.add_url_rule(f"{prefix}/readyz", f"readyz{prefix}", readyz, methods=["GET"])

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if g.get("endpoint"):
            log.info("request", extra={
                "request_id": g.get("request_id"), "endpoint": g.endpoint, "status": response.status_code,
                "draftOrderId": g.get("draft_order_id"), "orderId": g.get("order_id"),
                "outcome": g.get("outcome"), "ms": round((time.perf_counter() - g.started) * 1000, 1),
            })
        return response

    @app.errorhandler(BridgeError)
    def bridge_error(exc: BridgeError) -> Response:
        headers = {"Retry-After": str(int(max(1, round(exc.retry_after))))} if exc.retry_after else None
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
        log.exception("unexpected error", extra={"request_id": g.get("request_id")})
        return json_response({"error": "internal error"}, 500)

    return app
