"""The bridge's own OpenAPI 3.1 document, generated from the pydantic models and the configured auth."""
from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from bridge.config import ENDPOINTS, AuthConfig, Config
from bridge.core.models import BikOrder, GetOrderRequest, PlaceOrderRequest

OPENAPI_VERSION = "3.1.0"
_SCHEMAS = "#/components/schemas/{model}"

# What each Bik endpoint may answer besides 200, and why (bridge/core/errors.py holds the tree).
_ERRORS = {
    "placeOrder": {
        400: "The body is not a valid placeOrder request, or repeats a key; `details` names each bad field.",
        401: "Missing or invalid credentials.",
        409: "The same draftOrderId is still being placed; retry after Retry-After seconds.",
        413: "The body is larger than server.max_body_bytes.",
        415: "Content-Type is not application/json.",
        422: "The platform refused the order, the same draftOrderId came with another payload, or order.currency "
             "is neither empty nor the store's currency.",
        502: "The platform refused the bridge's own credentials, or failed.",
        503: "The idempotency store or the platform is unavailable; nothing was created. Retry later.",
        504: "The platform did not answer in time; the order may exist. Retry with the same draftOrderId.",
    },
    "getOrder": {
        400: "The body is not a valid getOrder request, or repeats a key; `details` names each bad field.",
        401: "Missing or invalid credentials.",
        404: "No such order.",
        413: "The body is larger than server.max_body_bytes.",
        415: "Content-Type is not application/json.",
        502: "The platform refused the bridge's own credentials, or failed.",
        503: "The platform is unavailable. Retry later.",
        504: "The platform did not answer in time. Retry later.",
    },
}
_RETRY_AFTER_STATUSES = {409, 502, 503, 504}

_SUMMARIES = {
    "placeOrder": "Place a fully priced Bik order, exactly once per draftOrderId.",
    "getOrder": "The current state of an order placed through the bridge.",
}


def _security_scheme(auth: AuthConfig) -> tuple[str, dict] | None:
    """The components entry for one auth setting, named so two endpoints with the same setting share it."""
    if auth.scheme == "bearer":
        return "bearerAuth", {"type": "http", "scheme": "bearer"}
    if auth.scheme == "basic":
        return "basicAuth", {"type": "http", "scheme": "basic"}
    if auth.scheme == "api_key":
        return f"apiKey-{auth.header}", {"type": "apiKey", "in": "header", "name": auth.header}
    return None


def _error_schema() -> dict:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "minLength": 1},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }


def _json(schema: dict, description: str, *, retry_after: bool = False) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {"application/json": {"schema": schema}},
    }
    if retry_after:
        response["headers"]["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return response


def _error(description: str, status: int) -> dict:
    return _json({"$ref": "#/components/schemas/Error"}, description, retry_after=status in _RETRY_AFTER_STATUSES)


def _bik_operation(endpoint: str, request_ref: dict, security: list) -> dict:
    responses = {"200": _json({"$ref": "#/components/schemas/OrderResponse"}, "The order, as Bik reads it.")}
    responses.update({str(status): _error(text, status) for status, text in _ERRORS[endpoint].items()})
    return {
        "post": {
            "operationId": endpoint,
            "summary": _SUMMARIES[endpoint],
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request_ref}}},
            "responses": responses,
        }
    }


def _probe(summary: str, ready: bool = False) -> dict:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    responses = {"200": _json(status, "Serving.")}
    if ready:
        down = {**status, "properties": {**status["properties"], "error": {"type": "string"}}}
        responses["503"] = _json(down, "The idempotency store or the platform is not reachable.")
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def _metrics(security_schemes: dict, with_token: bool) -> dict:
    responses: dict[str, Any] = {"200": {"description": "Prometheus text exposition.",
                                         "content": {"text/plain": {"schema": {"type": "string"}}}}}
    security: list = []
    if with_token:
        security_schemes["metricsBearerAuth"] = {"type": "http", "scheme": "bearer"}
        security = [{"metricsBearerAuth": []}]
        responses["401"] = _error("Missing or invalid metrics token.", 401)
    return {"get": {"summary": "Prometheus metrics.", "security": security, "responses": responses}}


def build_openapi(config: Config) -> dict:
    """The OpenAPI document for one config: paths under server.base_path, the auth each endpoint expects."""
    # One call for all three models, so their components share one namespace and a model read in one mode and
    # written in the other would get two distinct names (requests use the *In models, answers BikOrder's own).
    refs, definitions = models_json_schema(
        [(PlaceOrderRequest, "validation"), (GetOrderRequest, "validation"), (BikOrder, "serialization")],
        ref_template=_SCHEMAS,
    )
    schemas = dict(definitions.get("$defs", {}))
    schemas["Error"] = _error_schema()
    schemas["OrderResponse"] = {
        "type": "object", "required": ["order"], "properties": {"order": refs[(BikOrder, "serialization")]},
    }
    request_refs = {"placeOrder": refs[(PlaceOrderRequest, "validation")],
                    "getOrder": refs[(GetOrderRequest, "validation")]}

    security_schemes: dict[str, dict] = {}
    base = config.server.base_path
    paths: dict[str, dict] = {}
    for endpoint in ENDPOINTS:
        scheme = _security_scheme(config.auth_for(endpoint))
        security = []
        if scheme is not None:
            name, definition = scheme
            security_schemes[name] = definition
            security = [{name: []}]
        paths[f"{base}/{endpoint}"] = _bik_operation(endpoint, request_refs[endpoint], security)

    for prefix in dict.fromkeys(["", base]):
        paths[f"{prefix}/healthz"] = _probe("Liveness: the process serves HTTP.")
        paths[f"{prefix}/readyz"] = _probe("Readiness: the idempotency store answers.", ready=True)
        if config.metrics.enabled:
            paths[f"{prefix}/metrics"] = _metrics(security_schemes, bool(config.metrics.token))
    paths["/openapi.json"] = {"get": {"summary": "This document.", "security": [], "responses": {
        "200": _json({"type": "object"}, "The OpenAPI document of this bridge.")}}}

    components: dict[str, Any] = {
        "schemas": schemas,
        "headers": {
            "X-Request-Id": {"description": "The request's id, echoed from the request or generated.",
                             "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait before retrying.",
                            "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        },
    }
    if security_schemes:
        components["securitySchemes"] = security_schemes
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "bik-bridge",
            "version": _version(),
            "description": f"Bik placeOrder/getOrder for the {config.platform} platform.",
        },
        "paths": paths,
        "components": components,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bik-bridge")
    except PackageNotFoundError:
        return "0"
