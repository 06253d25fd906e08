"""A stateful fake of BigCommerce's REST v2 Orders API that checks request bodies against the official spec.

Follows ../shared/docs/bigcommerce.md: v2 error bodies are JSON arrays (`[{"status": 400, "message": ...}]`),
money is answered as 4-decimal strings, empty lists and "no shipments" are 204 with no body.
Run alone for benchmarks: `python -m tests.fakes.bigcommerce --port 9001 [--latency-ms 50]`.
"""
from __future__ import annotations

import argparse
import collections
import copy
import email.utils
import functools
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from flask import Flask, Response, g, request
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.contract import BIGCOMMERCE_ORDERS_SCHEMA
from tests.fakes.server import FakePlatform, FakeServer, FaultScript, reason_phrase, serve_until_stopped

DEFAULT_SPEC_PATH = BIGCOMMERCE_ORDERS_SCHEMA
SPEC_URI = "urn:bigcommerce:orders-v2"

# docs/bigcommerce.md §4
STATUS_LABELS = {
    0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded", 5: "Cancelled",
    6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup", 9: "Awaiting Shipment", 10: "Completed",
    11: "Awaiting Fulfillment", 12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded",
}
ADDRESS_FIELDS = (
    "first_name", "last_name", "company", "street_1", "street_2", "city",
    "state", "zip", "country", "country_iso2", "phone", "email",
)
# Order-level overrides that must come in pairs (docs/bigcommerce.md §2 "Pricing and overrides").
PAIRED_FIELDS = (
    ("shipping_cost_inc_tax", "shipping_cost_ex_tax"),
    ("subtotal_inc_tax", "subtotal_ex_tax"),
    ("total_inc_tax", "total_ex_tax"),
)
# GET /v2/orders filters from docs/bigcommerce.md §3; the date filters and `include` are accepted but not applied.
LIST_PARAMS = frozenset({
    "min_id", "max_id", "min_total", "max_total", "customer_id", "email", "status_id", "cart_id",
    "payment_method", "min_date_created", "max_date_created", "min_date_modified", "max_date_modified",
    "channel_id", "external_order_id", "page", "limit", "sort", "include", "consignment_structure",
})
# GET /v2/orders/{id}'s `order_includes` (docs/bigcommerce.md §3).
ORDER_INCLUDES = frozenset({"consignments", "consignments.line_items", "fees"})
INT_PARAMS = frozenset({"min_id", "max_id", "customer_id", "status_id", "channel_id", "page", "limit"})
DECIMAL_PARAMS = frozenset({"min_total", "max_total"})
SORT_FIELDS = frozenset({
    "id", "customer_id", "date_created", "date_modified", "status_id", "channel_id", "external_id",
})
PAGE_PARAMS = frozenset({"page", "limit"})
MAX_LIMIT = 250
OUT_OF_STOCK = "Quantities of one or more products are out of stock or did not meet quantity requirements."
NOT_FOUND = "The requested resource was not found."
DEFAULT_QUOTA = 1_000_000  # effectively unlimited, but the rate-limit headers are always sent, as BigCommerce does
FOUR_PLACES = Decimal("0.0001")
ZERO = Decimal(0)


def money(value: Decimal) -> str:
    """BigCommerce's money format: a string with four decimals, e.g. "69.8400"."""
    return f"{Decimal(value).quantize(FOUR_PLACES, rounding=ROUND_HALF_UP):f}"


def rfc2822(moment: Optional[datetime] = None) -> str:
    """A UTC timestamp as BigCommerce formats it: "Tue, 20 Nov 2012 00:00:00 +0000"."""
    return email.utils.format_datetime(moment or datetime.now(timezone.utc))


def error_body(status: int, message: Optional[str] = None, details: Optional[dict] = None) -> list:
    """The v2 error form: a JSON array with one {status, message[, details]} object."""
    entry: dict[str, Any] = {"status": status, "message": message or reason_phrase(status)}
    if details is not None:
        entry["details"] = details
    return [entry]


def _json(data: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


def _no_content() -> Response:
    return Response(status=204)


class Rejected(Exception):
    """A request the fake refuses; `record` says whether it counts as an invalid request."""

    def __init__(self, status: int, message: str, reason: Optional[str] = None, details: Optional[dict] = None,
                 record: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message
        self.details = details
        self.record = record


def _invalid(name: str, reason: Optional[str] = None) -> Rejected:
    return Rejected(400, f"The field '{name}' is invalid.", reason)


@dataclass(frozen=True)
class InvalidRequest:
    """A request the fake rejected as malformed, with why."""

    method: str
    path: str
    status: int
    reason: str
    body: Any = None


@dataclass
class StoredOrder:
    """An order as the fake keeps it: the GET /orders/{id} header plus its sub-resources."""

    id: int
    header: dict
    products: list
    shipping_addresses: list
    shipments: list = field(default_factory=list)
    body: Optional[dict] = None  # the create request, None for seeded orders


class OrdersSpec:
    """What the fake needs from the spec's extract: the order_Post validator and the field sets it implies."""

    def __init__(self, document: dict) -> None:
        self.schemas = document["components"]["schemas"]
        # What the spec says only in descriptions ("(Read-only)", "can't be negative"), kept by the extract.
        described = document["x-from-descriptions"]
        registry = Registry().with_resource(SPEC_URI, Resource.from_contents(document, default_specification=DRAFT4))
        self.order_post = OAS30Validator({"$ref": f"{SPEC_URI}#/components/schemas/order_Post"}, registry=registry)
        shared = self.schemas["order_Shared"]["properties"]
        post_fields = set(self._properties(self.schemas["order_Post"]))
        read_only = {name for name, prop in shared.items() if prop.get("readOnly")}
        read_only |= set(described["readOnly"].get("order_Shared", ()))
        # Response-only fields are refused on POST too; `order_source` is set by BigCommerce for API orders (FAQ).
        read_only |= set(self._properties(self.schemas["order_RespOnly"])) - post_fields
        read_only.add("order_source")
        self.read_only = frozenset(read_only)
        self.writable = frozenset(post_fields - read_only)
        self.money_fields = frozenset(described["nonNegative"].get("order_Shared", ()))
        self.billing_fields = frozenset(self._properties(self.schemas["billingAddress_Base"]))
        self.shipping_fields = frozenset(self._properties(self.schemas["shippingAddress_Base"])) | {"shipping_method"}
        self.catalog_fields = frozenset(self._properties(self.schemas["orderCatalogProduct_Post"]))
        self.custom_fields = frozenset(self._properties(self.schemas["orderCustomProduct_Post"]))

    def _properties(self, schema: dict) -> dict:
        """Properties of a schema, following $ref and merging allOf parts."""
        if "$ref" in schema:
            return self._properties(self.schemas[schema["$ref"].rsplit("/", 1)[-1]])
        merged = dict(schema.get("properties", {}))
        for part in schema.get("allOf", ()):
            merged.update(self._properties(part))
        return merged

    def schema_error(self, body: dict) -> Optional[Rejected]:
        """The most relevant schema violation of an order_Post body, as a 400, or None."""
        error = best_match(self.order_post.iter_errors(body))
        if error is None:
            return None
        path = list(error.absolute_path)
        names = [part for part in path if isinstance(part, str)]
        where = ".".join(str(part) for part in path) or "(body)"
        return _invalid(names[-1] if names else "body", f"{where}: {error.message}")


@functools.lru_cache(maxsize=4)
def load_spec(path: str) -> OrdersSpec:
    """Parse the extract once per path (per-test fixtures would otherwise re-read and re-index it)."""
    with open(path, encoding="utf-8") as handle:
        return OrdersSpec(json.load(handle))


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _non_negative(name: str, value: Any) -> Decimal:
    """A money value ("Float, Float-As-String, Integer") that must not be negative."""
    try:
        amount = _decimal(value)
    except InvalidOperation:
        raise _invalid(name, f"{name}={value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise _invalid(name, f"{name}={value!r} must be a non-negative number")
    return amount


def _check_pair(where: dict, first: str, second: str, prefix: str = "") -> None:
    if (first in where) != (second in where):
        missing = second if first in where else first
        given = first if first in where else second
        raise Rejected(400, f"The field '{missing}' is required when '{given}' is given.",
                       f"{prefix}{given} without {missing}")


def _check_known(where: dict, allowed: frozenset, prefix: str) -> None:
    for name in where:
        if name not in allowed:
            raise Rejected(400, f"The field '{name}' is not supported by this resource.",
                           f"unknown field {prefix}{name}")


class FakeBigCommerce(FakePlatform):
    """In-memory BigCommerce store answering the v2 Orders endpoints the bridge uses, with admin hooks for tests."""

    def __init__(self, store_hash: str = "abc123", access_token: str = "bc-test-token", currency_code: str = "INR",
                 create_status: int = 201, latency_ms: float = 0, spec_path: Optional[Path] = None,
                 total_adjustment: Decimal = ZERO, port: int = 0) -> None:
        self.store_hash = store_hash
        self.access_token = access_token
        self.currency_code = currency_code
        self.create_status = create_status
        self.total_adjustment = Decimal(total_adjustment)
        self.spec_path = Path(spec_path) if spec_path else DEFAULT_SPEC_PATH
        self.faults = FaultScript()
        self.clock: Callable[[], float] = time.monotonic  # the quota windows' clock; a test may drive its own
        # One condition guards all store state; wait_until() sleeps on it.
        self._state = threading.Condition(threading.RLock())
        self._reset_state()
        self.server = FakeServer(self._build_app(), port=port, latency_ms=latency_ms)

    # lifecycle

    def start(self) -> "FakeBigCommerce":
        """Load the spec and start serving; returns self."""
        load_spec(str(self.spec_path))  # parse before the first request so it cannot eat into a client's timeout
        return super().start()

    @property
    def api_base_url(self) -> str:
        """The value for the bridge's `bigcommerce.api_base_url`."""
        return self.server.url

    @property
    def store_url(self) -> str:
        """Where the v2 paths start: {api_base_url}/stores/{store_hash}/v2."""
        return f"{self.server.url}/stores/{self.store_hash}/v2"

    @property
    def latency_ms(self) -> float:
        """Added to every request."""
        return self.server.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.server.latency_ms = value

    @property
    def _spec(self) -> OrdersSpec:
        return load_spec(str(self.spec_path))

    # admin: state

    def _reset_state(self) -> None:
        with self._state:
            self._orders: dict[int, StoredOrder] = {}
            self._order_ids = itertools.count(100)
            self._line_ids = itertools.count(1000)
            self._address_ids = itertools.count(2000)
            self._shipment_ids = itertools.count(3000)
            self._stock: dict[tuple[int, Optional[int]], int] = {}
            self._customers: set[int] = set()
            self._create_count = 0
            self._invalid: list[InvalidRequest] = []
            self._quota = DEFAULT_QUOTA
            self._window_ms = 30_000
            self._window_start: Optional[float] = None
            self._window_used = 0
            self._over_quota_attempts = 0
            self._max_in_window = 0
            # How GET /orders/{id} answers `include=consignments...`: "as_asked" (the spec), "array" (the older
            # array form whatever the consignment_structure) or "link" (the include ignored: a {url, resource}).
            self.consignments_answer = "as_asked"
            self._state.notify_all()

    def reset(self) -> None:
        """Forget orders, stock, customers, faults, quota and its clock, adjustment, answer forms and requests."""
        self._reset_state()
        self.clock = time.monotonic
        self.total_adjustment = ZERO
        self.faults.clear()
        self.server.clear_log()

    @property
    def orders(self) -> dict[int, StoredOrder]:
        """A snapshot (deep copy) of every order by id."""
        with self._state:
            return copy.deepcopy(self._orders)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far."""
        return self.server.connections_accepted

    def add_customer(self, customer_id: int) -> None:
        """Make `customer_id` valid on create (0, the guest, always is)."""
        with self._state:
            self._customers.add(int(customer_id))

    def set_stock(self, product_id: int, variant_id: Optional[int], quantity: int) -> None:
        """Track inventory for a product/variant; untracked products have unlimited stock."""
        with self._state:
            self._stock[(product_id, variant_id)] = quantity

    def stock(self, product_id: int, variant_id: Optional[int]) -> Optional[int]:
        """Current inventory of a tracked product/variant, None when untracked."""
        with self._state:
            return self._stock.get((product_id, variant_id))

    def set_status(self, order_id: int, status_id: int, payment_status: Optional[str] = None) -> None:
        """Move an order to another status (and payment status), as the merchant would."""
        with self._state:
            header = self._orders[order_id].header
            header.update(status_id=status_id, status=STATUS_LABELS[status_id],
                          custom_status=STATUS_LABELS[status_id], date_modified=rfc2822())
            if payment_status is not None:
                header["payment_status"] = payment_status
            self._state.notify_all()

    def add_shipment(self, order_id: int, items: Optional[Iterable[tuple[int, int]]] = None, tracking_number: str = "",
                     tracking_link: str = "", generated_tracking_link: str = "", tracking_carrier: str = "",
                     shipping_provider: str = "") -> dict:
        """Ship (order_product_id, quantity) items, by default all that is unshipped; returns the shipment.

        Updates quantity_shipped but leaves the order status to set_status().
        """
        with self._state:
            order = self._orders[order_id]
            lines = {line["id"]: line for line in order.products}
            if items is None:
                items = [(line["id"], line["quantity"] - line["quantity_shipped"]) for line in order.products
                         if line["quantity"] > line["quantity_shipped"]]
            items = list(items)
            if not items:
                raise ValueError(f"order {order_id} has nothing to ship")
            for line_id, quantity in items:
                line = lines[line_id]
                if quantity < 1 or line["quantity_shipped"] + quantity > line["quantity"]:
                    raise ValueError(f"cannot ship {quantity} more of order product {line_id}")
            address = order.shipping_addresses[0] if order.shipping_addresses else {}
            for line_id, quantity in items:
                lines[line_id]["quantity_shipped"] += quantity
                order.header["items_shipped"] += quantity
                if address:
                    address["items_shipped"] += quantity
            shipment = {
                "id": next(self._shipment_ids), "order_id": order_id, "customer_id": order.header["customer_id"],
                "order_address_id": address.get("id", 0), "date_created": rfc2822(),
                "tracking_number": tracking_number, "merchant_shipping_cost": money(ZERO),
                "shipping_method": address.get("shipping_method", ""), "shipping_provider": shipping_provider,
                "tracking_carrier": tracking_carrier, "tracking_link": tracking_link,
                "generated_tracking_link": generated_tracking_link, "shipping_provider_display_name": "",
                "comments": "", "billing_address": copy.deepcopy(order.header["billing_address"]),
                "shipping_address": {name: address.get(name, "") for name in ADDRESS_FIELDS},
                "items": [
                    {"order_product_id": line_id, "product_id": lines[line_id]["product_id"], "quantity": quantity}
                    for line_id, quantity in items
                ],
            }
            order.shipments.append(shipment)
            self._state.notify_all()
            return copy.deepcopy(shipment)

    def add_order(self, *, external_source: Optional[str] = None, external_order_id: Optional[str] = None,
                  status_id: int = 1, payment_status: str = "", products: Optional[list] = None,
                  billing_address: Optional[dict] = None, shipping_addresses: Optional[list] = None, **fields) -> int:
        """Seed an order that did not come through the API (another channel, a manual order); returns its id.

        The body is not validated and stock is not touched; `fields` are any other order_Post fields.
        """
        billing = billing_address or {
            "first_name": "Asha", "last_name": "Rao", "street_1": "1 MG Road", "city": "Bengaluru",
            "state": "Karnataka", "zip": "560001", "country": "India", "country_iso2": "IN",
            "phone": "+919800000000", "email": "asha@example.com",
        }
        body = {
            **fields,
            "billing_address": billing,
            "products": products or [{"product_id": 1, "quantity": 1, "price_inc_tax": 100, "price_ex_tax": 100}],
            "shipping_addresses": shipping_addresses if shipping_addresses is not None else [dict(billing)],
            "status_id": status_id,
            "external_source": external_source,
        }
        if external_order_id is not None:
            body["external_order_id"] = external_order_id
        with self._state:
            order = self._build_order(body, stored_body=None)
            order.header["payment_status"] = payment_status
            self._orders[order.id] = order
            self._state.notify_all()
            return order.id

    # admin: rate limit

    def set_quota(self, requests_per_window: int, window_ms: int = 30_000) -> None:
        """Enforce BigCommerce-style fixed windows: at most `requests_per_window` per `window_ms`, else 429."""
        with self._state:
            self._quota = requests_per_window
            self._window_ms = window_ms
            self._window_start = None
            self._window_used = 0

    @property
    def over_quota_attempts(self) -> int:
        """Requests that arrived while the window's quota was used up (each got a 429)."""
        with self._state:
            return self._over_quota_attempts

    @property
    def max_requests_in_any_window(self) -> int:
        """The most requests accepted within one window."""
        with self._state:
            return self._max_in_window

    def _take_quota(self) -> tuple[bool, dict]:
        """Count one request against the window; returns whether it may proceed and the rate-limit headers."""
        now = self.clock()
        with self._state:
            window = self._window_ms / 1000
            if self._window_start is None or now >= self._window_start + window:
                self._window_start, self._window_used = now, 0
            allowed = self._window_used < self._quota
            if allowed:
                self._window_used += 1
                self._max_in_window = max(self._max_in_window, self._window_used)
            else:
                self._over_quota_attempts += 1
            headers = {
                "X-Rate-Limit-Time-Window-Ms": str(self._window_ms),
                "X-Rate-Limit-Time-Reset-Ms": str(max(0, int((self._window_start + window - now) * 1000))),
                "X-Rate-Limit-Requests-Quota": str(self._quota),
                "X-Rate-Limit-Requests-Left": str(self._quota - self._window_used),
            }
            return allowed, headers

    # HTTP

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.before_request(self._guard)
        app.after_request(self._add_rate_headers)
        app.register_error_handler(404, self._unknown_endpoint)
        app.register_error_handler(405, self._unknown_endpoint)
        prefix = "/stores/<store_hash>/v2/orders"
        app.add_url_rule(prefix, "list_orders", self._list_orders, methods=["GET"])
        app.add_url_rule(prefix, "create_order", self._create_order, methods=["POST"])
        app.add_url_rule(f"{prefix}/<order_id>", "get_order", self._get_order, methods=["GET"])
        app.add_url_rule(f"{prefix}/<order_id>/products", "products", self._get_products, methods=["GET"])
        app.add_url_rule(f"{prefix}/<order_id>/shipments", "shipments", self._get_shipments, methods=["GET"])
        app.add_url_rule(f"{prefix}/<order_id>/shipping_addresses", "shipping_addresses",
                         self._get_shipping_addresses, methods=["GET"])
        return app

    def _error_response(self, status: int, body: Any = None, headers: Optional[dict] = None) -> Response:
        """How scripted faults answer: the given body, or the v2 error array."""
        # Only the headers the script gives: a 429 without rate-limit headers is BigCommerce shedding load.
        g.rate_headers = {}
        if isinstance(body, (str, bytes)):
            return Response(body, status=status, headers=headers)
        return _json(error_body(status) if body is None else body, status, headers)

    def _reject(self, exc: Rejected, body: Any = None) -> Response:
        if exc.record:
            with self._state:
                self._invalid.append(InvalidRequest(request.method, request.full_path.rstrip("?"), exc.status,
                                                    exc.reason, body))
        return _json(error_body(exc.status, exc.message, exc.details), exc.status)

    def _guard(self) -> Optional[Response]:
        """Store, token, quota and media-type checks that apply to every endpoint, in BigCommerce's order."""
        parts = request.path.split("/")
        if len(parts) < 3 or parts[1] != "stores" or parts[2] != self.store_hash:
            return self._reject(Rejected(404, "Store not found.", f"unknown store in {request.path}"))
        if request.headers.get("X-Auth-Token") != self.access_token:
            return self._reject(Rejected(401, "You must be authenticated to access this resource.",
                                         "missing or wrong X-Auth-Token"))
        allowed, g.rate_headers = self._take_quota()
        if not allowed:
            return _json(error_body(429, "Too Many Requests"), 429)
        accepted = [item.split(";")[0].strip().lower() for item in request.headers.get("Accept", "").split(",")]
        if "application/json" not in accepted:
            return self._reject(Rejected(406, "The requested format is not supported.",
                                         f"Accept: {request.headers.get('Accept')!r}"))
        if request.method in ("POST", "PUT") and request.mimetype != "application/json":
            return self._reject(Rejected(415, "The request body format is not supported.",
                                         f"Content-Type: {request.headers.get('Content-Type')!r}"))
        return None

    def _unknown_endpoint(self, error) -> Response:
        return self._reject(Rejected(error.code, NOT_FOUND if error.code == 404 else reason_phrase(error.code),
                                     f"no such endpoint: {request.method} {request.path}"))

    def _query(self, allowed: frozenset) -> dict:
        """Query parameters, refusing unknown ones as BigCommerce does."""
        for name in request.args:
            if name not in allowed:
                raise Rejected(400, f"The field '{name}' is not supported by this resource.",
                               f"unknown query parameter {name}")
        params = dict(request.args)
        for name in params.keys() & (INT_PARAMS | DECIMAL_PARAMS):
            try:
                params[name] = int(params[name]) if name in INT_PARAMS else Decimal(params[name])
            except (ValueError, InvalidOperation):
                raise _invalid(name, f"{name}={params[name]!r} is not a number") from None
        return params

    @staticmethod
    def _page(params: dict) -> slice:
        """The slice that `page` and `limit` select; larger limits are clamped to the v2 maximum."""
        limit, page = params.get("limit", 50), params.get("page", 1)
        if limit < 1 or page < 1:
            raise _invalid("limit" if limit < 1 else "page")
        limit = min(limit, MAX_LIMIT)
        return slice((page - 1) * limit, page * limit)

    def _order_or_404(self, order_id: str) -> StoredOrder:
        order = self._orders.get(int(order_id)) if order_id.isdigit() else None
        if order is None:
            raise Rejected(404, NOT_FOUND, record=False)
        return order

    def _serve(self, operation: str, apply: Callable[[], Response]) -> Response:
        """Run one endpoint under the fault script, turning rejections into v2 error responses."""
        def guarded() -> Response:
            try:
                return apply()
            except Rejected as exc:
                return self._reject(exc, request.get_json(silent=True) if request.method == "POST" else None)
        return self.faults.run(operation, guarded, self._error_response)

    def _list_orders(self, store_hash: str) -> Response:
        def apply() -> Response:
            params = self._query(LIST_PARAMS)
            field_name, _, direction = params.get("sort", "id").partition(":")
            if field_name not in SORT_FIELDS or direction not in ("", "asc", "desc"):
                raise _invalid("sort")
            page = self._page(params)
            with self._state:
                headers = [order.header for order in self._orders.values() if _matches(order.header, params)]
                # Ids grow with creation time, so other sort fields fall back to id order.
                headers.sort(key=lambda header: header["id"], reverse=direction == "desc")
                found = copy.deepcopy(headers[page])
            return _json(found) if found else _no_content()
        return self._serve("list_orders", apply)

    def _get_order(self, store_hash: str, order_id: str) -> Response:
        def apply() -> Response:
            params = self._query(frozenset({"include", "consignment_structure"}))
            includes = {name for name in params.get("include", "").split(",") if name}
            if includes - ORDER_INCLUDES:
                raise _invalid("include", f"include={params['include']!r}")
            structure = params.get("consignment_structure")
            if structure not in (None, "object"):
                raise _invalid("consignment_structure", f"consignment_structure={structure!r}")
            with self._state:
                order = self._order_or_404(order_id)
                header = copy.deepcopy(order.header)
                if includes & {"consignments", "consignments.line_items"} and self.consignments_answer != "link":
                    inlined = self._consignments(order, whole_lines="consignments.line_items" in includes)
                    as_object = structure == "object" and self.consignments_answer == "as_asked"
                    header["consignments"] = inlined if as_object else [inlined]
                if "fees" in includes:
                    header["fees"] = []
                return _json(header)
        return self._serve("get_order", apply)

    def _consignments(self, order: StoredOrder, *, whole_lines: bool) -> dict:
        """`orderConsignment_Get` of a shipping order: one shipping consignment per address, carrying its lines.

        Lines on no shipping address (an order without one) form a digital consignment, as downloads do.
        """
        def inlined(lines: list) -> list:
            if whole_lines:
                return copy.deepcopy(lines)
            return [{"url": f"{self.store_url}/orders/{order.id}/products/{line['id']}",
                     "resource": f"/orders/{order.id}/products/{line['id']}"} for line in lines]

        def lines_of(address_id: int) -> list:
            return inlined([line for line in order.products if line["order_address_id"] == address_id])

        address_ids = {address["id"] for address in order.shipping_addresses}
        shipping = [{
            "id": address["id"],
            **{name: address[name] for name in ADDRESS_FIELDS},
            "form_fields": copy.deepcopy(address["form_fields"]),
            "shipping_method": address["shipping_method"],
            "line_items": lines_of(address["id"]),
            "items_total": address["items_total"], "items_shipped": address["items_shipped"],
            # Numbers here, where /shipping_addresses answers strings (shippingConsignment_Get).
            **{name: float(address[name]) for name in ("base_cost", "cost_ex_tax", "cost_inc_tax", "cost_tax")},
            "base_handling_cost": 0.0, "handling_cost_ex_tax": 0.0, "handling_cost_inc_tax": 0.0,
            "handling_cost_tax": 0.0, "shipping_zone_id": address["shipping_zone_id"],
            "shipping_zone_name": address["shipping_zone_name"],
            "shipping_quotes": {
                "url": f"{self.store_url}/orders/{order.id}/consignments/shipping/{address['id']}/shipping_quotes",
                "resource": f"/orders/{order.id}/consignments/shipping/{address['id']}/shipping_quotes"},
        } for address in order.shipping_addresses]
        unaddressed = inlined([line for line in order.products if line["order_address_id"] not in address_ids])
        downloads = ([{"recipient_email": order.header["billing_address"]["email"], "line_items": unaddressed}]
                     if unaddressed else [])
        return {"pickups": [], "shipping": shipping, "downloads": downloads, "email": {"gift_certificates": []}}

    def _sub_resource(self, operation: str, order_id: str, select: Callable[[StoredOrder], list]) -> Response:
        def apply() -> Response:
            page = self._page(self._query(PAGE_PARAMS))
            with self._state:
                items = select(self._order_or_404(order_id))[page]
                return _json(items) if items else _no_content()
        return self._serve(operation, apply)

    def _get_products(self, store_hash: str, order_id: str) -> Response:
        return self._sub_resource("products", order_id, lambda order: order.products)

    def _get_shipments(self, store_hash: str, order_id: str) -> Response:
        return self._sub_resource("shipments", order_id, lambda order: order.shipments)

    def _get_shipping_addresses(self, store_hash: str, order_id: str) -> Response:
        return self._sub_resource("shipping_addresses", order_id, lambda order: order.shipping_addresses)

    def _create_order(self, store_hash: str) -> Response:
        def apply() -> Response:
            try:
                body = json.loads(request.get_data())
            except ValueError:
                raise Rejected(400, "The request body is not valid JSON.") from None
            self._validate_create(body)
            with self._state:
                self._take_stock(body["products"])
                order = self._build_order(body, stored_body=copy.deepcopy(body))
                self._orders[order.id] = order
                self._create_count += 1
                self._state.notify_all()
                return _json(order.header, self.create_status)
        return self._serve("create", apply)

    # create: validation and building

    def _validate_create(self, body: Any) -> None:
        """Raise Rejected unless `body` is a valid order_Post that BigCommerce would accept."""
        spec = self._spec
        if not isinstance(body, dict):
            raise Rejected(400, "The request body must be a JSON object.")
        for name in body:
            if name in spec.read_only:
                raise Rejected(400, f"The field '{name}' cannot be written to. Please remove it from your request "
                                    "before trying again.", f"read-only field {name}")
            if name not in spec.writable:
                raise Rejected(400, f"The field '{name}' is not supported by this resource.", f"unknown field {name}")
        if "consignments" in body:
            raise Rejected(400, "The field 'consignments' is not supported by this resource.",
                           "pickup (consignment) orders are not simulated; Bik orders use products")
        for name in ("billing_address", "products"):
            if name not in body:
                raise Rejected(400, f"The field '{name}' is required.", f"missing {name}")
        shipping = body.get("shipping_addresses")
        addresses = [body["billing_address"], *(shipping if isinstance(shipping, list) else [])]
        if any(isinstance(address, dict) and "state" in address and address["state"] is None for address in addresses):
            raise Rejected(400, "The field 'state' does not allow null values.", "null state in an address")
        schema_error = spec.schema_error(body)
        if schema_error:
            raise schema_error

        billing = body["billing_address"]
        _check_known(billing, spec.billing_fields, "billing_address.")
        if len(billing["zip"].strip()) < 2:
            raise _invalid("zip", "billing zip shorter than two characters")
        for index, address in enumerate(body.get("shipping_addresses", [])):
            _check_known(address, spec.shipping_fields, f"shipping_addresses[{index}].")
        if not body["products"]:
            raise _invalid("products", "no product lines")
        for index, line in enumerate(body["products"]):
            self._validate_line(index, line)
        for first, second in PAIRED_FIELDS:
            _check_pair(body, first, second)
        for name in spec.money_fields & body.keys():
            _non_negative(name, body[name])
        if body.get("status_id", 1) not in STATUS_LABELS:
            raise _invalid("status_id")
        customer_id = body.get("customer_id", 0)
        if not float(customer_id).is_integer() or (customer_id != 0 and int(customer_id) not in self._customers):
            raise _invalid("customer_id", f"customer_id={customer_id!r} is neither 0 nor a known customer")
        if body.get("default_currency_code", self.currency_code) != self.currency_code:
            raise _invalid("default_currency_code", "multi-currency is not enabled on the fake store")
        if "date_created" in body:
            try:
                email.utils.parsedate_to_datetime(body["date_created"])
            except (TypeError, ValueError):
                raise _invalid("date_created", "date_created is not RFC-2822") from None

    def _validate_line(self, index: int, line: dict) -> None:
        where = f"products[{index}]."
        custom = "product_id" not in line
        _check_known(line, self._spec.custom_fields if custom else self._spec.catalog_fields, where)
        # The schema's anyOf lets any object through as a catalog line; custom lines need their own required fields.
        required = ("name", "quantity", "price_inc_tax", "price_ex_tax") if custom else ("quantity",)
        for name in required:
            if name not in line:
                raise Rejected(400, f"The field '{name}' is required.", f"{where}{name} missing")
        if line["quantity"] < 1:
            raise _invalid("quantity", f"{where}quantity={line['quantity']!r}")
        _check_pair(line, "price_inc_tax", "price_ex_tax", where)
        for name in ("price_inc_tax", "price_ex_tax"):
            if name in line:
                _non_negative(name, line[name])

    def _take_stock(self, lines: list) -> None:
        """Reserve tracked inventory for all lines, or raise the 409 BigCommerce answers and reserve nothing."""
        wanted: collections.Counter = collections.Counter()
        for line in lines:
            if "product_id" in line:
                wanted[(line["product_id"], line.get("variant_id"))] += line["quantity"]
        short = [(key, quantity) for key, quantity in wanted.items()
                 if key in self._stock and self._stock[key] < quantity]
        if short:
            errors = [{"type": "OutOfStock", "product_id": product_id, "variant_id": variant_id,
                       "inventory_level": self._stock[(product_id, variant_id)], "quantity_requested": quantity}
                      for (product_id, variant_id), quantity in short]
            raise Rejected(409, OUT_OF_STOCK, details={"errors": errors}, record=False)
        for key, quantity in wanted.items():
            if key in self._stock:
                self._stock[key] -= quantity

    def _build_order(self, body: dict, stored_body: Optional[dict]) -> StoredOrder:
        """Turn a create body into the stored order with computed totals; caller holds the state lock."""
        order_id = next(self._order_ids)
        addresses = [self._build_address(order_id, address) for address in body.get("shipping_addresses") or []]
        address_id = addresses[0]["id"] if addresses else 0
        lines = [self._build_line(order_id, address_id, line) for line in body["products"]]

        def amount(name: str) -> Decimal:
            return _decimal(body.get(name, 0))

        subtotal_ex = sum((_decimal(line["total_ex_tax"]) for line in lines), ZERO)
        subtotal_inc = sum((_decimal(line["total_inc_tax"]) for line in lines), ZERO)
        if "subtotal_inc_tax" in body:
            subtotal_ex, subtotal_inc = amount("subtotal_ex_tax"), amount("subtotal_inc_tax")
        shipping_ex, shipping_inc = amount("shipping_cost_ex_tax"), amount("shipping_cost_inc_tax")
        handling_ex, handling_inc = amount("handling_cost_ex_tax"), amount("handling_cost_inc_tax")
        wrapping_ex, wrapping_inc = amount("wrapping_cost_ex_tax"), amount("wrapping_cost_inc_tax")
        discount = amount("discount_amount")
        if "total_inc_tax" in body:
            total_ex, total_inc = amount("total_ex_tax"), amount("total_inc_tax")
        else:
            # total_adjustment stands in for store-side tax or price changes the bridge did not expect.
            adjustment = self.total_adjustment - discount
            total_ex = max(ZERO, subtotal_ex + shipping_ex + handling_ex + wrapping_ex + adjustment)
            total_inc = max(ZERO, subtotal_inc + shipping_inc + handling_inc + wrapping_inc + adjustment)
        if addresses:
            addresses[0].update(base_cost=money(shipping_ex), cost_ex_tax=money(shipping_ex),
                                cost_inc_tax=money(shipping_inc), cost_tax=money(shipping_inc - shipping_ex),
                                items_total=sum(line["quantity"] for line in lines))
        status_id = body.get("status_id", 1)
        created = body.get("date_created") or rfc2822()
        resource = f"/orders/{order_id}"
        link = f"{self.store_url}{resource}"
        header = {
            "id": order_id,
            "customer_id": int(body.get("customer_id", 0)),
            "date_created": created,
            "date_modified": created,
            "date_shipped": "",
            "status_id": status_id,
            "status": STATUS_LABELS[status_id],
            "custom_status": STATUS_LABELS[status_id],
            "subtotal_ex_tax": money(subtotal_ex),
            "subtotal_inc_tax": money(subtotal_inc),
            "subtotal_tax": money(subtotal_inc - subtotal_ex),
            "base_shipping_cost": money(shipping_ex),
            "shipping_cost_ex_tax": money(shipping_ex),
            "shipping_cost_inc_tax": money(shipping_inc),
            "shipping_cost_tax": money(shipping_inc - shipping_ex),
            "base_handling_cost": money(handling_ex),
            "handling_cost_ex_tax": money(handling_ex),
            "handling_cost_inc_tax": money(handling_inc),
            "handling_cost_tax": money(handling_inc - handling_ex),
            "base_wrapping_cost": money(wrapping_ex),
            "wrapping_cost_ex_tax": money(wrapping_ex),
            "wrapping_cost_inc_tax": money(wrapping_inc),
            "wrapping_cost_tax": money(wrapping_inc - wrapping_ex),
            "total_ex_tax": money(total_ex),
            "total_inc_tax": money(total_inc),
            "total_tax": money(total_inc - total_ex),
            "items_total": sum(line["quantity"] for line in lines),
            "items_shipped": 0,
            "payment_method": body.get("payment_method", ""),
            "payment_provider_id": body.get("payment_provider_id"),
            "payment_status": "",
            "refunded_amount": money(ZERO),
            "order_is_digital": False,
            "store_credit_amount": money(ZERO),
            "gift_certificate_amount": money(ZERO),
            "ip_address": body.get("ip_address", ""),
            "geoip_country": "",
            "geoip_country_iso2": "",
            "currency_id": 1,
            "currency_code": self.currency_code,
            "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1,
            "default_currency_code": body.get("default_currency_code", self.currency_code),
            "store_default_currency_code": self.currency_code,
            "store_default_to_transactional_exchange_rate": "1.0000000000",
            "staff_notes": body.get("staff_notes", ""),
            "customer_message": body.get("customer_message", ""),
            "discount_amount": money(discount),
            "coupon_discount": money(ZERO),
            "shipping_address_count": len(addresses),
            "is_deleted": False,
            "ebay_order_id": "0",
            "cart_id": "",
            "billing_address": {**{name: body["billing_address"].get(name, "") for name in ADDRESS_FIELDS},
                                "form_fields": []},
            "is_email_opt_in": False,
            "order_source": "external",
            "channel_id": body.get("channel_id", 1),
            "external_source": body.get("external_source"),
            "external_id": None,
            "external_merchant_id": body.get("external_merchant_id"),
            "external_order_id": body.get("external_order_id", ""),
            "tax_provider_id": "",
            "customer_locale": body.get("customer_locale", ""),
            "is_tax_inclusive_pricing": False,
            "products": {"url": f"{link}/products", "resource": f"{resource}/products"},
            "shipping_addresses": {"url": f"{link}/shipping_addresses", "resource": f"{resource}/shipping_addresses"},
            "coupons": {"url": f"{link}/coupons", "resource": f"{resource}/coupons"},
            "consignments": {"url": f"{link}/consignments", "resource": f"{resource}/consignments"},
        }
        return StoredOrder(order_id, header, lines, addresses, [], stored_body)

    def _build_address(self, order_id: int, address: dict) -> dict:
        return {
            "id": next(self._address_ids), "order_id": order_id,
            **{name: address.get(name, "") for name in ADDRESS_FIELDS},
            "shipping_method": address.get("shipping_method", ""),
            "items_total": 0, "items_shipped": 0, "base_cost": money(ZERO), "cost_ex_tax": money(ZERO),
            "cost_inc_tax": money(ZERO), "cost_tax": money(ZERO), "shipping_zone_id": 0, "shipping_zone_name": "",
            "form_fields": [],
        }

    def _build_line(self, order_id: int, address_id: int, line: dict) -> dict:
        # Catalog prices are not modelled: a line without a price override costs 0.
        price_ex, price_inc = _decimal(line.get("price_ex_tax", 0)), _decimal(line.get("price_inc_tax", 0))
        quantity = line["quantity"]
        product_id = line.get("product_id", 0)
        name = line.get("name") or line.get("name_customer") or line.get("name_merchant") or f"Product {product_id}"
        return {
            "id": next(self._line_ids), "order_id": order_id, "product_id": product_id,
            "variant_id": line.get("variant_id", 0), "order_address_id": address_id,
            "name": name, "name_customer": name, "name_merchant": line.get("name_merchant", name),
            "sku": line.get("sku", ""), "upc": line.get("upc", ""), "type": "physical",
            "base_price": money(price_ex), "price_ex_tax": money(price_ex), "price_inc_tax": money(price_inc),
            "price_tax": money(price_inc - price_ex), "base_total": money(price_ex * quantity),
            "total_ex_tax": money(price_ex * quantity), "total_inc_tax": money(price_inc * quantity),
            "total_tax": money((price_inc - price_ex) * quantity),
            "quantity": quantity, "quantity_shipped": 0, "quantity_refunded": 0, "is_refunded": False,
            "refund_amount": money(ZERO), "external_id": None,
            "product_options": [_order_option(option) for option in line.get("product_options", [])],
        }


def _order_option(option: dict) -> dict:
    """An order product's option as GET …/products shows it, from the option given on create."""
    display_name = option.get("display_name") or option.get("display_name_customer") or f"Option {option.get('id')}"
    display_value = option.get("display_value") or option.get("display_value_customer") or option.get("value", "")
    return {
        "id": option.get("id"), "option_id": option.get("id"), "product_option_id": option.get("id"),
        "value": option.get("value", ""), "name": display_name,
        "display_name": display_name, "display_value": display_value,
    }


def _matches(header: dict, params: dict) -> bool:
    """Whether an order passes the GET /v2/orders filters in `params`."""
    equal = ("external_order_id", "customer_id", "status_id", "cart_id", "payment_method", "channel_id")
    if any(name in params and header[name] != params[name] for name in equal):
        return False
    if "email" in params and header["billing_address"]["email"].lower() != params["email"].lower():
        return False
    if not params.get("min_id", header["id"]) <= header["id"] <= params.get("max_id", header["id"]):
        return False
    total = _decimal(header["total_inc_tax"])
    return params.get("min_total", total) <= total <= params.get("max_total", total)


def main(argv: Optional[list[str]] = None) -> None:
    """Serve a fake store until interrupted, printing its base URL once ready."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--store-hash", default="abc123")
    parser.add_argument("--token", default="bc-test-token")
    args = parser.parse_args(argv)
    serve_until_stopped(FakeBigCommerce(store_hash=args.store_hash, access_token=args.token, latency_ms=args.latency_ms,
                                        port=args.port))


if __name__ == "__main__":
    main()
