"""Fixtures for the BigCommerce adapter tests: settings, Bik payloads, store answers, a mocked HTTP layer."""
from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import responses

from adapters.bigcommerce.adapter import BigCommerceAdapter, BigCommerceRateLimit, error_message
from adapters.bigcommerce.settings import BigCommerceConfig
from bridge.bootstrap import build_session
from bridge.config import UpstreamConfig
from bridge.core.deadline import Deadline
from bridge.core.models import PlaceOrderRequest
from bridge.core.presentation import Presentation
from bridge.upstream.client import Upstream
from bridge.upstream.quota import RateGate
from tests.support.jitter import HALF_JITTER

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "place-order.json"
API_BASE = "https://api.bigcommerce.test"
STORE_HASH = "abc123"
TOKEN = "bc-secret-token"
ORDERS_URL = f"{API_BASE}/stores/{STORE_HASH}/v2/orders"


@pytest.fixture
def example_payload() -> dict:
    """Bik's sample placeOrder body, a fresh copy per test."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def make_request(example_payload) -> Callable[..., PlaceOrderRequest]:
    """A PlaceOrderRequest from the sample, with top-level and order-level overrides."""

    def make(*, order: Optional[dict] = None, drop: tuple[str, ...] = (), address: Optional[dict] = None,
             **top: Any) -> PlaceOrderRequest:
        payload = copy.deepcopy(example_payload)
        payload.update(top)
        payload["order"].update(order or {})
        if payload["order"].get("address") is not None:
            payload["order"]["address"].update(address or {})
            for name in drop:
                payload["order"]["address"].pop(name, None)
        return PlaceOrderRequest.model_validate(payload)

    return make


@pytest.fixture
def place_request(make_request) -> PlaceOrderRequest:
    return make_request()


def bc_settings(**overrides: Any) -> BigCommerceConfig:
    """BigCommerce settings pointing at the mocked API."""
    values: dict[str, Any] = {"store_hash": STORE_HASH, "access_token": TOKEN, "api_base_url": API_BASE}
    values.update(overrides)
    return BigCommerceConfig.model_validate(values)


@pytest.fixture
def settings() -> BigCommerceConfig:
    return bc_settings()


@pytest.fixture
def presentation() -> Presentation:
    return Presentation(currency="INR")


class SleepRecorder:
    """A sleep that returns at once, remembers what it was asked, and moves its own clock by that much."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_adapter(sleeps) -> Callable[..., BigCommerceAdapter]:
    """The adapter wired as bootstrap wires it, with a sleep that returns at once."""
    pools: list[ThreadPoolExecutor] = []

    def make(settings: Optional[BigCommerceConfig] = None, presentation: Optional[Presentation] = None,
             upstream: Optional[UpstreamConfig] = None) -> BigCommerceAdapter:
        upstream_config = upstream or UpstreamConfig()
        client = Upstream(build_session(upstream_config.pool_size), upstream_config, platform="bigcommerce",
                          rate_headers=BigCommerceRateLimit(), message_of=error_message, sleep=sleeps,
                          jitter=HALF_JITTER, gate=RateGate(BigCommerceRateLimit(), clock=sleeps.clock))
        pool = ThreadPoolExecutor(max_workers=max(4, upstream_config.pool_size), thread_name_prefix="bigcommerce")
        pools.append(pool)
        return BigCommerceAdapter(settings or bc_settings(), presentation or Presentation(currency="INR"),
                                  client, pool)

    yield make
    for pool in pools:
        pool.shutdown(wait=True)


@pytest.fixture
def adapter(make_adapter) -> BigCommerceAdapter:
    return make_adapter()


@pytest.fixture
def deadline() -> Deadline:
    return Deadline(30)


@pytest.fixture
def rsps():
    """Every HTTP call goes to `responses`; an unregistered URL fails the call."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def bc_order(**overrides: Any) -> dict:
    """An order header as GET/POST /v2/orders answers it."""
    order = {
        "id": 118,
        "customer_id": 0,
        "date_created": "Wed, 08 May 2024 10:00:00 +0000",
        "date_modified": "Wed, 08 May 2024 10:00:00 +0000",
        "date_shipped": "",
        "status_id": 7,
        "status": "Awaiting Payment",
        "custom_status": "Awaiting Payment",
        "subtotal_ex_tax": "998.0000",
        "subtotal_inc_tax": "998.0000",
        "subtotal_tax": "0.0000",
        "base_shipping_cost": "49.0000",
        "shipping_cost_ex_tax": "49.0000",
        "shipping_cost_inc_tax": "49.0000",
        "shipping_cost_tax": "0.0000",
        "discount_amount": "100.0000",
        "coupon_discount": "0.0000",
        "total_ex_tax": "947.0000",
        "total_inc_tax": "947.0000",
        "total_tax": "0.0000",
        "items_total": 2,
        "items_shipped": 0,
        "payment_method": "Cash on Delivery",
        "payment_provider_id": None,
        "payment_status": "",
        "refunded_amount": "0.0000",
        "currency_id": 1,
        "currency_code": "INR",
        "default_currency_code": "INR",
        "store_default_currency_code": "INR",
        "billing_address": {
            "first_name": "Bik",
            "last_name": "Tester",
            "company": "",
            "street_1": "Bik Office, HSR Layout, Sector 6",
            "street_2": "",
            "city": "Bengaluru",
            "state": "Karnataka",
            "zip": "560102",
            "country": "India",
            "country_iso2": "IN",
            "phone": "+919876543210",
            "email": "Buyer@Example.com",
            "form_fields": [],
        },
        "order_source": "external",
        "external_source": "Bik",
        "external_id": None,
        "external_order_id": "nb_1715200000_a1b2c3d4",
        "products": {"url": f"{ORDERS_URL}/118/products", "resource": "/orders/118/products"},
        "shipping_addresses": {"url": f"{ORDERS_URL}/118/shipping_addresses",
                               "resource": "/orders/118/shipping_addresses"},
        "coupons": {"url": f"{ORDERS_URL}/118/coupons", "resource": "/orders/118/coupons"},
    }
    order.update(overrides)
    return order


def bc_product(**overrides: Any) -> dict:
    """One line of GET /v2/orders/{id}/products."""
    line = {
        "id": 501,
        "order_id": 118,
        "product_id": 77,
        "variant_id": 93,
        "order_address_id": 9,
        "name": "Skin Renew Cream",
        "sku": "SRC-50",
        "type": "physical",
        "base_price": "499.0000",
        "price_ex_tax": "499.0000",
        "price_inc_tax": "499.0000",
        "price_tax": "0.0000",
        "base_total": "998.0000",
        "total_ex_tax": "998.0000",
        "total_inc_tax": "998.0000",
        "quantity": 2,
        "quantity_shipped": 0,
        "quantity_refunded": 0,
        "is_refunded": False,
        "product_options": [],
        "applied_discounts": [],
    }
    line.update(overrides)
    return line


def bc_shipment(**overrides: Any) -> dict:
    """One entry of GET /v2/orders/{id}/shipments."""
    shipment = {
        "id": 1,
        "order_id": 118,
        "customer_id": 0,
        "order_address_id": 9,
        "date_created": "Thu, 09 May 2024 08:00:00 +0000",
        "tracking_number": "AWB123",
        "shipping_method": "Bik",
        "shipping_provider": "",
        "tracking_carrier": "",
        "tracking_link": "",
        "generated_tracking_link": "",
        "comments": "",
        "items": [{"order_product_id": 501, "product_id": 77, "quantity": 2}],
    }
    shipment.update(overrides)
    return shipment


def bc_shipping_address(**overrides: Any) -> dict:
    """One entry of GET /v2/orders/{id}/shipping_addresses."""
    address = {
        "id": 9,
        "order_id": 118,
        "first_name": "Ship",
        "last_name": "To",
        "company": "",
        "street_1": "12 MG Road",
        "street_2": "Flat 4",
        "city": "Bengaluru",
        "state": "Karnataka",
        "zip": "560001",
        "country": "India",
        "country_iso2": "IN",
        "phone": "+919800000000",
        "email": "buyer@example.com",
        "shipping_method": "Bik",
    }
    address.update(overrides)
    return address


def bc_consignments(products: list, addresses: list) -> dict:
    """`orderConsignment_Get` as `include=consignments.line_items&consignment_structure=object` inlines it.

    Each address is a shipping consignment carrying the lines; without an address the lines are downloads.
    """
    def shipped(lines: list) -> int:
        return sum(int(line.get("quantity_shipped") or 0) for line in lines if isinstance(line, dict))

    shipping = [{**address, "line_items": products, "items_total": 2, "items_shipped": shipped(products),
                 "cost_inc_tax": 49.0} for address in addresses]
    downloads = [] if addresses else [{"recipient_email": "buyer@example.com", "line_items": products}]
    return {"pickups": [], "shipping": shipping, "downloads": downloads, "email": {"gift_certificates": []}}
