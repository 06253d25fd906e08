"""Builders shared by the bitbybit adapter tests: settings, store answers, the adapter wired as bootstrap wires it."""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any, Optional

from adapters.bitbybit import PLATFORM
from adapters.bitbybit.adapter import BitbybitAdapter, BitbybitRateLimit
from adapters.bitbybit.errors import error_message
from adapters.bitbybit.settings import BitbybitConfig
from adapters.bitbybit.variant_map import VariantMap
from bridge.bootstrap import build_session
from bridge.config import UpstreamConfig
from bridge.core.presentation import Presentation
from bridge.upstream.client import Upstream
from bridge.upstream.quota import RateGate
from tests.support.jitter import HALF_JITTER

API_BASE = "https://api.bitbybit.test/customer/open/v1"
ORDERS_URL = f"{API_BASE}/orders"
KEY = "bbb_test_0123456789secret"
DRAFT = "nb_1715200000_a1b2c3d4"
MARKER = f"bik:{DRAFT}"


def bbb_settings(**overrides: Any) -> BitbybitConfig:
    """bitbybit settings pointing at the mocked API."""
    return BitbybitConfig.model_validate({"api_key": KEY, "api_base_url": API_BASE, **overrides})


def make_adapter(sleep, settings: Optional[BitbybitConfig] = None, presentation: Optional[Presentation] = None,
                 upstream: Optional[UpstreamConfig] = None,
                 variant_map: Optional[VariantMap] = None) -> BitbybitAdapter:
    """The adapter with a sleep that returns at once (moving the quota gate's clock) and jitter fixed."""
    upstream_config = upstream or UpstreamConfig()
    client = Upstream(build_session(upstream_config.pool_size), upstream_config, platform="bitbybit",
                      rate_headers=BitbybitRateLimit(), message_of=error_message, sleep=sleep, jitter=HALF_JITTER,
                      gate=RateGate(BitbybitRateLimit(), clock=sleep.clock))
    # The platform's name format, as the composition root gives it: bitbybit names orders by their number.
    presentation = dataclasses.replace(presentation or Presentation(currency="INR"),
                                       default_name_format=PLATFORM.default_name_format)
    return BitbybitAdapter(settings or bbb_settings(), presentation, client, variant_map)


def bbb_order(**overrides: Any) -> dict:
    """An Order object as POST/GET /orders answers it, placed by the bridge for DRAFT."""
    order = {
        "id": "ord_7f3a9c",
        "orderId": "ORD-1001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 998,
        "currency": "INR",
        "notes": f"Placed through Bik. draftOrderId: {DRAFT}.",
        "customer": {"id": "cus_1", "firstName": "Bik", "lastName": "Tester", "email": "Buyer@Example.com",
                     "phoneNumber": "+919876543210"},
        "lineItems": [{
            "id": "li_1", "quantity": 2, "price": 499, "title": "Skin Renew Cream",
            "productVariant": {"id": "40946134352009", "key": "default", "price": 499, "compareAtPrice": 599,
                               "inventorySku": "SRC-50", "media": "https://cdn.example/src.jpg"},
        }],
        "shippingAddress": {"id": "addr_1", "firstName": "Bik", "lastName": "Tester", "phone": "+919876543210",
                            "address1": "Bik Office, HSR Layout, Sector 6", "address2": "", "city": "Bengaluru",
                            "province": "Karnataka", "country": "IN", "zip": "560102"},
        "tags": ["ordered_via_bik", MARKER],
        "createdAt": "2024-05-08T10:00:00.000Z",
        "updatedAt": "2024-05-08T10:00:00.000Z",
    }
    order.update(copy.deepcopy(overrides))
    return order


def envelope(data: Any) -> dict:
    return {"data": data}


def listing(orders: list[dict], page: int = 1, limit: int = 100, total: Optional[int] = None,
            has_next: bool = False) -> dict:
    """A GET /orders page."""
    return {"data": orders, "meta": {"page": page, "limit": limit, "total": len(orders) if total is None else total,
                                     "hasNextPage": has_next}}


def error(code: str, message: str = "") -> dict:
    return {"error": {"code": code, "message": message or code.replace("_", " ").lower()}}


class RecordedLog(logging.Handler):
    """The bitbybit adapter's log records, whatever the logging setup of earlier tests."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {vars(r)}" for r in self.records)

    def __enter__(self) -> "RecordedLog":
        logger = logging.getLogger("bik_bridge.bitbybit")
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc_info) -> None:
        logger = logging.getLogger("bik_bridge.bitbybit")
        logger.removeHandler(self)
        logger.setLevel(self._level)
