"""A stateful fake of bitbybit's open API (orders) for tests and benchmarks.

Follows ../shared/docs/bitbybit.md: `{"data": ...}` and `{"data": [...], "meta": {...}}` envelopes, errors
`{"error": {"code", "message"}}`, the key in `x-api-key`, 100 requests a minute per key announced in
`RateLimit-Limit`/`-Remaining`/`-Reset` (seconds) on every answer, 429 `RATE_LIMIT_EXCEEDED` beyond it.
Where the docs are silent it is stricter than bitbybit may be: unknown body fields are refused, so a typo
in the bridge's request shows up as an invalid request. Lines are priced from the fake's own catalog.
Run alone for benchmarks: `python -m tests.fakes.bitbybit --port 9002 [--latency-ms 50]`.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Optional

from flask import Flask, Response, g, request

from tests.fakes.server import FakePlatform, FakeServer, FaultScript, reason_phrase, serve_until_stopped

BASE_PATH = "/customer/open/v1"
STATUSES = ("active", "archived", "cancelled", "refunded")
FULFILLMENTS = ("unfulfilled", "fulfilled")
FINANCIALS = ("pending", "paid", "refunded")
CREATE_FIELDS = frozenset({"lineItems", "shippingAddress", "customerId", "customer", "notes", "tags"})
LINE_FIELDS = frozenset({"productVariantId", "quantity"})
# Required by the order of the docs' generated example (required properties first); address2 and country optional.
ADDRESS_REQUIRED = ("firstName", "lastName", "phone", "address1", "city", "province", "zip")
ADDRESS_OPTIONAL = ("address2", "country")
CUSTOMER_FIELDS = frozenset({"firstName", "lastName", "phone", "email"})
UPDATE_FIELDS = {"status": STATUSES, "fulfillmentStatus": FULFILLMENTS, "financialStatus": FINANCIALS}
LIST_PARAMS = frozenset({"page", "limit", "search", "status", "fulfillmentStatus"})
MAX_LIMIT = 100
SCOPES = frozenset({"orders:read", "orders:write"})
# The code a scripted fault answers with when the script gives no body.
CODES = {400: "VALIDATION_ERROR", 401: "INVALID_API_KEY", 403: "INSUFFICIENT_SCOPE", 404: "NOT_FOUND",
         429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE",
         504: "GATEWAY_TIMEOUT"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EXAMPLE_VARIANT = "40946134352009"  # the variant of examples/place-order.json


def error_body(code: str, message: str) -> dict:
    """bitbybit's error envelope."""
    return {"error": {"code": code, "message": message}}


def number(value: Decimal) -> int | float:
    """Money as bitbybit answers it: a JSON number."""
    return int(value) if value == value.to_integral_value() else float(value)


def _json(data: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


class Rejected(Exception):
    """A request the fake refuses; `record` says whether it counts as an invalid request."""

    def __init__(self, status: int, code: str, message: str, record: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.record = status, code, message, record


def _invalid(message: str) -> Rejected:
    return Rejected(400, "VALIDATION_ERROR", message)


@dataclass(frozen=True)
class InvalidRequest:
    """A request the fake rejected as malformed, with why."""

    method: str
    path: str
    status: int
    code: str
    reason: str
    body: Any = None


@dataclass(frozen=True)
class Variant:
    """A catalog variant: bitbybit prices order lines from these."""

    id: str
    price: Decimal
    title: str = "Product"
    sku: str = ""


class FakeBitbybit(FakePlatform):
    """In-memory bitbybit store answering the order endpoints the bridge uses, with admin hooks for tests."""

    def __init__(self, api_key: str = "bbb_test_key", auth_header: str = "x-api-key", base_path: str = BASE_PATH,
                 currency: Optional[str] = "INR", create_status: int = 201, unknown_variant_status: int = 404,
                 list_order: str = "newest", rate_limit: int = 100, rate_window_seconds: float = 60,
                 latency_ms: float = 0, port: int = 0) -> None:
        self.api_key = api_key
        self.auth_header = auth_header
        self.base_path = base_path.rstrip("/")
        self.currency = currency
        self.create_status = create_status
        self.unknown_variant_status = unknown_variant_status
        self.list_order = list_order
        self._default_rate = (rate_limit, rate_window_seconds)
        self.faults = FaultScript()
        # One condition guards all store state; wait_until() sleeps on it.
        self._state = threading.Condition(threading.RLock())
        self._reset_state()
        self.server = FakeServer(self._build_app(), port=port, latency_ms=latency_ms)

    # addresses

    @property
    def api_base_url(self) -> str:
        """The value for the bridge's `bitbybit.api_base_url`."""
        return f"{self.server.url}{self.base_path}"

    # admin: state

    def _reset_state(self) -> None:
        with self._state:
            self._orders: dict[str, dict] = {}
            self._numbers = itertools.count(1001)
            self._line_ids = itertools.count(1)
            self._customers: list[dict] = []
            self._variants = {EXAMPLE_VARIANT: Variant(EXAMPLE_VARIANT, Decimal(499), "Skin Renew Cream", "SRC-50")}
            self._keys = {self.api_key}
            self._scopes = set(SCOPES)
            self._ip_allowed = True
            self._create_count = 0
            self._invalid: list[InvalidRequest] = []
            self._rate_limit, self._rate_window = self._default_rate
            self._windows: dict[str, tuple[float, int]] = {}
            self._rate_limited = 0
            self._last_stamp = datetime(2024, 5, 8, 10, 0, tzinfo=timezone.utc)
            self._state.notify_all()

    def reset(self) -> None:
        """Forget orders, customers, catalog changes, faults, access changes, quota and the request log."""
        self._reset_state()
        self.faults.clear()
        self.server.clear_log()

    @property
    def orders(self) -> dict[str, dict]:
        """A snapshot (deep copy) of every order by id."""
        with self._state:
            return copy.deepcopy(self._orders)

    def order(self, order_id: str) -> dict:
        """A snapshot of one order."""
        with self._state:
            return copy.deepcopy(self._orders[order_id])

    @property
    def rate_limited(self) -> int:
        """Requests answered 429 by the quota (scripted 429s not included)."""
        with self._state:
            return self._rate_limited

    def add_variant(self, variant_id: str, price: Decimal | int | str, title: str = "Product", sku: str = "") -> None:
        """Put a variant in the catalog (or change its price)."""
        with self._state:
            self._variants[variant_id] = Variant(variant_id, Decimal(str(price)), title, sku)

    def add_api_key(self, key: str) -> None:
        """Accept another key (each key has its own rate-limit window)."""
        with self._state:
            self._keys.add(key)

    def revoke_api_key(self, key: str) -> None:
        """Stop accepting a key: requests with it get 401 INVALID_API_KEY."""
        with self._state:
            self._keys.discard(key)

    def set_scopes(self, *scopes: str) -> None:
        """The scopes every key has, e.g. set_scopes("orders:read"); GET needs read, POST and PUT write."""
        with self._state:
            self._scopes = set(scopes)

    def set_ip_allowed(self, allowed: bool) -> None:
        """False: every request gets 403 IP_NOT_ALLOWED, as from a host outside the key's allowlist."""
        with self._state:
            self._ip_allowed = allowed

    def set_rate_limit(self, requests_per_window: int, window_seconds: float = 60) -> None:
        """At most `requests_per_window` per key per fixed window, else 429."""
        with self._state:
            self._rate_limit, self._rate_window = requests_per_window, window_seconds
            self._windows.clear()

    def _change(self, order_id: str, **fields: Any) -> dict:
        with self._state:
            order = self._orders[order_id]
            order.update(fields, updatedAt=self._stamp())
            self._state.notify_all()
            return copy.deepcopy(order)

    def set_status(self, order_id: str, status: str) -> dict:
        """Move an order's status as the merchant would (any string: the dashboard knows more than the API)."""
        return self._change(order_id, status=status)

    def set_fulfillment(self, order_id: str, value: str) -> dict:
        """Set fulfillmentStatus, e.g. "fulfilled" or the dashboard's "partially_fulfilled"."""
        return self._change(order_id, fulfillmentStatus=value)

    def set_financial(self, order_id: str, value: str) -> dict:
        """Set financialStatus, e.g. "paid"."""
        return self._change(order_id, financialStatus=value)

    def add_order(self, *, tags: Iterable[str] = (), first_name: str = "Asha", last_name: str = "Rao",
                  phone: str = "+919800000000", email: Optional[str] = "asha@example.com", status: str = "active",
                  fulfillment: str = "unfulfilled", financial: str = "pending",
                  lines: Optional[list[tuple[str, int]]] = None, notes: str = "",
                  created_at: Optional[datetime] = None) -> str:
        """Seed an order that did not come through the API (the dashboard, another channel); returns its id.

        Its customer is found by phone or email as a create would find it, or stored with these names.
        `created_at` backdates it (orders list by creation time); by default it is made now.
        """
        customer = {"firstName": first_name, "lastName": last_name, "phone": phone}
        if email:
            customer["email"] = email
        address = {"firstName": first_name, "lastName": last_name, "phone": phone, "address1": "1 MG Road",
                   "city": "Bengaluru", "province": "Karnataka", "zip": "560001", "country": "IN"}
        with self._state:
            items = [(self._variants[variant_id], quantity)
                     for variant_id, quantity in (lines or [(EXAMPLE_VARIANT, 1)])]
            order = self._build_order(items, address, self._customer_for(customer), notes, list(tags))
            order.update(status=status, fulfillmentStatus=fulfillment, financialStatus=financial)
            if created_at is not None:
                stamp = created_at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                order.update(createdAt=stamp, updatedAt=stamp)
            self._orders[order["id"]] = order
            self._state.notify_all()
            return order["id"]

    def add_customer(self, first_name: str, last_name: str, phone: Optional[str] = None,
                     email: Optional[str] = None) -> str:
        """Seed a returning customer (or find the one stored for this phone or email); returns its id.

        Orders then created for that phone or email are filed under the stored names, whatever they say.
        """
        with self._state:
            return self._customer_for({"firstName": first_name, "lastName": last_name, "phone": phone,
                                       "email": email})["id"]

    # HTTP

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.before_request(self._guard)
        app.after_request(self._add_rate_headers)
        app.register_error_handler(404, self._unknown_endpoint)
        app.register_error_handler(405, self._unknown_endpoint)
        base = self.base_path
        app.add_url_rule(f"{base}/orders", "list_orders", self._list_orders, methods=["GET"])
        app.add_url_rule(f"{base}/orders", "create_order", self._create_order, methods=["POST"])
        app.add_url_rule(f"{base}/orders/<order_id>", "get_order", self._get_order, methods=["GET"])
        app.add_url_rule(f"{base}/orders/<order_id>", "update_order", self._update_order, methods=["PUT"])
        return app

    def _record_invalid(self, status: int, code: str, reason: str, body: Any = None) -> None:
        with self._state:
            self._invalid.append(InvalidRequest(request.method, request.full_path.rstrip("?"), status, code,
                                                reason, body))

    def _reject(self, exc: Rejected, body: Any = None) -> Response:
        if exc.record:
            self._record_invalid(exc.status, exc.code, exc.message, body)
        return _json(error_body(exc.code, exc.message), exc.status)

    def _error_response(self, status: int, body: Any = None, headers: Optional[dict] = None) -> Response:
        """How scripted faults answer: the given body, or bitbybit's envelope; only the scripted headers."""
        g.rate_headers = {}
        if isinstance(body, (str, bytes)):
            return Response(body, status=status, headers=headers)
        if body is None:
            body = error_body(CODES.get(status, "ERROR"), reason_phrase(status))
        return _json(body, status, headers)

    def _guard(self) -> Optional[Response]:
        """Base path, key, IP allowlist, quota and scope, in that order, before any endpoint runs."""
        if not request.path.startswith(f"{self.base_path}/"):
            # What a gateway answers for a wrong base URL: not bitbybit's envelope.
            self._record_invalid(404, "", f"no such path {request.path} (base path is {self.base_path})")
            return _json({"message": f"Cannot {request.method} {request.path}", "statusCode": 404}, 404)
        key = request.headers.get(self.auth_header)
        with self._state:
            known, ip_allowed, scopes = key in self._keys, self._ip_allowed, set(self._scopes)
        if not key:
            return self._reject(Rejected(401, "MISSING_API_KEY", f"The {self.auth_header} header is required"))
        if not known:
            return self._reject(Rejected(401, "INVALID_API_KEY", "Invalid or revoked API key"))
        if not ip_allowed:
            return self._reject(Rejected(403, "IP_NOT_ALLOWED", "Request IP is not in this API key's allowlist",
                                         record=False))
        allowed, g.rate_headers = self._take_quota(key)
        if not allowed:
            return _json(error_body("RATE_LIMIT_EXCEEDED", "Too many requests. Please retry after the reset "
                                                           "period."), 429)
        needed = "orders:read" if request.method == "GET" else "orders:write"
        if needed not in scopes:
            return self._reject(Rejected(403, "INSUFFICIENT_SCOPE", f"This API key lacks the {needed} scope",
                                         record=False))
        if request.method in ("POST", "PUT") and request.mimetype != "application/json":
            return self._reject(_invalid(f"Content-Type must be application/json, not "
                                         f"{request.headers.get('Content-Type')!r}"))
        return None

    def _take_quota(self, key: str) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._state:
            start, used = self._windows.get(key, (now, 0))
            if now >= start + self._rate_window:
                start, used = now, 0
            allowed = used < self._rate_limit
            if allowed:
                used += 1
            else:
                self._rate_limited += 1
            self._windows[key] = (start, used)
            reset = max(0, math.ceil(start + self._rate_window - now))  # whole seconds, rounded up
            return allowed, {"RateLimit-Limit": str(self._rate_limit),
                             "RateLimit-Remaining": str(max(0, self._rate_limit - used)),
                             "RateLimit-Reset": str(reset)}

    def _unknown_endpoint(self, error) -> Response:
        return self._reject(Rejected(error.code, "NOT_FOUND", f"Route {request.method} {request.path} not found"))

    def _serve(self, operation: str, apply: Callable[[], Response]) -> Response:
        """Run one endpoint under the fault script, turning rejections into error envelopes."""
        def guarded() -> Response:
            try:
                return apply()
            except Rejected as exc:
                return self._reject(exc, request.get_json(silent=True) if request.method != "GET" else None)
        return self.faults.run(operation, guarded, self._error_response)

    def _body(self) -> Any:
        try:
            return json.loads(request.get_data())
        except ValueError:
            raise _invalid("Request body is not valid JSON") from None

    def _order_or_404(self, order_id: str) -> dict:
        order = self._orders.get(order_id)
        if order is None:
            raise Rejected(404, "NOT_FOUND", "Order not found", record=False)
        return order

    def _list_orders(self) -> Response:
        def apply() -> Response:
            params = self._list_params()
            with self._state:
                found = [o for o in self._orders.values() if _matches(o, params)]
                found.sort(key=lambda o: o["createdAt"], reverse=self.list_order == "newest")
                page, limit = params["page"], params["limit"]
                chunk = copy.deepcopy(found[(page - 1) * limit: page * limit])
            meta = {"page": page, "limit": limit, "total": len(found), "hasNextPage": page * limit < len(found)}
            return _json({"data": chunk, "meta": meta})
        return self._serve("list_orders", apply)

    @staticmethod
    def _list_params() -> dict:
        for name in request.args:
            if name not in LIST_PARAMS:
                raise _invalid(f"Unknown query parameter {name}")
        params: dict[str, Any] = dict(request.args)
        for name, default, highest in (("page", 1, None), ("limit", 20, MAX_LIMIT)):
            raw = params.get(name, str(default))
            if not raw.isdigit() or int(raw) < 1 or (highest and int(raw) > highest):
                raise _invalid(f"{name} must be an integer from 1" + (f" to {highest}" if highest else ""))
            params[name] = int(raw)
        for name, allowed in (("status", STATUSES), ("fulfillmentStatus", FULFILLMENTS)):
            if name in params and params[name] not in allowed:
                raise _invalid(f"{name} must be one of {', '.join(allowed)}")
        return params

    def _get_order(self, order_id: str) -> Response:
        def apply() -> Response:
            with self._state:
                return _json({"data": copy.deepcopy(self._order_or_404(order_id))})
        return self._serve("get_order", apply)

    def _update_order(self, order_id: str) -> Response:
        def apply() -> Response:
            body = self._body()
            if not isinstance(body, dict):
                raise _invalid("Request body must be a JSON object")
            for name, value in body.items():
                if name == "notes":
                    if not isinstance(value, str):
                        raise _invalid("notes must be a string")
                elif name not in UPDATE_FIELDS:
                    raise _invalid(f"Unknown field {name}")
                elif value not in UPDATE_FIELDS[name]:
                    raise _invalid(f"{name} must be one of {', '.join(UPDATE_FIELDS[name])}")
            with self._state:
                self._order_or_404(order_id)
                return _json({"data": self._change(order_id, **body)})
        return self._serve("update_order", apply)

    def _create_order(self) -> Response:
        def apply() -> Response:
            body = self._body()
            _validate_create(body)
            with self._state:
                items = [(self._variant(line["productVariantId"]), line["quantity"]) for line in body["lineItems"]]
                if "customerId" in body:
                    customer = next((c for c in self._customers if c["id"] == body["customerId"]), None)
                    if customer is None:
                        raise Rejected(404, "NOT_FOUND", "Customer not found", record=False)
                else:
                    customer = self._customer_for(body["customer"])
                order = self._build_order(items, body["shippingAddress"], customer, body.get("notes", ""),
                                          list(body.get("tags", [])))
                self._orders[order["id"]] = order
                self._create_count += 1
                self._state.notify_all()
                return _json({"data": copy.deepcopy(order)}, self.create_status)
        return self._serve("create", apply)

    # create: building

    def _variant(self, variant_id: str) -> Variant:
        variant = self._variants.get(variant_id)
        if variant is None:
            code = "NOT_FOUND" if self.unknown_variant_status == 404 else "VALIDATION_ERROR"
            raise Rejected(self.unknown_variant_status, code, f"Product variant {variant_id} not found",
                           record=False)
        return variant

    def _customer_for(self, given: dict) -> dict:
        """Find a customer by phone or email, else create one: bitbybit's create-or-find; caller holds the lock."""
        phone, email = given.get("phone"), (given.get("email") or "").lower() or None
        for customer in self._customers:
            if (phone and customer["phoneNumber"] == phone) or (email and customer["email"] == email):
                return customer  # found: its stored names stay, whatever the order said
        customer = {"id": f"cus_{uuid.uuid4().hex[:12]}", "firstName": given["firstName"],
                    "lastName": given["lastName"], "email": email, "phoneNumber": phone}
        self._customers.append(customer)
        return customer

    def _stamp(self) -> str:
        """Now as ISO-8601, strictly later than the previous stamp so orders sort by creation."""
        now = max(datetime.now(timezone.utc), self._last_stamp + timedelta(milliseconds=1))
        self._last_stamp = now
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _build_order(self, items: list[tuple[Variant, int]], address: dict, customer: dict, notes: str,
                     tags: list[str]) -> dict:
        """An Order object as bitbybit answers it; caller holds the state lock."""
        serial = next(self._numbers)
        lines = [{
            "id": f"li_{next(self._line_ids)}", "quantity": quantity, "price": number(variant.price),
            "title": variant.title,
            "productVariant": {"id": variant.id, "key": variant.id, "price": number(variant.price),
                               "compareAtPrice": number(variant.price), "inventorySku": variant.sku, "media": ""},
        } for variant, quantity in items]
        total = sum((variant.price * quantity for variant, quantity in items), Decimal(0))
        stamp = self._stamp()
        return {
            "id": f"ord_{uuid.uuid4().hex[:16]}",
            "orderId": f"ORD-{serial}",
            "orderNumber": str(serial),
            "status": "active",
            "fulfillmentStatus": "unfulfilled",
            "financialStatus": "pending",
            "total": number(total),
            "currency": self.currency,
            "notes": notes,
            "customer": copy.deepcopy(customer),
            "lineItems": lines,
            "shippingAddress": {"id": f"addr_{serial}",
                                **{name: address.get(name, "") for name in ADDRESS_REQUIRED + ADDRESS_OPTIONAL}},
            "tags": tags,
            "createdAt": stamp,
            "updatedAt": stamp,
        }


def _validate_create(body: Any) -> None:
    """Raise Rejected unless `body` is a POST /orders body the docs allow."""
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    for name in body:
        if name not in CREATE_FIELDS:
            raise _invalid(f"Unknown field {name}")
    lines = body.get("lineItems")
    if not isinstance(lines, list) or not lines:
        raise _invalid("lineItems must contain at least 1 item")
    for index, line in enumerate(lines):
        where = f"lineItems[{index}]"
        if not isinstance(line, dict):
            raise _invalid(f"{where} must be an object")
        for name in line:
            if name not in LINE_FIELDS:
                raise _invalid(f"{where}: unknown field {name}")
        if not isinstance(line.get("productVariantId"), str) or not line["productVariantId"]:
            raise _invalid(f"{where}.productVariantId must be a non-empty string")
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise _invalid(f"{where}.quantity must be an integer of at least 1")
    address = body.get("shippingAddress")
    if not isinstance(address, dict):
        raise _invalid("shippingAddress is required")
    for name in address:
        if name not in ADDRESS_REQUIRED + ADDRESS_OPTIONAL:
            raise _invalid(f"shippingAddress: unknown field {name}")
    for name in ADDRESS_REQUIRED:
        if not isinstance(address.get(name), str):
            raise _invalid(f"shippingAddress.{name} is required")
    for name in ADDRESS_OPTIONAL:
        if name in address and not isinstance(address[name], str):
            raise _invalid(f"shippingAddress.{name} must be a string")
    if "customerId" in body and not isinstance(body["customerId"], str):
        raise _invalid("customerId must be a string")
    customer = body.get("customer")
    if "customer" in body:
        if not isinstance(customer, dict):
            raise _invalid("customer must be an object")
        for name in customer:
            if name not in CUSTOMER_FIELDS:
                raise _invalid(f"customer: unknown field {name}")
            if not isinstance(customer[name], str):
                raise _invalid(f"customer.{name} must be a string")
        for name in ("firstName", "lastName"):
            if name not in customer:
                raise _invalid(f"customer.{name} is required")
        if "email" in customer and not EMAIL.match(customer["email"]):
            raise _invalid("customer.email must be an email address")
    elif "customerId" not in body:
        raise _invalid("Provide either customerId or customer")
    if "notes" in body and not isinstance(body["notes"], str):
        raise _invalid("notes must be a string")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _invalid("tags must be an array of strings")


def _matches(order: dict, params: dict) -> bool:
    """Whether an order passes GET /orders' filters: status, fulfillmentStatus, search (order id or name)."""
    if any(name in params and order[name] != params[name] for name in ("status", "fulfillmentStatus")):
        return False
    search = params.get("search", "").strip().lower()
    if not search:
        return True
    ids = {str(order[name]).lower() for name in ("id", "orderId", "orderNumber")}
    customer = order.get("customer") or {}
    name = f"{customer.get('firstName') or ''} {customer.get('lastName') or ''}".strip().lower()
    return search in ids or search in name


def main(argv: Optional[list[str]] = None) -> None:
    """Serve a fake store until interrupted, printing its API base URL once ready."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--api-key", default="bbb_test_key")
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per minute per key")
    args = parser.parse_args(argv)
    serve_until_stopped(FakeBitbybit(api_key=args.api_key, latency_ms=args.latency_ms, rate_limit=args.rate_limit,
                                     port=args.port))


if __name__ == "__main__":
    main()
